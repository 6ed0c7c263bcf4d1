// The eBPF data path against clamp/: every case of the differential corpus
// (tests/e2e/diff_cases.py, the cases the kernel comparison uses) and seeded mutations of
// each run through the loaded tc programs with BPF_PROG_TEST_RUN and through
// clamp::clamp_mss, and the bytes and the outcome must be the same. Then the guard: drop
// and report, heartbeat, probes, GSO sizing. Needs root (loading programs); exits 77
// (ctest: skipped) without it.
#define BOOST_TEST_MODULE unit_bpf
#include <bpf/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bpf/tunshim_bpf.h"
#include "clamp/mss.h"
#include "proxy/datapath_bpf.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;
using tunshim::proxy::BpfCounters;
using tunshim::proxy::BpfDatapath;
using tunshim::proxy::BpfReport;
using tunshim::proxy::BpfTargets;

namespace {

// A test run's skb comes from the loopback device with an Ethernet header in front.
constexpr unsigned kLo = 1;
// linux/pkt_cls.h's verdicts (the header's macros clash with Boost.Test).
constexpr std::uint32_t TC_ACT_OK = 0;
constexpr std::uint32_t TC_ACT_SHOT = 2;
constexpr std::uint8_t kEthLen = 14;

struct RootOnly {
  RootOnly() {
    if (geteuid() != 0) {
      std::puts("unit_bpf: loading eBPF programs needs root; skipped");
      std::fflush(stdout);
      std::_Exit(77);
    }
  }
};
BOOST_TEST_GLOBAL_FIXTURE(RootOnly);

// One loaded set of programs for the whole module (loading and unloading costs seconds on
// a busy machine); each test starts from cleared reports and a fresh heartbeat state.
struct Shared {
  BpfDatapath dp;
  std::vector<BpfReport> reports;
  std::vector<tt::Buf> report_bytes;
  std::string why;
  bool ok = false;
  Shared() {
    ok = dp.open(why);
    dp.set_report_handler([this](const BpfReport& r) {
      reports.push_back(r);
      report_bytes.emplace_back(r.head.begin(), r.head.end());
    });
  }
};

struct Loaded {
  Shared& s;
  BpfDatapath& dp;
  std::vector<BpfReport>& reports;
  std::vector<tt::Buf>& report_bytes;
  BpfCounters base;
  static Shared& shared() {
    static Shared one;
    return one;
  }
  Loaded() : s(shared()), dp(s.dp), reports(s.reports), report_bytes(s.report_bytes) {
    BOOST_TEST_REQUIRE(s.ok, s.why);
    dp.consume_reports();
    reports.clear();
    report_bytes.clear();
    dp.set_stale_ns(BpfDatapath::kDefaultStaleNs);
    dp.stop_heartbeat();
    BOOST_TEST_REQUIRE(dp.set_iface_for_test(kLo, kEthLen, {}));
    base = *dp.counters(kLo);
  }
  // Counters since the test began.
  BpfCounters delta() const {
    BpfCounters c = *dp.counters(kLo);
    c.guard_dropped -= base.guard_dropped;
    c.guard_lost -= base.guard_lost;
    c.guard_probe -= base.guard_probe;
    c.guard_stale -= base.guard_stale;
    c.guard_gso -= base.guard_gso;
    return c;
  }
};

struct Ran {
  int rc = 0;
  std::uint32_t retval = 0;
  tt::Buf out;       // the IP packet after the program (link header removed)
  int outcome = -1;  // the outcome counter that moved, -1 if none
};

int moved(const BpfCounters& a, const BpfCounters& b, int dir) {
  int which = -1;
  for (std::size_t o = 0; o < BpfCounters::kOutcomes; ++o) {
    const auto d = static_cast<std::size_t>(dir);
    if (b.clamp[d][o] == a.clamp[d][o]) continue;
    if (which != -1 || b.clamp[d][o] != a.clamp[d][o] + 1) return -2;  // more than one step
    which = static_cast<int>(o);
  }
  return which;
}

// Runs `ip` through a program as a loopback test run. `gso_size` goes into the skb.
Ran run(BpfDatapath& dp, bool egress, const tt::Buf& ip, std::uint32_t gso_size = 0) {
  tt::Buf frame{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};
  // A test run refuses a frame whose ethertype promises more than it holds (IPv4 < 20,
  // IPv6 < 40 bytes). The program follows the version nibble, as clamp/ does, so a short
  // IPv6-looking packet still gets in as "IPv4"; see untestable().
  const bool v6 = ip.size() >= 40 && (ip[0] >> 4) == 6;
  frame.push_back(v6 ? 0x86 : 0x08);
  frame.push_back(v6 ? 0xdd : 0x00);
  frame.insert(frame.end(), ip.begin(), ip.end());
  tt::Buf out(frame.size() + 256);
  __sk_buff ctx{};
  ctx.gso_size = gso_size;
  ctx.gso_segs = gso_size != 0 ? 2 : 0;
  bpf_test_run_opts o{};
  o.sz = sizeof(o);
  o.data_in = frame.data();
  o.data_size_in = static_cast<std::uint32_t>(frame.size());
  o.data_out = out.data();
  o.data_size_out = static_cast<std::uint32_t>(out.size());
  o.ctx_in = &ctx;
  o.ctx_size_in = sizeof(ctx);
  o.repeat = 1;
  const auto before = dp.counters(kLo);
  Ran r;
  r.rc = bpf_prog_test_run_opts(egress ? dp.egress_prog_fd() : dp.ingress_prog_fd(), &o);
  r.retval = o.retval;
  const auto after = dp.counters(kLo);
  if (before && after) r.outcome = moved(*before, *after, egress ? 0 : 1);
  if (o.data_size_out >= kEthLen)
    r.out.assign(out.begin() + kEthLen, out.begin() + o.data_size_out);
  return r;
}

std::string hex(const tt::Buf& b) {
  std::string s;
  char h[3];
  for (auto c : b) {
    std::snprintf(h, sizeof(h), "%02x", c);
    s += h;
  }
  return s;
}

tt::Buf unhex(const std::string& s) {
  tt::Buf b;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2)
    b.push_back(static_cast<std::uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
  return b;
}

struct Case {
  std::string name;
  tc::ClampTarget target;
  tt::Buf input;
};

std::vector<Case> corpus() {
  const std::string cmd =
      std::string("python3 ") + TUNSHIM_SRC_DIR + "/tests/unit/bpf/export_cases.py";
  std::vector<Case> cases;
  FILE* p = popen(cmd.c_str(), "r");
  BOOST_TEST_REQUIRE(p != nullptr);
  std::string all;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) all.append(buf, n);
  BOOST_TEST_REQUIRE(pclose(p) == 0, "export_cases.py failed");
  std::istringstream in(all);
  std::string name, hexin;
  unsigned m4 = 0, m6 = 0;
  while (in >> name >> m4 >> m6 >> hexin) {
    cases.push_back(
        {name, {static_cast<std::uint16_t>(m4), static_cast<std::uint16_t>(m6)}, unhex(hexin)});
  }
  return cases;
}

