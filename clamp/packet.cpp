// IPv4/IPv6 header parsing down to the transport header.
#include "clamp/packet.h"

namespace tunshim::clamp {
namespace {

constexpr std::uint8_t kIp6NoNext = 59;

// IPv6 header types that are not transport protocols and that we do not walk: a packet
// stopping at one is well-formed but opaque to us (RFC 8200 §4, IANA "IPv6 Extension
// Header Types").
constexpr bool is_opaque_ip6_header(std::uint8_t nh) noexcept {
  switch (nh) {
    case 50:  // ESP: everything after it is encrypted
    case 51:  // AH
    case kIp6NoNext:
    case 135:  // Mobility
    case 139:  // HIP
    case 140:  // Shim6
    case 253:  // experimentation (RFC 3692)
    case 254:
      return true;
    default:
      return false;
  }
}

IpInfo parse_ipv4(ConstBytes pkt) noexcept {
  IpInfo info;
  info.family = 4;
  if (pkt.size() < 20) return info;
  const std::size_t hlen = std::size_t{pkt[0] & 0x0fU} * 4;
  const std::size_t total = load16(pkt, 2);
  if (hlen < 20 || total < hlen || total > pkt.size()) return info;
  const std::uint16_t frag = load16(pkt, 6);
  info.dont_fragment = (frag & 0x4000U) != 0;
  const bool more = (frag & 0x2000U) != 0;
  const bool offset = (frag & 0x1fffU) != 0;
  info.later_fragment = offset;
  info.first_fragment = more && !offset;
  info.proto = pkt[9];
  info.ip_len = total;
  info.l4_off = hlen;
  info.status = ParseStatus::ok;
  return info;
}

IpInfo parse_ipv6(ConstBytes pkt) noexcept {
  IpInfo info;
  info.family = 6;
  info.dont_fragment = true;
  if (pkt.size() < 40) return info;
  const std::size_t payload = load16(pkt, 4);
  std::uint8_t nh = pkt[6];
  if (payload == 0 && nh != kIp6NoNext) {
    // A jumbogram (RFC 2675) or a header claiming a payload it does not have. Either way
    // the length cannot be trusted without more parsing than a tunnel ever needs.
    return info;
  }
  const std::size_t ip_len = 40 + payload;
  if (ip_len > pkt.size()) return info;
  info.ip_len = ip_len;

  std::size_t off = 40;
  for (int walked = 0;; ++walked) {
    const bool ext =
        nh == kIp6HopByHop || nh == kIp6Routing || nh == kIp6DestOpts || nh == kIp6Fragment;
    if (!ext) {
      info.proto = nh;
      info.l4_off = off;
      info.status = is_opaque_ip6_header(nh) ? ParseStatus::unsupported : ParseStatus::ok;
      return info;
    }
    if (walked == kMaxIp6ExtHeaders) {
      info.proto = nh;  // chain longer than we are willing to follow
      info.l4_off = off;
      info.status = ParseStatus::unsupported;
      return info;
    }
    // Hop-by-hop is only valid straight after the fixed header (RFC 8200 §4.3).
    if (nh == kIp6HopByHop && walked != 0) return info;
    if (off + 8 > ip_len) return info;  // every extension header is at least 8 bytes
    const std::uint8_t next = pkt[off];
    if (nh == kIp6Fragment) {
      const std::uint16_t fo = load16(pkt, off + 2);
      const bool offset = (fo & 0xfff8U) != 0;
      const bool more = (fo & 0x0001U) != 0;
      off += 8;
      if (offset) {
        // What follows is the middle of the original payload, not headers.
        info.later_fragment = true;
        info.first_fragment = false;
        info.proto = next;
        info.l4_off = off;
        info.status = ParseStatus::ok;
        return info;
      }
      info.first_fragment = info.first_fragment || more;
    } else {
      const std::size_t hlen = (std::size_t{pkt[off + 1]} + 1) * 8;
      if (off + hlen > ip_len) return info;
      off += hlen;
    }
    nh = next;
  }
}

}  // namespace

IpInfo parse_ip(ConstBytes pkt) noexcept {
  if (pkt.empty()) return IpInfo{};
  switch (pkt[0] >> 4) {
    case 4:
      return parse_ipv4(pkt);
    case 6:
      return parse_ipv6(pkt);
    default:
      return IpInfo{};
  }
}

}  // namespace tunshim::clamp
