// make_packet_too_big: every field of the synthesised error, and every refusal.
#include <boost/test/unit_test.hpp>

#include "clamp/icmp_error.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;
using tc::IcmpErrorStatus;

namespace {

const tt::Buf kFrom4{10, 0, 0, 1};
const tt::Buf kFrom6{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99};

struct Made {
  tt::Buf out;  // trimmed to the error's length
  tc::IcmpError err;
};

Made make(const tt::Buf& offender, const tt::Buf& from, std::uint16_t mtu,
          std::size_t cap = 2000) {
  Made m{tt::Buf(cap, 0xa5), {}};
  m.err = tc::make_packet_too_big(offender, from, mtu, m.out);
  m.out.resize(m.err.length);
  return m;
}

const char* name(IcmpErrorStatus s) {
  switch (s) {
    case IcmpErrorStatus::ok:
      return "ok";
    case IcmpErrorStatus::malformed:
      return "malformed";
    case IcmpErrorStatus::not_allowed:
      return "not_allowed";
    case IcmpErrorStatus::buffer_too_small:
      return "buffer_too_small";
  }
  return "?";
}

tt::Packet big4(std::size_t payload, tt::Ip4Spec ip = {}) {
  tt::TcpSpec t;
  t.flags = tt::tcpf::ack;
  t.payload.resize(payload);
  for (std::size_t i = 0; i < payload; ++i) t.payload[i] = static_cast<std::uint8_t>(i * 7);
  return tt::tcp4(t, ip);
}
tt::Packet big6(std::size_t payload, tt::Ip6Spec ip = {}) {
  tt::TcpSpec t;
  t.flags = tt::tcpf::ack;
  t.payload.resize(payload);
  for (std::size_t i = 0; i < payload; ++i) t.payload[i] = static_cast<std::uint8_t>(i * 13);
  return tt::tcp6(t, ip);
}

// Every field of an ICMPv4 frag-needed error for `offender`.
void check_v4(const Made& m, const tt::Buf& offender, std::uint16_t mtu) {
  BOOST_TEST_REQUIRE(name(m.err.status) == std::string("ok"));
  const tt::Buf& o = m.out;
  const std::size_t off_len = tt::rd16(offender, 2);
  const std::size_t quote = std::min<std::size_t>(off_len, 576 - 28);
  BOOST_TEST(o.size() == 28 + quote);
  BOOST_TEST(o.size() <= 576U);
  BOOST_TEST(o[0] == 0x45);
  BOOST_TEST(tt::rd16(o, 2) == o.size());
  BOOST_TEST((tt::rd16(o, 6) & 0x4000) == 0);  // DF clear
  BOOST_TEST((tt::rd16(o, 6) & 0x3fff) == 0);  // not a fragment
  BOOST_TEST(o[8] == 64);
  BOOST_TEST(o[9] == 1);
  BOOST_TEST(tt::ref_ip4_ok(o));
  BOOST_TEST(tt::Buf(o.begin() + 12, o.begin() + 16) == kFrom4,
             boost::test_tools::per_element());
  BOOST_TEST(tt::Buf(o.begin() + 16, o.begin() + 20) ==
                 tt::Buf(offender.begin() + 12, offender.begin() + 16),
             boost::test_tools::per_element());
  BOOST_TEST(o[20] == 3);
  BOOST_TEST(o[21] == 4);
  BOOST_TEST(tt::rd16(o, 24) == 0);  // unused
  BOOST_TEST(tt::rd16(o, 26) == mtu);
  const tt::Buf icmp(o.begin() + 20, o.end());
  BOOST_TEST(tt::ref_sum(icmp) == 0xffff);  // checksum verifies from scratch
  BOOST_TEST(
      tt::Buf(o.begin() + 28, o.end()) ==
          tt::Buf(offender.begin(), offender.begin() + static_cast<std::ptrdiff_t>(quote)),
      boost::test_tools::per_element());
}

void check_v6(const Made& m, const tt::Buf& offender, std::uint16_t mtu) {
  BOOST_TEST_REQUIRE(name(m.err.status) == std::string("ok"));
  const tt::Buf& o = m.out;
  const std::size_t off_len = 40U + tt::rd16(offender, 4);
  const std::size_t quote = std::min<std::size_t>(off_len, 1280 - 48);
  BOOST_TEST(o.size() == 48 + quote);
  BOOST_TEST(o.size() <= 1280U);
  BOOST_TEST(o[0] == 0x60);
  BOOST_TEST(tt::rd16(o, 4) == o.size() - 40);
  BOOST_TEST(o[6] == 58);
  BOOST_TEST(o[7] == 64);
  BOOST_TEST(tt::Buf(o.begin() + 8, o.begin() + 24) == kFrom6,
             boost::test_tools::per_element());
  BOOST_TEST(tt::Buf(o.begin() + 24, o.begin() + 40) ==
                 tt::Buf(offender.begin() + 8, offender.begin() + 24),
             boost::test_tools::per_element());
  BOOST_TEST(o[40] == 2);
  BOOST_TEST(o[41] == 0);
  BOOST_TEST(tt::rd16(o, 44) == 0);  // high half of the 32-bit MTU
  BOOST_TEST(tt::rd16(o, 46) == mtu);
  BOOST_TEST(tt::rd16(o, 42) == tt::ref_transport_csum(o, 6, 58, 40, o.size(), 2));
  BOOST_TEST(
      tt::Buf(o.begin() + 48, o.end()) ==
          tt::Buf(offender.begin(), offender.begin() + static_cast<std::ptrdiff_t>(quote)),
      boost::test_tools::per_element());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(icmp_error)

BOOST_AUTO_TEST_CASE(ipv4_small_offender_quoted_whole) {
  const auto p = big4(100);
  check_v4(make(p.bytes, kFrom4, 1400), p.bytes, 1400);
}

BOOST_AUTO_TEST_CASE(ipv4_large_offender_quote_capped_at_576) {
  const auto p = big4(1400);
  const Made m = make(p.bytes, kFrom4, 1280);
  check_v4(m, p.bytes, 1280);
  BOOST_TEST(m.out.size() == 576U);
}

BOOST_AUTO_TEST_CASE(ipv4_link_padding_never_quoted) {
  auto p = big4(10);
  const std::size_t ip_len = p.bytes.size();
  p.bytes.insert(p.bytes.end(), 30, 0xee);
  const Made m = make(p.bytes, kFrom4, 1400);
  check_v4(m, p.bytes, 1400);
  BOOST_TEST(m.out.size() == 28 + ip_len);
}

BOOST_AUTO_TEST_CASE(ipv6_offender) {
  auto p = big6(100);
  check_v6(make(p.bytes, kFrom6, 1280), p.bytes, 1280);
  p = big6(3000);
  const Made m = make(p.bytes, kFrom6, 1400);
  check_v6(m, p.bytes, 1400);
  BOOST_TEST(m.out.size() == 1280U);
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(0), tt::frag6(0, true)};  // first fragment is fine
  p = big6(500, ip);
  check_v6(make(p.bytes, kFrom6, 1300), p.bytes, 1300);
}

BOOST_AUTO_TEST_CASE(esp_offender_is_answered) {
  // IPsec traffic is exactly what needs PMTU signals; we need not see inside it.
  const auto p = tt::ipv6({}, 50, tt::Buf(1400, 0x33));
  check_v6(make(p.bytes, kFrom6, 1400), p.bytes, 1400);
  const auto q = tt::ipv4({}, 50, tt::Buf(1400, 0x33));
  check_v4(make(q.bytes, kFrom4, 1400), q.bytes, 1400);
}

BOOST_AUTO_TEST_CASE(ipv6_multicast_destination_allowed) {
  tt::Ip6Spec ip;
  ip.dst = {0xff, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};
  const auto p = tt::ipv6(ip, 17, tt::udp_datagram({}));
  check_v6(make(p.bytes, kFrom6, 1280), p.bytes, 1280);
}

BOOST_AUTO_TEST_CASE(informational_icmp_is_answered) {
  const auto p = tt::ipv4({}, 1, tt::icmp_message({8, 0, tt::Buf(1200, 1)}));
  check_v4(make(p.bytes, kFrom4, 1000), p.bytes, 1000);
  const auto q = tt::ipv6({}, 58, tt::icmp_message({128, 0, tt::Buf(1400, 1)}));
  check_v6(make(q.bytes, kFrom6, 1280), q.bytes, 1280);
}

BOOST_AUTO_TEST_CASE(refuses_icmp_errors) {
  for (std::uint8_t type : std::initializer_list<std::uint8_t>{3, 4, 5, 11, 12}) {
    const auto p = tt::ipv4({}, 1, tt::icmp_message({type, 0, tt::Buf(600, 1)}));
    BOOST_TEST(name(make(p.bytes, kFrom4, 1000).err.status) == std::string("not_allowed"));
  }
  for (std::uint8_t type : std::initializer_list<std::uint8_t>{1, 2, 3, 4, 127}) {
    const auto p = tt::ipv6({}, 58, tt::icmp_message({type, 0, tt::Buf(1400, 1)}));
    BOOST_TEST(name(make(p.bytes, kFrom6, 1280).err.status) == std::string("not_allowed"));
  }
  // An ICMPv6 error behind extension headers is still an error.
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(60)};
  const auto q = tt::ipv6(ip, 58, tt::icmp_message({2, 0, tt::Buf(1400, 1)}));
  BOOST_TEST(name(make(q.bytes, kFrom6, 1280).err.status) == std::string("not_allowed"));
  // An ICMP header we cannot see: refused.
  const auto r = tt::ipv4({}, 1, {});
  BOOST_TEST(name(make(r.bytes, kFrom4, 1000).err.status) == std::string("not_allowed"));
  // A chain too long to see what it carries: refused.
  ip.ext.assign(9, tt::opts6(60));
  const auto s = tt::ipv6(ip, 58, tt::icmp_message({2, 0, tt::Buf(1400, 1)}));
  BOOST_TEST(name(make(s.bytes, kFrom6, 1280).err.status) == std::string("not_allowed"));
}