// Packets a test run cannot carry (shorter than an IPv4 header). clamp/ calls them
// malformed; the program does too (parse_ip's length checks), which only a live
// interface can show.
bool untestable(const tt::Buf& ip) { return ip.size() < 20; }

std::size_t g_untestable = 0;

// One comparison: the program's bytes and outcome against clamp_mss's.
bool same_as_clamp(Loaded& l, bool egress, const Case& c) {
  if (untestable(c.input)) {
    ++g_untestable;
    return true;
  }
  BpfTargets t;
  t.mss4 = c.target.mss4;
  t.mss6 = c.target.mss6;
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
  tt::Buf buf = c.input;
  buf.resize(c.input.size() + 64, 0);
  const tc::ClampResult want = tc::clamp_mss(buf, c.input.size(), c.target);
  buf.resize(want.length);
  const Ran got = run(l.dp, egress, c.input);
  const bool ok = got.rc == 0 && got.retval == TC_ACT_OK && got.out == buf &&
                  got.outcome == static_cast<int>(want.outcome);
  if (!ok) {
    BOOST_ERROR(c.name << (egress ? " egress" : " ingress") << ": rc " << got.rc << " retval "
                       << got.retval << ", outcome " << got.outcome << " want "
                       << static_cast<int>(want.outcome) << " (" << tc::to_string(want.outcome)
                       << ")\n  in    " << hex(c.input) << "\n  bpf   " << hex(got.out)
                       << "\n  clamp " << hex(buf));
  }
  return ok;
}

