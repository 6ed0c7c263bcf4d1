// clamp_mss: one case per rule of xt_TCPMSS semantics (and our two differences), every
// rewrite checked against a from-scratch checksum in packet_builder.h.
#include <boost/test/unit_test.hpp>
#include <random>

#include "clamp/mss.h"
#include "clamp/packet.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;
using tc::Outcome;

namespace {

constexpr tc::ClampTarget kTarget{1400, 1380};

struct Run {
  tt::Buf buf;  // capacity-sized buffer after the call
  tc::ClampResult r;
};

// Clamps a copy of `pkt` in a buffer with `room` spare bytes (filled with a marker).
Run clamp(const tt::Buf& pkt, tc::ClampTarget t = kTarget, std::size_t room = 16) {
  Run run{pkt, {}};
  run.buf.resize(pkt.size() + room, 0xc3);
  run.r = tc::clamp_mss(run.buf, pkt.size(), t);
  return run;
}

// A result that must leave the buffer exactly as it was.
void expect_untouched(const tt::Buf& pkt, const Run& run, Outcome o) {
  BOOST_TEST(tc::to_string(run.r.outcome) == tc::to_string(o));
  BOOST_TEST(run.r.length == pkt.size());
  tt::Buf expect = pkt;
  expect.resize(run.buf.size(), 0xc3);
  BOOST_TEST(run.buf == expect, boost::test_tools::per_element());
}

// Checks a rewritten or inserted packet with the reference implementation: TCP checksum,
// IPv4 header checksum, and the MSS option's value at the header offset `mss_at`.
void expect_valid(const Run& run, int family, std::size_t l4_off, std::size_t mss_at,
                  std::uint16_t mss) {
  const tt::Buf pkt(run.buf.begin(),
                    run.buf.begin() + static_cast<std::ptrdiff_t>(run.r.length));
  const std::size_t ip_len = family == 4 ? tt::rd16(pkt, 2) : 40U + tt::rd16(pkt, 4);
  BOOST_TEST(tt::ref_tcp_ok(pkt, family, l4_off, ip_len));
  if (family == 4) BOOST_TEST(tt::ref_ip4_ok(pkt));
  BOOST_TEST(pkt[l4_off + mss_at] == 2);
  BOOST_TEST(pkt[l4_off + mss_at + 1] == 4);
  BOOST_TEST(tt::rd16(pkt, l4_off + mss_at + 2) == mss);
}

tt::TcpSpec syn_with(tt::Buf options, std::uint8_t flags = tt::tcpf::syn) {
  tt::TcpSpec t;
  t.flags = flags;
  t.options = std::move(options);
  return t;
}

tt::Buf typical_opts(std::uint16_t mss) {
  return tt::opt::cat({tt::opt::mss(mss), tt::opt::sack_ok(), tt::opt::timestamps(),
                       tt::opt::nop(), tt::opt::wscale(7)});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(clamp_mss)

BOOST_AUTO_TEST_CASE(outcome_names) {
  const char* names[] = {"clamped", "inserted", "unchanged", "no_room", "not_syn",
                         "not_tcp", "fragment", "malformed", "disabled"};
  for (int i = 0; i < tc::kOutcomeCount; ++i) {
    BOOST_TEST(tc::to_string(static_cast<Outcome>(i)) == names[i]);
  }
}

BOOST_AUTO_TEST_CASE(rewrite_ipv4) {
  const auto p = tt::tcp4(syn_with(typical_opts(1460)));
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  BOOST_TEST(run.r.old_mss == 1460);
  BOOST_TEST(run.r.new_mss == 1400);
  BOOST_TEST(run.r.family == 4);
  BOOST_TEST(!run.r.syn_ack);
  BOOST_TEST(run.r.length == p.bytes.size());
  expect_valid(run, 4, 20, 20, 1400);
  // Only the MSS value and the TCP checksum changed.
  for (std::size_t i = 0; i < p.bytes.size(); ++i) {
    const bool may_change = i == 36 || i == 37 || i == 42 || i == 43;
    if (!may_change) BOOST_TEST(run.buf[i] == p.bytes[i], "byte " << i);
  }
}

BOOST_AUTO_TEST_CASE(rewrite_ipv4_with_ip_options) {
  tt::Ip4Spec ip;
  ip.options = {0x94, 0x04, 0x00, 0x00};  // router alert
  const auto p = tt::tcp4(syn_with(typical_opts(8960)), ip);
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  expect_valid(run, 4, 24, 20, 1400);
}

BOOST_AUTO_TEST_CASE(rewrite_ipv6_with_ext_headers) {
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(0), tt::opts6(43, 3), tt::opts6(60, 2)};
  const auto p = tt::tcp6(syn_with(typical_opts(1440)), ip);
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  BOOST_TEST(run.r.family == 6);
  BOOST_TEST(run.r.new_mss == 1380);
  expect_valid(run, 6, p.l4_off, 20, 1380);
}

BOOST_AUTO_TEST_CASE(syn_ack_is_clamped) {
  for (int fam : {4, 6}) {
    const auto t = syn_with(typical_opts(65495), tt::tcpf::syn | tt::tcpf::ack);
    const auto p = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
    const Run run = clamp(p.bytes);
    BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
    BOOST_TEST(run.r.syn_ack);
    expect_valid(run, fam, p.l4_off, 20, fam == 4 ? 1400 : 1380);
  }
}

BOOST_AUTO_TEST_CASE(syn_fin_is_clamped_syn_rst_is_not) {
  auto p = tt::tcp4(syn_with(tt::opt::mss(1460), tt::tcpf::syn | tt::tcpf::fin));
  BOOST_TEST(tc::to_string(clamp(p.bytes).r.outcome) == "clamped");
  p = tt::tcp4(syn_with(tt::opt::mss(1460), tt::tcpf::syn | tt::tcpf::rst));
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::not_syn);
}

