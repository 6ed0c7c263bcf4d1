// The doctor's analyser over capture files the tests write (headers-only snaplen, as a live
// capture takes them), read back through the same reader `tunshim doctor --read` uses:
// every finding counted exactly.
#include <boost/test/unit_test.hpp>
#include <string>
#include <variant>

#include "diag/analyser.h"
#include "diag/assess.h"
#include "proxy/config.h"
#include "proxy/doctor_capture.h"
#include "unit/diag/capture_writer.h"

namespace {

using namespace tunshim;
using namespace tunshim::test;

constexpr std::array<std::uint8_t, 4> kClient{172, 30, 0, 1};
constexpr std::array<std::uint8_t, 4> kServer{172, 30, 0, 2};
constexpr std::array<std::uint8_t, 4> kRouter{10, 77, 1, 254};
constexpr std::array<std::uint8_t, 4> kLan{10, 77, 9, 2};
const std::array<std::uint8_t, 16> kClient6{0xfd, 0x77, 0, 0x30, 0, 0, 0, 0,
                                            0,    0,    0, 0,    0, 0, 0, 1};
const std::array<std::uint8_t, 16> kServer6{0xfd, 0x77, 0, 0x30, 0, 0, 0, 0,
                                            0,    0,    0, 0,    0, 0, 0, 2};

Buf syn4(std::uint16_t sport, std::optional<std::uint16_t> mss, bool ack = false,
         std::array<std::uint8_t, 4> src = kClient, std::array<std::uint8_t, 4> dst = kServer) {
  TcpSpec t;
  t.sport = sport;
  t.dport = 8080;
  t.flags = static_cast<std::uint8_t>(tcpf::syn | (ack ? tcpf::ack : 0));
  if (mss) t.options = opt::cat({opt::mss(*mss), opt::sack_ok(), opt::timestamps()});
  Ip4Spec ip;
  ip.src = src;
  ip.dst = dst;
  return tcp4(t, ip).bytes;
}

Buf data4(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint16_t sport,
          std::uint16_t dport, std::uint32_t seq, std::size_t len, std::uint32_t ack = 1,
          std::uint8_t extra_flags = 0) {
  TcpSpec t;
  t.sport = sport;
  t.dport = dport;
  t.seq = seq;
  t.ack = ack;
  t.flags = static_cast<std::uint8_t>(tcpf::ack | extra_flags);
  t.payload.assign(len, 0x61);
  Ip4Spec ip;
  ip.src = src;
  ip.dst = dst;
  return tcp4(t, ip).bytes;
}

Buf udp4(std::array<std::uint8_t, 4> src, std::size_t total, bool df) {
  UdpSpec u;
  u.payload.assign(total - 28, 0x55);
  Ip4Spec ip;
  ip.src = src;
  ip.dst = kServer;
  ip.df = df;
  return ipv4(ip, 17, udp_datagram(u)).bytes;
}

Buf udp6(std::array<std::uint8_t, 16> src, std::size_t total) {
  UdpSpec u;
  u.payload.assign(total - 48, 0x55);
  Ip6Spec ip;
  ip.src = src;
  ip.dst = kServer6;
  return ipv6(ip, 17, udp_datagram(u)).bytes;
}

// ICMP frag-needed from `router` quoting a DF packet kClient -> kServer.
Buf frag_needed(std::uint16_t mtu, std::array<std::uint8_t, 4> router = kRouter) {
  IcmpSpec m;
  m.type = 3;
  m.code = 4;
  m.body = {0, 0, static_cast<std::uint8_t>(mtu >> 8), static_cast<std::uint8_t>(mtu)};
  const Buf quoted = data4(kClient, kServer, 40000, 8080, 7, 1448);
  m.body.insert(m.body.end(), quoted.begin(), quoted.begin() + 28);
  Ip4Spec ip;
  ip.src = router;
  ip.dst = kClient;
  ip.df = false;
  return ipv4(ip, 1, icmp_message(m)).bytes;
}

Buf too_big6(std::uint32_t mtu) {
  IcmpSpec m;
  m.type = 2;
  m.code = 0;
  m.body = {static_cast<std::uint8_t>(mtu >> 24), static_cast<std::uint8_t>(mtu >> 16),
            static_cast<std::uint8_t>(mtu >> 8), static_cast<std::uint8_t>(mtu)};
  const Buf quoted = udp6(kClient6, 1500);
  m.body.insert(m.body.end(), quoted.begin(), quoted.begin() + 48);
  Ip6Spec ip;
  ip.src = kServer6;
  ip.dst = kClient6;
  return ipv6(ip, 58, icmp_message(m)).bytes;
}

Buf echo4(std::uint16_t id, std::size_t total) {
  IcmpSpec m;
  m.type = 8;
  m.body.assign(total - 24, 0);
  m.body[0] = static_cast<std::uint8_t>(id >> 8);
  m.body[1] = static_cast<std::uint8_t>(id);
  Ip4Spec ip;
  ip.src = kClient;
  ip.dst = kServer;
  return ipv4(ip, 1, icmp_message(m)).bytes;
}

struct Run {
  std::unique_ptr<diag::Analyser> analyser;
  proxy::CaptureCounts counts;
  std::string error;
  bool ok = false;
  const diag::Findings* f = nullptr;
};

Run read(PcapWriter& w, std::uint16_t pmtu, std::int32_t ignore = -1) {
  Run r;
  diag::Options o;
  o.path_mtu = pmtu;
  o.ignore_echo_id = ignore;
  r.analyser = std::make_unique<diag::Analyser>(o);
  r.ok = proxy::read_capture(w.file(), *r.analyser, r.counts, r.error);
  r.f = &r.analyser->finish(r.analyser->findings().last_us);
  return r;
}

std::uint64_t bin(const diag::MssHistogram& h, std::uint16_t mss) {
  for (std::size_t i = 0; i < h.used; ++i)
    if (h.bins[i].mss == mss) return h.bins[i].count;
  return 0;
}

constexpr auto kOut = static_cast<std::size_t>(diag::Direction::out);
constexpr auto kIn = static_cast<std::size_t>(diag::Direction::in);
constexpr auto kUnknown = static_cast<std::size_t>(diag::Direction::unknown);

}  // namespace

