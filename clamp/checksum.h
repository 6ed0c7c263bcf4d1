// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
#pragma once

#include <cstdint>

#include "clamp/bytes.h"

namespace tunshim::clamp {

// One's-complement sum of `b` as big-endian 16-bit words, added to `acc`, not folded and
// not inverted. `odd_start` says whether b[0] sits at an odd offset of the summed region
// (its bytes then pair with the other half of each word).
std::uint32_t csum_add(std::uint32_t acc, ConstBytes b, bool odd_start = false) noexcept;

// Folds a 32-bit accumulator to 16 bits (end-around carry), not inverted.
std::uint16_t csum_fold(std::uint32_t acc) noexcept;

// Finished checksum of a region (inverted fold of csum_add), as stored in headers.
std::uint16_t csum(ConstBytes b) noexcept;

// RFC 1624 eqn. 3: the stored checksum `check` after the 16-bit word `old_word` (covered
// by it) became `new_word`. Keeps a wrong checksum wrong by the same amount.
std::uint16_t csum_replace16(std::uint16_t check, std::uint16_t old_word,
                             std::uint16_t new_word) noexcept;

// The stored checksum after bytes `before` at region offset parity `odd_start` became
// `after` (same length). Correct for any alignment, which the kernel's TCPMSS is not.
std::uint16_t csum_replace_bytes(std::uint16_t check, ConstBytes before, ConstBytes after,
                                 bool odd_start) noexcept;

// Full TCP/UDP/ICMPv6 checksum of `segment` (its checksum field included as stored, so
// a correct packet yields 0 when verifying; for computing, zero the field first) over the
// IPv4 or IPv6 pseudo-header taken from the IP packet `ip` (addresses) and `proto`.
// `ip` must be a parsed, valid IP header (see packet.h); if it is not even long enough to
// hold the addresses, returns 0xffff without reading past it. IPv6 uses the destination
// in the fixed header (no routing-header final destination).
std::uint16_t transport_csum(ConstBytes ip, ConstBytes segment, std::uint8_t proto) noexcept;

}  // namespace tunshim::clamp