BOOST_AUTO_TEST_CASE(refuses_later_fragments) {
  tt::Ip4Spec ip;
  ip.frag_off = 100;
  auto p = tt::ipv4(ip, 6, tt::Buf(1400, 1));
  BOOST_TEST(name(make(p.bytes, kFrom4, 1000).err.status) == std::string("not_allowed"));
  tt::Ip6Spec ip6;
  ip6.ext = {tt::frag6(100, false)};
  p = tt::ipv6(ip6, 6, tt::Buf(1400, 1));
  BOOST_TEST(name(make(p.bytes, kFrom6, 1280).err.status) == std::string("not_allowed"));
}

BOOST_AUTO_TEST_CASE(refuses_bad_sources_and_v4_group_destinations) {
  const std::vector<std::array<std::uint8_t, 4>> bad_src4 = {
      {0, 0, 0, 0},         {224, 0, 0, 1}, {239, 1, 2, 3},
      {255, 255, 255, 255}, {127, 0, 0, 1}, {240, 0, 0, 1}};
  for (const auto& s : bad_src4) {
    tt::Ip4Spec ip;
    ip.src = s;
    BOOST_TEST(name(make(big4(100, ip).bytes, kFrom4, 1000).err.status) ==
               std::string("not_allowed"));
  }
  const std::vector<std::array<std::uint8_t, 4>> bad_dst4 = {
      {224, 0, 0, 251}, {239, 255, 255, 250}, {255, 255, 255, 255}};
  for (const auto& d : bad_dst4) {
    tt::Ip4Spec ip;
    ip.dst = d;
    BOOST_TEST(name(make(big4(100, ip).bytes, kFrom4, 1000).err.status) ==
               std::string("not_allowed"));
  }
  std::array<std::uint8_t, 16> zero{};
  std::array<std::uint8_t, 16> loop{};
  loop[15] = 1;
  std::array<std::uint8_t, 16> mcast{0xff, 0x02};
  mcast[15] = 1;
  for (const auto& s : {zero, loop, mcast}) {
    tt::Ip6Spec ip;
    ip.src = s;
    BOOST_TEST(name(make(big6(100, ip).bytes, kFrom6, 1280).err.status) ==
               std::string("not_allowed"));
  }
}

