// ICMPv4 "fragmentation needed" / ICMPv6 "packet too big" synthesis.
#include "clamp/icmp_error.h"

#include <algorithm>

#include "clamp/checksum.h"
#include "clamp/packet.h"

namespace tunshim::clamp {
namespace {

constexpr std::size_t kIcmpHeaderLen = 8;
constexpr std::uint8_t kTtl = 64;
constexpr std::uint8_t kIcmp4DestUnreach = 3;
constexpr std::uint8_t kIcmp4FragNeeded = 4;
constexpr std::uint8_t kIcmp6TooBig = 2;
// RFC 792: an ICMPv4 error quotes at least the offender's IP header and 8 data bytes.
// ICMPv6 asks for "as much as possible"; we demand the same 8 bytes past the fixed header.
constexpr std::size_t kMinQuoteData = 8;

// RFC 1122 3.2.2: no error about an ICMP error (Destination Unreachable, Source Quench,
// Redirect, Time Exceeded, Parameter Problem). RFC 4443 2.4(e.1): no ICMPv6 error about
// an ICMPv6 error (types < 128). An ICMP header we cannot see counts as an error: when in
// doubt, stay silent.
bool is_icmp_error(ConstBytes pkt, const IpInfo& ip) noexcept {
  const std::uint8_t icmp = ip.family == 4 ? kProtoIcmp : kProtoIcmpv6;
  if (ip.status == ParseStatus::unsupported) {
    // An over-long extension chain may hide an ICMPv6 error; ESP, AH and friends cannot.
    return ip.proto == kIp6HopByHop || ip.proto == kIp6Routing || ip.proto == kIp6DestOpts ||
           ip.proto == kIp6Fragment;
  }
  if (ip.proto != icmp) return false;
  if (ip.l4_off >= ip.ip_len) return true;
  const std::uint8_t type = pkt[ip.l4_off];
  if (ip.family == 6) return type < 128;
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// RFC 1122 3.2.2 / RFC 1812 4.3.2.7: the offender's source must be a host we could reach;
// no error to an unspecified, loopback, multicast, reserved or broadcast source, and none
// for a datagram sent to multicast or broadcast.
bool ipv4_addresses_allowed(ConstBytes pkt) noexcept {
  const std::uint32_t src = load32(pkt, 12);
  const std::uint8_t src_hi = pkt[12];
  const std::uint8_t dst_hi = pkt[16];
  if (src == 0 || src_hi == 127 || src_hi >= 224) return false;  // 224/4, 240/4, bcast
  return dst_hi < 224;
}

// RFC 4443 2.4(e): no error to an unspecified, loopback or multicast source. A multicast
// destination is fine for "packet too big" (2.4(e.3)).
bool ipv6_addresses_allowed(ConstBytes pkt) noexcept {
  if (pkt[8] == 0xff) return false;
  bool all_zero = true;
  for (std::size_t i = 8; i < 23; ++i) all_zero = all_zero && pkt[i] == 0;
  return !(all_zero && (pkt[23] == 0 || pkt[23] == 1));
}

}  // namespace

IcmpError make_packet_too_big(ConstBytes offender, ConstBytes from, std::uint16_t mtu,
                              Bytes out) noexcept {
  IcmpError err;
  const IpInfo ip = parse_ip(offender);
  if (ip.status == ParseStatus::malformed) return err;
  const bool v4 = ip.family == 4;
  if (from.size() != (v4 ? 4U : 16U)) return err;

  err.status = IcmpErrorStatus::not_allowed;
  if (ip.later_fragment || is_icmp_error(offender, ip)) return err;
  if (v4 ? !ipv4_addresses_allowed(offender) : !ipv6_addresses_allowed(offender)) return err;

  const std::size_t ip_hdr = v4 ? 20 : 40;
  const std::size_t headers = ip_hdr + kIcmpHeaderLen;
  const std::size_t max_total = v4 ? kIcmp4ErrorMax : kIcmp6ErrorMax;
  const std::size_t offender_hdr = v4 ? ip.l4_off : 40;
  const std::size_t min_quote = std::min(ip.ip_len, offender_hdr + kMinQuoteData);
  if (out.size() < headers + min_quote) {
    err.status = IcmpErrorStatus::buffer_too_small;
    return err;
  }
  const std::size_t quote = std::min({ip.ip_len, max_total - headers, out.size() - headers});
  const std::size_t total = headers + quote;

  std::fill_n(out.begin(), headers, std::uint8_t{0});
  std::copy_n(offender.begin(), quote, out.begin() + static_cast<std::ptrdiff_t>(headers));
  Bytes icmp = out.subspan(ip_hdr, kIcmpHeaderLen + quote);
  if (v4) {
    out[0] = 0x45;
    store16(out, 2, static_cast<std::uint16_t>(total));
    out[8] = kTtl;
    out[9] = kProtoIcmp;
    std::copy_n(from.begin(), 4, out.begin() + 12);
    std::copy_n(offender.begin() + 12, 4, out.begin() + 16);  // back to the sender
    store16(out, 10, csum(out.first(ip_hdr)));
    icmp[0] = kIcmp4DestUnreach;
    icmp[1] = kIcmp4FragNeeded;
    store16(icmp, 6, mtu);  // RFC 1191 §4: next-hop MTU in the low half of "unused"
    store16(icmp, 2, csum(icmp));
  } else {
    out[0] = 0x60;
    store16(out, 4, static_cast<std::uint16_t>(kIcmpHeaderLen + quote));
    out[6] = kProtoIcmpv6;
    out[7] = kTtl;
    std::copy_n(from.begin(), 16, out.begin() + 8);
    std::copy_n(offender.begin() + 8, 16, out.begin() + 24);
    icmp[0] = kIcmp6TooBig;
    store32(icmp, 4, mtu);
    store16(icmp, 2, transport_csum(out.first(ip_hdr), icmp, kProtoIcmpv6));
  }
  err.status = IcmpErrorStatus::ok;
  err.length = total;
  return err;
}

}  // namespace tunshim::clamp