BOOST_AUTO_TEST_SUITE(analyser)

BOOST_AUTO_TEST_CASE(mss_histogram_per_direction_and_above_path) {
  PcapWriter w(kDltSll2);
  std::int64_t t = 1'000'000;
  for (int i = 0; i < 3; ++i)
    w.cooked(t += 1000, syn4(static_cast<std::uint16_t>(40000 + i), 1460), true);
  for (int i = 0; i < 2; ++i)
    w.cooked(t += 1000, syn4(static_cast<std::uint16_t>(41000 + i), 1300), true);
  w.cooked(t += 1000, syn4(42000, std::nullopt), true);
  for (int i = 0; i < 2; ++i)
    w.cooked(t += 1000, syn4(8080, 1460, true, kServer, kClient), false);
  TcpSpec s6;
  s6.options = opt::mss(1440);
  Ip6Spec ip6;
  ip6.src = kClient6;
  ip6.dst = kServer6;
  w.cooked(t += 1000, tcp6(s6, ip6).bytes, true);

  const Run r = read(w, 1400);  // path MSS 1360 (IPv4) / 1340 (IPv6)
  BOOST_TEST_REQUIRE(r.ok, r.error);
  const diag::Findings& f = *r.f;
  BOOST_TEST(r.counts.records == 9U);
  BOOST_TEST(f.syn[kOut][0].total == 6U);
  BOOST_TEST(bin(f.syn[kOut][0], 1460) == 3U);
  BOOST_TEST(bin(f.syn[kOut][0], 1300) == 2U);
  BOOST_TEST(bin(f.syn[kOut][0], 0) == 1U);  // no MSS option
  BOOST_TEST(f.syn_ack[kIn][0].total == 2U);
  BOOST_TEST(bin(f.syn_ack[kIn][0], 1460) == 2U);
  BOOST_TEST(f.syn[kOut][1].total == 1U);
  BOOST_TEST(bin(f.syn[kOut][1], 1440) == 1U);
  BOOST_TEST(f.syn[kIn][0].total == 0U);
  BOOST_TEST(f.syn[kUnknown][0].total == 0U);
  // 1460 x3 SYN, 1460 x2 SYN-ACK, IPv6 1440 > 1340; 1300 and "none" fit.
  BOOST_TEST(f.mss_above_path == 6U);
  BOOST_TEST(f.mss_examples_used == 6U);
  BOOST_TEST(f.mss_examples[3].syn_ack);
  BOOST_TEST(diag::to_string(f.mss_examples[5].src) == "fd77:30::1");

  // Without a path MTU nothing is judged against it.
  const Run unknown = read(w, 0);
  BOOST_TEST(unknown.f->mss_above_path == 0U);
  BOOST_TEST(unknown.f->syn[kOut][0].total == 6U);
}

