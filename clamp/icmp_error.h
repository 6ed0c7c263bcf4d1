// ICMP "packet too big" synthesis for the oversize-DF guard: ICMPv4 type 3 code 4 with
// the next-hop MTU (RFC 1191 §4) and ICMPv6 type 2 (RFC 4443 §3.2).
#pragma once

#include <cstddef>
#include <cstdint>

#include "clamp/bytes.h"

namespace tunshim::clamp {

// RFC 1812 4.3.2.3: an ICMPv4 error quotes as much of the offender as fits in 576 bytes.
inline constexpr std::size_t kIcmp4ErrorMax = 576;
// RFC 4443 §2.4(c): as much as fits without exceeding the IPv6 minimum MTU.
inline constexpr std::size_t kIcmp6ErrorMax = 1280;

enum class IcmpErrorStatus : std::uint8_t {
  ok,
  malformed,    // offender is not a parseable IP packet
  not_allowed,  // RFC 1122 3.2.2 / RFC 4443 2.4(e): never answer this one (an ICMP
                // error, a non-first fragment, a multicast/broadcast/unspecified source…)
  buffer_too_small,  // out cannot hold even the headers plus the minimum quote
};

struct IcmpError {
  IcmpErrorStatus status = IcmpErrorStatus::malformed;
  std::size_t length = 0;  // bytes written to out: a full IP packet (IP header + ICMP)
};

// Builds, in `out`, a complete IP packet carrying an ICMP "too big" error for the IP
// packet `offender`: addressed to the offender's source, from `from` (4 or 16 bytes, the
// address the error claims to come from, same family as the offender), announcing `mtu`.
// IPv4 header checksum and ICMP checksum (ICMPv6 over its pseudo-header) are complete.
// The quote is the offender's first bytes (never past its IP length), as many as keep the
// error within kIcmp4ErrorMax / kIcmp6ErrorMax and within `out`; `out` must fit at least
// the headers plus the offender's IP header (IPv6: its fixed 40 bytes) and 8 more bytes
// (or the whole offender if shorter), else buffer_too_small. IPv4 header: TTL 64, DF
// clear, ID 0, TOS 0; IPv6: hop limit 64, traffic class and flow label 0. `from` of the
// wrong length, or an unparseable offender, is malformed. Refusals (not_allowed): an
// ICMP(v6) error or an ICMP header we cannot see, a non-first fragment, an IPv6 chain too
// long to see through, an unspecified/loopback/multicast (IPv4 also 240/4 and broadcast)
// source, an IPv4 multicast/broadcast destination. `out` must not overlap `offender`.
IcmpError make_packet_too_big(ConstBytes offender, ConstBytes from, std::uint16_t mtu,
                              Bytes out) noexcept;

}  // namespace tunshim::clamp
