// The human views of a StatsSnapshot: `tunshim stats` (and the SIGUSR1 log), STATUS=, and
// for `tunshim stats --watch` the table with rates and the reader of the daemon's JSON.
#include "proxy/stats_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <map>
#include <vector>

#include "proxy/iface_pattern.h"
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

// The counters a cell shows, in its order, for the rates of `stats --watch`; nullopt where
// the cell shows "-".
using Counts = std::vector<std::optional<std::uint64_t>>;

// The SYN actions as render_json nests them under "syn_total" → direction.
constexpr std::pair<std::string_view, std::uint64_t DirectionCounters::*> kSynActionFields[] = {
    {"clamped", &DirectionCounters::clamped},     {"inserted", &DirectionCounters::inserted},
    {"unchanged", &DirectionCounters::unchanged}, {"malformed", &DirectionCounters::malformed},
    {"other", &DirectionCounters::other},         {"truncated", &DirectionCounters::truncated},
};

struct Row {
  std::string label;
  std::string (*cell)(const TunnelStats&, double now);
  Counts (*counts)(const TunnelStats&) = nullptr;  // only for rows of counters
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
     },
     [](const TunnelStats& t) {
       return Counts{t.syn.out.clamped, t.syn.out.inserted};
     }},
    {"SYN in clamped/inserted",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.in.clamped, t.syn.in.inserted);
     },
     [](const TunnelStats& t) {
       return Counts{t.syn.in.clamped, t.syn.in.inserted};
     }},
    {"SYN unchanged out/in",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.out.unchanged, t.syn.in.unchanged);
     },
     [](const TunnelStats& t) {
       return Counts{t.syn.out.unchanged, t.syn.in.unchanged};
     }},
    {"SYN malformed+truncated",
     [](const TunnelStats& t, double) {
       return fmt::format("{}", t.syn.out.malformed + t.syn.in.malformed + t.syn.out.truncated +
                                    t.syn.in.truncated);
     },
     [](const TunnelStats& t) {
       return Counts{t.syn.out.malformed + t.syn.in.malformed + t.syn.out.truncated +
                     t.syn.in.truncated};
     }},
    {"SYN bypassed out/in",
     [](const TunnelStats& t, double) {
       return fmt::format("{} / {}", t.syn.out.bypassed, t.syn.in.bypassed);
     },
     [](const TunnelStats& t) {
       return Counts{t.syn.out.bypassed, t.syn.in.bypassed};
     }},
    {"oversize dropped/ICMP",
     [](const TunnelStats& t, double) {
       return or_none(t.oversize_dropped) + " / " + or_none(t.icmp_ptb_sent);
     },
     [](const TunnelStats& t) {
       return Counts{t.oversize_dropped, t.icmp_ptb_sent};
     }},
    {"keepalives sent/answered",
     [](const TunnelStats& t, double) {
       return or_none(t.keepalive_sent) + " / " + or_none(t.keepalive_replies);
     },
     [](const TunnelStats& t) {
       return Counts{t.keepalive_sent, t.keepalive_replies};
     }},
    {"RTT (min-max)",
     [](const TunnelStats& t, double) {
       if (!t.rtt_smoothed) return std::string(kNone);
       return ms(t.rtt_smoothed) + " (" + ms(t.rtt_min) + " - " + ms(t.rtt_max) + ")";
     }},
    {"reconnects", [](const TunnelStats& t, double) { return or_none(t.reconnects); },
     [](const TunnelStats& t) { return Counts{t.reconnects}; }},
    {"last hook",
     [](const TunnelStats& t, double) {
       return t.last_hook.empty() ? std::string(kNone) : t.last_hook;
     }},
};