BOOST_AUTO_TEST_CASE(raw_link_has_no_direction) {
  PcapWriter w(kDltRaw);
  w.record(1000, syn4(40000, 1460));
  w.record(2000, syn4(8080, 1460, true, kServer, kClient));
  const Run r = read(w, 1400);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  BOOST_TEST(r.f->syn[kUnknown][0].total == 1U);
  BOOST_TEST(r.f->syn_ack[kUnknown][0].total == 1U);
  BOOST_TEST(r.f->mss_above_path == 2U);
}

BOOST_AUTO_TEST_CASE(df_oversize_per_source_from_cut_records) {
  PcapWriter w(kDltRaw);  // snaplen 128: every large packet is cut, its length kept
  std::int64_t t = 0;
  for (int i = 0; i < 5; ++i) w.record(t += 100, udp4(kClient, 1500, true));
  for (int i = 0; i < 3; ++i) w.record(t += 100, udp4(kLan, 1401, true));
  for (int i = 0; i < 2; ++i) w.record(t += 100, udp4(kLan, 1500, false));  // may fragment
  w.record(t += 100, udp4(kLan, 1400, true));                               // exactly fits
  for (int i = 0; i < 2; ++i) w.record(t += 100, udp6(kClient6, 1500));     // IPv6: always DF
  w.record(t += 100, udp6(kClient6, 1400));

  const Run r = read(w, 1400);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  const diag::Findings& f = *r.f;
  BOOST_TEST(f.counts.records == 14U);
  BOOST_TEST(f.counts.ipv4 == 11U);
  BOOST_TEST(f.counts.ipv6 == 3U);
  BOOST_TEST(f.counts.malformed == 0U);
  BOOST_TEST(f.oversize_df == 10U);
  BOOST_TEST_REQUIRE(f.oversize_used == 3U);
  BOOST_TEST(diag::to_string(f.oversize[0].src) == "172.30.0.1");
  BOOST_TEST(f.oversize[0].packets == 5U);
  BOOST_TEST(f.oversize[0].max_len == 1500);
  BOOST_TEST(diag::to_string(f.oversize[1].src) == "10.77.9.2");
  BOOST_TEST(f.oversize[1].packets == 3U);
  BOOST_TEST(f.oversize[1].max_len == 1401);
  BOOST_TEST(diag::to_string(f.oversize[2].src) == "fd77:30::1");
  BOOST_TEST(f.oversize[2].packets == 2U);
}

BOOST_AUTO_TEST_CASE(icmp_too_big_with_their_mtus) {
  PcapWriter w(kDltRaw);
  w.record(100, frag_needed(1400));
  w.record(200, frag_needed(1400));
  w.record(300, frag_needed(0));  // an RFC 792 router
  w.record(400, too_big6(1280));
  IcmpSpec unreach;  // port unreachable: not a too-big error
  unreach.type = 3;
  unreach.code = 3;
  w.record(500, ipv4(Ip4Spec{}, 1, icmp_message(unreach)).bytes);

  const Run r = read(w, 0);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  const auto& t = r.f->too_big;
  BOOST_TEST(t.frag_needed == 3U);
  BOOST_TEST(t.packet_too_big == 1U);
  BOOST_TEST(r.f->counts.icmp == 5U);
  BOOST_TEST_REQUIRE(t.used == 3U);
  BOOST_TEST(t.mtus[0].mtu == 1400);
  BOOST_TEST(t.mtus[0].count == 2U);
  BOOST_TEST(diag::to_string(t.mtus[0].reporter) == "10.77.1.254");
  BOOST_TEST(t.mtus[1].mtu == 0);
  BOOST_TEST(t.mtus[2].mtu == 1280);
  // With no measurement, the verdict takes the smallest MTU the errors report.
  const diag::Assessment a = diag::assess(*r.f, diag::ActiveFacts{});
  BOOST_TEST(a.path_mtu == 1280);
}

