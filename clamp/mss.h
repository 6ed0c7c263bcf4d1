// TCP MSS clamping, semantics of the kernel's xt_TCPMSS target (net/netfilter/xt_TCPMSS.c)
// minus two of its faults: no insertion into a first fragment, and a correct checksum
// when the MSS option sits at an odd offset.
//
// Other deliberate differences, which a differential test against the kernel must expect:
// - Malformed input (bad IP/TCP lengths, an option length < 2 or past the header, an MSS
//   option whose length is not 4, a second MSS option) is passed unchanged as `malformed`;
//   the kernel drops what it cannot parse, skips odd-length MSS options and clamps only
//   the first of two.
// - EOL (kind 0) ends the option list; the kernel steps over it like a NOP and would
//   clamp an MSS option hidden in the padding after it (the receiver ignores that one).
// - The SYN test (SYN set, RST clear) is ours; the kernel relies on the rule's match.
// - Bytes after the IP packet (link padding) are moved along on insertion and kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "clamp/bytes.h"

namespace tunshim::clamp {

enum class Outcome : std::uint8_t {
  clamped,    // an MSS option above the target was lowered to it
  inserted,   // a SYN without MSS got one (min(target, 536) IPv4 / min(target, 1220) IPv6)
  unchanged,  // SYN looked at, nothing to do (MSS already <= target, data, header full)
  no_room,    // insertion wanted but the caller's buffer has < 4 bytes of room
  not_syn,    // TCP but not SYN (or SYN with RST): never touched
  not_tcp,    // not TCP, or TCP behind an IPv6 header we do not walk (ESP, AH, …)
  fragment,   // a non-first fragment: no TCP header to look at
  malformed,  // the IP or TCP header or options are inconsistent: passed unchanged
  disabled,   // the target for this family is 0 (clamping off)
};
inline constexpr int kOutcomeCount = 9;

std::string_view to_string(Outcome o) noexcept;

struct ClampTarget {
  std::uint16_t mss4 = 0;  // 0: leave IPv4 alone
  std::uint16_t mss6 = 0;  // 0: leave IPv6 alone
};

struct ClampResult {
  Outcome outcome = Outcome::malformed;
  std::size_t length = 0;     // packet length after the call (len, or len + 4 if inserted)
  std::uint16_t old_mss = 0;  // MSS found in the packet (0 when none)
  std::uint16_t new_mss = 0;  // MSS now in the packet (0 when none)
  std::uint8_t family = 0;    // 4, 6, or 0 when not IP
  bool syn_ack = false;       // SYN with ACK set
};

// Clamps the MSS of the IP packet held in buf[0, len). `buf.size()` is the capacity: an
// insertion needs len + 4 <= buf.size(). Only SYN packets (SYN set, RST clear) are
// changed; everything else is reported and left byte-for-byte unchanged, as is a packet
// whose outcome is anything but clamped or inserted. Checksums (TCP, and IPv4 header on
// insertion) are updated incrementally, so a packet that arrived with a bad checksum
// leaves with a bad checksum. Never allocates, never throws, never reads outside buf.
ClampResult clamp_mss(Bytes buf, std::size_t len, ClampTarget target) noexcept;

}  // namespace tunshim::clamp
