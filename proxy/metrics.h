// The metrics registry: what the daemon reports, declared once.
//
// The data path bumps plain integers in per-tunnel structs (counters.h): no lock, no
// allocation, one loop thread. When someone asks (a /metrics scrape, `tunshim stats`, the
// 10 s STATUS= line, SIGUSR1), the daemon copies those numbers into a StatsSnapshot, and
// everything the operator sees is rendered from that copy:
//
//   kMetrics (metrics.cpp)  one row per metric: name, type, help, labels, how to read it
//     -> render_prometheus  text exposition 0.0.4 (GET /metrics)
//     -> render_json        the same numbers as data (GET /stats.json, `tunshim stats --json`)
//   render_table / status_line (stats_report.cpp)  the human view of the same snapshot
//
// Adding a metric: a field in TunnelStats (or StatsSnapshot) that the daemon fills in its
// snapshot, and one row in kMetrics. docs/STATS.md has the recipe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/counters.h"

namespace tunshim::proxy {

// One tunnel as the operator sees it. Optional fields belong to features that fill them
// when they measure something; left empty, their metrics are not exported at all (a
// missing series, not a misleading 0).
struct TunnelStats {
  std::string iface;
  std::string pattern;     // the [[tunnel]]'s pattern ("ppp+") of an instance; "" = exact name
  bool present = false;    // the interface exists now
  std::uint16_t mss4 = 0;  // clamp targets in effect; 0 = clamping off
  std::uint16_t mss6 = 0;
  TunnelCounters syn;  // SYN / SYN-ACK outcomes per direction (data path)

  // Liveness ("up" / "suspect" / "down") once keepalive runs; until then the stats service
  // sets "present" / "absent" from the interface. state_since: unix seconds.
  std::string state;
  double state_since = 0;
  std::optional<bool> up;                            // tunshim_tunnel_up
  std::map<std::string, std::uint64_t> transitions;  // by state entered
  std::optional<std::uint32_t> pmtu;                 // bytes, discovered path MTU
  std::string pmtu_state;                            // search state; "" = no path-MTU discovery
  bool pmtu_confirmed = false;                       // pmtu measured (not the fallback)
  std::optional<std::uint64_t> oversize_dropped;
  std::optional<std::uint64_t> icmp_ptb_sent;
  std::map<std::string, std::uint64_t> guard;  // the guard's other outcomes, by result
  // Passive black-hole symptoms by kind (what the data path can count; docs/DOCTOR.md)
  // and the path-MTU re-checks their bursts started (mss = "auto").
  std::map<std::string, std::uint64_t> symptoms;
  std::optional<std::uint64_t> symptom_rechecks;
  std::optional<std::uint64_t> keepalive_sent;
  std::optional<std::uint64_t> keepalive_replies;
  std::optional<double> rtt_smoothed;  // seconds
  std::optional<double> rtt_min;
  std::optional<double> rtt_max;
  std::map<std::string, std::uint64_t> probes;                             // by result
  std::map<std::pair<std::string, std::string>, std::uint64_t> hook_runs;  // (hook, result)
  std::optional<std::uint64_t> reconnects;
  std::string last_hook;  // one line, e.g. "on_down #1 exit 0 at 12:03:11"; "" = none yet
};

// Clients dropped, by reason (tunshim_clients_dropped_total{server,reason}).
struct ClientDrops {
  std::uint64_t evicted = 0;   // made room for a new connection at the client limit
  std::uint64_t refused = 0;   // at the limit with nothing evictable, or refused by on_accept
  std::uint64_t idle = 0;      // no byte within idle_ms while sending its request
  std::uint64_t deadline = 0;  // request not complete within deadline_ms
  std::uint64_t unread = 0;    // did not take its answer within write_ms
  std::uint64_t total() const noexcept { return evicted + refused + idle + deadline + unread; }
};

// One [[tunnel]] whose interface is a pattern ("ppp+"): its instances now, and the
// counters of every instance it ever had, those of interfaces gone included.
struct PatternStats {
  std::string pattern;
  std::uint64_t instances = 0;  // interfaces matching it now
  std::uint64_t measured = 0;   // of those, with a measured path MTU
  std::uint64_t appeared = 0;   // instances started, ever
  std::uint64_t gone = 0;       // instances ended (interface deleted or renamed away)
  TunnelCounters syn;
  std::uint64_t oversize_dropped = 0;
  std::uint64_t icmp_ptb_sent = 0;
  std::uint64_t keepalive_sent = 0;
  std::uint64_t probes_sent = 0;
  std::uint64_t searches_completed = 0;
  // Of its instances now (summarize_patterns, from the snapshot's tunnels): how many in each
  // state, and the range of the path MTUs measured.
  std::map<std::string, std::uint64_t> states;
  std::uint32_t pmtu_min = 0;  // 0 = none measured
  std::uint32_t pmtu_max = 0;
};

// Everything reported, copied out of the daemon at one instant.
struct StatsSnapshot {
  std::string version;
  double now = 0;         // unix seconds when the snapshot was taken
  double start_time = 0;  // unix seconds when the daemon started
  std::uint16_t queue_num = 0;
  QueueCounters queue;
  std::string datapath;         // "bpf" or "queue" (docs/DATAPATH.md)
  std::string datapath_reason;  // why that one: configured, or what "auto" found
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  // Per server ("http", "control"): clients dropped (stream_server.h).
  std::vector<std::pair<std::string, ClientDrops>> clients_dropped;
  std::vector<TunnelStats> tunnels;
  std::vector<PatternStats> patterns;
  std::uint64_t searches_running = 0;  // path-MTU searches now, and waiting for a place
  std::uint64_t searches_waiting = 0;
};

enum class MetricType : std::uint8_t { counter, gauge };

// One sample value: counters stay exact integers (a double loses them past 2^53).
struct MetricValue {
  bool integer = true;
  std::uint64_t u = 0;
  double d = 0;
};

// Where a row's reader puts its samples: label values in the row's label order.
class Samples {
 public:
  void add(std::initializer_list<std::string_view> labels, std::uint64_t v);
  void add(std::initializer_list<std::string_view> labels, double v);
  void add(std::initializer_list<std::string_view> labels, std::uint32_t v) {
    add(labels, std::uint64_t{v});
  }
  void add(std::initializer_list<std::string_view> labels, std::uint16_t v) {
    add(labels, std::uint64_t{v});
  }