// "1.5/s" per counter since `prev`, joined like the cell's totals; "-" where a counter is
// not measured in both or went backwards (a restarted daemon).
std::string rates(const Counts& now, const Counts& before, double elapsed) {
  std::string out;
  for (std::size_t i = 0; i < now.size(); ++i) {
    if (i > 0) out += " / ";
    const auto& a = now[i];
    const auto b = i < before.size() ? before[i] : std::nullopt;
    if (!a || !b || *a < *b) {
      out += kNone;
      continue;
    }
    out += fmt::format("{:.1f}/s", static_cast<double>(*a - *b) / elapsed);
  }
  return out;
}

// A tunnel's row in the last snapshot, by name (rates of `--watch`).
class Previous {
 public:
  explicit Previous(const StatsSnapshot* s) {
    if (s == nullptr) return;
    for (const TunnelStats& t : s->tunnels) by_name_.emplace(t.iface, &t);
    for (const PatternStats& p : s->patterns) patterns_.emplace(p.pattern, &p);
  }
  const TunnelStats* tunnel(const std::string& iface) const {
    const auto it = by_name_.find(iface);
    return it != by_name_.end() ? it->second : nullptr;
  }
  const PatternStats* pattern(const std::string& name) const {
    const auto it = patterns_.find(name);
    return it != patterns_.end() ? it->second : nullptr;
  }

 private:
  std::map<std::string_view, const TunnelStats*> by_name_;
  std::map<std::string_view, const PatternStats*> patterns_;
};

std::string header(const StatsSnapshot& s, const StatsSnapshot* prev, double elapsed) {
  const QueueCounters& q = s.queue;
  std::string packet_rate;
  if (prev != nullptr) {
    packet_rate = " (" + rates({q.packets}, {prev->queue.packets}, elapsed) + ")";
  }
  std::string out = fmt::format(
      "tunshim {}, up {}, queue {}: {} packets{}, {} rewritten, {} lost (id gaps {}, kernel "
      "{}), "
      "{} unknown interface; reloads {} ok, {} failed\n",
      s.version, duration(s.now - s.start_time), s.queue_num, q.packets, packet_rate,
      q.modified, q.id_gaps + q.kernel_queue_dropped + q.kernel_user_dropped, q.id_gaps,
      q.kernel_queue_dropped + q.kernel_user_dropped, q.unknown_iface, s.reloads_ok,
      s.reloads_failed);
  if (!s.datapath.empty()) out += "datapath " + s.datapath + ": " + s.datapath_reason + "\n";
  return out;
}

// States in the order an operator reads them: the good one first.
int state_rank(const std::string& state) {
  if (state == "up") return 0;
  if (state == "present") return 1;
  if (state == "suspect") return 2;
  if (state == "down") return 3;
  return 4;
}

// Names of instances listed on a pattern's line when they are not up.
constexpr std::size_t kNotUpNamed = 4;