tt::Buf sized_packet(bool v6, std::size_t size, bool df, std::uint8_t proto = 17) {
  tt::Buf payload(size - (v6 ? 48 : 28), 0x5a);
  if (proto == 6) {
    tt::TcpSpec t;
    t.flags = tt::tcpf::ack;
    t.payload = tt::Buf(size - (v6 ? 60 : 40), 0x5a);
    if (v6) return tt::tcp6(t).bytes;
    tt::Ip4Spec ip;
    ip.df = df;
    return tt::tcp4(t, ip).bytes;
  }
  tt::UdpSpec u;
  u.payload = payload;
  if (v6) return tt::ipv6({}, 17, tt::udp_datagram(u)).bytes;
  tt::Ip4Spec ip;
  ip.df = df;
  return tt::ipv4(ip, 17, tt::udp_datagram(u)).bytes;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bpf_clamp)

BOOST_AUTO_TEST_CASE(differential_corpus_both_directions) {
  Loaded l;
  const auto cases = corpus();
  BOOST_TEST_REQUIRE(cases.size() > 400U);
  std::size_t same = 0;
  for (const auto& c : cases) {
    same += same_as_clamp(l, true, c) ? 1 : 0;
    same += same_as_clamp(l, false, c) ? 1 : 0;
  }
  BOOST_TEST_MESSAGE("diff corpus: " << cases.size() << " cases x 2 directions, " << same
                                     << " identical to clamp_mss");
  BOOST_TEST(same == 2 * cases.size());
}

// Seeded mutations of every corpus case: random header bytes, truncation, link padding
// after the packet and other targets (0 included), so that malformed input of every shape
// meets both implementations.
BOOST_AUTO_TEST_CASE(differential_mutations) {
  Loaded l;
  const auto cases = corpus();
  std::mt19937 rng(0x7453);
  g_untestable = 0;
  const std::uint16_t targets[] = {0, 88, 500, 536, 1220, 1280, 1360, 1460, 9000};
  std::size_t runs = 0, same = 0;
  for (const auto& base : cases) {
    for (int m = 0; m < 16; ++m) {
      Case c = base;
      c.name += "#" + std::to_string(m);
      const int flips = static_cast<int>(rng() % 4);
      for (int f = 0; f < flips && !c.input.empty(); ++f) {
        const std::size_t at = rng() % std::min<std::size_t>(c.input.size(), 100);
        c.input[at] = static_cast<std::uint8_t>(rng());
      }
      if (rng() % 4 == 0 && !c.input.empty()) c.input.resize(rng() % c.input.size());
      if (rng() % 4 == 0) c.input.resize(c.input.size() + 1 + rng() % 40, 0xee);
      if (rng() % 2 == 0) {
        c.target.mss4 = targets[rng() % std::size(targets)];
        c.target.mss6 = targets[rng() % std::size(targets)];
      }
      ++runs;
      same += same_as_clamp(l, (m & 1) == 0, c) ? 1 : 0;
    }
  }
  BOOST_TEST_MESSAGE("mutations: " << runs << " runs, " << same
                                   << " identical to clamp_mss (of them " << g_untestable
                                   << " shorter than 20 bytes, which a test run refuses)");
  BOOST_TEST(same == runs);
  BOOST_TEST(g_untestable < runs / 10);
}

