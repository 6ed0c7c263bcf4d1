// `tunshim stats`: the daemon's JSON read back into the snapshot it came from (--watch), the
// table with per-second rates between two snapshots, and the views of many tunnels (a line
// per pattern, --all, one IFACE).
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

// A concentrator's ppp+ with 12 sessions (two down), a client's wg+ with 2, one exact tun0.
StatsSnapshot many() {
  StatsSnapshot s = sample();
  s.tunnels.clear();
  TunnelStats tun0;
  tun0.iface = "tun0";
  tun0.state = "present";
  tun0.mss4 = 1360;
  s.tunnels.push_back(tun0);
  for (int i = 0; i < 12; ++i) {
    TunnelStats t;
    t.iface = "ppp" + std::to_string(i);
    t.pattern = "ppp+";
    t.present = true;
    t.state = i == 3 || i == 7 ? "down" : "up";
    t.mss4 = static_cast<std::uint16_t>(1260 + i);
    t.syn.out.clamped = 10;
    if (i < 10) {  // two still searching, on the fallback
      t.pmtu = static_cast<std::uint32_t>(1300 + i * 11);
      t.pmtu_state = "complete";
      t.pmtu_confirmed = true;
    } else {
      t.pmtu = 1200;
      t.pmtu_state = "search";
    }
    s.tunnels.push_back(t);
  }
  for (int i = 0; i < 2; ++i) {
    TunnelStats t;
    t.iface = "wg" + std::to_string(i);
    t.pattern = "wg+";
    t.present = true;
    t.state = "present";
    t.mss4 = 1380;
    s.tunnels.push_back(t);
  }
  PatternStats ppp;
  ppp.pattern = "ppp+";
  ppp.instances = 12;
  ppp.measured = 10;
  ppp.appeared = 15;
  ppp.gone = 3;
  ppp.syn.out.clamped = 150;  // the 12 live ones' 120 and 30 of the gone
  ppp.syn.out.inserted = 2;
  ppp.syn.in.clamped = 7;
  PatternStats wg;
  wg.pattern = "wg+";
  wg.instances = 2;
  wg.appeared = 2;
  s.patterns = {ppp, wg};
  summarize_patterns(s);
  return s;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// `text` with every run of spaces made one: rows compared without their alignment.
std::string squeeze(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c != ' ' || out.empty() || out.back() != ' ') out += c;
  }
  return out;
}

