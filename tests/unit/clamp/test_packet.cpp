// parse_ip: every accepted shape and every rejected one.
#include <boost/test/unit_test.hpp>

#include "clamp/packet.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;

namespace {
tc::IpInfo parse(const tt::Buf& b) { return tc::parse_ip(b); }
tt::Packet syn4() { return tt::tcp4({}); }
tt::Packet syn6(std::vector<tt::Ip6Ext> ext = {}) {
  tt::Ip6Spec ip;
  ip.ext = std::move(ext);
  return tt::tcp6({}, ip);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(parse_ip)

BOOST_AUTO_TEST_CASE(ipv4_plain) {
  const auto p = syn4();
  const auto i = parse(p.bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.family == 4);
  BOOST_TEST(i.proto == 6);
  BOOST_TEST(i.l4_off == 20U);
  BOOST_TEST(i.ip_len == p.bytes.size());
  BOOST_TEST(i.dont_fragment);
  BOOST_TEST(!i.first_fragment);
  BOOST_TEST(!i.later_fragment);
}

BOOST_AUTO_TEST_CASE(ipv4_options_and_padding) {
  tt::Ip4Spec ip;
  ip.options = {1, 1, 1, 0, 1, 1, 1, 0};  // NOPs, 8 bytes → IHL 7
  ip.df = false;
  auto p = tt::tcp4({}, ip);
  const std::size_t ip_len = p.bytes.size();
  p.bytes.insert(p.bytes.end(), 6, 0xee);  // link padding after the IP packet
  const auto i = parse(p.bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.l4_off == 28U);
  BOOST_TEST(i.ip_len == ip_len);
  BOOST_TEST(!i.dont_fragment);
}

BOOST_AUTO_TEST_CASE(ipv4_fragments) {
  tt::Ip4Spec ip;
  ip.mf = true;
  auto i = parse(tt::tcp4({}, ip).bytes);
  BOOST_TEST(i.first_fragment);
  BOOST_TEST(!i.later_fragment);
  ip.frag_off = 3;
  i = parse(tt::ipv4(ip, 6, tt::Buf(24, 0xaa)).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.later_fragment);
  BOOST_TEST(!i.first_fragment);
  ip.mf = false;  // last fragment
  i = parse(tt::ipv4(ip, 6, tt::Buf(24, 0xaa)).bytes);
  BOOST_TEST(i.later_fragment);
}

BOOST_AUTO_TEST_CASE(ipv4_malformed) {
  const auto good = syn4().bytes;
  BOOST_TEST((parse({}).status == tc::ParseStatus::malformed));
  for (std::size_t n = 1; n < 20; ++n) {  // truncated fixed header
    const tt::Buf cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST((parse(cut).status == tc::ParseStatus::malformed));
  }
  auto b = good;
  b.pop_back();  // total length > buffer
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  for (std::uint8_t ihl : std::initializer_list<std::uint8_t>{0, 1, 4}) {  // IHL < 5
    b = good;
    b[0] = static_cast<std::uint8_t>(0x40 | ihl);
    BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  }
  b = good;
  b[0] = 0x4f;  // IHL 60 > total length 40
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  b = good;
  tt::wr16(b, 2, 19);  // total length < IHL*4
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  for (std::uint8_t v : std::initializer_list<std::uint8_t>{0, 5, 7, 15}) {
    b = good;
    b[0] = static_cast<std::uint8_t>((v << 4) | 5);
    BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  }
}

BOOST_AUTO_TEST_CASE(ipv6_plain_and_ext_headers) {
  auto i = parse(syn6().bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.family == 6);
  BOOST_TEST(i.l4_off == 40U);
  BOOST_TEST(i.dont_fragment);
  const auto p = syn6({tt::opts6(0), tt::opts6(60, 2), tt::opts6(43, 3), tt::opts6(60)});
  i = parse(p.bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.proto == 6);
  BOOST_TEST(i.l4_off == 40U + 8 + 16 + 24 + 8);
  BOOST_TEST(i.l4_off == p.l4_off);
}

BOOST_AUTO_TEST_CASE(ipv6_fragment_header) {
  auto i = parse(syn6({tt::frag6(0, true)}).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.first_fragment);
  BOOST_TEST(i.l4_off == 48U);
  i = parse(syn6({tt::frag6(0, false)}).bytes);  // atomic fragment: a whole packet
  BOOST_TEST(!i.first_fragment);
  BOOST_TEST(!i.later_fragment);
  i = parse(syn6({tt::opts6(0), tt::frag6(5, true)}).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  BOOST_TEST(i.later_fragment);
  BOOST_TEST(i.proto == 6);
}

BOOST_AUTO_TEST_CASE(ipv6_ext_header_limit) {
  std::vector<tt::Ip6Ext> ext(tc::kMaxIp6ExtHeaders, tt::opts6(60));
  auto i = parse(syn6(ext).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::ok));
  ext.push_back(tt::opts6(60));
  i = parse(syn6(ext).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::unsupported));
  BOOST_TEST(i.proto == 60);
}

BOOST_AUTO_TEST_CASE(ipv6_opaque_next_headers) {
  for (std::uint8_t nh : std::initializer_list<std::uint8_t>{50, 51, 59, 135}) {
    const auto p = tt::ipv6({}, nh, tt::Buf(16, 0x5a));
    const auto i = parse(p.bytes);
    BOOST_TEST((i.status == tc::ParseStatus::unsupported));
    BOOST_TEST(i.proto == nh);
  }
  // Behind an extension header too.
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(60)};
  const auto i = parse(tt::ipv6(ip, 50, tt::Buf(16, 0x5a)).bytes);
  BOOST_TEST((i.status == tc::ParseStatus::unsupported));
  BOOST_TEST(i.proto == 50);
  // UDP and ICMPv6 are transport protocols.
  BOOST_TEST(
      (parse(tt::ipv6({}, 17, tt::udp_datagram({})).bytes).status == tc::ParseStatus::ok));
  BOOST_TEST(
      (parse(tt::ipv6({}, 58, tt::icmp_message({128})).bytes).status == tc::ParseStatus::ok));
}

BOOST_AUTO_TEST_CASE(ipv6_malformed) {
  const auto good = syn6({tt::opts6(60, 2)}).bytes;
  for (std::size_t n : std::initializer_list<std::size_t>{1, 20, 39}) {
    const tt::Buf cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST((parse(cut).status == tc::ParseStatus::malformed));
  }
  auto b = good;
  b.pop_back();  // payload length > buffer
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  b = good;
  tt::wr16(b, 4, 0);  // jumbogram / zero payload length with a next header
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  b = good;
  tt::wr16(b, 4, 12);  // ext header (16 bytes) longer than the payload
  b.resize(52);
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  b = good;
  tt::wr16(b, 4, 4);  // not even the 8 bytes every ext header has
  b.resize(44);
  BOOST_TEST((parse(b).status == tc::ParseStatus::malformed));
  // Hop-by-hop anywhere but first.
  BOOST_TEST(
      (parse(syn6({tt::opts6(60), tt::opts6(0)}).bytes).status == tc::ParseStatus::malformed));
  // Empty packet with no next header is fine, just opaque.
  tt::Buf empty(40, 0);
  empty[0] = 0x60;
  empty[6] = 59;
  BOOST_TEST((parse(empty).status == tc::ParseStatus::unsupported));
}

BOOST_AUTO_TEST_SUITE_END()
