// Classification of the ICMP the prober reads, and matching against a probe.
#include "clamp/icmp_reply.h"

#include <algorithm>

#include "clamp/packet.h"

namespace tunshim::clamp {
namespace {

constexpr std::size_t kIp4MinHeader = 20;
constexpr std::size_t kIp6Header = 40;
constexpr std::size_t kIpMaxLen = 65535;

std::uint64_t load64(ConstBytes b, std::size_t off) noexcept {
  return (std::uint64_t{load32(b, off)} << 32) | load32(b, off + 4);
}

void copy_addr(ConstBytes b, std::size_t off, std::size_t n, IcmpMessage& m) noexcept {
  std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(off), n, m.addr.begin());
  m.has_addr = true;
}

// The echo fields of `icmp` (an echo message of at least 8 bytes).
void read_echo(ConstBytes icmp, IcmpMessage& m) noexcept {
  m.ident = load16(icmp, 4);
  m.seq = load16(icmp, 6);
  if (icmp.size() >= kIcmpHeaderLen + kProbeNonceLen) {
    m.has_nonce = true;
    m.nonce = load64(icmp, kIcmpHeaderLen);
  }
}

// The echo request a too-big error quotes, from the start of the quoted IP header. Only
// the quoted header's fixed part is trusted: the quote is usually cut short, so its
// length fields describe the original packet, not the quote.
bool read_quote(ConstBytes quote, std::uint8_t family, IcmpMessage& m) noexcept {
  std::size_t hl = 0;
  if (family == 4) {
    if (quote.size() < kIp4MinHeader || (quote[0] >> 4) != 4 || quote[9] != kProtoIcmp) {
      return false;
    }
    hl = std::size_t{quote[0] & 0x0fU} * 4;
    if (hl < kIp4MinHeader) return false;
  } else {
    if (quote.size() < kIp6Header || (quote[0] >> 4) != 6 || quote[6] != kProtoIcmpv6) {
      return false;
    }
    hl = kIp6Header;
  }
  const std::uint8_t request = family == 4 ? kIcmpEchoRequest : kIcmp6EchoRequest;
  if (quote.size() < hl + kIcmpHeaderLen || quote[hl] != request) return false;
  if (family == 4) {
    copy_addr(quote, 16, 4, m);
  } else {
    copy_addr(quote, 24, 16, m);
  }
  read_echo(quote.subspan(hl), m);
  return true;
}

}  // namespace

IcmpMessage parse_icmp4(ConstBytes pkt) noexcept {
  IcmpMessage m;
  m.family = 4;
  if (pkt.size() < kIp4MinHeader || (pkt[0] >> 4) != 4) return m;
  const std::size_t ihl = std::size_t{pkt[0] & 0x0fU} * 4;
  const std::size_t total = load16(pkt, 2);
  if (ihl < kIp4MinHeader || total != pkt.size() || total < ihl + kIcmpHeaderLen ||
      pkt[9] != kProtoIcmp) {
    return m;
  }
  const ConstBytes icmp = pkt.subspan(ihl);
  m.kind = IcmpKind::other;
  if (icmp[0] == kIcmpUnreachable && icmp[1] == kIcmpFragNeeded) {
    // RFC 1191 §4: the next-hop MTU is the low 16 bits of the second word.
    if (read_quote(icmp.subspan(kIcmpHeaderLen), 4, m)) {
      m.kind = IcmpKind::too_big;
      m.mtu = load16(icmp, 6);
    }
  } else if (icmp[0] == kIcmpEchoReply && icmp[1] == 0) {
    m.kind = IcmpKind::echo_reply;
    m.ip_len = static_cast<std::uint16_t>(total);
    copy_addr(pkt, 12, 4, m);
    read_echo(icmp, m);
  }
  return m;
}

IcmpMessage parse_icmp6(ConstBytes msg) noexcept {
  IcmpMessage m;
  m.family = 6;
  if (msg.size() < kIcmpHeaderLen || msg.size() + kIp6Header > kIpMaxLen) return m;
  m.kind = IcmpKind::other;
  if (msg[0] == kIcmp6PacketTooBig && msg[1] == 0) {
    if (read_quote(msg.subspan(kIcmpHeaderLen), 6, m)) {
      m.kind = IcmpKind::too_big;
      const std::uint32_t mtu = load32(msg, 4);
      m.mtu = mtu > kIpMaxLen ? static_cast<std::uint16_t>(kIpMaxLen)
                              : static_cast<std::uint16_t>(mtu);
    }
  } else if (msg[0] == kIcmp6EchoReply && msg[1] == 0) {
    m.kind = IcmpKind::echo_reply;
    m.ip_len = static_cast<std::uint16_t>(msg.size() + kIp6Header);
    read_echo(msg, m);
  }
  return m;
}

ProbeMatch match_probe(const IcmpMessage& m, ConstBytes src,
                       const OutstandingProbe& probe) noexcept {
  const std::size_t alen = probe.family == 4 ? 4 : 16;
  const auto target = ConstBytes(probe.target.data(), alen);
  const auto same = [&](ConstBytes a) {
    return std::equal(a.begin(), a.end(), target.begin(), target.end());
  };
  if (m.family != probe.family || m.ident != probe.ident || m.seq != probe.seq) {
    return ProbeMatch::none;
  }
  switch (m.kind) {
    case IcmpKind::echo_reply:
      if (!same(src) || (m.has_addr && !same(ConstBytes(m.addr.data(), alen)))) {
        return ProbeMatch::none;
      }
      if (!m.has_nonce || m.nonce != probe.nonce) return ProbeMatch::none;
      return m.ip_len == probe.size ? ProbeMatch::reply : ProbeMatch::wrong_length;
    case IcmpKind::too_big:
      if (!m.has_addr || !same(ConstBytes(m.addr.data(), alen))) return ProbeMatch::none;
      if (m.has_nonce && m.nonce != probe.nonce) return ProbeMatch::none;
      return ProbeMatch::too_big;
    default:
      return ProbeMatch::none;
  }
}

}  // namespace tunshim::clamp