// How many lines of `text` start with `prefix`.
std::size_t lines_starting(const std::string& text, const std::string& prefix) {
  std::size_t n = 0;
  for (std::size_t at = 0; at < text.size();) {
    if (text.compare(at, prefix.size(), prefix) == 0) ++n;
    const std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return n;
}

BOOST_AUTO_TEST_CASE(patterns_are_summarized_from_their_instances) {
  const StatsSnapshot s = many();
  BOOST_TEST(s.patterns[0].states.at("up") == 10U);
  BOOST_TEST(s.patterns[0].states.at("down") == 2U);
  BOOST_TEST(s.patterns[0].pmtu_min == 1300U);  // measured only: the fallback 1200 is not
  BOOST_TEST(s.patterns[0].pmtu_max == 1399U);
  BOOST_TEST(s.patterns[1].states.at("present") == 2U);
  BOOST_TEST(s.patterns[1].pmtu_min == 0U);
}

BOOST_AUTO_TEST_CASE(summary_has_a_line_per_pattern_and_columns_for_the_few) {
  const std::string t = render_table(many());
  BOOST_TEST(has(t,
                 "\nppp+: 12 interfaces now (15 appeared, 3 gone): 10 up, 2 down (ppp3, ppp7); "
                 "path MTU 1300-1399 (10 of 12 measured); SYN out clamped/inserted 150 / 2, in "
                 "7 / 0\n"),
             t);
  // All "present" (no keepalive): no state list; nothing measured: "-".
  BOOST_TEST(has(t,
                 "\nwg+: 2 interfaces now (2 appeared, 0 gone); path MTU -; SYN out "
                 "clamped/inserted 0 / 0, in 0 / 0\n"),
             t);
  // Columns: the exact name and wg+'s two instances (at most kPatternRowsShown); ppp+'s 12
  // are its line and a pointer to --all.
  BOOST_TEST(has(t, "\ntunnel                    tun0        wg0 (wg+)   wg1 (wg+)\n"), t);
  BOOST_TEST(!has(t, "ppp0 (ppp+)"), t);
  BOOST_TEST(has(t,
                 "\ninstances of ppp+ (12) not shown: `tunshim stats --all` lists every "
                 "tunnel, `tunshim stats IFACE` shows one\n"),
             t);
}

BOOST_AUTO_TEST_CASE(all_lists_every_tunnel_a_line_each) {
  const std::string t = render_table(many(), nullptr, {StatsView::Mode::all, {}});
  BOOST_TEST(has(t, "\nppp+: 12 interfaces now"), t);  // the summaries stay on top
  BOOST_TEST(lines_starting(t, "tunnel  pattern  state") == 1U, t);
  BOOST_TEST(lines_starting(t, "ppp") == 13U, t);  // the summary line and 12 rows
  BOOST_TEST(lines_starting(t, "ppp1 ") == 1U, t);
  BOOST_TEST(lines_starting(t, "wg") == 3U, t);
  BOOST_TEST(lines_starting(t, "tun0 ") == 1U, t);
  BOOST_TEST(!has(t, "not shown"), t);
  // A row: name, pattern, state, path MTU, MSS, SYNs out and in, bypassed, reconnects.
  const std::string rows = squeeze(t);
  BOOST_TEST(has(rows, "\nppp7 ppp+ down 1377 (measured) 1267 / off 10 / 0 0 / 0 0 / 0 -\n"),
             t);
  BOOST_TEST(
      has(rows, "\nppp11 ppp+ up 1200 (fallback, search) 1271 / off 10 / 0 0 / 0 0 / 0 -\n"),
      t);
  BOOST_TEST(has(rows, "\ntun0 - present - 1360 / off 0 / 0 0 / 0 0 / 0 -\n"), t);
}

BOOST_AUTO_TEST_CASE(a_few_tunnels_keep_their_columns_under_all) {
  StatsSnapshot s = many();
  s.tunnels.resize(3);  // tun0, ppp0, ppp1
  const std::string t = render_table(s, nullptr, {StatsView::Mode::all, {}});
  BOOST_TEST(has(t, "\ntunnel                    tun0        ppp0 (ppp+)      ppp1 (ppp+)\n"),
             t);
  // The summary view shows them too now that ppp+ has at most kPatternRowsShown.
  BOOST_TEST(render_table(s) == t);
}

BOOST_AUTO_TEST_CASE(one_interface_or_one_pattern) {
  const StatsSnapshot s = many();
  const StatsView ppp7{StatsView::Mode::one, "ppp7"};
  BOOST_TEST(view_error(s, ppp7).empty());
  const std::string t = render_table(s, nullptr, ppp7);
  BOOST_TEST(
      has(t, "\ntunnel                    ppp7 (ppp+)\nstate                     down\n"), t);
  BOOST_TEST(!has(t, "ppp6"), t);
  BOOST_TEST(!has(t, "ppp+: 12"), t);
  // A pattern's name: its line and all its instances, a line each (12 > kColumnsMax).
  const StatsView pattern{StatsView::Mode::one, "ppp+"};
  BOOST_TEST(view_error(s, pattern).empty());
  const std::string p = render_table(s, nullptr, pattern);
  BOOST_TEST(has(p, "\nppp+: 12 interfaces now"), p);
  BOOST_TEST(lines_starting(p, "ppp") == 13U, p);
  BOOST_TEST(!has(p, "wg0"), p);
  BOOST_TEST(!has(p, "tun0"), p);
  // The JSON of one interface keeps only its tunnel, and every pattern's summary.
  StatsSnapshot only = s;
  keep_view_tunnels(only, ppp7);
  BOOST_TEST_REQUIRE(only.tunnels.size() == 1U);
  BOOST_TEST(only.tunnels[0].iface == "ppp7");
  BOOST_TEST(only.patterns.size() == 2U);
  std::string error;
  const auto back = parse_stats_json(render_json(only), error);
  BOOST_TEST_REQUIRE(back.has_value(), error);
  BOOST_TEST(back->patterns[0].states.at("down") == 2U);
  BOOST_TEST(render_table(*back, nullptr, ppp7) == t);
}

BOOST_AUTO_TEST_CASE(no_such_tunnel_is_one_line_saying_what_there_is) {
  const StatsSnapshot s = many();
  BOOST_TEST(view_error(s, {StatsView::Mode::one, "ppp99"}) ==
             "no tunnel ppp99 now: no such interface, or it appeared and went; ppp+ has 12 "
             "interfaces now (`tunshim stats --all` lists them)");
  BOOST_TEST(view_error(s, {StatsView::Mode::one, "eth0"}) ==
             "no tunnel eth0 (configured: tun0, ppp+, wg+)");
  BOOST_TEST(view_error(s, {StatsView::Mode::all, {}}).empty());
  BOOST_TEST(view_error(s, {}).empty());
  // --watch of an interface that went: the view says so instead of failing.
  BOOST_TEST(has(render_table(s, nullptr, {StatsView::Mode::one, "ppp99"}),
                 "\nno tunnel ppp99 now\n"));
}

BOOST_AUTO_TEST_CASE(patterns_read_back_from_json_with_their_rates) {
  const StatsSnapshot before = many();
  std::string error;
  const auto back = parse_stats_json(render_json(before), error);
  BOOST_TEST_REQUIRE(back.has_value(), error);
  BOOST_TEST(render_json(*back) == render_json(before));
  BOOST_TEST(back->tunnels[1].pattern == "ppp+");
  BOOST_TEST(back->tunnels[0].pattern.empty());
  BOOST_TEST(render_table(*back, nullptr, {StatsView::Mode::all, {}}) ==
             render_table(before, nullptr, {StatsView::Mode::all, {}}));
  StatsSnapshot now = before;
  now.now += 2;
  now.patterns[0].syn.out.clamped += 3;  // 1.5/s
  now.tunnels[8].syn.out.clamped += 4;   // ppp7: 2/s
  const std::string t = render_table(now, &before);
  BOOST_TEST(
      has(t, "SYN out clamped/inserted 153 / 2  (1.5/s / 0.0/s), in 7 / 0  (0.0/s / 0.0/s)"),
      t);
  const std::string a = render_table(now, &before, {StatsView::Mode::all, {}});
  BOOST_TEST(has(a, "14 / 0  (2.0/s / 0.0/s)"), a);
}

BOOST_AUTO_TEST_CASE(status_line_gives_a_large_pattern_one_entry) {
  StatsSnapshot s = many();
  BOOST_TEST(status_line(s) ==
             "tun0: absent; wg0: 0 clamped; wg1: 0 clamped; ppp+: 12 interfaces (2 not up), "
             "159 clamped");
  s.tunnels.resize(3);  // tun0, ppp0, ppp1: few enough to name
  BOOST_TEST(status_line(s) ==
             "tun0: absent; ppp0: up, 10 clamped, pmtu 1300; ppp1: up, 10 "
             "clamped, pmtu 1311");
  s.tunnels.clear();  // only patterns, no interface now; ppp+ keeps its totals
  BOOST_TEST(status_line(s) ==
             "ppp+: 12 interfaces (2 not up), 159 clamped; wg+: 2 interfaces, 0 clamped");
}

BOOST_AUTO_TEST_CASE(without_patterns_the_table_is_as_it_was) {
  // No pattern: no summary lines and no pointer to --all; a column per tunnel.
  const StatsSnapshot s = sample();
  const std::string t = render_table(s);
  BOOST_TEST(t == render_table(s, nullptr, {StatsView::Mode::all, {}}));
  BOOST_TEST(has(t, "\ntunnel                    ppp0"), t);
  BOOST_TEST(!has(t, "not shown"), t);
  BOOST_TEST(!has(t, "interfaces now"), t);
  BOOST_TEST(!has(render_json(s), "\"patterns\""));
}

}  // namespace
