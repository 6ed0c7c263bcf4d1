// `tunshim stats --watch`: the daemon's JSON read back into the snapshot it came from, and
// the table with per-second rates between two snapshots.
#include <boost/test/unit_test.hpp>
#include <string>

#include "proxy/metrics.h"
#include "proxy/stats_report.h"

namespace {

using namespace tunshim::proxy;

// Every field the JSON carries set, each number distinct, and strings that need escaping.
StatsSnapshot sample() {
  StatsSnapshot s;
  s.version = "0.1.0";
  s.start_time = 1700000000.5;
  s.now = 1700000100.25;
  s.queue_num = 4770;
  s.datapath = "queue";
  s.datapath_reason = "auto: eBPF unavailable: no privileges";
  s.queue.packets = 11;
  s.queue.verdicts = 3;
  s.queue.batches = 2;
  s.queue.modified = 7;
  s.queue.id_gaps = 13;
  s.queue.enobufs = 17;
  s.queue.send_errors = 19;
  s.queue.bad_messages = 23;
  s.queue.unknown_iface = 29;
  s.queue.kernel_queue_dropped = 31;
  s.queue.kernel_user_dropped = 37;
  s.reloads_ok = 1;
  s.reloads_failed = 2;
  TunnelStats a;
  a.iface = "ppp0";
  a.present = true;
  a.state = "up";
  a.state_since = 1700000000.75;
  a.mss4 = 1300;
  a.mss6 = 1280;
  a.syn.out = {4, 1, 2, 3, 5, 6, 41};
  a.syn.in = {8, 9, 10, 12, 14, 15, 43};
  a.up = true;
  a.transitions = {{"down", 1}, {"up", 2}};
  a.pmtu = 1400;
  a.pmtu_state = "complete";
  a.pmtu_confirmed = true;
  a.oversize_dropped = 50;
  a.icmp_ptb_sent = 49;
  a.guard = {{"passed", 1000}, {"rate_limited", 1}};
  a.keepalive_sent = 100;
  a.keepalive_replies = 98;
  a.rtt_smoothed = 0.0235;
  a.rtt_min = 0.02;
  a.rtt_max = 0.125;
  a.probes = {{"answered", 7}, {"unanswered", 3}};
  a.hook_runs = {{{"on_down", "ok"}, 1}, {{"on_up", "failed"}, 2}};
  a.reconnects = 1;
  a.last_hook = "on_up #1 exit 1, \"12:03\" \\ \x01 \xc3\xa9";
  TunnelStats b;  // nothing measured: every optional stays empty
  b.iface = "tun0";
  b.state = "absent";
  b.mss4 = 1360;
  b.pmtu_state = "search";
  s.tunnels = {a, b};
  return s;
}

BOOST_AUTO_TEST_CASE(json_reads_back_to_the_same_snapshot) {
  const StatsSnapshot s = sample();
  const std::string json = render_json(s);
  std::string error;
  const auto back = parse_stats_json(json, error);
  BOOST_TEST_REQUIRE(back.has_value(), error);
  // Everything exported comes back (the JSON of the copy is the JSON of the original), and
  // so does everything the table shows.
  BOOST_TEST(render_json(*back) == json);
  BOOST_TEST(render_table(*back) == render_table(s));
  BOOST_TEST(back->tunnels[0].last_hook == s.tunnels[0].last_hook);
  BOOST_TEST(!back->tunnels[1].up.has_value());
  BOOST_TEST(!back->tunnels[1].keepalive_sent.has_value());
}

BOOST_AUTO_TEST_CASE(rates_are_the_change_per_second_since_the_previous_snapshot) {
  const StatsSnapshot before = sample();
  StatsSnapshot now = before;
  now.now += 4.0;
  now.queue.packets += 10;
  now.tunnels[0].syn.out.clamped += 6;  // 1.5/s
  now.tunnels[0].syn.in.clamped += 6;
  now.tunnels[0].keepalive_sent = 104;  // 1/s
  now.tunnels[0].keepalive_replies = 102;
  const std::string t = render_table(now, &before);
  BOOST_TEST(t.find("queue 4770: 21 packets (2.5/s), 7 rewritten") != std::string::npos, t);
  BOOST_TEST(t.find("\nSYN out clamped/inserted  10 / 1  (1.5/s / 0.0/s)") != std::string::npos,
             t);
  BOOST_TEST(t.find("\nSYN in clamped/inserted   14 / 9  (1.5/s / 0.0/s)") != std::string::npos,
             t);
  BOOST_TEST(t.find("104 / 102  (1.0/s / 1.0/s)") != std::string::npos, t);
  // tun0 measures no keepalives: no rate to give.
  BOOST_TEST(t.find("- / -  (- / -)") != std::string::npos, t);
  // Rows that are not counters carry no rate.
  BOOST_TEST(t.find("\nMSS target v4/v6          1300 / 1280  ") != std::string::npos, t);
  BOOST_TEST(t.find("1300 / 1280  (") == std::string::npos, t);
}

BOOST_AUTO_TEST_CASE(no_rates_without_a_usable_previous_snapshot) {
  const StatsSnapshot s = sample();
  BOOST_TEST(render_table(s, nullptr) == render_table(s));
  BOOST_TEST(render_table(s, &s) == render_table(s));  // no time passed
  // A counter that went backwards (a new daemon) has no rate; a tunnel new since the last
  // refresh has none either.
  StatsSnapshot before = s;
  before.now -= 2;
  before.tunnels[0].syn.out.clamped = 100;
  before.tunnels.pop_back();
  const std::string t = render_table(s, &before);
  BOOST_TEST(t.find("\nSYN out clamped/inserted  4 / 1  (- / 0.0/s)") != std::string::npos, t);
  BOOST_TEST(t.find("1360 / off  ") == std::string::npos, t);
}

BOOST_AUTO_TEST_CASE(anything_else_is_refused_with_a_reason) {
  std::string error;
  const std::string good = render_json(sample());
  for (const std::string bad :
       {std::string(), std::string("ok"), good.substr(0, good.size() / 2), good + "x",
        std::string("{}"), std::string("[1,2]"), std::string("{\"time\": 1}"),
        std::string("{\"a\": \"\\u12\"}"), std::string(200, '[')}) {
    error.clear();
    BOOST_TEST(!parse_stats_json(bad, error).has_value(), bad);
    BOOST_TEST(!error.empty(), bad);
  }
  // Members of the wrong type are left at their defaults, not misread.
  const auto s = parse_stats_json(
      R"({"time": 5, "global": {"queue_packets_total": "many"}, "tunnels": [{"interface": 3,
          "metrics": {"syn_total": {"out": {"clamped": -1}}}}]})",
      error);
  BOOST_TEST_REQUIRE(s.has_value(), error);
  BOOST_TEST(s->queue.packets == 0U);
  BOOST_TEST(s->tunnels.size() == 1U);
  BOOST_TEST(s->tunnels[0].iface.empty());
  BOOST_TEST(s->tunnels[0].syn.out.clamped == 0U);
}

}  // namespace