BOOST_AUTO_TEST_CASE(malformed_inputs) {
  const auto p4 = big4(100);
  const auto p6 = big6(100);
  // Wrong `from` family length.
  BOOST_TEST(name(make(p4.bytes, kFrom6, 1000).err.status) == std::string("malformed"));
  BOOST_TEST(name(make(p6.bytes, kFrom4, 1280).err.status) == std::string("malformed"));
  BOOST_TEST(name(make(p4.bytes, {}, 1000).err.status) == std::string("malformed"));
  // Unparseable offender.
  tt::Buf b(p4.bytes.begin(), p4.bytes.begin() + 10);
  BOOST_TEST(name(make(b, kFrom4, 1000).err.status) == std::string("malformed"));
  b = p4.bytes;
  b.pop_back();
  BOOST_TEST(name(make(b, kFrom4, 1000).err.status) == std::string("malformed"));
  BOOST_TEST(name(make({}, kFrom4, 1000).err.status) == std::string("malformed"));
  BOOST_TEST(make({}, kFrom4, 1000).err.length == 0U);
}

BOOST_AUTO_TEST_CASE(small_output_buffer) {
  const auto p = big4(1400);
  // Header (28) + offender IP header (20) + 8 bytes is the least we send.
  BOOST_TEST(name(make(p.bytes, kFrom4, 1000, 55).err.status) ==
             std::string("buffer_too_small"));
  Made m = make(p.bytes, kFrom4, 1000, 56);
  BOOST_TEST(name(m.err.status) == std::string("ok"));
  BOOST_TEST(m.out.size() == 56U);
  BOOST_TEST(tt::ref_ip4_ok(m.out));
  BOOST_TEST(tt::ref_sum(tt::Buf(m.out.begin() + 20, m.out.end())) == 0xffff);
  const auto q = big6(1400);
  BOOST_TEST(name(make(q.bytes, kFrom6, 1280, 95).err.status) ==
             std::string("buffer_too_small"));
  m = make(q.bytes, kFrom6, 1280, 300);
  BOOST_TEST(name(m.err.status) == std::string("ok"));
  BOOST_TEST(m.out.size() == 300U);
  BOOST_TEST(tt::rd16(m.out, 4) == 260);
  BOOST_TEST(tt::rd16(m.out, 42) == tt::ref_transport_csum(m.out, 6, 58, 40, 300, 2));
}

BOOST_AUTO_TEST_SUITE_END()