BOOST_AUTO_TEST_CASE(mss_equal_or_below_is_never_raised) {
  for (std::uint16_t mss : std::initializer_list<std::uint16_t>{1400, 1399, 536, 1, 0}) {
    const auto p = tt::tcp4(syn_with(typical_opts(mss)));
    const Run run = clamp(p.bytes);
    expect_untouched(p.bytes, run, Outcome::unchanged);
    BOOST_TEST(run.r.old_mss == mss);
    BOOST_TEST(run.r.new_mss == mss);
  }
  const auto p = tt::tcp4(syn_with(typical_opts(1401)));
  BOOST_TEST(tc::to_string(clamp(p.bytes).r.outcome) == "clamped");
}

BOOST_AUTO_TEST_CASE(mss_at_odd_offset) {
  // NOP puts the option at header offset 21, its value at 23: an odd position in the
  // checksummed region. The kernel would compute a wrong checksum here.
  std::mt19937 rng(4242);
  for (int n = 0; n < 300; ++n) {
    const auto mss = static_cast<std::uint16_t>(1401 + rng() % 64000);
    tt::TcpSpec t =
        syn_with(tt::opt::cat({tt::opt::nop(), tt::opt::mss(mss), tt::opt::nop(),
                               tt::opt::wscale(static_cast<std::uint8_t>(rng() % 15))}));
    t.seq = static_cast<std::uint32_t>(rng());
    t.sport = static_cast<std::uint16_t>(rng());
    for (int fam : {4, 6}) {
      const auto p = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
      const Run run = clamp(p.bytes);
      BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
      const std::uint16_t want = fam == 4 ? 1400 : 1380;
      if (mss > want) expect_valid(run, fam, p.l4_off, 21, want);
    }
  }
}

BOOST_AUTO_TEST_CASE(options_after_eol_are_padding) {
  // After EOL anything goes, including bytes that would be malformed options.
  const auto p = tt::tcp4(
      syn_with(tt::opt::cat({tt::opt::mss(1460), tt::opt::eol(), {0xff, 0x00, 0x02}})));
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  expect_valid(run, 4, 20, 20, 1400);
  // And an MSS after EOL does not count: nothing to clamp, but the header has room and
  // no payload, so one is inserted.
  const auto q =
      tt::tcp4(syn_with(tt::opt::cat({tt::opt::eol(), {0, 0, 0}, tt::opt::mss(1460)})));
  const Run r2 = clamp(q.bytes);
  BOOST_TEST(tc::to_string(r2.r.outcome) == "inserted");
  BOOST_TEST(r2.r.old_mss == 0);
}

