// The metrics registry: exact Prometheus text for a snapshot with known values, the JSON
// view of the same numbers, the table's own consistency, escaping, and the human views.
#include <boost/test/unit_test.hpp>
#include <set>
#include <string>

#include "proxy/metrics.h"
#include "proxy/stats_sources.h"

namespace {

using namespace tunshim::proxy;

// What the daemon measures today, with every number distinct so a swapped field shows.
StatsSnapshot known() {
  StatsSnapshot s;
  s.version = "0.1.0";
  s.start_time = 1700000000.5;
  s.now = 1700000100.5;
  s.queue_num = 4770;
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
  a.state = "present";
  a.state_since = 1700000000.5;
  a.mss4 = 1300;
  a.mss6 = 1280;
  a.syn.out = {4, 1, 2, 3, 5, 6, 41};
  a.syn.in = {8, 9, 10, 12, 14, 15, 43};
  TunnelStats b;
  b.iface = "tun0";
  b.state = "absent";
  b.mss4 = 1360;
  s.tunnels = {a, b};
  return s;
}

// The same, plus a value for every feature-owned field, so every row has samples.
StatsSnapshot full() {
  StatsSnapshot s = known();
  s.datapath = "bpf";
  s.datapath_reason = "auto: the kernel accepted the eBPF programs";
  s.clients_dropped = {{"http", ClientDrops{3, 0, 1, 2, 0}}, {"control", ClientDrops{}}};
  TunnelStats& t = s.tunnels[0];
  t.up = true;
  t.transitions = {{"down", 1}, {"up", 2}};
  t.pmtu = 1400;
  t.oversize_dropped = 50;
  t.icmp_ptb_sent = 49;
  t.guard = {{"passed", 1000}, {"rate_limited", 1}};
  t.symptoms = {{"full_size_retransmit", 12}, {"icmp_too_big", 0}, {"oversize_df", 3}};
  t.symptom_rechecks = 1;
  t.keepalive_sent = 100;
  t.keepalive_replies = 98;
  t.rtt_smoothed = 0.0235;
  t.rtt_min = 0.02;
  t.rtt_max = 0.125;
  t.probes = {{"acked", 7}, {"lost", 3}};
  t.hook_runs = {{{"on_down", "ok"}, 1}, {{"on_up", "failed"}, 2}};
  t.reconnects = 1;
  t.last_hook = "on_up #1 exit 1";
  t.pmtu_state = "complete";
  PatternStats p;
  p.pattern = "ppp+";
  p.instances = 2;
  s.patterns.push_back(p);
  return s;
}

const char* const kKnownExposition =
    "# HELP tunshim_build_info Always 1; the version label says which tunshim is running.\n"
    "# TYPE tunshim_build_info gauge\n"
    "tunshim_build_info{version=\"0.1.0\"} 1\n"
    "# HELP tunshim_start_time_seconds When the daemon started, in seconds since the Unix "
    "epoch.\n"
    "# TYPE tunshim_start_time_seconds gauge\n"
    "tunshim_start_time_seconds 1700000000.5\n"
    "# HELP tunshim_config_reloads_total Config reloads (SIGHUP) by result.\n"
    "# TYPE tunshim_config_reloads_total counter\n"
    "tunshim_config_reloads_total{result=\"ok\"} 1\n"
    "tunshim_config_reloads_total{result=\"failed\"} 2\n"
    "# HELP tunshim_queue_packets_total Packets received from the NFQUEUE.\n"
    "# TYPE tunshim_queue_packets_total counter\n"
    "tunshim_queue_packets_total 11\n"
    "# HELP tunshim_queue_verdict_messages_total Verdict messages sent to the kernel: single "
    "(one packet) or batch (a run of unchanged packets).\n"
    "# TYPE tunshim_queue_verdict_messages_total counter\n"
    "tunshim_queue_verdict_messages_total{kind=\"single\"} 3\n"
    "tunshim_queue_verdict_messages_total{kind=\"batch\"} 2\n"
    "# HELP tunshim_queue_modified_total Packets returned to the kernel rewritten (MSS clamped "
    "or inserted).\n"
    "# TYPE tunshim_queue_modified_total counter\n"
    "tunshim_queue_modified_total 7\n"
    "# HELP tunshim_queue_dropped_total Queued packets lost before tunshim saw them: id_gap "
    "(netlink socket overrun), kernel_queue and kernel_user "
    "(/proc/net/netfilter/nfnetlink_queue; 0 while fail-open is on).\n"
    "# TYPE tunshim_queue_dropped_total counter\n"
    "tunshim_queue_dropped_total{reason=\"id_gap\"} 13\n"
    "tunshim_queue_dropped_total{reason=\"kernel_queue\"} 31\n"
    "tunshim_queue_dropped_total{reason=\"kernel_user\"} 37\n"
    "# HELP tunshim_queue_overruns_total recv() on the queue socket reported ENOBUFS.\n"
    "# TYPE tunshim_queue_overruns_total counter\n"
    "tunshim_queue_overruns_total 17\n"
    "# HELP tunshim_queue_errors_total Queue errors: verdict sends that failed, netlink "
    "messages that could not be parsed.\n"
    "# TYPE tunshim_queue_errors_total counter\n"
    "tunshim_queue_errors_total{kind=\"send\"} 19\n"
    "tunshim_queue_errors_total{kind=\"bad_message\"} 23\n"
    "# HELP tunshim_queue_unknown_interface_total Queued packets whose interface belongs to no "
    "configured tunnel (accepted unchanged).\n"
    "# TYPE tunshim_queue_unknown_interface_total counter\n"
    "tunshim_queue_unknown_interface_total 29\n"
    "# HELP tunshim_interface_present 1 if the tunnel's interface exists now, else 0.\n"
    "# TYPE tunshim_interface_present gauge\n"
    "tunshim_interface_present{tunnel=\"ppp0\"} 1\n"
    "tunshim_interface_present{tunnel=\"tun0\"} 0\n"
    "# HELP tunshim_mss_clamp_bytes MSS target SYNs are clamped to, per IP family; 0 = "
    "clamping off.\n"
    "# TYPE tunshim_mss_clamp_bytes gauge\n"
    "tunshim_mss_clamp_bytes{tunnel=\"ppp0\",family=\"ipv4\"} 1300\n"
    "tunshim_mss_clamp_bytes{tunnel=\"ppp0\",family=\"ipv6\"} 1280\n"
    "tunshim_mss_clamp_bytes{tunnel=\"tun0\",family=\"ipv4\"} 1360\n"
    "tunshim_mss_clamp_bytes{tunnel=\"tun0\",family=\"ipv6\"} 0\n"
    "# HELP tunshim_syn_total SYN and SYN-ACK packets queued to tunshim, by direction (out: "
    "leaving by the interface) and what the clamp did (other: not TCP SYN, fragment, no room, "
    "family off; truncated: partial copy).\n"
    "# TYPE tunshim_syn_total counter\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"clamped\"} 4\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"inserted\"} 1\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"unchanged\"} 2\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"malformed\"} 3\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"other\"} 5\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"out\",action=\"truncated\"} 6\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"clamped\"} 8\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"inserted\"} 9\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"unchanged\"} 10\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"malformed\"} 12\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"other\"} 14\n"
    "tunshim_syn_total{tunnel=\"ppp0\",direction=\"in\",action=\"truncated\"} 15\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"clamped\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"inserted\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"unchanged\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"malformed\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"other\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"out\",action=\"truncated\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"clamped\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"inserted\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"unchanged\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"malformed\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"other\"} 0\n"
    "tunshim_syn_total{tunnel=\"tun0\",direction=\"in\",action=\"truncated\"} 0\n"
    "# HELP tunshim_syn_bypassed_total SYNs that matched the tunnel's queue rules but passed "
    "unclamped (queue full or tunshim not reading; fail-open). A lower bound, updated every 10 "
    "s.\n"
    "# TYPE tunshim_syn_bypassed_total counter\n"
    "tunshim_syn_bypassed_total{tunnel=\"ppp0\",direction=\"out\"} 41\n"
    "tunshim_syn_bypassed_total{tunnel=\"ppp0\",direction=\"in\"} 43\n"
    "tunshim_syn_bypassed_total{tunnel=\"tun0\",direction=\"out\"} 0\n"
    "tunshim_syn_bypassed_total{tunnel=\"tun0\",direction=\"in\"} 0\n";

BOOST_AUTO_TEST_CASE(metric_table_is_consistent) {
  const auto problems = check_metric_defs();
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  BOOST_TEST(problems.empty(), all);
}

BOOST_AUTO_TEST_CASE(prometheus_text_for_known_values_is_exact) {
  BOOST_TEST(render_prometheus(known()) == kKnownExposition);
}

BOOST_AUTO_TEST_CASE(unmeasured_features_export_nothing) {
  const std::string text = render_prometheus(known());
  for (const char* name :
       {"tunshim_tunnel_up", "tunshim_pmtu_bytes", "tunshim_rtt_seconds",
        "tunshim_keepalive_sent_total", "tunshim_hook_runs_total", "tunshim_probes_total",
        "tunshim_blackhole_symptoms_total", "tunshim_pmtu_symptom_rechecks_total"}) {
    BOOST_TEST(text.find(name) == std::string::npos, name);
  }
}

// Every row has samples for a fully measured tunnel, each with as many label values as the
// row has label names: a reader that disagrees with its row fails here, not in a scrape.
BOOST_AUTO_TEST_CASE(every_row_reads_samples_matching_its_labels) {
  const StatsSnapshot s = full();
  for (const MetricDef& d : metric_defs()) {
    Samples out;
    if (d.global != nullptr) d.global(s, out);
    if (d.tunnel != nullptr) d.tunnel(s.tunnels[0], out);
    BOOST_TEST(!out.items().empty(), d.name);
    std::set<std::vector<std::string>> seen;
    for (const auto& smp : out.items()) {
      BOOST_TEST(smp.labels.size() == d.label_count(), d.name);
      BOOST_TEST(seen.insert(smp.labels).second, std::string(d.name) + ": duplicate series");
    }
  }
}

BOOST_AUTO_TEST_CASE(feature_fields_render_with_their_units) {
  const std::string text = render_prometheus(full());
  for (const char* line : {
           "tunshim_tunnel_up{tunnel=\"ppp0\"} 1\n",
           "tunshim_tunnel_state_transitions_total{tunnel=\"ppp0\",to=\"down\"} 1\n",
           "tunshim_pmtu_bytes{tunnel=\"ppp0\"} 1400\n",
           "tunshim_rtt_seconds{tunnel=\"ppp0\"} 0.0235\n",
           "tunshim_rtt_max_seconds{tunnel=\"ppp0\"} 0.125\n",
           "tunshim_hook_runs_total{tunnel=\"ppp0\",hook=\"on_up\",result=\"failed\"} 2\n",
           "tunshim_probes_total{tunnel=\"ppp0\",result=\"lost\"} 3\n",
           "# TYPE tunshim_keepalive_replies_total "
           "counter\ntunshim_keepalive_replies_total{tunnel=\"ppp0\"} 98\n",
       }) {
    BOOST_TEST(text.find(line) != std::string::npos, line);
  }
  // tun0 measures none of them: no series for it.
  BOOST_TEST(text.find("tunshim_pmtu_bytes{tunnel=\"tun0\"}") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(label_values_and_help_are_escaped) {
  BOOST_TEST(prom_escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  StatsSnapshot s = known();
  s.version = "1.0 \"beta\"";
  s.tunnels.resize(1);
  s.tunnels[0].iface = "we\\ird";
  const std::string text = render_prometheus(s);
  BOOST_TEST(text.find("tunshim_build_info{version=\"1.0 \\\"beta\\\"\"} 1\n") !=
             std::string::npos);
  BOOST_TEST(text.find("tunshim_interface_present{tunnel=\"we\\\\ird\"} 1\n") !=
             std::string::npos);
  BOOST_TEST(json_string("a\"\\\n\x01") == "\"a\\\"\\\\\\n\\u0001\"");
}

BOOST_AUTO_TEST_CASE(json_carries_the_same_numbers) {
  const std::string j = render_json(known());
  for (const char* part : {
           "\"version\": \"0.1.0\"",
           "\"uptime_seconds\": 100,",
           "\"queue_num\": 4770,",
           "\"config_reloads_total\": {\"ok\": 1, \"failed\": 2}",
           "\"queue_dropped_total\": {\"id_gap\": 13, \"kernel_queue\": 31, \"kernel_user\": "
           "37}",
           "\"interface\": \"ppp0\"",
           "\"state\": \"present\"",
           "\"last_hook\": null",
           "\"syn_total\": {\"out\": {\"clamped\": 4, \"inserted\": 1, \"unchanged\": 2, "
           "\"malformed\": 3, "
           "\"other\": 5, \"truncated\": 6}, \"in\": {\"clamped\": 8, \"inserted\": 9, "
           "\"unchanged\": 10, "
           "\"malformed\": 12, \"other\": 14, \"truncated\": 15}}",
           "\"mss_clamp_bytes\": {\"ipv4\": 1360, \"ipv6\": 0}",
           "\"interface_present\": 0",
       }) {
    BOOST_TEST(j.find(part) != std::string::npos, part);
  }
  BOOST_TEST(j.find("pmtu_bytes") == std::string::npos);
  BOOST_TEST(render_json(full()).find("\"rtt_seconds\": 0.0235") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(json_without_tunnels_is_exact) {
  StatsSnapshot s;
  s.version = "0.1.0";
  s.start_time = 10;
  s.now = 12.5;
  s.queue_num = 1;
  const std::string j = render_json(s);
  const std::string want =
      "{\n"
      "  \"version\": \"0.1.0\",\n"
      "  \"time\": 12.5,\n"
      "  \"uptime_seconds\": 2.5,\n"
      "  \"queue_num\": 1,\n"
      "  \"global\": {\n"
      "    \"build_info\": {\"0.1.0\": 1},\n"
      "    \"start_time_seconds\": 10,\n"
      "    \"config_reloads_total\": {\"ok\": 0, \"failed\": 0},\n"
      "    \"queue_packets_total\": 0,\n"
      "    \"queue_verdict_messages_total\": {\"single\": 0, \"batch\": 0},\n"
      "    \"queue_modified_total\": 0,\n"
      "    \"queue_dropped_total\": {\"id_gap\": 0, \"kernel_queue\": 0, \"kernel_user\": 0},\n"
      "    \"queue_overruns_total\": 0,\n"
      "    \"queue_errors_total\": {\"send\": 0, \"bad_message\": 0},\n"
      "    \"queue_unknown_interface_total\": 0\n"
      "  },\n"
      "  \"tunnels\": []\n"
      "}\n";
  BOOST_TEST(j == want);
}

BOOST_AUTO_TEST_CASE(status_line_is_one_short_line) {
  BOOST_TEST(status_line(known()) == "ppp0: 22 clamped, 84 bypassed; tun0: absent");
  StatsSnapshot s = full();
  s.tunnels[0].state = "up";
  BOOST_TEST(status_line(s) == "ppp0: up, 22 clamped, pmtu 1400, 84 bypassed; tun0: absent");
  BOOST_TEST(status_line(StatsSnapshot{}) == "no tunnels configured");
}

BOOST_AUTO_TEST_CASE(table_has_a_column_per_tunnel) {
  const std::string t = render_table(known());
  BOOST_TEST(t.find("tunshim 0.1.0, up 1m40s, queue 4770: 11 packets, 7 rewritten") == 0);
  BOOST_TEST(t.find("\ntunnel                    ppp0") != std::string::npos, t);
  BOOST_TEST(t.find("SYN out clamped/inserted  4 / 1") != std::string::npos, t);
  BOOST_TEST(t.find("SYN in clamped/inserted   8 / 9") != std::string::npos, t);
  BOOST_TEST(t.find("MSS target v4/v6          1300 / 1280") != std::string::npos, t);
  BOOST_TEST(t.find("1360 / off") != std::string::npos, t);
  BOOST_TEST(t.find("path MTU                  -") != std::string::npos, t);
  const std::string f = render_table(full());
  BOOST_TEST(f.find("23.5 ms (20.0 ms - 125.0 ms)") != std::string::npos, f);
  BOOST_TEST(f.find("100 / 98") != std::string::npos, f);
}

// The "last hook" line: which list, which command, how it ended, when, how long.
BOOST_AUTO_TEST_CASE(last_hook_line_names_hook_index_result_time_and_duration) {
  LastHookRun h;
  h.hook = "on_down";
  h.index = 1;
  h.result = HookResult::ok;
  h.duration_ms = 4249;
  BOOST_TEST(describe_last_hook(h, "12:03:11") == "on_down #1 exit 0, 12:03:11 (4.2 s)");
  h.hook = "on_up";
  h.index = 2;
  h.result = HookResult::failed;
  h.exit_status = 3;
  h.duration_ms = 50;
  BOOST_TEST(describe_last_hook(h, "00:00:01") == "on_up #2 exit 3, 00:00:01 (0.1 s)");
  h.exit_status = 0;
  h.term_signal = 11;  // died of a signal nobody sent it: a crash
  BOOST_TEST(describe_last_hook(h, "t") == "on_up #2 killed by SIGSEGV, t (0.1 s)");
  h.result = HookResult::timeout;
  h.term_signal = 15;
  h.duration_ms = 30000;
  BOOST_TEST(describe_last_hook(h, "t") == "on_up #2 timeout (SIGTERM), t (30.0 s)");
  h.term_signal = 9;
  h.duration_ms = 32001;
  BOOST_TEST(describe_last_hook(h, "t") == "on_up #2 timeout (SIGKILL), t (32.0 s)");
  h.result = HookResult::spawn_error;
  h.term_signal = 0;
  h.exit_status = -1;
  h.duration_ms = 0;
  BOOST_TEST(describe_last_hook(h, "t") == "on_up #2 could not start, t (0.0 s)");
}

BOOST_AUTO_TEST_CASE(last_hook_reaches_the_table_and_json) {
  StatsSnapshot s = known();
  s.tunnels[0].last_hook = "on_down #1 exit 0, 12:03:11 (4.2 s)";
  const std::string t = render_table(s);
  BOOST_TEST(t.find("\nlast hook                 on_down #1 exit 0, 12:03:11 (4.2 s)") !=
                 std::string::npos,
             t);
  const std::string j = render_json(s);
  BOOST_TEST(
      j.find("\"last_hook\": \"on_down #1 exit 0, 12:03:11 (4.2 s)\"") != std::string::npos, j);
  // tun0 ran none: the table says "-", the JSON null.
  BOOST_TEST(j.find("\"last_hook\": null") != std::string::npos, j);
}

}  // namespace

BOOST_AUTO_TEST_CASE(clients_dropped_by_server_and_reason) {
  const std::string text = render_prometheus(full());
  BOOST_TEST(
      text.find("tunshim_clients_dropped_total{server=\"http\",reason=\"evicted\"} 3\n") !=
      std::string::npos);
  BOOST_TEST(
      text.find("tunshim_clients_dropped_total{server=\"http\",reason=\"deadline\"} 2\n") !=
      std::string::npos);
  BOOST_TEST(
      text.find("tunshim_clients_dropped_total{server=\"control\",reason=\"unread\"} 0\n") !=
      std::string::npos);
  // Without servers (both off), the family is left out.
  BOOST_TEST(render_prometheus(known()).find("tunshim_clients_dropped_total") ==
             std::string::npos);
}
