// The human views of a StatsSnapshot: `tunshim stats` (and the SIGUSR1 log), STATUS=, and
// for `tunshim stats --watch` the table with rates and the reader of the daemon's JSON.
#include "proxy/stats_report.h"

#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <vector>

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

const TunnelStats* find_tunnel(const StatsSnapshot* s, const std::string& iface) {
  if (s == nullptr) return nullptr;
  for (const TunnelStats& t : s->tunnels) {
    if (t.iface == iface) return &t;
  }
  return nullptr;
}

}  // namespace

std::string render_table(const StatsSnapshot& s) { return render_table(s, nullptr); }

std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev) {
  const QueueCounters& q = s.queue;
  const double elapsed = prev != nullptr ? s.now - prev->now : 0;
  if (elapsed <= 0) prev = nullptr;  // the same snapshot twice, or a clock step: no rates
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
  if (s.tunnels.empty()) return out + "no tunnels configured\n";

  std::vector<std::vector<std::string>> cols;  // [tunnel][row]
  std::size_t label_w = 6;
  for (const Row& r : kRows) label_w = std::max(label_w, r.label.size());
  std::vector<std::size_t> widths;
  for (const TunnelStats& t : s.tunnels) {
    const TunnelStats* before = find_tunnel(prev, t.iface);
    std::vector<std::string> c;
    std::size_t w = t.iface.size();
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
  return s;
}

}  // namespace tunshim::proxy
