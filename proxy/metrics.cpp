#include "proxy/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace tunshim::proxy {
namespace {

using T = MetricType;

// Readers shared by rows.
constexpr std::pair<std::string_view, std::uint64_t DirectionCounters::*> kSynActions[] = {
    {"clamped", &DirectionCounters::clamped},     {"inserted", &DirectionCounters::inserted},
    {"unchanged", &DirectionCounters::unchanged}, {"malformed", &DirectionCounters::malformed},
    {"other", &DirectionCounters::other},         {"truncated", &DirectionCounters::truncated},
};

void syn_total(const TunnelStats& t, Samples& s) {
  for (auto [dir, c] : {std::pair{"out", &t.syn.out}, std::pair{"in", &t.syn.in}}) {
    for (auto [action, field] : kSynActions) s.add({dir, action}, c->*field);
  }
}

template <typename V>
void opt(Samples& s, const std::optional<V>& v) {
  if (v) s.add({}, *v);
}

void by_key(Samples& s, const std::map<std::string, std::uint64_t>& m) {
  for (const auto& [k, v] : m) s.add({k}, v);
}

// ---- THE TABLE
// ------------------------------------------------------------------------------- One row per
// metric, in exposition order. Prometheus conventions: counters end in _total, base units
// (bytes, seconds) in the name. A row whose reader adds no sample is not exported. Label values
// a reader passes must match the row's labels in number and order (check_metric_defs() and the
// unit test catch a mismatch).
const MetricDef kMetrics[] = {
    // Process-wide.
    {"tunshim_build_info",
     T::gauge,
     "Always 1; the version label says which tunshim is running.",
     {"version"},
     [](const StatsSnapshot& s, Samples& o) { o.add({s.version}, std::uint64_t{1}); }},
    {"tunshim_datapath_info",
     T::gauge,
     "Always 1; datapath says where packets are clamped (bpf: tc programs in the kernel, "
     "queue: NFQUEUE), reason why.",
     {"datapath", "reason"},
     [](const StatsSnapshot& s, Samples& o) {
       if (!s.datapath.empty()) o.add({s.datapath, s.datapath_reason}, std::uint64_t{1});
     }},
    {"tunshim_start_time_seconds",
     T::gauge,
     "When the daemon started, in seconds since the Unix epoch.",
     {},
     [](const StatsSnapshot& s, Samples& o) { o.add({}, s.start_time); }},
    {"tunshim_config_reloads_total",
     T::counter,
     "Config reloads (SIGHUP) by result.",
     {"result"},
     [](const StatsSnapshot& s, Samples& o) {
       o.add({"ok"}, s.reloads_ok);
       o.add({"failed"}, s.reloads_failed);
     }},
    {"tunshim_clients_dropped_total",
     T::counter,
     "Clients of the stats HTTP server and the control socket that were dropped or refused, by "
     "reason: evicted (room made for a new one at the client limit), refused (at the limit "
     "with "
     "every client busy, or not root on the control socket), idle (a pause while sending the "
     "request), deadline (request not complete in time), unread (answer not read in time).",
     {"server", "reason"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& [server, d] : s.clients_dropped) {
         o.add({server, "evicted"}, d.evicted);
         o.add({server, "refused"}, d.refused);
         o.add({server, "idle"}, d.idle);
         o.add({server, "deadline"}, d.deadline);
         o.add({server, "unread"}, d.unread);
       }
     }},
    {"tunshim_queue_packets_total",
     T::counter,
     "Packets received from the NFQUEUE.",
     {},
     [](const StatsSnapshot& s, Samples& o) { o.add({}, s.queue.packets); }},
    {"tunshim_queue_verdict_messages_total",
     T::counter,
     "Verdict messages sent to the kernel: single (one packet) or batch (a run of unchanged "
     "packets).",
     {"kind"},
     [](const StatsSnapshot& s, Samples& o) {
       o.add({"single"}, s.queue.verdicts);
       o.add({"batch"}, s.queue.batches);
     }},
    {"tunshim_queue_modified_total",
     T::counter,
     "Packets returned to the kernel rewritten (MSS clamped or inserted).",
     {},
     [](const StatsSnapshot& s, Samples& o) { o.add({}, s.queue.modified); }},
    {"tunshim_queue_dropped_total",
     T::counter,
     "Queued packets lost before tunshim saw them: id_gap (netlink socket overrun), "
     "kernel_queue "
     "and kernel_user (/proc/net/netfilter/nfnetlink_queue; 0 while fail-open is on).",
     {"reason"},
     [](const StatsSnapshot& s, Samples& o) {
       o.add({"id_gap"}, s.queue.id_gaps);
       o.add({"kernel_queue"}, s.queue.kernel_queue_dropped);
       o.add({"kernel_user"}, s.queue.kernel_user_dropped);
     }},
    {"tunshim_queue_overruns_total",
     T::counter,
     "recv() on the queue socket reported ENOBUFS.",
     {},
     [](const StatsSnapshot& s, Samples& o) { o.add({}, s.queue.enobufs); }},
    {"tunshim_queue_errors_total",
     T::counter,
     "Queue errors: verdict sends that failed, netlink messages that could not be parsed.",
     {"kind"},
     [](const StatsSnapshot& s, Samples& o) {
       o.add({"send"}, s.queue.send_errors);
       o.add({"bad_message"}, s.queue.bad_messages);
     }},
    {"tunshim_queue_unknown_interface_total",
     T::counter,
     "Queued packets whose interface belongs to no configured tunnel (accepted unchanged).",
     {},
     [](const StatsSnapshot& s, Samples& o) { o.add({}, s.queue.unknown_iface); }},
    {"tunshim_pmtu_searches",
     T::gauge,
     "Path-MTU searches running now, and waiting for a place (max_concurrent_searches).",
     {"state"},
     [](const StatsSnapshot& s, Samples& o) {
       // Exported when some tunnel searches (like the per-tunnel path-MTU families).
       const bool any = std::any_of(s.tunnels.begin(), s.tunnels.end(),
                                    [](const TunnelStats& t) { return !t.pmtu_state.empty(); });
       if (!any && s.searches_running + s.searches_waiting == 0) return;
       o.add({"running"}, s.searches_running);
       o.add({"waiting"}, s.searches_waiting);
     }},