// "ppp+: 287 interfaces now (312 appeared, 25 gone): 280 up, 7 down (ppp17, ...);
// path MTU 1300-1479 (270 of 287 measured); SYN out clamped/inserted 1234 / 5, in 1200 / 0".
// The SYN counts are the pattern's totals, gone instances included.
std::string pattern_line(const StatsSnapshot& s, const PatternStats& p,
                         const PatternStats* before, double elapsed) {
  std::string out = fmt::format("{}: {} interface{} now ({} appeared, {} gone)", p.pattern,
                                p.instances, p.instances == 1 ? "" : "s", p.appeared, p.gone);
  // States, unless all are "present" (no keepalive: the count says it already).
  std::vector<std::pair<std::string, std::uint64_t>> states(p.states.begin(), p.states.end());
  std::stable_sort(states.begin(), states.end(), [](const auto& a, const auto& b) {
    return state_rank(a.first) < state_rank(b.first);
  });
  if (!states.empty() && !(states.size() == 1 && states[0].first == "present")) {
    out += ":";
    for (std::size_t i = 0; i < states.size(); ++i)
      out += fmt::format("{} {} {}", i == 0 ? "" : ",", states[i].second, states[i].first);
    // Which ones are not up, for a closer look with `tunshim stats IFACE`.
    std::vector<std::string_view> names;
    std::size_t more = 0;
    for (const TunnelStats& t : s.tunnels) {
      if (t.pattern != p.pattern || state_rank(t.state) < 2) continue;
      if (names.size() < kNotUpNamed)
        names.push_back(t.iface);
      else
        ++more;
    }
    if (!names.empty()) {
      out += " (";
      for (std::size_t i = 0; i < names.size(); ++i)
        out += (i == 0 ? "" : ", ") + std::string(names[i]);
      if (more > 0) out += fmt::format(", {} more", more);
      out += ")";
    }
  }
  out += "; path MTU ";
  if (p.pmtu_min == 0) {
    out += kNone;
  } else {
    out += p.pmtu_min == p.pmtu_max ? std::to_string(p.pmtu_min)
                                    : fmt::format("{}-{}", p.pmtu_min, p.pmtu_max);
    out += fmt::format(" ({} of {} measured)", p.measured, p.instances);
  }
  const auto syn = [&](const DirectionCounters& c, const DirectionCounters* b) {
    std::string cell = fmt::format("{} / {}", c.clamped, c.inserted);
    if (b != nullptr)
      cell += "  (" + rates({c.clamped, c.inserted}, {b->clamped, b->inserted}, elapsed) + ")";
    return cell;
  };
  out += "; SYN out clamped/inserted " + syn(p.syn.out, before ? &before->syn.out : nullptr) +
         ", in " + syn(p.syn.in, before ? &before->syn.in : nullptr);
  // SYNs that passed unclamped (fail-open) are worth a look whenever there are any.
  if (p.syn.out.bypassed + p.syn.in.bypassed > 0) {
    out += fmt::format("; bypassed out/in {} / {}", p.syn.out.bypassed, p.syn.in.bypassed);
  }
  return out + "\n";
}

// One column per tunnel, one row per quantity (the view of a handful of tunnels).
std::string columns(const StatsSnapshot& s, const std::vector<const TunnelStats*>& shown,
                    const Previous& prev, double elapsed) {
  std::vector<std::vector<std::string>> cols;  // [tunnel][row]
  std::size_t label_w = 6;
  for (const Row& r : kRows) label_w = std::max(label_w, r.label.size());
  std::vector<std::size_t> widths;
  std::vector<std::string> names;
  for (const TunnelStats* tp : shown) {
    const TunnelStats& t = *tp;
    const TunnelStats* before = prev.tunnel(t.iface);
    names.push_back(t.pattern.empty() ? t.iface : t.iface + " (" + t.pattern + ")");
    std::vector<std::string> c;
    std::size_t w = names.back().size();
    for (const Row& r : kRows) {
      c.push_back(r.cell(t, s.now));
      if (before != nullptr && r.counts != nullptr) {
        c.back() += "  (" + rates(r.counts(t), r.counts(*before), elapsed) + ")";
      }
      w = std::max(w, c.back().size());
    }
    cols.push_back(std::move(c));
    widths.push_back(w);
  }
  std::string out;
  auto line = [&](const std::string& label, auto cell) {
    std::string l = fmt::format("{:<{}}", label, label_w);
    for (std::size_t i = 0; i < cols.size(); ++i)
      l += fmt::format("  {:<{}}", cell(i), widths[i]);
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line("tunnel", [&](std::size_t i) { return names[i]; });
  for (std::size_t r = 0; r < std::size(kRows); ++r) {
    line(kRows[r].label, [&](std::size_t i) { return cols[i][r]; });
  }
  return out;
}

// The rows of kRows a line per tunnel shows, under shorter headings.
constexpr std::pair<std::string_view, std::string_view> kListColumns[] = {
    {"state", "state"},
    {"path MTU", "path MTU"},
    {"MSS v4/v6", "MSS target v4/v6"},
    {"SYN out clamped/ins", "SYN out clamped/inserted"},
    {"SYN in clamped/ins", "SYN in clamped/inserted"},
    {"bypassed out/in", "SYN bypassed out/in"},
    {"reconnects", "reconnects"},
};

// One line per tunnel (the view of many): what `grep` and `sort` can work on.
std::string list(const StatsSnapshot& s, const std::vector<const TunnelStats*>& shown,
                 const Previous& prev, double elapsed) {
  std::vector<const Row*> rows;
  for (const auto& [heading, label] : kListColumns) {
    for (const Row& r : kRows) {
      if (r.label == label) rows.push_back(&r);
    }
  }
  std::vector<std::vector<std::string>> cells;  // [line][column]; line 0 the headings
  cells.emplace_back();
  cells[0].emplace_back("tunnel");
  cells[0].emplace_back("pattern");
  for (const auto& [heading, label] : kListColumns) cells[0].emplace_back(heading);
  for (const TunnelStats* tp : shown) {
    const TunnelStats& t = *tp;
    const TunnelStats* before = prev.tunnel(t.iface);
    std::vector<std::string> c{t.iface, t.pattern.empty() ? std::string(kNone) : t.pattern};
    for (const Row* r : rows) {
      c.push_back(r->cell(t, s.now));
      if (before != nullptr && r->counts != nullptr) {
        c.back() += "  (" + rates(r->counts(t), r->counts(*before), elapsed) + ")";
      }
    }
    cells.push_back(std::move(c));
  }
  std::vector<std::size_t> widths(cells[0].size(), 0);
  for (const auto& c : cells) {
    for (std::size_t i = 0; i < c.size(); ++i) widths[i] = std::max(widths[i], c[i].size());
  }
  std::string out;
  for (const auto& c : cells) {
    std::string l;
    for (std::size_t i = 0; i < c.size(); ++i)
      l += fmt::format("{}{:<{}}", i == 0 ? "" : "  ", c[i], widths[i]);
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  }
  return out;
}

std::string tunnels(const StatsSnapshot& s, const std::vector<const TunnelStats*>& shown,
                    const Previous& prev, double elapsed) {
  if (shown.empty()) return {};
  return shown.size() <= kColumnsMax ? columns(s, shown, prev, elapsed)
                                     : list(s, shown, prev, elapsed);
}

const PatternStats* find_pattern(const StatsSnapshot& s, std::string_view name) {
  for (const PatternStats& p : s.patterns) {
    if (p.pattern == name) return &p;
  }
  return nullptr;
}

}  // namespace

