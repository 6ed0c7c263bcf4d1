// The human views of a StatsSnapshot: `tunshim stats` (and the SIGUSR1 log) and STATUS=.
#include <fmt/format.h>

#include <ctime>

#include "proxy/metrics.h"

namespace tunshim::proxy {
namespace {

constexpr const char* kNone = "-";  // not measured (yet)

std::string duration(double seconds) {
  if (seconds < 0) seconds = 0;
  auto s = static_cast<std::uint64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string local_time(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

template <typename V>
std::string or_none(const std::optional<V>& v) {
  return v ? fmt::format("{}", *v) : kNone;
}

std::string ms(const std::optional<double>& seconds) {
  return seconds ? fmt::format("{:.1f} ms", *seconds * 1000.0) : kNone;
}

std::string mss(std::uint16_t v) { return v != 0 ? std::to_string(v) : "off"; }

struct Row {
  std::string label;
  std::string (*cell)(const TunnelStats&, double now);
};

// One row per quantity the operator asks about first; column per tunnel.
const Row kRows[] = {
    {"state", [](const TunnelStats& t,
                 double) { return t.state.empty() ? std::string(kNone) : t.state; }},
    {"since",
     [](const TunnelStats& t, double now) {
       return t.state_since > 0
                  ? local_time(t.state_since) + " (" + duration(now - t.state_since) + ")"
                  : std::string(kNone);
     }},
    // "1372 (measured)"; "1200 (fallback, search)" until a search completes; "-" without one.
    {"path MTU",
     [](const TunnelStats& t, double) {
       if (t.pmtu_state.empty()) return or_none(t.pmtu);
       if (!t.pmtu) return fmt::format("- ({})", t.pmtu_state);
       return t.pmtu_confirmed
                  ? fmt::format("{} (measured{})", *t.pmtu,
                                t.pmtu_state == "complete" ? "" : ", " + t.pmtu_state)
                  : fmt::format("{} (fallback, {})", *t.pmtu, t.pmtu_state);
     }},
    {"MSS target v4/v6",
     [](const TunnelStats& t, double) { return mss(t.mss4) + " / " + mss(t.mss6); }},
    {"SYN out clamped/inserted",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.out.clamped, t.syn.out.inserted);
     }},
    {"SYN in clamped/inserted",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.in.clamped, t.syn.in.inserted);
     }},
    {"SYN unchanged out/in",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.out.unchanged, t.syn.in.unchanged);
     }},
    {"SYN malformed+truncated",
     [](const TunnelStats& t, double) {
       return fmt::format("{}", t.syn.out.malformed + t.syn.in.malformed + t.syn.out.truncated +
                                    t.syn.in.truncated);
     }},
    {"SYN bypassed out/in",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.out.bypassed, t.syn.in.bypassed);
     }},
    {"oversize dropped/ICMP",
     [](const TunnelStats& t, double) {
       return or_none(t.oversize_dropped) + " / " + or_none(t.icmp_ptb_sent);
     }},
    {"keepalives sent/answered",
     [](const TunnelStats& t, double) {
       return or_none(t.keepalive_sent) + " / " + or_none(t.keepalive_replies);
     }},
    {"RTT (min-max)",
     [](const TunnelStats& t, double) {
       if (!t.rtt_smoothed) return std::string(kNone);
       return ms(t.rtt_smoothed) + " (" + ms(t.rtt_min) + " - " + ms(t.rtt_max) + ")";
     }},
    {"reconnects", [](const TunnelStats& t, double) { return or_none(t.reconnects); }},
    {"last hook",
     [](const TunnelStats& t, double) {
       return t.last_hook.empty() ? std::string(kNone) : t.last_hook;
     }},
};

}  // namespace

std::string render_table(const StatsSnapshot& s) {
  const QueueCounters& q = s.queue;
  std::string out = fmt::format(
      "tunshim {}, up {}, queue {}: {} packets, {} rewritten, {} lost (id gaps {}, kernel {}), "
      "{} unknown interface; reloads {} ok, {} failed\n",
      s.version, duration(s.now - s.start_time), s.queue_num, q.packets, q.modified,
      q.id_gaps + q.kernel_queue_dropped + q.kernel_user_dropped, q.id_gaps,
      q.kernel_queue_dropped + q.kernel_user_dropped, q.unknown_iface, s.reloads_ok,
      s.reloads_failed);
  if (s.tunnels.empty()) return out + "no tunnels configured\n";

  std::vector<std::vector<std::string>> cols;  // [tunnel][row]
  std::size_t label_w = 6;
  for (const Row& r : kRows) label_w = std::max(label_w, r.label.size());
  std::vector<std::size_t> widths;
  for (const TunnelStats& t : s.tunnels) {
    std::vector<std::string> c;
    std::size_t w = t.iface.size();
    for (const Row& r : kRows) {
      c.push_back(r.cell(t, s.now));
      w = std::max(w, c.back().size());
    }
    cols.push_back(std::move(c));
    widths.push_back(w);
  }
  auto line = [&](const std::string& label, auto cell) {
    std::string l = fmt::format("{:<{}}", label, label_w);
    for (std::size_t i = 0; i < cols.size(); ++i)
      l += fmt::format("  {:<{}}", cell(i), widths[i]);
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line("tunnel", [&](std::size_t i) { return s.tunnels[i].iface; });
  for (std::size_t r = 0; r < std::size(kRows); ++r) {
    line(kRows[r].label, [&](std::size_t i) { return cols[i][r]; });
  }
  return out;
}

std::string status_line(const StatsSnapshot& s) {
  if (s.tunnels.empty()) return "no tunnels configured";
  std::string out;
  for (const TunnelStats& t : s.tunnels) {
    if (!out.empty()) out += "; ";
    const std::uint64_t clamped =
        t.syn.out.clamped + t.syn.out.inserted + t.syn.in.clamped + t.syn.in.inserted;
    const std::uint64_t bypassed = t.syn.out.bypassed + t.syn.in.bypassed;
    out += t.iface + ": ";
    // Liveness, once it runs, says more than presence; "present" is implied by a count.
    if (!t.present) {
      out += "absent";
      if (clamped > 0) out += fmt::format(", {} clamped", clamped);
    } else {
      if (!t.state.empty() && t.state != "present") out += t.state + ", ";
      out += fmt::format("{} clamped", clamped);
    }
    if (t.pmtu) out += fmt::format(", pmtu {}", *t.pmtu);
    if (bypassed > 0) out += fmt::format(", {} bypassed", bypassed);
  }
  return out;
}

}  // namespace tunshim::proxy