    // Per interface pattern ("ppp+"): every instance it ever had, gone ones included. The
    // instances themselves are tunnels below (tunnel="ppp7") while their interface exists.
    {"tunshim_pattern_interfaces",
     T::gauge,
     "Interfaces matching the pattern now, each a tunnel of its own.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.instances);
     }},
    {"tunshim_pattern_interfaces_measured",
     T::gauge,
     "Of the interfaces matching the pattern now, those with a measured path MTU.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.measured);
     }},
    {"tunshim_pattern_interfaces_appeared_total",
     T::counter,
     "Interfaces that appeared matching the pattern (tunnels started for it).",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.appeared);
     }},
    {"tunshim_pattern_interfaces_gone_total",
     T::counter,
     "Interfaces matching the pattern that were deleted or renamed away (tunnels ended).",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.gone);
     }},
    {"tunshim_pattern_syn_total",
     T::counter,
     "tunshim_syn_total summed over every interface the pattern ever matched.",
     {"pattern", "direction", "action"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) {
         for (auto [dir, c] : {std::pair{"out", &p.syn.out}, std::pair{"in", &p.syn.in}}) {
           for (auto [action, field] : kSynActions) o.add({p.pattern, dir, action}, c->*field);
         }
       }
     }},
    {"tunshim_pattern_oversize_dropped_total",
     T::counter,
     "tunshim_oversize_dropped_total summed over every interface the pattern ever matched.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.oversize_dropped);
     }},
    {"tunshim_pattern_icmp_ptb_sent_total",
     T::counter,
     "tunshim_icmp_ptb_sent_total summed over every interface the pattern ever matched.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.icmp_ptb_sent);
     }},
    {"tunshim_pattern_keepalive_sent_total",
     T::counter,
     "Keepalive echoes sent, summed over every interface the pattern ever matched.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.keepalive_sent);
     }},
    {"tunshim_pattern_probes_sent_total",
     T::counter,
     "Path-MTU probes sent, summed over every interface the pattern ever matched.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.probes_sent);
     }},
    {"tunshim_pattern_pmtu_searches_completed_total",
     T::counter,
     "Path-MTU searches that completed, summed over every interface the pattern ever matched.",
     {"pattern"},
     [](const StatsSnapshot& s, Samples& o) {
       for (const auto& p : s.patterns) o.add({p.pattern}, p.searches_completed);
     }},

    // Per tunnel (label tunnel="IF" first).
    {"tunshim_interface_present",
     T::gauge,
     "1 if the tunnel's interface exists now, else 0.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { o.add({}, std::uint64_t{t.present ? 1U : 0U}); }},
    {"tunshim_tunnel_up",
     T::gauge,
     "1 while keepalives show the tunnel passing traffic, else 0.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) {
       if (t.up) o.add({}, std::uint64_t{*t.up ? 1U : 0U});
     }},
    {"tunshim_tunnel_state_transitions_total",
     T::counter,
     "Liveness state changes, by the state entered.",
     {"to"},
     nullptr,
     [](const TunnelStats& t, Samples& o) { by_key(o, t.transitions); }},
    {"tunshim_pmtu_bytes",
     T::gauge,
     "Path MTU through the tunnel, as last discovered.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.pmtu); }},
    {"tunshim_mss_clamp_bytes",
     T::gauge,
     "MSS target SYNs are clamped to, per IP family; 0 = clamping off.",
     {"family"},
     nullptr,
     [](const TunnelStats& t, Samples& o) {
       o.add({"ipv4"}, t.mss4);
       o.add({"ipv6"}, t.mss6);
     }},
    {"tunshim_syn_total",
     T::counter,
     "SYN and SYN-ACK packets queued to tunshim, by direction (out: leaving by the interface) "
     "and "
     "what the clamp did (other: not TCP SYN, fragment, no room, family off; truncated: "
     "partial copy).",
     {"direction", "action"},
     nullptr,
     syn_total},
    {"tunshim_syn_bypassed_total",
     T::counter,
     "SYNs that matched the tunnel's queue rules but passed unclamped (queue full or tunshim "
     "not "
     "reading; fail-open). A lower bound, updated every 10 s.",
     {"direction"},
     nullptr,
     [](const TunnelStats& t, Samples& o) {
       o.add({"out"}, t.syn.out.bypassed);
       o.add({"in"}, t.syn.in.bypassed);
     }},
    {"tunshim_oversize_dropped_total",
     T::counter,
     "Oversize DF packets dropped by the guard.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.oversize_dropped); }},
    {"tunshim_icmp_ptb_sent_total",
     T::counter,
     "ICMP frag-needed / ICMPv6 packet-too-big sent to senders.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.icmp_ptb_sent); }},
    {"tunshim_guard_packets_total",
     T::counter,
     "Packets the guard rule queued, by what the guard did besides drop-and-answer: passed "
     "(not "
     "oversize DF after all, e.g. segments of a GSO packet), malformed (passed), rate_limited, "
     "not_answered (ICMP rules forbid an error), send_error (the last three dropped).",
     {"result"},
     nullptr,
     [](const TunnelStats& t, Samples& o) { by_key(o, t.guard); }},
    {"tunshim_blackhole_symptoms_total",
     T::counter,
     "Passive black-hole symptoms seen on the tunnel, by kind: full_size_retransmit (TCP "
     "segments of full size sent again; eBPF data path), icmp_too_big (frag-needed / "
     "packet-too-big arriving; eBPF data path), oversize_df (DF packets above the measured "
     "path MTU; on the queue path those the guard dropped).",
     {"symptom"},
     nullptr,
     [](const TunnelStats& t, Samples& o) { by_key(o, t.symptoms); }},
    {"tunshim_pmtu_symptom_rechecks_total",
     T::counter,
     "Path-MTU re-checks started at once by a burst of black-hole symptoms (mss = \"auto\").",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.symptom_rechecks); }},
    {"tunshim_keepalive_sent_total",
     T::counter,
     "Keepalive echoes sent.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.keepalive_sent); }},
    {"tunshim_keepalive_replies_total",
     T::counter,
     "Keepalive echoes answered.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.keepalive_replies); }},
    {"tunshim_rtt_seconds",
     T::gauge,
     "Smoothed round-trip time of keepalive echoes.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.rtt_smoothed); }},
    {"tunshim_rtt_min_seconds",
     T::gauge,
     "Smallest keepalive round-trip time seen.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.rtt_min); }},
    {"tunshim_rtt_max_seconds",
     T::gauge,
     "Largest keepalive round-trip time seen.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.rtt_max); }},
    {"tunshim_probes_total",
     T::counter,
     "Path-MTU probes, by result.",
     {"result"},
     nullptr,
     [](const TunnelStats& t, Samples& o) { by_key(o, t.probes); }},
    {"tunshim_hook_runs_total",
     T::counter,
     "on_down / on_up commands run, by hook and result.",
     {"hook", "result"},
     nullptr,
     [](const TunnelStats& t, Samples& o) {
       for (const auto& [k, v] : t.hook_runs) o.add({k.first, k.second}, v);
     }},
    {"tunshim_reconnects_total",
     T::counter,
     "Times the tunnel came back up after being down or gone.",
     {},
     nullptr,
     [](const TunnelStats& t, Samples& o) { opt(o, t.reconnects); }},
};

// ---- rendering
// --------------------------------------------------------------------------------

std::string format_value(const MetricValue& v) {
  if (v.integer) return fmt::format("{}", v.u);
  if (std::isnan(v.d)) return "NaN";
  if (std::isinf(v.d)) return v.d > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v.d);
}

std::string json_number(const MetricValue& v) {
  if (v.integer) return fmt::format("{}", v.u);
  if (!std::isfinite(v.d)) return "null";
  return fmt::format("{}", v.d);
}

std::string prom_escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Reads one row for one scope: the global snapshot, or one tunnel.
void read_row(const MetricDef& d, const StatsSnapshot& s, const TunnelStats* t, Samples& out) {
  out.clear();
  if (t != nullptr && d.tunnel != nullptr) d.tunnel(*t, out);
  if (t == nullptr && d.global != nullptr) d.global(s, out);
}

void write_samples(std::string& out, const MetricDef& d, const Samples& samples,
                   const TunnelStats* t) {
  const std::size_t n = d.label_count();
  for (const auto& smp : samples.items()) {
    out += d.name;
    std::string labels;
    if (t != nullptr) labels += "tunnel=\"" + prom_escape_label(t->iface) + "\"";
    // A reader passing the wrong number of label values is a bug in the table; the extra or
    // missing ones are dropped rather than producing an exposition promtool would reject.
    for (std::size_t i = 0; i < n && i < smp.labels.size(); ++i) {
      if (!labels.empty()) labels += ',';
      labels += fmt::format("{}=\"{}\"", d.labels[i], prom_escape_label(smp.labels[i]));
    }
    if (!labels.empty()) out += "{" + labels + "}";
    out += ' ';
    out += format_value(smp.value);
    out += '\n';
  }
}

// JSON: nested objects keyed by label values, in the order the reader added them.
struct JsonNode {
  // Parallel vectors: a vector of the incomplete JsonNode itself is allowed (C++17), a
  // vector of pairs holding one is not.
  std::vector<std::string> keys;
  std::vector<JsonNode> nodes;
  std::optional<MetricValue> value;

  JsonNode& child(const std::string& key) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return nodes[i];
    }
    keys.push_back(key);
    nodes.emplace_back();
    return nodes.back();
  }
  void write(std::string& out) const {
    if (value) {
      out += json_number(*value);
      return;
    }
    out += '{';
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i > 0) out += ", ";
      out += json_string(keys[i]) + ": ";
      nodes[i].write(out);
    }
    out += '}';
  }
};