  struct Sample {
    std::vector<std::string> labels;
    MetricValue value;
  };
  const std::vector<Sample>& items() const noexcept { return items_; }
  void clear() noexcept { items_.clear(); }

 private:
  std::vector<Sample> items_;
};

// One metric family. Exactly one of `global` and `tunnel` is set; a per-tunnel metric gets
// the label tunnel="IF" in front of `labels` and is read once per tunnel.
struct MetricDef {
  std::string_view name;  // full Prometheus name; counters end in _total
  MetricType type;
  std::string_view help;
  std::array<std::string_view, 3> labels;  // label names (not counting "tunnel"); "" = unused
  void (*global)(const StatsSnapshot&, Samples&) = nullptr;
  void (*tunnel)(const TunnelStats&, Samples&) = nullptr;

  std::size_t label_count() const noexcept {
    std::size_t n = 0;
    while (n < labels.size() && !labels[n].empty()) ++n;
    return n;
  }
};

// The table, in exposition order.
std::span<const MetricDef> metric_defs();

// Prometheus text exposition format 0.0.4: # HELP / # TYPE, then the samples of each
// family that has any. Families without a sample (features not measuring yet) are left out.
std::string render_prometheus(const StatsSnapshot& s);

// The snapshot as a JSON object: version, times, and per tunnel its state plus every
// metric that has samples, keyed by the name without "tunshim_", nested by label values:
//   "syn_total": {"out": {"clamped": 3, ...}, "in": {...}}
std::string render_json(const StatsSnapshot& s);

// Fills each pattern's `states` and path-MTU range from the snapshot's tunnels (once their
// states are final), so a view of fewer tunnels still carries every pattern's summary.
void summarize_patterns(StatsSnapshot& s);

// Human views (stats_report.cpp). The table has one column per tunnel and one row per
// quantity; "-" marks what is not measured (yet).
std::string render_table(const StatsSnapshot& s);
// One line for systemd's STATUS=, e.g. "ppp0: 12 clamped; tun0: absent".
std::string status_line(const StatsSnapshot& s);

// Checks the table itself (names, suffixes, label names, duplicates); the unit test calls
// it so a bad row fails the build's tests rather than a scrape. Returns problems, one a line.
std::vector<std::string> check_metric_defs();

// Escaping helpers, exposed for tests.
std::string prom_escape_label(std::string_view v);
std::string json_string(std::string_view v);

}  // namespace tunshim::proxy
