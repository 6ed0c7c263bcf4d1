// libFuzzer harness for clamp_mss and make_packet_too_big. Input: 4 bytes of targets
// (mss4, mss6, big-endian), then one IP packet. Aborts on any broken invariant.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "clamp/checksum.h"
#include "clamp/icmp_error.h"
#include "clamp/mss.h"
#include "clamp/packet.h"

namespace tc = tunshim::clamp;

namespace {

constexpr std::size_t kMaxPacket = 2048;
constexpr std::size_t kRoom = 8;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}
void require(bool ok, const char* what) {
  if (!ok) violated(what);
}

// Full-recompute checks that do not trust the incremental code under test: the TCP
// checksum over the parsed segment, and the IPv4 header checksum.
bool tcp_csum_ok(tc::ConstBytes pkt) {
  const tc::IpInfo ip = tc::parse_ip(pkt);
  if (ip.status != tc::ParseStatus::ok || ip.proto != tc::kProtoTcp || ip.later_fragment) {
    return false;
  }
  return tc::transport_csum(pkt, pkt.subspan(ip.l4_off, ip.ip_len - ip.l4_off),
                            tc::kProtoTcp) == 0;
}
bool ip4_csum_ok(tc::ConstBytes pkt) {
  if (pkt.size() < 20 || (pkt[0] >> 4) != 4) return false;
  const std::size_t ihl = std::size_t{pkt[0] & 0x0fU} * 4;
  return ihl >= 20 && ihl <= pkt.size() && tc::csum(pkt.first(ihl)) == 0;
}

void check_icmp(tc::ConstBytes pkt) {
  static const std::array<std::uint8_t, 16> from{0xfd, 0, 0, 0, 0, 0, 0, 0,
                                                 0,    0, 0, 0, 0, 0, 0, 1};
  std::array<std::uint8_t, 1400> out{};
  const bool v6 = !pkt.empty() && (pkt[0] >> 4) == 6;
  const tc::ConstBytes src = tc::ConstBytes(from).first(v6 ? 16 : 4);
  const tc::IcmpError e = tc::make_packet_too_big(pkt, src, 1280, out);
  if (e.status != tc::IcmpErrorStatus::ok) {
    require(e.length == 0, "failed ICMP error has a length");
    return;
  }
  require(e.length <= (v6 ? tc::kIcmp6ErrorMax : tc::kIcmp4ErrorMax), "ICMP error too long");
  const tc::ConstBytes msg(out.data(), e.length);
  const tc::IpInfo ip = tc::parse_ip(msg);
  require(ip.status == tc::ParseStatus::ok && ip.ip_len == e.length, "ICMP error unparseable");
  const tc::ConstBytes icmp = msg.subspan(ip.l4_off);
  if (v6) {
    require(ip.proto == tc::kProtoIcmpv6, "ICMPv6 proto");
    require(tc::transport_csum(msg, icmp, tc::kProtoIcmpv6) == 0, "ICMPv6 checksum");
  } else {
    require(ip.proto == tc::kProtoIcmp, "ICMP proto");
    require(ip4_csum_ok(msg), "ICMP IPv4 header checksum");
    require(tc::csum(icmp) == 0, "ICMP checksum");
  }
  // The quote is a prefix of the offender's IP packet.
  const tc::IpInfo off = tc::parse_ip(pkt);
  const std::size_t quote = icmp.size() - 8;
  require(quote <= off.ip_len, "quote beyond offender");
  require(std::memcmp(icmp.data() + 8, pkt.data(), quote) == 0, "quote differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4 || size - 4 > kMaxPacket) return 0;
  const tc::ClampTarget target{static_cast<std::uint16_t>((data[0] << 8) | data[1]),
                               static_cast<std::uint16_t>((data[2] << 8) | data[3])};
  const tc::ConstBytes in(data + 4, size - 4);
  const std::size_t len = in.size();

  std::array<std::uint8_t, kMaxPacket + kRoom> buf{};
  std::copy(in.begin(), in.end(), buf.begin());
  std::fill(buf.begin() + static_cast<std::ptrdiff_t>(len), buf.end(), std::uint8_t{0x5a});
  // Capacity varies with the input so that no_room is reachable too.
  const std::size_t cap = len + (len % (kRoom + 1));
  const tc::ClampResult r = tc::clamp_mss(tc::Bytes(buf.data(), cap), len, target);

  const tc::ConstBytes out(buf.data(), r.length);
  switch (r.outcome) {
    case tc::Outcome::clamped: {
      require(r.length == len, "clamp changed length");
      const std::uint16_t want = r.family == 4 ? target.mss4 : target.mss6;
      require(r.new_mss == want && r.new_mss < r.old_mss, "clamp did not lower to target");
      std::size_t diff = 0;
      for (std::size_t i = 0; i < len; ++i) diff += out[i] != in[i] ? 1U : 0U;
      require(diff <= 4, "clamp changed more than MSS and checksum");
      break;
    }
    case tc::Outcome::inserted: {
      require(r.length == len + 4 && r.length <= cap, "insert length");
      const std::uint16_t want = r.family == 4 ? target.mss4 : target.mss6;
      require(r.old_mss == 0 && r.new_mss != 0 && r.new_mss <= want, "insert value");
      require(r.new_mss <= (r.family == 4 ? 536 : 1220), "insert above default");
      const tc::IpInfo ip = tc::parse_ip(out);
      require(ip.status == tc::ParseStatus::ok && ip.proto == tc::kProtoTcp,
              "inserted packet no longer parses");
      break;
    }
    default:
      require(r.length == len, "untouched length");
      require(r.new_mss == r.old_mss, "untouched mss");
      require(std::equal(in.begin(), in.end(), buf.begin()), "untouched packet changed");
      break;
  }
  require(std::all_of(buf.begin() + static_cast<std::ptrdiff_t>(r.length), buf.end(),
                      [](std::uint8_t b) { return b == 0x5a; }),
          "wrote past the packet");

  if (r.outcome == tc::Outcome::clamped || r.outcome == tc::Outcome::inserted) {
    const bool tcp_was_ok = tcp_csum_ok(in);
    const bool ip_was_ok = r.family == 4 && ip4_csum_ok(in);
    require(tcp_csum_ok(out) == tcp_was_ok, "TCP checksum validity changed");
    if (r.family == 4) require(ip4_csum_ok(out) == ip_was_ok, "IPv4 checksum validity changed");
  }

  check_icmp(in);
  return 0;
}