// Writes `"name": value-or-tree` for every row of one scope that has samples.
void write_json_metrics(std::string& out, const StatsSnapshot& s, const TunnelStats* t,
                        const std::string& indent) {
  Samples samples;
  bool first = true;
  for (const MetricDef& d : kMetrics) {
    if ((t == nullptr) != (d.global != nullptr)) continue;
    read_row(d, s, t, samples);
    if (samples.items().empty()) continue;
    JsonNode root;
    const std::size_t n = d.label_count();
    for (const auto& smp : samples.items()) {
      JsonNode* node = &root;
      for (std::size_t i = 0; i < n && i < smp.labels.size(); ++i)
        node = &node->child(smp.labels[i]);
      node->value = smp.value;
    }
    out += first ? "\n" : ",\n";
    first = false;
    std::string_view key = d.name;
    if (key.starts_with("tunshim_")) key.remove_prefix(8);
    out += indent + json_string(key) + ": ";
    root.write(out);
  }
  out += "\n";
}

bool valid_name(std::string_view n, bool label) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return !(label && n.starts_with("__"));
}

}  // namespace

void Samples::add(std::initializer_list<std::string_view> labels, std::uint64_t v) {
  items_.push_back(
      {std::vector<std::string>(labels.begin(), labels.end()), MetricValue{true, v, 0}});
}