BOOST_AUTO_TEST_CASE(insert_ipv4) {
  const auto p = tt::tcp4(syn_with({}));
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  BOOST_TEST(run.r.old_mss == 0);
  BOOST_TEST(run.r.new_mss == 536);
  BOOST_TEST(run.r.length == p.bytes.size() + 4);
  BOOST_TEST(tt::rd16(run.buf, 2) == p.bytes.size() + 4);  // total length
  BOOST_TEST((run.buf[32] >> 4) == 6);                     // data offset
  BOOST_TEST((run.buf[33]) == tt::tcpf::syn);              // flags untouched
  expect_valid(run, 4, 20, 20, 536);
  // Everything before the TCP options is the same apart from the fields that had to change.
  for (std::size_t i = 0; i < 40; ++i) {
    const bool may_change =
        i == 2 || i == 3 || i == 10 || i == 11 || i == 32 || i == 36 || i == 37;
    if (!may_change) BOOST_TEST(run.buf[i] == p.bytes[i], "byte " << i);
  }
}

BOOST_AUTO_TEST_CASE(insert_value_is_min_of_target_and_default) {
  auto p = tt::tcp4(syn_with({}));
  Run run = clamp(p.bytes, {500, 0});
  BOOST_TEST(run.r.new_mss == 500);
  expect_valid(run, 4, 20, 20, 500);
  p = tt::tcp6(syn_with({}));
  run = clamp(p.bytes, {0, 1380});
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  BOOST_TEST(run.r.new_mss == 1220);
  expect_valid(run, 6, 40, 20, 1220);
  run = clamp(p.bytes, {0, 1000});
  BOOST_TEST(run.r.new_mss == 1000);
  expect_valid(run, 6, 40, 20, 1000);
}

BOOST_AUTO_TEST_CASE(insert_moves_existing_options) {
  const tt::Buf opts = tt::opt::cat(
      {tt::opt::sack_ok(), tt::opt::timestamps(7, 0), tt::opt::nop(), tt::opt::wscale(9)});
  tt::Ip4Spec ip;
  ip.options = {1, 1, 1, 1};
  const auto p = tt::tcp4(syn_with(opts), ip);
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  expect_valid(run, 4, 24, 20, 536);
  const std::size_t tcp = 24;
  BOOST_TEST((run.buf[tcp + 12] >> 4) == (p.bytes[tcp + 12] >> 4) + 1);
  const tt::Buf moved(run.buf.begin() + tcp + 24,
                      run.buf.begin() + static_cast<std::ptrdiff_t>(run.r.length));
  const tt::Buf orig(p.bytes.begin() + tcp + 20, p.bytes.end());
  BOOST_TEST(moved == orig, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(insert_ipv6_with_ext_headers) {
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(0), tt::opts6(60, 2), tt::frag6(0, false)};  // atomic fragment ok
  const auto p = tt::tcp6(syn_with(tt::opt::wscale(3)), ip);
  const Run run = clamp(p.bytes, {0, 9000});
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  BOOST_TEST(tt::rd16(run.buf, 4) == p.bytes.size() - 40 + 4);  // payload length
  expect_valid(run, 6, p.l4_off, 20, 1220);
}

BOOST_AUTO_TEST_CASE(insert_keeps_link_padding) {
  auto p = tt::tcp4(syn_with({}));
  const std::size_t ip_len = p.bytes.size();
  const tt::Buf pad{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02};
  p.bytes.insert(p.bytes.end(), pad.begin(), pad.end());
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  BOOST_TEST(run.r.length == p.bytes.size() + 4);
  BOOST_TEST(tt::rd16(run.buf, 2) == ip_len + 4);
  expect_valid(run, 4, 20, 20, 536);
  const tt::Buf tail(run.buf.begin() + static_cast<std::ptrdiff_t>(ip_len + 4),
                     run.buf.begin() + static_cast<std::ptrdiff_t>(run.r.length));
  BOOST_TEST(tail == pad, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(no_insert_with_payload) {
  tt::TcpSpec t = syn_with(tt::opt::wscale(7));
  t.payload = {'h', 'i'};  // TCP Fast Open style data on the SYN
  for (int fam : {4, 6}) {
    const auto p = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
    expect_untouched(p.bytes, clamp(p.bytes), Outcome::unchanged);
  }
  // But an existing MSS on a SYN with data is clamped.
  t.options = tt::opt::mss(1460);
  const auto p = tt::tcp4(t);
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  expect_valid(run, 4, 20, 20, 1400);
}

BOOST_AUTO_TEST_CASE(no_insert_into_full_header) {
  // doff = 15: 40 bytes of options, no room for 4 more.
  tt::Buf opts(40, 1);
  auto p = tt::tcp4(syn_with(opts));
  BOOST_TEST((p.bytes[32] >> 4) == 15);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::unchanged);
  // doff = 14 still has room, and grows to 15.
  opts.resize(36);
  p = tt::tcp4(syn_with(opts));
  const Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "inserted");
  BOOST_TEST((run.buf[32] >> 4) == 15);
  expect_valid(run, 4, 20, 20, 536);
}

BOOST_AUTO_TEST_CASE(first_fragment_rewrite_yes_insert_no) {
  tt::Ip4Spec ip;
  ip.mf = true;
  auto p = tt::tcp4(syn_with(typical_opts(1460)), ip);
  Run run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  expect_valid(run, 4, 20, 20, 1400);
  p = tt::tcp4(syn_with({}), ip);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::unchanged);

  tt::Ip6Spec ip6;
  ip6.ext = {tt::frag6(0, true)};
  p = tt::tcp6(syn_with(typical_opts(1460)), ip6);
  run = clamp(p.bytes);
  BOOST_TEST(tc::to_string(run.r.outcome) == "clamped");
  expect_valid(run, 6, 48, 20, 1380);
  p = tt::tcp6(syn_with({}), ip6);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::unchanged);
}