std::string render_table(const StatsSnapshot& s) { return render_table(s, nullptr); }

std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev) {
  return render_table(s, prev, StatsView{});
}

std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev,
                         const StatsView& view) {
  const double elapsed = prev != nullptr ? s.now - prev->now : 0;
  if (elapsed <= 0) prev = nullptr;  // the same snapshot twice, or a clock step: no rates
  const Previous before(prev);
  std::string out = header(s, prev, elapsed);
  if (s.tunnels.empty() && s.patterns.empty()) return out + "no tunnels configured\n";

  std::vector<const TunnelStats*> shown;
  if (view.mode == StatsView::Mode::one) {
    const PatternStats* p = find_pattern(s, view.iface);
    if (p != nullptr) out += pattern_line(s, *p, before.pattern(p->pattern), elapsed);
    for (const TunnelStats& t : s.tunnels) {
      if (t.iface == view.iface || (p != nullptr && t.pattern == view.iface))
        shown.push_back(&t);
    }
    if (shown.empty() && p == nullptr) return out + "no tunnel " + view.iface + " now\n";
    return out + tunnels(s, shown, before, elapsed);
  }

  // Instances per pattern now, to tell which patterns are small enough to show in columns.
  std::map<std::string_view, std::size_t> instances;
  for (const TunnelStats& t : s.tunnels) {
    if (!t.pattern.empty()) ++instances[t.pattern];
  }
  for (const PatternStats& p : s.patterns)
    out += pattern_line(s, p, before.pattern(p.pattern), elapsed);
  std::string hidden;
  for (const TunnelStats& t : s.tunnels) {
    const bool small = t.pattern.empty() || instances[t.pattern] <= kPatternRowsShown;
    if (view.mode == StatsView::Mode::all || small) shown.push_back(&t);
  }
  if (view.mode == StatsView::Mode::summary) {
    for (const auto& [pattern, n] : instances) {
      if (n > kPatternRowsShown)
        hidden += fmt::format("{}{} ({})", hidden.empty() ? "" : ", ", pattern, n);
    }
  }
  out += tunnels(s, shown, before, elapsed);
  if (!hidden.empty()) {
    out += "instances of " + hidden +
           " not shown: `tunshim stats --all` lists every tunnel, `tunshim stats IFACE` shows "
           "one\n";
  }
  return out;
}