BOOST_AUTO_TEST_CASE(full_size_retransmissions) {
  PcapWriter w(kDltRaw);
  std::int64_t t = 0;
  auto up = [&](std::uint32_t seq, std::size_t len) {
    w.record(t += 1000, data4(kClient, kServer, 40000, 8080, seq, len));
  };
  up(100, 500);  // smaller than what follows: never full size
  up(600, 1448);
  up(2048, 1448);
  up(3496, 1448);
  up(100, 500);    // retransmitted, but not full size
  up(600, 1448);   // retransmission 1
  up(600, 1448);   // 2
  up(2048, 1448);  // 3
  up(10000, 100);  // small
  up(10000, 100);  // small retransmission: not counted
  // Another connection: a full-size segment sent once, then acknowledged.
  w.record(t += 1000, data4(kServer, kClient, 8080, 40001, 5000, 1448));
  w.record(t += 1000, data4(kClient, kServer, 40001, 8080, 1, 0, 6448));
  // IPv6: one retransmission.
  for (int i = 0; i < 2; ++i) {
    TcpSpec s;
    s.flags = tcpf::ack;
    s.seq = 77;
    s.payload.assign(1428, 0);
    Ip6Spec ip;
    ip.src = kClient6;
    ip.dst = kServer6;
    w.record(t += 1000, tcp6(s, ip).bytes);
  }

  const Run r = read(w, 0);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  const diag::Findings& f = *r.f;
  BOOST_TEST(f.full_retrans == 4U);
  BOOST_TEST(f.full_retrans_repeated == 1U);  // seq 600 a second time
  BOOST_TEST(f.full_retrans_oversize == 0U);  // no path MTU given
  BOOST_TEST(f.retrans_connections == 2U);
  BOOST_TEST(f.counts.connections == 3U);
  BOOST_TEST_REQUIRE(f.connections_used >= 2U);
  BOOST_TEST(f.connections[0].full_retrans[0] == 3U);
  BOOST_TEST(f.connections[0].max_payload[0] == 1448U);
  BOOST_TEST(f.connections[0].aport == 40000);
  BOOST_TEST(f.connections[1].full_retrans[0] == 1U);
  BOOST_TEST(f.connections[1].a.family == 6);
}