BOOST_AUTO_TEST_CASE(later_fragment) {
  // The payload looks exactly like a SYN with a big MSS, but it is not a TCP header.
  const tt::Buf fake = tt::tcp_segment(syn_with(tt::opt::mss(1460)));
  tt::Ip4Spec ip;
  ip.frag_off = 185;
  auto p = tt::ipv4(ip, 6, fake);
  Run run = clamp(p.bytes);
  expect_untouched(p.bytes, run, Outcome::fragment);
  BOOST_TEST(run.r.family == 4);
  tt::Ip6Spec ip6;
  ip6.ext = {tt::frag6(185, true)};
  p = tt::ipv6(ip6, 6, fake);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::fragment);
}

BOOST_AUTO_TEST_CASE(no_room) {
  const auto p = tt::tcp4(syn_with({}));
  for (std::size_t room : std::initializer_list<std::size_t>{0, 1, 3})
    expect_untouched(p.bytes, clamp(p.bytes, kTarget, room), Outcome::no_room);
  BOOST_TEST(tc::to_string(clamp(p.bytes, kTarget, 4).r.outcome) == "inserted");
  // A rewrite needs no room.
  const auto q = tt::tcp4(syn_with(tt::opt::mss(1460)));
  BOOST_TEST(tc::to_string(clamp(q.bytes, kTarget, 0).r.outcome) == "clamped");
}

BOOST_AUTO_TEST_CASE(disabled_per_family) {
  const auto p4 = tt::tcp4(syn_with(tt::opt::mss(1460)));
  const auto p6 = tt::tcp6(syn_with(tt::opt::mss(1460)));
  expect_untouched(p4.bytes, clamp(p4.bytes, {0, 1380}), Outcome::disabled);
  expect_untouched(p6.bytes, clamp(p6.bytes, {1400, 0}), Outcome::disabled);
  BOOST_TEST(tc::to_string(clamp(p4.bytes, {1400, 0}).r.outcome) == "clamped");
  BOOST_TEST(tc::to_string(clamp(p6.bytes, {0, 1380}).r.outcome) == "clamped");
}

BOOST_AUTO_TEST_CASE(not_syn) {
  for (std::uint8_t f : {tt::tcpf::ack, std::uint8_t(tt::tcpf::ack | tt::tcpf::psh),
                         tt::tcpf::rst, tt::tcpf::fin, std::uint8_t(0)}) {
    const auto p = tt::tcp4(syn_with(tt::opt::mss(1460), f));
    expect_untouched(p.bytes, clamp(p.bytes), Outcome::not_syn);
  }
}

BOOST_AUTO_TEST_CASE(not_tcp) {
  expect_untouched(tt::ipv4({}, 17, tt::udp_datagram({})).bytes,
                   clamp(tt::ipv4({}, 17, tt::udp_datagram({})).bytes), Outcome::not_tcp);
  const auto icmp = tt::ipv4({}, 1, tt::icmp_message({}));
  expect_untouched(icmp.bytes, clamp(icmp.bytes), Outcome::not_tcp);
  // TCP behind ESP/AH: opaque to us.
  for (std::uint8_t nh : std::initializer_list<std::uint8_t>{50, 51}) {
    tt::Buf inner =
        tt::opt::cat({{6, 4, 0, 0, 0, 0, 0, 0}, tt::tcp_segment(syn_with(tt::opt::mss(1460)))});
    const auto p = tt::ipv6({}, nh, inner);
    expect_untouched(p.bytes, clamp(p.bytes), Outcome::not_tcp);
  }
  // Too many extension headers.
  tt::Ip6Spec ip;
  ip.ext.assign(static_cast<std::size_t>(tc::kMaxIp6ExtHeaders) + 1, tt::opts6(60));
  const auto p = tt::tcp6(syn_with(tt::opt::mss(1460)), ip);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::not_tcp);
}