std::string view_error(const StatsSnapshot& s, const StatsView& view) {
  if (view.mode != StatsView::Mode::one) return {};
  if (find_pattern(s, view.iface) != nullptr) return {};
  for (const TunnelStats& t : s.tunnels) {
    if (t.iface == view.iface) return {};
  }
  for (const PatternStats& p : s.patterns) {
    if (iface_matches(p.pattern, view.iface)) {
      return fmt::format(
          "no tunnel {} now: no such interface, or it appeared and went; {} has {} "
          "interface{} now (`tunshim stats --all` lists them)",
          view.iface, p.pattern, p.instances, p.instances == 1 ? "" : "s");
    }
  }
  std::string known;
  for (const TunnelStats& t : s.tunnels) {
    if (t.pattern.empty()) known += (known.empty() ? "" : ", ") + t.iface;
  }
  for (const PatternStats& p : s.patterns) known += (known.empty() ? "" : ", ") + p.pattern;
  return fmt::format("no tunnel {} (configured: {})", view.iface,
                     known.empty() ? std::string("none") : known);
}

void keep_view_tunnels(StatsSnapshot& s, const StatsView& view) {
  if (view.mode != StatsView::Mode::one) return;
  std::erase_if(s.tunnels, [&](const TunnelStats& t) {
    return t.iface != view.iface && t.pattern != view.iface;
  });
}