BOOST_AUTO_TEST_CASE(idle_gaps_longest_first) {
  PcapWriter w(kDltRaw);
  for (std::int64_t ts : {0, 100'000, 2'100'000, 2'200'000, 7'200'000, 7'300'000})
    w.record(ts, udp4(kClient, 100, true));
  const Run r = read(w, 0);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  const diag::Findings& f = *r.f;
  BOOST_TEST_REQUIRE(f.gaps_used == 5U);
  BOOST_TEST(f.gaps[0].len_us == 5'000'000);
  BOOST_TEST(f.gaps[0].start_us == 2'200'000);
  BOOST_TEST(f.gaps[1].len_us == 2'000'000);
  BOOST_TEST(f.gaps[1].start_us == 100'000);
  BOOST_TEST(f.gaps[2].len_us == 100'000);
  BOOST_TEST(f.first_us == 0);
  BOOST_TEST(f.last_us == 7'300'000);
}

BOOST_AUTO_TEST_CASE(stalled_connections) {
  PcapWriter w(kDltRaw);
  // A: upload never acknowledged, then silence: stalled.
  w.record(0, data4(kClient, kServer, 40000, 8080, 1000, 1000));
  // B: data acknowledged, then idle: not stalled.
  w.record(10'000, data4(kClient, kServer, 40001, 8080, 1000, 1000));
  w.record(20'000, data4(kServer, kClient, 8080, 40001, 1, 0, 2000));
  // C: closed: not stalled.
  w.record(30'000, data4(kClient, kServer, 40002, 8080, 1000, 1000, 1, tcpf::fin));
  // D: download whose handshake announced 1460 over a 1400 path, headers received and
  // acknowledged, then silence: the large segments never arrived. Stalled.
  w.record(40'000, syn4(40003, 1460));
  w.record(50'000, syn4(8080, 1460, true, kServer, kClient));
  constexpr std::uint32_t kIsn = 0x11223344;  // both SYNs' sequence number (TcpSpec)
  w.record(60'000, data4(kServer, kClient, 8080, 40003, kIsn + 1, 200, kIsn + 1));
  w.record(70'000, data4(kClient, kServer, 40003, 8080, kIsn + 1, 0, kIsn + 201));
  w.record(3'000'000, udp4(kLan, 100, true));  // the capture goes on without them

  const Run r = read(w, 1400);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  BOOST_TEST(r.f->stalled_connections == 2U);
  const Run no_path = read(w, 0);  // D's risk cannot be judged without the path MTU
  BOOST_TEST(no_path.f->stalled_connections == 1U);
}

BOOST_AUTO_TEST_CASE(own_probes_are_left_out) {
  PcapWriter w(kDltRaw);
  w.record(0, echo4(0x4242, 1500));
  w.record(10, echo4(0x4242, 1400));
  w.record(20, echo4(0x1111, 1500));  // someone else's ping -M do
  w.record(30, udp4(kClient, 1500, true));
  const Run r = read(w, 1400, 0x4242);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  BOOST_TEST(r.f->counts.own_probes == 2U);
  BOOST_TEST(r.f->counts.records == 2U);  // ours are not even records of the network
  BOOST_TEST(r.f->oversize_echo == 1U);   // a ping -M do: probing, not lost data
  BOOST_TEST(r.f->oversize_df == 1U);
  const Run all = read(w, 1400);
  BOOST_TEST(all.f->counts.own_probes == 0U);
  BOOST_TEST(all.f->oversize_echo == 2U);
  BOOST_TEST(all.f->oversize_df == 1U);
}

BOOST_AUTO_TEST_CASE(malformed_and_cut_records_are_counted_not_fatal) {
  PcapWriter w(kDltSll2);
  w.record(0, Buf(10, 0));  // shorter than the cooked header
  Buf bad = syn4(40000, 1460);
  bad[0] = 0x4f;  // IHL 60 > total length of the header bytes present
  bad[2] = 0;
  bad[3] = 30;
  w.cooked(10, bad, true);
  Buf v6 = udp6(kClient6, 200);
  v6[4] = 0;
  v6[5] = 0;  // payload length 0 (a jumbogram claim)
  w.cooked(20, v6, true);
  w.cooked(30, syn4(40000, 1460), true);
  const Run r = read(w, 1400);
  BOOST_TEST_REQUIRE(r.ok, r.error);
  BOOST_TEST(r.counts.records == 4U);
  BOOST_TEST(r.counts.link_malformed == 1U);
  BOOST_TEST(r.f->counts.malformed == 2U);
  BOOST_TEST(r.f->syn[kOut][0].total == 1U);
}

BOOST_AUTO_TEST_CASE(truncated_file_reports_records_before_the_cut) {
  PcapWriter w(kDltRaw);
  w.record(0, syn4(40000, 1460));
  w.record(10, syn4(40001, 1460));
  w.record(20, syn4(40002, 1460));
  w.bytes.resize(w.bytes.size() - 30);  // the last record cut mid-way
  const Run r = read(w, 1400);
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.error.find("truncated") != std::string::npos, r.error);
  BOOST_TEST(r.counts.records == 2U);
  BOOST_TEST(r.f->mss_above_path == 2U);
}

BOOST_AUTO_TEST_CASE(not_a_capture) {
  Buf junk(100, 0x42);
  diag::Analyser a{diag::Options{}};
  proxy::CaptureCounts c;
  std::string err;
  BOOST_TEST(!proxy::read_capture(fmemopen(junk.data(), junk.size(), "rb"), a, c, err));
  BOOST_TEST(err.find("not a capture file") != std::string::npos, err);
  // An empty file too.
  Buf empty(1, 0);
  BOOST_TEST(!proxy::read_capture(fmemopen(empty.data(), 0, "rb"), a, c, err));
  // A link type the doctor cannot look into.
  PcapWriter w(1000);
  w.record(0, syn4(1, 1460));
  err.clear();
  BOOST_TEST(!proxy::read_capture(w.file(), a, c, err));
  BOOST_TEST(err.find("not supported") != std::string::npos, err);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(assess)

diag::ActiveFacts black_hole_facts() {
  diag::ActiveFacts a;
  a.iface = "ppp0";
  a.live = true;
  a.iface_up = true;
  a.iface_mtu = 1500;
  a.has_peer = true;
  a.target = "172.30.0.2";
  a.probed = true;
  a.probe_complete = true;
  a.pmtu = 1372;
  a.probes_sent = 20;
  a.probe_replies = 12;
  a.too_big_hints = 0;
  a.echoes_sent = 10;
  a.echoes_answered = 10;
  return a;
}

bool loads(const std::string& block) {
  const auto res = proxy::parse_config(block, "suggestion");
  return std::holds_alternative<proxy::Config>(res) &&
         std::get<proxy::Config>(res).tunnels.size() == 1;
}

BOOST_AUTO_TEST_CASE(black_hole_is_critical_and_the_fix_loads) {
  diag::Analyser an{diag::Options{1372, -1, 1'000'000}};
  const diag::Assessment a = diag::assess(an.finish(0), black_hole_facts());
  BOOST_TEST(!a.healthy);
  BOOST_TEST_REQUIRE(!a.risks.empty());
  BOOST_TEST(std::string(to_string(a.risks[0].severity)) == "critical");
  BOOST_TEST(a.risks[0].title.find("black hole") != std::string::npos);
  BOOST_TEST(a.verdict.find("1372") != std::string::npos);
  BOOST_TEST(a.verdict.find("filtered") != std::string::npos);
  BOOST_TEST(a.config.find("mss = \"auto\"") != std::string::npos);
  BOOST_TEST(loads(a.config), a.config);
  const auto cfg = std::get<proxy::Config>(proxy::parse_config(a.config, "s"));
  BOOST_TEST(cfg.tunnels[0].interface == "ppp0");
  BOOST_TEST(cfg.tunnels[0].mss4_auto);
}

BOOST_AUTO_TEST_CASE(icmp_that_works_is_not_a_black_hole) {
  diag::Analyser an{diag::Options{}};
  diag::ActiveFacts f = black_hole_facts();
  f.too_big_hints = 4;
  const diag::Assessment a = diag::assess(an.finish(0), f);
  BOOST_TEST_REQUIRE(!a.risks.empty());
  BOOST_TEST(std::string(to_string(a.risks[0].severity)) == "medium");
  BOOST_TEST(a.verdict.find("black hole") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(tunshim_clamping_is_healthy) {
  diag::Analyser an{diag::Options{}};
  diag::ActiveFacts f = black_hole_facts();
  f.daemon = true;
  f.daemon_mss4 = 1332;
  f.daemon_mss6 = 1312;
  const diag::Assessment a = diag::assess(an.finish(0), f);
  BOOST_TEST(a.healthy);
  BOOST_TEST(a.verdict.find("healthy") != std::string::npos);
  BOOST_TEST(a.verdict.find("tunshim clamps the MSS to 1332") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(no_peer_gets_fixed_numbers_and_lost_echoes_count) {
  diag::Analyser an{diag::Options{}};
  diag::ActiveFacts f = black_hole_facts();
  f.has_peer = false;
  f.echoes_answered = 7;
  const diag::Assessment a = diag::assess(an.finish(0), f);
  BOOST_TEST(a.config.find("mss = 1332") != std::string::npos, a.config);
  BOOST_TEST(a.config.find("mss6 = 1312") != std::string::npos, a.config);
  BOOST_TEST(loads(a.config), a.config);
  bool loss = false;
  for (const auto& r : a.risks) loss = loss || r.title.find("packet loss") != std::string::npos;
  BOOST_TEST(loss);
}

BOOST_AUTO_TEST_CASE(single_retransmissions_are_loss_recovery_repeats_are_a_stall) {
  diag::Analyser an{diag::Options{}};
  diag::Findings f = an.finish(0);
  f.full_retrans = 3;
  f.retrans_connections = 1;
  diag::ActiveFacts facts;
  diag::Assessment a = diag::assess(f, facts);
  BOOST_TEST_REQUIRE(a.risks.size() == 1U);
  BOOST_TEST(std::string(to_string(a.risks[0].severity)) == "low");
  BOOST_TEST(a.healthy);
  f.full_retrans_repeated = 1;
  a = diag::assess(f, facts);
  BOOST_TEST(std::string(to_string(a.risks[0].severity)) == "high");
  BOOST_TEST(!a.healthy);
}

BOOST_AUTO_TEST_CASE(ipv6_addresses_print_as_rfc5952) {
  diag::Address a;
  a.family = 6;
  a.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1};
  BOOST_TEST(diag::to_string(a) == "2001:db8::1:0:0:1");
  a.bytes = {};
  BOOST_TEST(diag::to_string(a) == "::");
  a.bytes[15] = 1;
  BOOST_TEST(diag::to_string(a) == "::1");
}

BOOST_AUTO_TEST_SUITE_END()