BOOST_AUTO_TEST_CASE(malformed_ip) {
  const auto good = tt::tcp4(syn_with(tt::opt::mss(1460))).bytes;
  tt::Buf b(good.begin(), good.begin() + 19);
  expect_untouched(b, clamp(b), Outcome::malformed);
  b = good;
  b[0] = 0x44;
  expect_untouched(b, clamp(b), Outcome::malformed);
  b = good;
  b[0] = 0x55;
  expect_untouched(b, clamp(b), Outcome::malformed);
  b = good;
  tt::wr16(b, 2, static_cast<std::uint16_t>(good.size() + 1));
  expect_untouched(b, clamp(b), Outcome::malformed);
  const auto g6 = tt::tcp6(syn_with(tt::opt::mss(1460))).bytes;
  b = g6;
  tt::wr16(b, 4, 0);  // jumbo
  expect_untouched(b, clamp(b), Outcome::malformed);
  b.assign(g6.begin(), g6.begin() + 39);
  expect_untouched(b, clamp(b), Outcome::malformed);
  // A length larger than the buffer is the caller's bug: refused, nothing read.
  tt::Buf small = good;
  BOOST_TEST(tc::to_string(tc::clamp_mss(small, small.size() + 1, kTarget).outcome) ==
             "malformed");
  BOOST_TEST(small == good, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(malformed_tcp_header) {
  // TCP header does not fit in the IP packet (even with link padding behind it).
  auto p = tt::ipv4({}, 6, tt::Buf(19, 0x02));
  p.bytes.insert(p.bytes.end(), 8, 0x02);
  expect_untouched(p.bytes, clamp(p.bytes), Outcome::malformed);
  for (std::uint8_t doff : std::initializer_list<std::uint8_t>{0, 1, 4}) {  // < 5
    tt::TcpSpec t = syn_with(tt::opt::mss(1460));
    t.doff = doff;
    const auto q = tt::tcp4(t);
    expect_untouched(q.bytes, clamp(q.bytes), Outcome::malformed);
  }
  tt::TcpSpec t = syn_with(tt::opt::mss(1460));
  t.doff = 7;  // 28 bytes claimed, 24 present
  for (int fam : {4, 6}) {
    auto q = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
    expect_untouched(q.bytes, clamp(q.bytes), Outcome::malformed);
    q.bytes.insert(q.bytes.end(), 4, 0);  // padding beyond ip_len does not count
    expect_untouched(q.bytes, clamp(q.bytes), Outcome::malformed);
  }
}

BOOST_AUTO_TEST_CASE(malformed_options) {
  const std::vector<tt::Buf> bad = {
      {3, 0, 1, 1},                 // length 0
      {3, 1, 1, 1},                 // length 1
      {1, 1, 8, 10},                // timestamps running past the header end
      {1, 1, 1, 3},                 // kind in the last byte, no length byte
      {2, 3, 5, 1},                 // MSS length 3
      {2, 6, 5, 0xb4, 0, 0, 1, 1},  // MSS length 6
      {2, 2, 1, 1},                 // MSS length 2
      tt::opt::cat({tt::opt::mss(1460), tt::opt::mss(1460)}),  // duplicate
      tt::opt::cat(
          {tt::opt::mss(1000), tt::opt::nop(), tt::opt::wscale(1), tt::opt::mss(1460)}),
  };
  for (const auto& o : bad) {
    for (std::uint8_t flags : {tt::tcpf::syn, std::uint8_t(tt::tcpf::syn | tt::tcpf::ack)}) {
      const auto p = tt::tcp4(syn_with(o, flags));
      expect_untouched(p.bytes, clamp(p.bytes), Outcome::malformed);
      const auto q = tt::tcp6(syn_with(o, flags));
      expect_untouched(q.bytes, clamp(q.bytes), Outcome::malformed);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_checksum_stays_bad_by_same_amount) {
  for (int fam : {4, 6}) {
    for (bool insert : {false, true}) {
      auto p = fam == 4 ? tt::tcp4(syn_with(insert ? tt::Buf{} : typical_opts(1460)))
                        : tt::tcp6(syn_with(insert ? tt::Buf{} : typical_opts(1460)));
      const std::size_t co = p.l4_off + 16;
      tt::wr16(p.bytes, co, static_cast<std::uint16_t>(tt::rd16(p.bytes, co) ^ 0x0f0f));
      const std::uint16_t before =
          tt::csum_delta(tt::rd16(p.bytes, co),
                         tt::ref_transport_csum(p.bytes, fam, 6, p.l4_off, p.bytes.size(), 16));
      BOOST_TEST(before != 0);
      std::uint16_t ip_before = 0;
      if (fam == 4) {
        tt::wr16(p.bytes, 10, static_cast<std::uint16_t>(tt::rd16(p.bytes, 10) + 3));
        ip_before = tt::csum_delta(tt::rd16(p.bytes, 10), tt::ref_ip4_csum(p.bytes));
        BOOST_TEST(ip_before != 0);
      }
      const Run run = clamp(p.bytes);
      BOOST_TEST(tc::to_string(run.r.outcome) == (insert ? "inserted" : "clamped"));
      const tt::Buf out(run.buf.begin(),
                        run.buf.begin() + static_cast<std::ptrdiff_t>(run.r.length));
      const std::uint16_t after = tt::csum_delta(
          tt::rd16(out, co), tt::ref_transport_csum(out, fam, 6, p.l4_off, out.size(), 16));
      BOOST_TEST(after == before);
      if (fam == 4) {
        // The header checksum only changes on insertion (total length); a rewrite leaves
        // it alone, so either way it stays off by the same amount.
        BOOST_TEST(tt::csum_delta(tt::rd16(out, 10), tt::ref_ip4_csum(out)) == ip_before);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(random_option_lists_keep_checksums_valid) {
  // Valid option lists in random order with random MSS: every rewrite or insertion must
  // leave a packet that the reference implementation accepts.
  std::mt19937 rng(20240601);
  for (int n = 0; n < 2000; ++n) {
    std::vector<tt::Buf> parts;
    const bool with_mss = rng() % 4 != 0;
    if (with_mss) parts.push_back(tt::opt::mss(static_cast<std::uint16_t>(rng())));
    if (rng() % 2) parts.push_back(tt::opt::sack_ok());
    if (rng() % 2) parts.push_back(tt::opt::timestamps(static_cast<std::uint32_t>(rng()), 0));
    if (rng() % 2) parts.push_back(tt::opt::wscale(static_cast<std::uint8_t>(rng() % 15)));
    for (int k = static_cast<int>(rng() % 3); k > 0; --k) parts.push_back(tt::opt::nop());
    std::shuffle(parts.begin(), parts.end(), rng);
    tt::Buf opts;
    for (const auto& x : parts) opts.insert(opts.end(), x.begin(), x.end());
    tt::TcpSpec t = syn_with(opts, rng() % 2 ? tt::tcpf::syn : tt::tcpf::syn | tt::tcpf::ack);
    t.seq = static_cast<std::uint32_t>(rng());
    const int fam = rng() % 2 ? 4 : 6;
    const auto p = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
    const tc::ClampTarget target{static_cast<std::uint16_t>(1 + rng() % 9000),
                                 static_cast<std::uint16_t>(1 + rng() % 9000)};
    const Run run = clamp(p.bytes, target);
    const std::string o{tc::to_string(run.r.outcome)};
    const std::uint16_t want = fam == 4 ? target.mss4 : target.mss6;
    if (o == "clamped") {
      BOOST_TEST(run.r.new_mss == want);
      BOOST_TEST(run.r.old_mss > want);
    } else if (o == "inserted") {
      BOOST_TEST(!with_mss);
      BOOST_TEST(run.r.new_mss <= want);
    } else {
      BOOST_TEST(o == "unchanged");
      expect_untouched(p.bytes, run, Outcome::unchanged);
      continue;
    }
    const tt::Buf out(run.buf.begin(),
                      run.buf.begin() + static_cast<std::ptrdiff_t>(run.r.length));
    const std::size_t ip_len = fam == 4 ? tt::rd16(out, 2) : 40U + tt::rd16(out, 4);
    BOOST_TEST(tt::ref_tcp_ok(out, fam, p.l4_off, ip_len));
    if (fam == 4) BOOST_TEST(tt::ref_ip4_ok(out));
  }
}

BOOST_AUTO_TEST_SUITE_END()