std::string status_line(const StatsSnapshot& s) {
  if (s.tunnels.empty() && s.patterns.empty()) return "no tunnels configured";
  // A pattern with many instances is one entry, as in the table's summary view.
  std::map<std::string_view, std::size_t> instances;
  for (const TunnelStats& t : s.tunnels) {
    if (!t.pattern.empty()) ++instances[t.pattern];
  }
  std::string out;
  for (const TunnelStats& t : s.tunnels) {
    if (!t.pattern.empty() && instances[t.pattern] > kPatternRowsShown) continue;
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
  for (const PatternStats& p : s.patterns) {
    // Named when its instances are not (too many), or when nothing else would be said.
    if (instances[p.pattern] <= kPatternRowsShown && !(s.tunnels.empty())) continue;
    if (!out.empty()) out += "; ";
    const std::uint64_t clamped =
        p.syn.out.clamped + p.syn.out.inserted + p.syn.in.clamped + p.syn.in.inserted;
    const std::uint64_t bypassed = p.syn.out.bypassed + p.syn.in.bypassed;
    out +=
        fmt::format("{}: {} interface{}", p.pattern, p.instances, p.instances == 1 ? "" : "s");
    std::uint64_t not_up = 0;
    for (const auto& [state, count] : p.states) {
      if (state_rank(state) >= 2) not_up += count;
    }
    if (not_up > 0) out += fmt::format(" ({} not up)", not_up);
    out += fmt::format(", {} clamped", clamped);
    if (bypassed > 0) out += fmt::format(", {} bypassed", bypassed);
  }
  return out;
}

// ---- reading render_json's output back (`tunshim stats --watch`) --------------------------
namespace {

// A JSON value, just enough for the daemon's own documents. Numbers keep their text, so
// counters stay exact integers.
struct Json {
  enum class Kind : std::uint8_t { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool b = false;
  std::string text;  // number text or string value
  std::vector<Json> items;
  std::vector<std::string> keys;  // object: keys[i] names items[i]

  const Json* get(std::string_view key) const {
    if (kind != Kind::object) return nullptr;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &items[i];
    }
    return nullptr;
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view in) : in_(in) {}

  bool document(Json& out) {
    if (!value(out, 0)) return false;
    skip_ws();
    return pos_ == in_.size() || fail("trailing data");
  }
  const std::string& error() const { return error_; }

 private:
  static constexpr int kMaxDepth = 16;

  bool fail(const char* what) {
    if (error_.empty()) error_ = fmt::format("{} at byte {}", what, pos_);
    return false;
  }
  void skip_ws() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\n' || in_[pos_] == '\r' || in_[pos_] == '\t'))
      ++pos_;
  }
  bool literal(std::string_view word) {
    if (in_.substr(pos_, word.size()) != word) return fail("bad literal");
    pos_ += word.size();
    return true;
  }
  bool value(Json& out, int depth) {
    if (depth > kMaxDepth) return fail("nested too deep");
    skip_ws();
    if (pos_ >= in_.size()) return fail("unexpected end");
    const char c = in_[pos_];
    if (c == '{') return object(out, depth);
    if (c == '[') return array(out, depth);
    if (c == '"') {
      out.kind = Json::Kind::string;
      return string(out.text);
    }
    if (c == 't' || c == 'f') {
      out.kind = Json::Kind::boolean;
      out.b = c == 't';
      return literal(out.b ? "true" : "false");
    }
    if (c == 'n') return literal("null");
    const std::size_t start = pos_;
    while (pos_ < in_.size() &&
           std::string_view("+-0123456789.eE").find(in_[pos_]) != std::string_view::npos)
      ++pos_;
    if (pos_ == start) return fail("unexpected character");
    out.kind = Json::Kind::number;
    out.text = std::string(in_.substr(start, pos_ - start));
    return true;
  }
  bool object(Json& out, int depth) {
    out.kind = Json::Kind::object;
    ++pos_;
    skip_ws();
    if (pos_ < in_.size() && in_[pos_] == '}') return ++pos_, true;
    for (;;) {
      skip_ws();
      std::string key;
      if (pos_ >= in_.size() || in_[pos_] != '"' || !string(key)) return fail("expected a key");
      skip_ws();
      if (pos_ >= in_.size() || in_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      out.keys.push_back(std::move(key));
      out.items.emplace_back();
      if (!value(out.items.back(), depth + 1)) return false;
      skip_ws();
      if (pos_ < in_.size() && in_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < in_.size() && in_[pos_] == '}') return ++pos_, true;
      return fail("expected ',' or '}'");
    }
  }
  bool array(Json& out, int depth) {
    out.kind = Json::Kind::array;
    ++pos_;
    skip_ws();
    if (pos_ < in_.size() && in_[pos_] == ']') return ++pos_, true;
    for (;;) {
      out.items.emplace_back();
      if (!value(out.items.back(), depth + 1)) return false;
      skip_ws();
      if (pos_ < in_.size() && in_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < in_.size() && in_[pos_] == ']') return ++pos_, true;
      return fail("expected ',' or ']'");
    }
  }
  // A string at pos_ (the opening quote); \uXXXX of the BMP becomes UTF-8.
  bool string(std::string& out) {
    ++pos_;
    while (pos_ < in_.size()) {
      const char c = in_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= in_.size()) break;
      const char e = in_[pos_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          unsigned cp = 0;
          if (pos_ + 4 > in_.size()) return fail("short \\u escape");
          const auto [p, ec] =
              std::from_chars(in_.data() + pos_, in_.data() + pos_ + 4, cp, 16);
          if (ec != std::errc{} || p != in_.data() + pos_ + 4) return fail("bad \\u escape");
          pos_ += 4;
          if (cp < 0x80) {
            out += static_cast<char>(cp);
          } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default:
          out += e;  // \" \\ \/
      }
    }
    return fail("unterminated string");
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::string error_;
};

// Typed reads of optional members: absent (or null) leaves the target alone.
bool read(const Json* j, std::uint64_t& v) {
  if (j == nullptr || j->kind != Json::Kind::number) return false;
  const auto [p, ec] = std::from_chars(j->text.data(), j->text.data() + j->text.size(), v);
  return ec == std::errc{} && p == j->text.data() + j->text.size();
}
bool read(const Json* j, double& v) {
  if (j == nullptr || j->kind != Json::Kind::number) return false;
  const auto [p, ec] = std::from_chars(j->text.data(), j->text.data() + j->text.size(), v);
  return ec == std::errc{} && p == j->text.data() + j->text.size();
}
template <typename V>
void read(const Json* j, std::optional<V>& v) {
  V x{};
  if (read(j, x)) v = x;
}
template <typename V>
void read_narrow(const Json* j, V& v) {
  std::uint64_t x = 0;
  if (read(j, x)) v = static_cast<V>(x);
}
void read(const Json* j, std::string& v) {
  if (j != nullptr && j->kind == Json::Kind::string) v = j->text;
}
// {"key": number, ...} into a map.
void read(const Json* j, std::map<std::string, std::uint64_t>& m) {
  if (j == nullptr || j->kind != Json::Kind::object) return;
  for (std::size_t i = 0; i < j->keys.size(); ++i) read(&j->items[i], m[j->keys[i]]);
}
const Json* at(const Json* j, std::string_view a, std::string_view b) {
  return j != nullptr ? (j = j->get(a)) != nullptr ? j->get(b) : nullptr : nullptr;
}

void read_direction(const Json* syn, const Json* bypassed, std::string_view dir,
                    DirectionCounters& c) {
  const Json* d = syn != nullptr ? syn->get(dir) : nullptr;
  for (auto [name, field] : kSynActionFields)
    read(d != nullptr ? d->get(name) : nullptr, c.*field);
  read(bypassed != nullptr ? bypassed->get(dir) : nullptr, c.bypassed);
}

TunnelStats read_tunnel(const Json& j) {
  TunnelStats t;
  read(j.get("interface"), t.iface);
  read(j.get("pattern"), t.pattern);
  read(j.get("state"), t.state);
  read(j.get("state_since"), t.state_since);
  read(j.get("last_hook"), t.last_hook);
  read(j.get("pmtu_state"), t.pmtu_state);
  if (const Json* c = j.get("pmtu_confirmed"))
    t.pmtu_confirmed = c->kind == Json::Kind::boolean && c->b;
  const Json* m = j.get("metrics");
  std::uint64_t flag = 0;
  if (read(m != nullptr ? m->get("interface_present") : nullptr, flag)) t.present = flag != 0;
  if (read(m != nullptr ? m->get("tunnel_up") : nullptr, flag)) t.up = flag != 0;
  if (m == nullptr) return t;
  read(m->get("tunnel_state_transitions_total"), t.transitions);
  std::optional<std::uint64_t> pmtu;
  read(m->get("pmtu_bytes"), pmtu);
  if (pmtu) t.pmtu = static_cast<std::uint32_t>(*pmtu);
  read_narrow(at(m, "mss_clamp_bytes", "ipv4"), t.mss4);
  read_narrow(at(m, "mss_clamp_bytes", "ipv6"), t.mss6);
  read_direction(m->get("syn_total"), m->get("syn_bypassed_total"), "out", t.syn.out);
  read_direction(m->get("syn_total"), m->get("syn_bypassed_total"), "in", t.syn.in);
  read(m->get("oversize_dropped_total"), t.oversize_dropped);
  read(m->get("icmp_ptb_sent_total"), t.icmp_ptb_sent);
  read(m->get("guard_packets_total"), t.guard);
  read(m->get("keepalive_sent_total"), t.keepalive_sent);
  read(m->get("keepalive_replies_total"), t.keepalive_replies);
  read(m->get("rtt_seconds"), t.rtt_smoothed);
  read(m->get("rtt_min_seconds"), t.rtt_min);
  read(m->get("rtt_max_seconds"), t.rtt_max);
  read(m->get("probes_total"), t.probes);
  if (const Json* h = m->get("hook_runs_total");
      h != nullptr && h->kind == Json::Kind::object) {
    for (std::size_t i = 0; i < h->keys.size(); ++i) {
      const Json& by_result = h->items[i];
      for (std::size_t k = 0; k < by_result.keys.size(); ++k)
        read(&by_result.items[k], t.hook_runs[{h->keys[i], by_result.keys[k]}]);
    }
  }
  read(m->get("reconnects_total"), t.reconnects);
  return t;
}

PatternStats read_pattern(const Json& j) {
  PatternStats p;
  read(j.get("pattern"), p.pattern);
  read(j.get("interfaces"), p.instances);
  read(j.get("measured"), p.measured);
  read(j.get("appeared"), p.appeared);
  read(j.get("gone"), p.gone);
  read(j.get("states"), p.states);
  read_narrow(j.get("pmtu_min"), p.pmtu_min);
  read_narrow(j.get("pmtu_max"), p.pmtu_max);
  read_direction(j.get("syn_total"), j.get("syn_bypassed_total"), "out", p.syn.out);
  read_direction(j.get("syn_total"), j.get("syn_bypassed_total"), "in", p.syn.in);
  read(j.get("oversize_dropped_total"), p.oversize_dropped);
  read(j.get("icmp_ptb_sent_total"), p.icmp_ptb_sent);
  read(j.get("keepalive_sent_total"), p.keepalive_sent);
  read(j.get("probes_sent_total"), p.probes_sent);
  read(j.get("pmtu_searches_completed_total"), p.searches_completed);
  return p;
}

}  // namespace

std::optional<StatsSnapshot> parse_stats_json(std::string_view json, std::string& error) {
  Json doc;
  JsonReader r(json);
  if (!r.document(doc)) {
    error = "not JSON: " + r.error();
    return std::nullopt;
  }
  const Json* tunnels = doc.get("tunnels");
  const Json* g = doc.get("global");
  StatsSnapshot s;
  if (!read(doc.get("time"), s.now) || tunnels == nullptr ||
      tunnels->kind != Json::Kind::array || g == nullptr) {
    error = "not tunshim's stats (no time, global or tunnels)";
    return std::nullopt;
  }
  read(doc.get("version"), s.version);
  read_narrow(doc.get("queue_num"), s.queue_num);
  read(doc.get("datapath"), s.datapath);
  read(doc.get("datapath_reason"), s.datapath_reason);
  read(g->get("start_time_seconds"), s.start_time);
  read(at(g, "config_reloads_total", "ok"), s.reloads_ok);
  read(at(g, "config_reloads_total", "failed"), s.reloads_failed);
  QueueCounters& q = s.queue;
  read(g->get("queue_packets_total"), q.packets);
  read(at(g, "queue_verdict_messages_total", "single"), q.verdicts);
  read(at(g, "queue_verdict_messages_total", "batch"), q.batches);
  read(g->get("queue_modified_total"), q.modified);
  read(at(g, "queue_dropped_total", "id_gap"), q.id_gaps);
  read(at(g, "queue_dropped_total", "kernel_queue"), q.kernel_queue_dropped);
  read(at(g, "queue_dropped_total", "kernel_user"), q.kernel_user_dropped);
  read(g->get("queue_overruns_total"), q.enobufs);
  read(at(g, "queue_errors_total", "send"), q.send_errors);
  read(at(g, "queue_errors_total", "bad_message"), q.bad_messages);
  read(g->get("queue_unknown_interface_total"), q.unknown_iface);
  for (const Json& t : tunnels->items) s.tunnels.push_back(read_tunnel(t));
  if (const Json* p = doc.get("patterns"); p != nullptr && p->kind == Json::Kind::array) {
    for (const Json& item : p->items) s.patterns.push_back(read_pattern(item));
  }
  return s;
}

}  // namespace tunshim::proxy