void Samples::add(std::initializer_list<std::string_view> labels, double v) {
  items_.push_back(
      {std::vector<std::string>(labels.begin(), labels.end()), MetricValue{false, 0, v}});
}

std::span<const MetricDef> metric_defs() { return kMetrics; }

std::string prom_escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string json_string(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (u < 0x20)
      out += fmt::format("\\u{:04x}", u);
    else
      out += c;
  }
  return out + "\"";
}

std::string render_prometheus(const StatsSnapshot& s) {
  std::string out;
  Samples samples;
  for (const MetricDef& d : kMetrics) {
    // All samples of a family must be contiguous, so a per-tunnel family is read for every
    // tunnel before the next family starts.
    std::string body;
    if (d.global != nullptr) {
      read_row(d, s, nullptr, samples);
      write_samples(body, d, samples, nullptr);
    } else {
      for (const TunnelStats& t : s.tunnels) {
        read_row(d, s, &t, samples);
        write_samples(body, d, samples, &t);
      }
    }
    if (body.empty()) continue;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", d.name, prom_escape_help(d.help), d.name,
                       d.type == MetricType::counter ? "counter" : "gauge");
    out += body;
  }
  return out;
}

std::string render_json(const StatsSnapshot& s) {
  std::string out = "{\n";
  out += fmt::format("  \"version\": {},\n", json_string(s.version));
  out += fmt::format("  \"time\": {},\n", json_number(MetricValue{false, 0, s.now}));
  out += fmt::format(
      "  \"uptime_seconds\": {},\n",
      json_number(MetricValue{false, 0, s.now > s.start_time ? s.now - s.start_time : 0.0}));
  out += fmt::format("  \"queue_num\": {},\n", s.queue_num);
  if (!s.datapath.empty()) {
    out += fmt::format("  \"datapath\": {},\n", json_string(s.datapath));
    out += fmt::format("  \"datapath_reason\": {},\n", json_string(s.datapath_reason));
  }
  out += "  \"global\": {";
  write_json_metrics(out, s, nullptr, "    ");
  out += "  },\n";
  // Per interface pattern: what `tunshim stats` says on its summary line (the same totals
  // as the tunshim_pattern_* metrics in "global", plus its instances' states and path MTUs).
  if (!s.patterns.empty()) {
    out += "  \"patterns\": [";
    for (std::size_t i = 0; i < s.patterns.size(); ++i) {
      const PatternStats& p = s.patterns[i];
      out += i == 0 ? "\n" : ",\n";
      out += fmt::format("    {{\n      \"pattern\": {},\n", json_string(p.pattern));
      out += fmt::format(
          "      \"interfaces\": {},\n      \"measured\": {},\n      \"appeared\": {},\n"
          "      \"gone\": {},\n",
          p.instances, p.measured, p.appeared, p.gone);
      out += "      \"states\": {";
      bool first_state = true;
      for (const auto& [state, n] : p.states) {
        out += fmt::format("{}{}: {}", first_state ? "" : ", ", json_string(state), n);
        first_state = false;
      }
      out += "},\n";
      auto mtu = [](std::uint32_t v) {
        return v != 0 ? std::to_string(v) : std::string("null");
      };
      out += fmt::format("      \"pmtu_min\": {},\n      \"pmtu_max\": {},\n", mtu(p.pmtu_min),
                         mtu(p.pmtu_max));
      out += "      \"syn_total\": {";
      for (auto [dir, c] : {std::pair{"out", &p.syn.out}, std::pair{"in", &p.syn.in}}) {
        out += fmt::format("{}\"{}\": {{", dir[0] == 'o' ? "" : ", ", dir);
        bool first_action = true;
        for (auto [action, field] : kSynActions) {
          out += fmt::format("{}\"{}\": {}", first_action ? "" : ", ", action, c->*field);
          first_action = false;
        }
        out += "}";
      }
      out += "},\n";
      out += fmt::format("      \"syn_bypassed_total\": {{\"out\": {}, \"in\": {}}},\n",
                         p.syn.out.bypassed, p.syn.in.bypassed);
      out += fmt::format(
          "      \"oversize_dropped_total\": {},\n      \"icmp_ptb_sent_total\": {},\n"
          "      \"keepalive_sent_total\": {},\n      \"probes_sent_total\": {},\n"
          "      \"pmtu_searches_completed_total\": {}\n    }}",
          p.oversize_dropped, p.icmp_ptb_sent, p.keepalive_sent, p.probes_sent,
          p.searches_completed);
    }
    out += "\n  ],\n";
  }
  out += "  \"tunnels\": [";
  bool first = true;
  for (const TunnelStats& t : s.tunnels) {
    out += first ? "\n" : ",\n";
    first = false;
    out += "    {\n";
    out += fmt::format("      \"interface\": {},\n", json_string(t.iface));
    out += fmt::format("      \"pattern\": {},\n",
                       t.pattern.empty() ? "null" : json_string(t.pattern));
    out += fmt::format("      \"state\": {},\n", json_string(t.state));
    out += fmt::format("      \"state_since\": {},\n",
                       json_number(MetricValue{false, 0, t.state_since}));
    out += fmt::format("      \"last_hook\": {},\n",
                       t.last_hook.empty() ? "null" : json_string(t.last_hook));
    // The path-MTU search: "complete" with pmtu_confirmed once measured; null without one.
    out += fmt::format("      \"pmtu_state\": {},\n",
                       t.pmtu_state.empty() ? "null" : json_string(t.pmtu_state));
    out += fmt::format("      \"pmtu_confirmed\": {},\n", t.pmtu_confirmed ? "true" : "false");
    out += "      \"metrics\": {";
    write_json_metrics(out, s, &t, "        ");
    out += "      }\n    }";
  }
  out += first ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

void summarize_patterns(StatsSnapshot& s) {
  std::map<std::string_view, PatternStats*> by_name;
  for (PatternStats& p : s.patterns) {
    p.states.clear();
    p.pmtu_min = p.pmtu_max = 0;
    by_name[p.pattern] = &p;
  }
  for (const TunnelStats& t : s.tunnels) {
    if (t.pattern.empty()) continue;
    const auto it = by_name.find(t.pattern);
    if (it == by_name.end()) continue;
    PatternStats& p = *it->second;
    ++p.states[t.state.empty() ? std::string("present") : t.state];
    if (!t.pmtu_confirmed || !t.pmtu) continue;
    p.pmtu_min = p.pmtu_min == 0 ? *t.pmtu : std::min(p.pmtu_min, *t.pmtu);
    p.pmtu_max = std::max(p.pmtu_max, *t.pmtu);
  }
}

std::vector<std::string> check_metric_defs() {
  std::vector<std::string> problems;
  std::set<std::string_view> names;
  for (const MetricDef& d : kMetrics) {
    const std::string n(d.name);
    if (!valid_name(d.name, false)) problems.push_back(n + ": not a valid metric name");
    if (!d.name.starts_with("tunshim_"))
      problems.push_back(n + ": does not start with tunshim_");
    if (!names.insert(d.name).second) problems.push_back(n + ": defined twice");
    const bool total = d.name.ends_with("_total");
    if (d.type == MetricType::counter && !total)
      problems.push_back(n + ": a counter must end in _total");
    if (d.type == MetricType::gauge && total)
      problems.push_back(n + ": a gauge must not end in _total");
    if ((d.global == nullptr) == (d.tunnel == nullptr))
      problems.push_back(n + ": needs exactly one reader");
    if (d.help.empty()) problems.push_back(n + ": no help text");
    std::set<std::string_view> labels;
    if (d.tunnel != nullptr) labels.insert("tunnel");
    for (std::size_t i = 0; i < d.label_count(); ++i) {
      if (!valid_name(d.labels[i], true))
        problems.push_back(n + ": bad label name " + std::string(d.labels[i]));
      if (!labels.insert(d.labels[i]).second)
        problems.push_back(n + ": label " + std::string(d.labels[i]) + " twice");
    }
    for (std::size_t i = d.label_count(); i < d.labels.size(); ++i) {
      if (!d.labels[i].empty()) problems.push_back(n + ": a label after an empty one");
    }
  }
  return problems;
}

}  // namespace tunshim::proxy