// Packets from tests/support/packet_builder.h shaped like test_mss.cpp's: every option
// layout there, both families, IPv4 options and IPv6 extension headers, all flag sets.
BOOST_AUTO_TEST_CASE(differential_builder_grid) {
  Loaded l;
  const std::vector<tt::Buf> opts = {
      {},
      tt::opt::mss(1460),
      tt::opt::cat({tt::opt::mss(1460), tt::opt::sack_ok(), tt::opt::timestamps(),
                    tt::opt::nop(), tt::opt::wscale(7)}),
      tt::opt::cat({tt::opt::nop(), tt::opt::mss(8940)}),
      tt::opt::cat({tt::opt::wscale(7), tt::opt::mss(1400)}),
      tt::opt::cat(
          {tt::opt::sack_ok(), tt::opt::timestamps(), tt::opt::nop(), tt::opt::wscale(7)}),
      tt::opt::cat({tt::opt::eol(), tt::opt::mss(1460)}),
      tt::opt::cat({tt::opt::timestamps(),
                    tt::opt::timestamps(),
                    tt::opt::timestamps(),
                    tt::opt::timestamps(),
                    {1, 1, 1, 1}}),  // 40 bytes: no room
      tt::opt::cat({tt::opt::mss(1460), tt::opt::mss(1200)}),
  };
  const std::uint8_t flag_sets[] = {tt::tcpf::syn, tt::tcpf::syn | tt::tcpf::ack, tt::tcpf::ack,
                                    tt::tcpf::syn | tt::tcpf::rst,
                                    tt::tcpf::syn | tt::tcpf::fin};
  const std::vector<std::vector<tt::Ip6Ext>> chains = {
      {},
      {{60, {1, 4, 0, 0, 0, 0}}},
      {{0, {1, 4, 0, 0, 0, 0}}, {44, {0, 0, 0, 0, 0, 0}}},
      {{43, {0, 0, 0, 0, 0, 0}}, {60, {1, 4, 0, 0, 0, 0}}},
  };
  std::size_t runs = 0, same = 0;
  for (const auto& o : opts) {
    for (auto flags : flag_sets) {
      for (int payload = 0; payload <= 1; ++payload) {
        tt::TcpSpec t;
        t.flags = flags;
        t.options = o;
        if (payload != 0) t.payload = {1, 2, 3, 4, 5, 6, 7};
        for (int ipopt = 0; ipopt <= 1; ++ipopt) {
          tt::Ip4Spec ip;
          if (ipopt != 0) ip.options = {1, 1, 1, 0};
          for (std::uint16_t mss : {536, 1360, 9000}) {
            ++runs;
            same += same_as_clamp(l, true, {"v4", {mss, mss}, tt::tcp4(t, ip).bytes});
          }
        }
        for (const auto& chain : chains) {
          tt::Ip6Spec ip;
          ip.ext = chain;
          for (std::uint16_t mss : {1220, 1340, 9000}) {
            ++runs;
            same += same_as_clamp(l, false, {"v6", {mss, mss}, tt::tcp6(t, ip).bytes});
          }
        }
      }
    }
  }
  BOOST_TEST_MESSAGE("builder grid: " << runs << " runs, " << same << " identical");
  BOOST_TEST(same == runs);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bpf_guard)

