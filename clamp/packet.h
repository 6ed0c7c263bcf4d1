// IPv4/IPv6 parsing down to the transport header. No allocation, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "clamp/bytes.h"

namespace tunshim::clamp {

inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoIcmpv6 = 58;
// IPv6 extension headers walked to reach the transport header (RFC 8200 §4).
inline constexpr std::uint8_t kIp6HopByHop = 0;
inline constexpr std::uint8_t kIp6Routing = 43;
inline constexpr std::uint8_t kIp6Fragment = 44;
inline constexpr std::uint8_t kIp6DestOpts = 60;
// Bound on extension headers followed, so a crafted chain cannot make us walk far.
inline constexpr int kMaxIp6ExtHeaders = 8;

enum class ParseStatus : std::uint8_t {
  ok,
  malformed,    // lengths or version inconsistent with the buffer
  unsupported,  // well-formed, but not something we look into (ESP, AH, unknown ext hdr)
};

// Where the transport header of an IP packet is, and what surrounds it.
struct IpInfo {
  ParseStatus status = ParseStatus::malformed;
  std::uint8_t family = 0;      // 4 or 6
  std::uint8_t proto = 0;       // transport protocol (after the extension headers)
  std::size_t ip_len = 0;       // length the IP header says the packet has (<= buffer)
  std::size_t l4_off = 0;       // offset of the transport header
  bool first_fragment = false;  // fragment offset 0 with more fragments following
  bool later_fragment = false;  // fragment offset != 0: no transport header here
  bool dont_fragment = false;   // IPv4 DF (IPv6: always true, routers never fragment)
};

// Parses the IP header(s) at the start of `pkt`. The packet's own length field must be
// <= pkt.size(); trailing bytes beyond it (link padding) are ignored.
// IPv4: version 4, IHL >= 5, IHL*4 <= total length <= pkt.size(), else malformed; any
// protocol is ok. IPv6: payload length 0 is malformed (a jumbogram, RFC 2675, or a lie)
// unless the next header is 59 (an empty packet: unsupported). Hop-by-hop, routing,
// destination options and fragment headers are walked, at most kMaxIp6ExtHeaders of
// them (one more is unsupported, proto = its type); hop-by-hop anywhere but first, or a
// header running past ip_len, is malformed. ESP, AH, no-next-header, Mobility, HIP, Shim6
// and the experimental values are unsupported (proto = that value); any other value is
// taken as the transport protocol. A fragment header with offset != 0 stops the walk:
// later_fragment, proto = its next header, l4_off just after it.
IpInfo parse_ip(ConstBytes pkt) noexcept;

}  // namespace tunshim::clamp
