// OversizeGuard::decide: the verdict for every kind of queued packet, the error it builds
// (every field, checksums recomputed from scratch by the test's own reference code), the
// per-source and global rate limits on simulated time, and the source table's eviction.
// No sockets: the route lookup is a fake, and handle() is run unopened to check that a
// failed send is counted.
#include <boost/test/unit_test.hpp>
#include <string>
#include <vector>

#include "proxy/guard.h"
#include "support/packet_builder.h"

namespace tp = tunshim::proxy;
namespace tt = tunshim::test;
using Verdict = tp::OversizeGuard::Verdict;

namespace {

// Answers every lookup with `addr` (or fails), and remembers what it was asked.
struct FakeRoute final : tp::SourceRoute {
  tt::Buf addr4{10, 77, 9, 1};
  tt::Buf addr6{0xfd, 0x77, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  bool ok = true;
  int calls = 0;
  tt::Buf last_to;
  bool source_for(tunshim::clamp::ConstBytes to, tunshim::clamp::Bytes from) noexcept override {
    ++calls;
    last_to.assign(to.begin(), to.end());
    if (!ok) return false;
    const tt::Buf& a = to.size() == 4 ? addr4 : addr6;
    std::copy(a.begin(), a.end(), from.begin());
    return true;
  }
};

// A guard with its table prepared, a fake route, counters, and the last error built.
struct Fixture {
  explicit Fixture(tp::GuardLimits l = {}) : guard(l) { guard.prepare(); }
  tp::OversizeGuard guard;
  FakeRoute route;
  tp::GuardCounters c;
  tt::Buf out = tt::Buf(tp::OversizeGuard::kErrorMax, 0xa5);
  tt::Buf error;  // the last error built, trimmed
  tp::OversizeGuard::Decision run(const tt::Buf& pkt, std::uint16_t pmtu,
                                  std::uint64_t now = 1000) {
    const auto d = guard.decide(pkt, pmtu, now, c, route, out);
    error.assign(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(d.error_len));
    return d;
  }
  // True if the packet was dropped with an error built.
  bool answered(const tt::Buf& pkt, std::uint16_t pmtu, std::uint64_t now) {
    const auto d = run(pkt, pmtu, now);
    return d.verdict == Verdict::drop && d.error_len > 0;
  }
};

tt::Ip4Spec from4(std::uint8_t last) {
  tt::Ip4Spec ip;
  ip.src = {10, 77, 9, last};
  ip.dst = {172, 30, 0, 2};
  return ip;
}

// An IPv4 UDP datagram of `total` bytes, DF as given.
tt::Buf udp4(std::size_t total, bool df = true, tt::Ip4Spec ip = from4(2)) {
  ip.df = df;
  tt::UdpSpec u;
  u.sport = 40000;
  u.dport = 9999;
  u.payload.assign(total - 28, 0);
  for (std::size_t i = 0; i < u.payload.size(); ++i)
    u.payload[i] = static_cast<std::uint8_t>(i * 3 + 1);
  const tt::Buf b = tt::ipv4(ip, 17, tt::udp_datagram(u)).bytes;
  BOOST_REQUIRE(b.size() == total);
  return b;
}

tt::Buf udp6(std::size_t total, tt::Ip6Spec ip = {}) {
  tt::UdpSpec u;
  u.payload.assign(total - 48, 0);
  for (std::size_t i = 0; i < u.payload.size(); ++i)
    u.payload[i] = static_cast<std::uint8_t>(i * 5 + 2);
  const tt::Buf b = tt::ipv6(ip, 17, tt::udp_datagram(u)).bytes;
  BOOST_REQUIRE(b.size() == total);
  return b;
}

tt::Buf slice(const tt::Buf& b, std::size_t from, std::size_t to) {
  return tt::Buf(b.begin() + static_cast<std::ptrdiff_t>(from),
                 b.begin() + static_cast<std::ptrdiff_t>(to));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(guard)

BOOST_AUTO_TEST_CASE(malformed_is_accepted_and_counted) {
  Fixture f;
  tt::Buf truncated = udp4(1500);
  truncated.resize(1000);  // total length says 1500
  tt::Buf bad_version = udp4(1500);
  bad_version[0] = 0x55;
  for (const tt::Buf& p : {tt::Buf{}, tt::Buf{0x45, 0, 0}, truncated, bad_version}) {
    BOOST_TEST((f.run(p, 1400).verdict == Verdict::accept));
  }
  BOOST_TEST(f.c.malformed == 4U);
  BOOST_TEST(f.c.dropped == 0U);
  BOOST_TEST(f.c.passed == 0U);
  BOOST_TEST(f.route.calls == 0);
}

BOOST_AUTO_TEST_CASE(not_oversize_passes) {
  Fixture f;
  // The rule and the PMTU can briefly disagree: a queued packet that fits is accepted.
  BOOST_TEST((f.run(udp4(1400), 1400).verdict == Verdict::accept));
  BOOST_TEST((f.run(udp4(600), 1400).verdict == Verdict::accept));
  BOOST_TEST((f.run(udp6(1400), 1400).verdict == Verdict::accept));
  BOOST_TEST(f.c.passed == 3U);
  // One byte more is oversize.
  BOOST_TEST((f.run(udp4(1401), 1400).verdict == Verdict::drop));
  BOOST_TEST((f.run(udp6(1401), 1400).verdict == Verdict::drop));
  BOOST_TEST(f.c.passed == 3U);
  BOOST_TEST(f.c.dropped == 2U);
}

BOOST_AUTO_TEST_CASE(ipv4_without_df_passes) {
  Fixture f;
  const auto d = f.run(udp4(1500, false), 1400);
  BOOST_TEST((d.verdict == Verdict::accept));
  BOOST_TEST(d.error_len == 0U);
  BOOST_TEST(f.c.passed == 1U);
  BOOST_TEST(f.c.dropped == 0U);
}

BOOST_AUTO_TEST_CASE(unknown_pmtu_never_drops) {
  Fixture f;
  BOOST_TEST((f.run(udp4(1500), 0).verdict == Verdict::accept));
  BOOST_TEST((f.run(udp6(1500), 0).verdict == Verdict::accept));
  BOOST_TEST(f.c.passed == 2U);
}

BOOST_AUTO_TEST_CASE(ipv4_df_oversize_error_every_field) {
  Fixture f;
  const tt::Buf pkt = udp4(1500);
  const auto d = f.run(pkt, 1372);
  BOOST_TEST((d.verdict == Verdict::drop));
  BOOST_TEST(f.c.dropped == 1U);
  BOOST_TEST(d.family == 4);
  BOOST_TEST(slice(tt::Buf(d.to.begin(), d.to.end()), 0, 4) == slice(pkt, 12, 16),
             boost::test_tools::per_element());
  BOOST_TEST(f.route.calls == 1);
  BOOST_TEST(f.route.last_to == slice(pkt, 12, 16), boost::test_tools::per_element());

  const tt::Buf& e = f.error;
  BOOST_TEST_REQUIRE(e.size() == 576U);  // RFC 1812: as much as fits in 576
  BOOST_TEST(e[0] == 0x45);
  BOOST_TEST(tt::rd16(e, 2) == 576U);
  BOOST_TEST((tt::rd16(e, 6) & 0x4000) == 0);
  BOOST_TEST(e[9] == 1);
  BOOST_TEST(tt::rd16(e, 10) == tt::ref_ip4_csum(e));
  BOOST_TEST(slice(e, 12, 16) == f.route.addr4,
             boost::test_tools::per_element());  // from the route
  BOOST_TEST(slice(e, 16, 20) == slice(pkt, 12, 16),
             boost::test_tools::per_element());  // to the sender
  BOOST_TEST(e[20] == 3);
  BOOST_TEST(e[21] == 4);
  BOOST_TEST(tt::rd16(e, 24) == 0);
  BOOST_TEST(tt::rd16(e, 26) == 1372U);
  tt::Buf icmp = slice(e, 20, e.size());
  const std::uint16_t stored = tt::rd16(icmp, 2);
  tt::wr16(icmp, 2, 0);
  BOOST_TEST(stored == static_cast<std::uint16_t>(~tt::ref_sum(icmp)));
  BOOST_TEST(slice(e, 28, e.size()) == slice(pkt, 0, 576 - 28),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(ipv6_oversize_error_every_field) {
  Fixture f;
  const tt::Buf pkt = udp6(1500);
  const auto d = f.run(pkt, 1372);
  BOOST_TEST((d.verdict == Verdict::drop));
  BOOST_TEST(d.family == 6);
  BOOST_TEST(tt::Buf(d.to.begin(), d.to.end()) == slice(pkt, 8, 24),
             boost::test_tools::per_element());

  const tt::Buf& e = f.error;
  BOOST_TEST_REQUIRE(e.size() == 1280U);  // RFC 4443 2.4(c): up to the minimum MTU
  BOOST_TEST(e[0] == 0x60);
  BOOST_TEST(tt::rd16(e, 4) == 1280U - 40U);
  BOOST_TEST(e[6] == 58);
  BOOST_TEST(slice(e, 8, 24) == f.route.addr6, boost::test_tools::per_element());
  BOOST_TEST(slice(e, 24, 40) == slice(pkt, 8, 24), boost::test_tools::per_element());
  BOOST_TEST(e[40] == 2);
  BOOST_TEST(e[41] == 0);
  // The announced MTU: a PMTU below 1280 is not one an IPv6 sender can use; 1372 is.
  BOOST_TEST(tt::rd16(e, 44) == 0);
  BOOST_TEST(tt::rd16(e, 46) == 1372U);
  BOOST_TEST(tt::rd16(e, 42) == tt::ref_transport_csum(e, 6, 58, 40, e.size(), 2));
  BOOST_TEST(slice(e, 48, e.size()) == slice(pkt, 0, 1280 - 48),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(ipv6_never_below_1280) {
  Fixture f;
  // A tunnel whose PMTU is below IPv6's minimum: 1280-byte packets pass (no sender can go
  // lower), larger ones are told 1280.
  BOOST_TEST((f.run(udp6(1280), 1200).verdict == Verdict::accept));
  BOOST_TEST(f.c.passed == 1U);
  const auto d = f.run(udp6(1300), 1200);
  BOOST_TEST((d.verdict == Verdict::drop));
  BOOST_TEST_REQUIRE(f.error.size() > 48U);
  BOOST_TEST(tt::rd16(f.error, 46) == 1280U);
  // IPv4 has no such floor here: 1250 bytes with DF over a 1200 path is dropped.
  BOOST_TEST((f.run(udp4(1250), 1200).verdict == Verdict::drop));
  BOOST_TEST(tt::rd16(f.error, 26) == 1200U);
}

BOOST_AUTO_TEST_CASE(no_route_falls_back_to_offender_destination) {
  Fixture f;
  f.route.ok = false;
  const tt::Buf p4 = udp4(1500);
  BOOST_TEST(f.answered(p4, 1400, 1));
  BOOST_TEST(slice(f.error, 12, 16) == slice(p4, 16, 20), boost::test_tools::per_element());
  BOOST_TEST(tt::rd16(f.error, 10) == tt::ref_ip4_csum(f.error));
  const tt::Buf p6 = udp6(1500);
  BOOST_TEST(f.answered(p6, 1400, 1));
  BOOST_TEST(slice(f.error, 8, 24) == slice(p6, 24, 40), boost::test_tools::per_element());
  BOOST_TEST(tt::rd16(f.error, 42) ==
             tt::ref_transport_csum(f.error, 6, 58, 40, f.error.size(), 2));
}

BOOST_AUTO_TEST_CASE(refused_errors_are_dropped_unanswered_without_spending_tokens) {
  tp::GuardLimits l;
  l.per_source_rate = 0;
  l.per_source_burst = 1;  // one error per source, ever
  Fixture f(l);
  // An oversize ICMP error (dest unreachable) with DF: RFC 1122 forbids an error about it.
  tt::IcmpSpec unreach;
  unreach.type = 3;
  unreach.code = 1;
  unreach.body.assign(1500 - 28 - 4, 0);
  tt::Ip4Spec ip = from4(2);
  const tt::Buf icmp_err = tt::ipv4(ip, 1, tt::icmp_message(unreach)).bytes;
  // A later fragment (offset != 0) with DF: no error (RFC 1122 3.2.2).
  ip.frag_off = 100;
  const tt::Buf later = tt::ipv4(ip, 17, tt::Buf(1480, 7)).bytes;
  // IPv6 to and from multicast... a multicast source is never answered (RFC 4443 2.4(e)).
  tt::Ip6Spec m6;
  m6.src = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const tt::Buf mcast6 = udp6(1500, m6);
  for (const tt::Buf& p : {icmp_err, later, mcast6}) {
    const auto d = f.run(p, 1400);
    BOOST_TEST((d.verdict == Verdict::drop));
    BOOST_TEST(d.error_len == 0U);
  }
  BOOST_TEST(f.c.dropped == 3U);
  BOOST_TEST(f.c.not_answered == 3U);
  BOOST_TEST(f.c.rate_limited == 0U);
  BOOST_TEST(f.route.calls == 0);  // no lookup for an error never sent
  BOOST_TEST(f.guard.tracked_sources() == 0U);
  // The source's single token is still there for a packet that may be answered.
  BOOST_TEST(f.answered(udp4(1500), 1400, 2000));
}

BOOST_AUTO_TEST_CASE(per_source_rate_limit) {
  Fixture f;  // defaults: 10/s, burst 10 per source
  const tt::Buf a = udp4(1500, true, from4(2));
  const tt::Buf b = udp4(1500, true, from4(3));
  std::uint64_t t = 5'000'000;
  for (int i = 0; i < 10; ++i) BOOST_TEST(f.answered(a, 1400, t));
  BOOST_TEST(!f.answered(a, 1400, t));
  BOOST_TEST(f.c.rate_limited == 1U);
  BOOST_TEST(f.route.calls == 10);  // no lookup for a rate-limited error
  // Another source has its own bucket.
  BOOST_TEST(f.answered(b, 1400, t));
  // 99 ms later a still has nothing; at 100 ms it has one token.
  BOOST_TEST(!f.answered(a, 1400, t + 99));
  BOOST_TEST(f.answered(a, 1400, t + 100));
  BOOST_TEST(!f.answered(a, 1400, t + 100));
  // After a quiet second the full burst is back, and no more.
  t += 1100;
  for (int i = 0; i < 10; ++i) BOOST_TEST(f.answered(a, 1400, t));
  BOOST_TEST(!f.answered(a, 1400, t));
  // Every drop is counted; each is answered or rate-limited.
  BOOST_TEST(f.c.dropped == 26U);
  BOOST_TEST(f.c.rate_limited == 4U);
  BOOST_TEST(f.c.not_answered == 0U);
  // IPv6 sources are tracked apart from IPv4 ones.
  BOOST_TEST(f.answered(udp6(1500), 1400, t));
  BOOST_TEST(f.guard.tracked_sources() == 3U);
}

BOOST_AUTO_TEST_CASE(global_rate_limit) {
  tp::GuardLimits l;
  l.per_source_rate = 100;
  l.per_source_burst = 100;
  l.global_rate = 5;  // one every 200 ms
  l.global_burst = 3;
  Fixture f(l);
  const std::uint64_t t = 1'000'000;
  BOOST_TEST(f.answered(udp4(1500, true, from4(1)), 1400, t));
  BOOST_TEST(f.answered(udp4(1500, true, from4(2)), 1400, t));
  BOOST_TEST(f.answered(udp6(1500), 1400, t));
  BOOST_TEST(!f.answered(udp4(1500, true, from4(4)), 1400, t));
  BOOST_TEST(!f.answered(udp4(1500, true, from4(5)), 1400, t + 199));
  BOOST_TEST(f.answered(udp4(1500, true, from4(6)), 1400, t + 200));
  BOOST_TEST(!f.answered(udp4(1500, true, from4(7)), 1400, t + 200));
  BOOST_TEST(f.c.rate_limited == 3U);
}

BOOST_AUTO_TEST_CASE(flooding_source_does_not_starve_the_others) {
  tp::GuardLimits l;
  l.per_source_rate = 0;
  l.per_source_burst = 1;
  l.global_rate = 0;
  l.global_burst = 2;
  Fixture f(l);
  // Source 2 sends 50 oversize packets: one error, 49 refused by its own bucket, which
  // therefore take nothing from the global one...
  int answered = 0;
  for (int i = 0; i < 50; ++i)
    answered += f.answered(udp4(1500, true, from4(2)), 1400, 10) ? 1 : 0;
  BOOST_TEST(answered == 1);
  // ...so source 3 still gets its error, and then the global budget (2) is spent.
  BOOST_TEST(f.answered(udp4(1500, true, from4(3)), 1400, 10));
  BOOST_TEST(!f.answered(udp4(1500, true, from4(4)), 1400, 10));
  BOOST_TEST(f.c.rate_limited == 50U);
  BOOST_TEST(f.c.dropped == 52U);
}

BOOST_AUTO_TEST_CASE(table_evicts_least_recently_used) {
  tp::GuardLimits l;
  l.sources = 3;
  l.per_source_rate = 0;  // a source's one error is its last while it stays in the table
  l.per_source_burst = 1;
  Fixture f(l);
  const auto p = [](std::uint8_t host) { return udp4(1500, true, from4(host)); };
  BOOST_TEST(f.answered(p(1), 1400, 1));  // A
  BOOST_TEST(f.answered(p(2), 1400, 2));  // B
  BOOST_TEST(f.answered(p(3), 1400, 3));  // C
  BOOST_TEST(f.guard.tracked_sources() == 3U);
  BOOST_TEST(!f.answered(p(1), 1400, 4));  // A again: remembered, used recently
  BOOST_TEST(f.answered(p(4), 1400, 5));   // D: table full, evicts B (least recently used)
  BOOST_TEST(f.guard.tracked_sources() == 3U);
  BOOST_TEST(
      !f.answered(p(1), 1400, 6));        // A survived the eviction (inserted first, used last)
  BOOST_TEST(f.answered(p(2), 1400, 7));  // B was forgotten: a fresh bucket (evicts C)
  BOOST_TEST(f.answered(p(3), 1400, 8));  // C was forgotten too (evicts D)
  BOOST_TEST(!f.answered(p(1), 1400, 9));  // A still there
  BOOST_TEST(f.guard.tracked_sources() == 3U);
}

BOOST_AUTO_TEST_CASE(handle_counts_a_failed_send) {
  // Not opened: no sockets, so the route lookup fails (fallback source) and the send fails.
  tp::OversizeGuard g;
  g.prepare();
  tp::GuardCounters c;
  BOOST_TEST((g.handle(udp4(1500), 1400, 1, c) == Verdict::drop));
  BOOST_TEST((g.handle(udp4(1000), 1400, 1, c) == Verdict::accept));
  BOOST_TEST(c.dropped == 1U);
  BOOST_TEST(c.passed == 1U);
  BOOST_TEST(c.ptb_sent == 0U);
  BOOST_TEST(c.send_errors == 1U);
}

BOOST_AUTO_TEST_CASE(own_probes_are_recognised) {
  // An echo request with our identifier 0x4242, as ProbeIo sends them, in both families.
  tt::IcmpSpec echo;
  echo.body = {0x42, 0x42, 0, 7};  // identifier, sequence
  echo.body.resize(1400, 0x5a);
  const tt::Buf p4 = tt::ipv4(from4(1), 1, tt::icmp_message(echo)).bytes;
  echo.type = 128;
  const tt::Buf p6 = tt::ipv6({}, 58, tt::icmp_message(echo)).bytes;
  BOOST_TEST(tp::is_echo_request(p4, 0x4242));
  BOOST_TEST(tp::is_echo_request(p6, 0x4242));
  // Another identifier, an echo reply, the other family's type, UDP, a short packet: not ours.
  BOOST_TEST(!tp::is_echo_request(p4, 0x4243));
  echo.type = 0;
  BOOST_TEST(!tp::is_echo_request(tt::ipv4(from4(1), 1, tt::icmp_message(echo)).bytes, 0x4242));
  echo.type = 8;
  BOOST_TEST(!tp::is_echo_request(tt::ipv6({}, 58, tt::icmp_message(echo)).bytes, 0x4242));
  BOOST_TEST(!tp::is_echo_request(udp4(1500), 0x4242));
  tt::IcmpSpec tiny;
  tiny.body = {0x42};
  BOOST_TEST(!tp::is_echo_request(tt::ipv4(from4(1), 1, tt::icmp_message(tiny)).bytes, 0x4242));
  BOOST_TEST(!tp::is_echo_request(tt::Buf{}, 0x4242));
}

BOOST_AUTO_TEST_SUITE_END()