BOOST_AUTO_TEST_CASE(drops_and_reports_oversize_df_with_a_live_daemon) {
  Loaded l;
  BpfTargets t{1360, 1340, 1400, std::nullopt};
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
  l.dp.heartbeat();
  const tt::Buf big = sized_packet(false, 1500, true);
  const Ran r = run(l.dp, true, big);
  BOOST_TEST(r.rc == 0);
  BOOST_TEST(r.retval == TC_ACT_SHOT);
  l.dp.consume_reports();
  BOOST_TEST_REQUIRE(l.reports.size() == 1U);
  BOOST_TEST(l.reports[0].ifindex == kLo);
  BOOST_TEST(l.reports[0].mtu == 1400);
  BOOST_TEST(l.reports[0].wire_len == 1500U);
  BOOST_TEST(l.report_bytes[0] == tt::Buf(big.begin(), big.begin() + 1232),
             boost::test_tools::per_element());
  // Exactly the MTU passes; so does the same size arriving (ingress has no guard).
  BOOST_TEST(run(l.dp, true, sized_packet(false, 1400, true)).retval == TC_ACT_OK);
  BOOST_TEST(run(l.dp, false, big).retval == TC_ACT_OK);
  // No DF: the sender allows fragmentation.
  BOOST_TEST(run(l.dp, true, sized_packet(false, 1500, false)).retval == TC_ACT_OK);
  // IPv6: every packet, and nothing when the path is below IPv6's minimum MTU.
  BOOST_TEST(run(l.dp, true, sized_packet(true, 1500, true)).retval == TC_ACT_SHOT);
  BOOST_TEST_REQUIRE(l.dp.set_targets(kLo, {0, 0, 1200, std::nullopt}));
  BOOST_TEST(run(l.dp, true, sized_packet(true, 1500, true)).retval == TC_ACT_OK);
  BOOST_TEST(run(l.dp, true, sized_packet(false, 1500, true)).retval == TC_ACT_SHOT);
  const auto c = std::optional<BpfCounters>(l.delta());
  BOOST_TEST(c->guard_dropped == 3U);
  BOOST_TEST(c->guard_stale == 0U);
}

BOOST_AUTO_TEST_CASE(no_heartbeat_no_drop) {
  Loaded l;
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, {0, 0, 1400, std::nullopt}));
  const tt::Buf big = sized_packet(false, 1500, true);
  // Never beaten: open.
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_OK);
  l.dp.heartbeat();
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_SHOT);
  // A beat older than stale_ns: open again. A short stale time makes the test quick.
  l.dp.set_stale_ns(50'000'000ULL);
  l.dp.heartbeat();
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_SHOT);
  usleep(100'000);
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_OK);
  l.dp.heartbeat();
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_SHOT);
  l.dp.stop_heartbeat();
  BOOST_TEST(run(l.dp, true, big).retval == TC_ACT_OK);
  const auto c = std::optional<BpfCounters>(l.delta());
  BOOST_TEST(c->guard_stale == 3U);
  BOOST_TEST(c->guard_dropped == 3U);
}

BOOST_AUTO_TEST_CASE(own_probes_pass) {
  Loaded l;
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, {0, 0, 1400, 0x4242}));
  l.dp.heartbeat();
  for (bool v6 : {false, true}) {
    tt::IcmpSpec e;
    e.type = v6 ? 128 : 8;
    e.body = tt::Buf(1500, 0x11);
    e.body[0] = 0x42;
    e.body[1] = 0x42;
    const tt::Buf probe = v6 ? tt::ipv6({}, 58, tt::icmp_message(e)).bytes
                             : tt::ipv4({}, 1, tt::icmp_message(e)).bytes;
    BOOST_TEST(run(l.dp, true, probe).retval == TC_ACT_OK);
    e.body[1] = 0x43;  // someone else's echo
    const tt::Buf other = v6 ? tt::ipv6({}, 58, tt::icmp_message(e)).bytes
                             : tt::ipv4({}, 1, tt::icmp_message(e)).bytes;
    BOOST_TEST(run(l.dp, true, other).retval == TC_ACT_SHOT);
  }
  const auto c = std::optional<BpfCounters>(l.delta());
  BOOST_TEST(c->guard_probe == 2U);
  BOOST_TEST(c->guard_dropped == 2U);
}

// A GSO packet meets the path as segments: its segment size decides, not its length.
BOOST_AUTO_TEST_CASE(gso_judged_by_segment) {
  Loaded l;
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, {0, 0, 1400, std::nullopt}));
  l.dp.heartbeat();
  const tt::Buf super = sized_packet(false, 3000, true, 6);
  // 20 + 20 + 1360 = 1400 on the wire: passes.
  BOOST_TEST(run(l.dp, true, super, 1360).retval == TC_ACT_OK);
  // 20 + 20 + 1448 = 1488: dropped, and reported with the segment's size.
  BOOST_TEST(run(l.dp, true, super, 1448).retval == TC_ACT_SHOT);
  l.dp.consume_reports();
  BOOST_TEST_REQUIRE(l.reports.size() == 1U);
  BOOST_TEST(l.reports[0].wire_len == 1488U);
  const auto c = std::optional<BpfCounters>(l.delta());
  BOOST_TEST(c->guard_gso == 1U);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// A TCP data segment of `payload` bytes at `seq` (ACK set), on flow `sport`.
tt::Buf segment(bool v6, std::uint32_t seq, std::size_t payload, std::uint16_t sport = 40000,
                std::uint8_t flags = tt::tcpf::ack) {
  tt::TcpSpec t;
  t.flags = flags;
  t.seq = seq;
  t.sport = sport;
  t.payload = tt::Buf(payload, 0x5a);
  return v6 ? tt::tcp6(t).bytes : tt::tcp4(t, {}).bytes;
}

// The flow table is per CPU and a test run runs on the caller's CPU: the test stays on one.
struct OneCpu {
  cpu_set_t saved{};
  bool ok = false;
  OneCpu() {
    if (sched_getaffinity(0, sizeof(saved), &saved) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    ok = sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~OneCpu() {
    if (ok) sched_setaffinity(0, sizeof(saved), &saved);
  }
  OneCpu(const OneCpu&) = delete;
  OneCpu& operator=(const OneCpu&) = delete;
};

std::uint64_t sym(const Loaded& l, BpfCounters::Symptom k) {
  return l.dp.counters(kLo)->symptom[k] - l.base.symptom[k];
}

}  // namespace

// Passive black-hole symptoms (docs/DOCTOR.md, "In the daemon"): full-size retransmissions
// by per-flow sequence, ICMP too-big arriving, oversize DF leaving.
BOOST_AUTO_TEST_SUITE(bpf_symptoms)

BOOST_AUTO_TEST_CASE(full_size_retransmissions_by_sequence) {
  Loaded l;
  const OneCpu pin;
  BOOST_TEST_REQUIRE(pin.ok);
  for (bool v6 : {false, true}) {
    BOOST_TEST_CONTEXT((v6 ? "IPv6" : "IPv4")) {
      // full size from 1300 bytes on the wire: 1260 payload (IPv4) / 1240 (IPv6).
      BpfTargets t{1300, 1280, 0, std::nullopt, true, 0, 1300, 1300};
      BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
      const std::size_t full = v6 ? 1240 : 1260;
      const std::uint16_t port = v6 ? 41000 : 40000;
      const std::uint64_t before = sym(l, BpfCounters::kRetransmit);
      auto sent = [&](std::uint32_t seq, std::size_t len, std::uint16_t p, bool egress = true,
                      std::uint8_t flags = tt::tcpf::ack) {
        run(l.dp, egress, segment(v6, seq, len, p, flags));
        return sym(l, BpfCounters::kRetransmit) - before;
      };
      BOOST_TEST(sent(1000, full, port) == 0U);         // first seen
      BOOST_TEST(sent(1000 + full, full, port) == 0U);  // in order
      BOOST_TEST(sent(1000, full, port) == 1U);         // the first one again
      BOOST_TEST(sent(1000 + full, full, port) == 2U);  // the highest one again
      BOOST_TEST(sent(1000 + full, full, port) == 3U);  // and again (RTO backoff)
      BOOST_TEST(sent(1000, 100, port) == 3U);          // small: not full-size
      BOOST_TEST(sent(1000, full, port, false) == 3U);  // arriving: not ours to judge
      BOOST_TEST(sent(1000, full, port, true, tt::tcpf::ack | tt::tcpf::fin) == 3U);
      BOOST_TEST(sent(1000, full, port + 1) == 3U);  // another flow: first seen
      BOOST_TEST(sent(1000, full, port + 1) == 4U);
      // Sequence numbers wrap: in order across 2^32, then a retransmission of the last.
      BOOST_TEST(sent(0xffffff00U, full, port + 2) == 4U);
      BOOST_TEST(sent(0xffffff00U + full, full, port + 2) == 4U);
      BOOST_TEST(sent(0xffffff00U + full, full, port + 2) == 5U);
      // Counting off: nothing.
      t.symptoms = false;
      BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
      BOOST_TEST(sent(1000, full, port) == 5U);
    }
  }
}

BOOST_AUTO_TEST_CASE(icmp_too_big_arriving) {
  Loaded l;
  BOOST_TEST_REQUIRE(
      l.dp.set_iface_for_test(kLo, kEthLen, {0, 0, 0, std::nullopt, true, 0, 0, 0}));
  const std::uint64_t before = sym(l, BpfCounters::kIcmpTooBig);
  auto icmp = [](bool v6, std::uint8_t type, std::uint8_t code) {
    tt::IcmpSpec e;
    e.type = type;
    e.code = code;
    e.body = tt::Buf(64, 0x45);
    return v6 ? tt::ipv6({}, 58, tt::icmp_message(e)).bytes
              : tt::ipv4({}, 1, tt::icmp_message(e)).bytes;
  };
  run(l.dp, false, icmp(false, 3, 4));  // frag-needed
  run(l.dp, false, icmp(true, 2, 0));   // packet-too-big
  run(l.dp, false, icmp(false, 3, 1));  // host unreachable: not this symptom
  run(l.dp, false, icmp(false, 8, 0));
  run(l.dp, true, icmp(false, 3, 4));  // leaving: not counted
  BOOST_TEST(sym(l, BpfCounters::kIcmpTooBig) - before == 2U);
}

BOOST_AUTO_TEST_CASE(oversize_df_above_the_measured_path) {
  Loaded l;
  BOOST_TEST_REQUIRE(
      l.dp.set_iface_for_test(kLo, kEthLen, {0, 0, 0, 0x4242, true, 1400, 0, 0}));
  const std::uint64_t before = sym(l, BpfCounters::kOversizeDf);
  run(l.dp, true, sized_packet(false, 1500, true));   // counted
  run(l.dp, true, sized_packet(false, 1400, true));   // exactly the path MTU
  run(l.dp, true, sized_packet(false, 1500, false));  // may be fragmented
  run(l.dp, true, sized_packet(true, 1500, true));    // IPv6: counted
  run(l.dp, false, sized_packet(false, 1500, true));  // arriving
  tt::IcmpSpec e;
  e.body = tt::Buf(1500, 0x11);
  e.body[0] = 0x42;
  e.body[1] = 0x42;
  run(l.dp, true, tt::ipv4({}, 1, tt::icmp_message(e)).bytes);  // our own probe
  // The guard is off here: nothing was dropped, only counted.
  BOOST_TEST(sym(l, BpfCounters::kOversizeDf) - before == 2U);
  BOOST_TEST(l.delta().guard_dropped == 0U);
}

// A trigger symptom on a tunnel with a measured path MTU wakes the daemon through the report
// ring (a report with mtu 0, no packet): at most one per interface and CPU in
// TS_NUDGE_GAP_NS, none without a live daemon or a measured path MTU, none for oversize DF.
BOOST_AUTO_TEST_CASE(trigger_symptoms_nudge_the_daemon) {
  Loaded l;
  const OneCpu pin;
  BOOST_TEST_REQUIRE(pin.ok);
  const auto gap = std::chrono::nanoseconds(TS_NUDGE_GAP_NS) + std::chrono::milliseconds(20);
  BpfTargets t{1300, 1280, 0, std::nullopt, true, 1400, 1300, 1300};
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
  l.dp.heartbeat();
  tt::IcmpSpec e;
  e.type = 3;
  e.code = 4;
  e.body = tt::Buf(64, 0x45);
  const tt::Buf too_big = tt::ipv4({}, 1, tt::icmp_message(e)).bytes;
  auto nudges = [&] {
    l.dp.consume_reports();
    std::size_t n = 0;
    for (const auto& r : l.reports) {
      if (r.mtu == 0 && r.ifindex == kLo && r.head.empty()) ++n;
    }
    l.reports.clear();
    l.report_bytes.clear();
    return n;
  };
  std::this_thread::sleep_for(gap);  // an earlier test's nudge on this CPU
  nudges();
  run(l.dp, false, too_big);
  BOOST_TEST(nudges() == 1U);
  run(l.dp, false, too_big);  // within the gap: counted, not nudged again
  BOOST_TEST(nudges() == 0U);
  std::this_thread::sleep_for(gap);
  run(l.dp, true, segment(false, 5000, 1260, 42000, tt::tcpf::ack));
  BOOST_TEST(nudges() == 0U);  // first seen: no symptom
  run(l.dp, true, segment(false, 5000, 1260, 42000, tt::tcpf::ack));
  BOOST_TEST(nudges() == 1U);  // a full-size retransmission
  std::this_thread::sleep_for(gap);
  run(l.dp, true, sized_packet(false, 1500, true));  // oversize DF: counted, no nudge
  BOOST_TEST(nudges() == 0U);
  t.watch_mtu = 0;  // no measured path MTU: nothing to re-check
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
  run(l.dp, false, too_big);
  BOOST_TEST(nudges() == 0U);
  t.watch_mtu = 1400;
  BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
  l.dp.stop_heartbeat();  // no daemon to wake
  run(l.dp, false, too_big);
  BOOST_TEST(nudges() == 0U);
  l.dp.heartbeat();
  run(l.dp, false, too_big);
  BOOST_TEST(nudges() == 1U);
}

BOOST_AUTO_TEST_SUITE_END()

// Not a test: the figure of docs/PERFORMANCE.md ("Black-hole symptoms in the daemon"), run
// by hand (`unit_bpf --run_test=bpf_symptoms_cost`). The programs' time per packet with the
// symptoms counted and not, by BPF_PROG_TEST_RUN's own clock over many repeats of each
// packet kind a tunnel carries.
BOOST_AUTO_TEST_SUITE(bpf_symptoms_cost, *boost::unit_test::disabled())

BOOST_AUTO_TEST_CASE(per_packet_ns) {
  Loaded l;
  const OneCpu pin;
  constexpr std::uint32_t kRepeat = 2'000'000;
  struct Kind {
    const char* name;
    bool egress;
    tt::Buf ip;
  };
  const Kind kinds[] = {
      {"egress full-size TCP (a retransmission)", true, segment(false, 1000, 1332)},
      {"egress small TCP (ACK)", true, segment(false, 1000, 0)},
      {"ingress full-size TCP", false, segment(false, 1000, 1332)},
      {"ingress ICMP frag-needed", false,
       tt::ipv4({}, 1, tt::icmp_message({3, 4, tt::Buf(64, 0x45)})).bytes},
  };
  auto ns = [&](const Kind& k, bool on) {
    // On: the targets the daemon writes for a 1372-byte path (mss 1332, full size 1308).
    BpfTargets t{1332, 1312, 0, 0x4242};
    if (on) {
      t.symptoms = true;
      t.watch_mtu = 1372;
      t.full4 = 1308;
      t.full6 = 1308;
    }
    BOOST_TEST_REQUIRE(l.dp.set_iface_for_test(kLo, kEthLen, t));
    tt::Buf frame{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00};
    frame.insert(frame.end(), k.ip.begin(), k.ip.end());
    // One test run repeats one packet: the full-size segment is a retransmission from its
    // second run on (hash, table lookup, compare, count), the most the program does.
    double best = 1e18;
    for (int round = 0; round < 5; ++round) {
      bpf_test_run_opts o{};
      o.sz = sizeof(o);
      o.data_in = frame.data();
      o.data_size_in = static_cast<std::uint32_t>(frame.size());
      o.repeat = kRepeat;
      BOOST_TEST_REQUIRE(bpf_prog_test_run_opts(
                             k.egress ? l.dp.egress_prog_fd() : l.dp.ingress_prog_fd(), &o) ==
                         0);
      best = std::min(best, static_cast<double>(o.duration));
    }
    return best;
  };
  for (const auto& k : kinds) {
    const double off = ns(k, false);
    const double on = ns(k, true);
    std::printf("%-46s off %6.1f ns  on %6.1f ns  symptoms %+5.1f ns/packet\n", k.name, off, on,
                on - off);
  }
}

BOOST_AUTO_TEST_SUITE_END()
