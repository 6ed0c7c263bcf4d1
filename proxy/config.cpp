// Config parsing and validation. toml++ does the syntax; this file checks every key against
// the known set and every value against its type and range, and collects all problems with
// the position toml++ recorded for the offending key or value.
#include "proxy/config.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <utility>

#include "proxy/log.h"

namespace tunshim::proxy {
namespace {

// Far above any real config; refusing early keeps a mistaken path (a log, a disk image)
// from being read into memory.
constexpr std::size_t kMaxFileBytes = std::size_t{1} << 20;

enum class Section { top, global, tunnel };

// Every key tunshim knows, and whether the daemon implements it. A key with
// implemented = false is refused ("KEY is not supported by this version of tunshim yet")
// unless ParseOptions::accept_unimplemented is set (tests and the fuzzer), so a config
// written for a later version fails loudly instead of silently doing less.
//
// WIRING A FEATURE: when the daemon really does what a key says, flip its flag here (one
// line), then: move the key in conf/tunshim.conf from the "Planned" list to a documented
// setting, move its entry in docs/man/tunshim.conf.5 from PLANNED KEYS to GLOBAL/TUNNEL KEYS
// with its default (test_packaging checks both against check-config's output), and update
// the tests that expect the refusal (tests/unit/proxy/test_config.cpp,
// tests/e2e/test_check_config.sh). "mss=auto" is not a key but the value "auto" of mss and
// mss6: it gates the clamp following the discovered path MTU.
struct KeyInfo {
  Section section;
  std::string_view name;
  bool implemented;
};
// clang-format off
constexpr std::array kKeys{
    // [global]
    KeyInfo{Section::global, "log_level",          true},
    KeyInfo{Section::global, "queue_num",          true},
    KeyInfo{Section::global, "queue_maxlen",       true},
    KeyInfo{Section::global, "stats_listen",       true},   // stats server (stats_service.h)
    KeyInfo{Section::global, "control_socket",     true},   // control socket (control_server.h)
    // [[tunnel]]
    KeyInfo{Section::tunnel, "interface",          true},
    KeyInfo{Section::tunnel, "mss",                true},
    KeyInfo{Section::tunnel, "mss6",               true},
    KeyInfo{Section::tunnel, "mss=auto",           true},  // path MTU drives the clamp
    KeyInfo{Section::tunnel, "guard",              true},  // oversize-DF guard
    KeyInfo{Section::tunnel, "set_interface_mtu",  true},  // path MTU
    KeyInfo{Section::tunnel, "probe_target",       true},  // path MTU
    KeyInfo{Section::tunnel, "probe_min",          true},  // path MTU
    KeyInfo{Section::tunnel, "probe_max",          true},  // path MTU
    KeyInfo{Section::tunnel, "reprobe_interval",   true},  // path MTU
    KeyInfo{Section::tunnel, "keepalive",          true},  // keepalive
    KeyInfo{Section::tunnel, "keepalive_interval", true},  // keepalive
    KeyInfo{Section::tunnel, "keepalive_target",   true},  // keepalive
    KeyInfo{Section::tunnel, "down_after_misses",  true},  // liveness
    KeyInfo{Section::tunnel, "on_down",            true},  // liveness hooks
    KeyInfo{Section::tunnel, "on_up",              true},  // liveness hooks
    KeyInfo{Section::tunnel, "hook_timeout",       true},  // liveness hooks
    KeyInfo{Section::tunnel, "backoff_max",        true},  // liveness hooks
};
// clang-format on

const KeyInfo* find_key(std::string_view name) {
  for (const KeyInfo& k : kKeys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

char fold(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), case
// folded: "msss", "MSS" and "intreface" are each one edit from a real key.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) &&
          fold(a[i - 2]) == fold(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// `s` with quotes, backslashes and control characters escaped as in a TOML basic string,
// so names echoed in messages and in check-config's output stay on one line and re-parse.
std::string escaped(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\u%04X", static_cast<unsigned>(u));
      out += buf.data();
    } else {
      out += c;
    }
  }
  return out;
}

// `s` with control characters escaped, for a comment line (quotes stay as they are).
std::string one_line(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += escaped(std::string_view(&c, 1));
    } else {
      out += c;
    }
  }
  return out;
}

std::string quoted(std::string_view s) { return '"' + escaped(s) + '"'; }

// "an integer", "a string ("x")" …: what the user wrote instead of what was expected.
std::string what_is(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string (" + quoted(*n.value<std::string>()) + ")";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string_view where(Section s) {
  switch (s) {
    case Section::top:
      return "at the top level";
    case Section::global:
      return "in [global]";
    case Section::tunnel:
      return "in [tunnel]";
  }
  return "";
}

// Duration strings: one or more NUMBER UNIT parts, units h, m, s, ms, largest first, each at
// most once ("500ms", "10s", "1h30m"). nullopt: not of that form. Values too large for any
// range saturate instead of overflowing.
std::optional<Millis> parse_duration(std::string_view s) {
  constexpr std::array<std::pair<std::string_view, std::int64_t>, 4> kUnits{
      {{"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}}};
  constexpr std::int64_t kCap = std::int64_t{1} << 60;
  std::int64_t total = 0;
  std::size_t next_unit = 0;  // units must come in kUnits order
  std::size_t i = 0;
  if (s.empty()) return std::nullopt;
  while (i < s.size()) {
    std::int64_t n = 0;
    const std::size_t digits_at = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      n = n > kCap / 10 ? kCap : std::min(n * 10 + (s[i] - '0'), kCap);
      ++i;
    }
    if (i == digits_at) return std::nullopt;
    const std::size_t unit_at = i;
    while (i < s.size() && s[i] >= 'a' && s[i] <= 'z') ++i;
    const std::string_view unit = s.substr(unit_at, i - unit_at);
    std::size_t u = next_unit;
    while (u < kUnits.size() && kUnits[u].first != unit) ++u;
    if (u == kUnits.size()) return std::nullopt;
    next_unit = u + 1;
    total = std::min(total + std::min(n, kCap / kUnits[u].second) * kUnits[u].second, kCap);
  }
  return Millis(total);
}

// The shortest form parse_duration() reads back as `d`: "1h30m", "10s", "1s500ms".
std::string duration_text(Millis d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  for (const auto& [unit, size] : {std::pair<const char*, std::int64_t>{"h", 3'600'000},
                                   {"m", 60'000},
                                   {"s", 1000},
                                   {"ms", 1}}) {
    if (ms >= size) {
      out += std::to_string(ms / size) + unit;
      ms %= size;
    }
  }
  return out;
}

// Why `s` is not a usable numeric unicast address, or "" if it is one. `family` gets
// AF_INET or AF_INET6.
std::string address_problem(const std::string& s, int& family, bool& loopback) {
  std::array<unsigned char, 16> b{};
  if (inet_pton(AF_INET, s.c_str(), b.data()) == 1) {
    family = AF_INET;
    loopback = b[0] == 127;
    if (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0)
      return "it is the unspecified address";
    if (b[0] >= 224) return "it is a multicast or broadcast address";
    return "";
  }
  if (inet_pton(AF_INET6, s.c_str(), b.data()) == 1) {
    family = AF_INET6;
    constexpr std::array<unsigned char, 12> kMapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const bool zero15 =
        std::all_of(b.begin(), b.begin() + 15, [](unsigned char x) { return x == 0; });
    loopback = (zero15 && b[15] == 1) ||
               (std::equal(kMapped.begin(), kMapped.end(), b.begin()) && b[12] == 127);
    if (zero15 && b[15] == 0) return "it is the unspecified address";
    if (b[0] == 0xff) return "it is a multicast address";
    return "";
  }
  return "it is not a numeric IPv4 or IPv6 address";
}

// "1.2.3.4:80" or "[::1]:80" for a listen address.
std::string listen_text(const ListenAddress& a) {
  return (a.ipv6 ? "[" + a.host + "]" : a.host) + ':' + std::to_string(a.port);
}

// Collects errors while walking the parsed document; each check reports and carries on.
class Checker {
 public:
  Checker(const std::string& file, const ParseOptions& options)
      : file_(file), options_(options) {}

  void check_root(const toml::table& root, Config& out);
  std::vector<ConfigError> take_errors();
  std::vector<ConfigError> take_warnings() { return std::move(warnings_); }

 private:
  struct TunnelCheck {
    TunnelConfig config;
    bool ok = true;
    bool has_interface = false;
    toml::source_region interface_at;
  };
  // An MSS setting as written: a number, "off" (0) or "auto".
  struct Mss {
    std::uint16_t value = 0;
    bool is_auto = false;
  };

  ConfigError at(const toml::source_region& where, std::string message) const {
    return {file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column),
            std::move(message)};
  }
  void error(const toml::source_region& where, std::string message) {
    errors_.push_back(at(where, std::move(message)));
  }
  void error(std::string message) { errors_.push_back({file_, 0, 0, std::move(message)}); }
  bool accepts(std::string_view key) const {
    return options_.accept_unimplemented || key_implemented(key);
  }

  void check_global(const toml::table& table, GlobalConfig& out);
  TunnelCheck check_tunnel(const toml::table& table);
  // Whether `key` may be read in `section`; reports why not (unknown, misplaced,
  // not implemented) otherwise.
  bool known_here(const toml::key& key, Section section);
  void unknown_key(const toml::key& key, Section section);
  std::optional<std::int64_t> integer(const toml::node& v, std::string_view key,
                                      std::int64_t min, std::int64_t max);
  std::optional<Mss> mss(const toml::node& v, std::string_view key, std::uint16_t min,
                         std::uint16_t max);
  std::optional<std::string> interface_name(const toml::node& v);
  std::optional<bool> boolean(const toml::node& v, std::string_view key);
  // The index of the string value in `choices`.
  std::optional<std::size_t> choice(const toml::node& v, std::string_view key,
                                    std::initializer_list<std::string_view> choices);
  std::optional<Millis> duration(const toml::node& v, std::string_view key, Millis min,
                                 Millis max);
  // "peer" (returned as "") or a numeric unicast IPv4/IPv6 address.
  std::optional<std::string> target(const toml::node& v, std::string_view key);
  std::optional<std::optional<ListenAddress>> listen(const toml::node& v, std::string_view key);
  std::optional<std::string> socket_path(const toml::node& v, std::string_view key);
  std::optional<std::vector<Argv>> hooks(const toml::node& v, std::string_view key);

  const std::string& file_;
  const ParseOptions& options_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

std::vector<ConfigError> Checker::take_errors() {
  // toml++ tables iterate in key order; report in file order instead (whole-file errors last).
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     const int la = a.line > 0 ? a.line : INT32_MAX;
                     const int lb = b.line > 0 ? b.line : INT32_MAX;
                     return la != lb ? la < lb : a.column < b.column;
                   });
  return std::move(errors_);
}

void Checker::check_root(const toml::table& root, Config& out) {
  std::vector<TunnelCheck> tunnels;
  bool tunnel_key_bad = false;
  for (auto&& [key, value] : root) {
    if (key.str() == "global") {
      if (const auto* t = value.as_table()) {
        check_global(*t, out.global);
      } else {
        error(value.source(), "global must be a table ([global]), not " + what_is(value));
      }
    } else if (key.str() == "tunnel") {
      if (const auto* arr = value.as_array()) {
        for (const auto& elem : *arr) {
          if (const auto* t = elem.as_table()) {
            tunnels.push_back(check_tunnel(*t));
          } else {
            error(elem.source(),
                  "each tunnel must be a table ([[tunnel]]), not " + what_is(elem));
            tunnel_key_bad = true;
          }
        }
      } else {
        error(value.source(),
              value.is_table()
                  ? "tunnel must be an array of tables: write [[tunnel]], not [tunnel]"
                  : "tunnel must be an array of tables ([[tunnel]]), not " + what_is(value));
        tunnel_key_bad = true;
      }
    } else {
      known_here(key, Section::top);  // never true: reports why
    }
  }
  if (tunnels.empty() && !tunnel_key_bad) {
    error("no [[tunnel]] configured: tunshim would have nothing to do");
  }
  // Arrays keep file order, so the second of two duplicates is the one reported.
  for (std::size_t i = 0; i < tunnels.size(); ++i) {
    if (!tunnels[i].has_interface) continue;
    for (std::size_t j = 0; j < i; ++j) {
      if (tunnels[j].has_interface &&
          tunnels[j].config.interface == tunnels[i].config.interface) {
        error(tunnels[i].interface_at, "interface " + quoted(tunnels[i].config.interface) +
                                           " is already configured by the [[tunnel]] at line " +
                                           std::to_string(tunnels[j].config.line));
        tunnels[i].ok = false;
        break;
      }
    }
    if (tunnels[i].ok) out.tunnels.push_back(tunnels[i].config);
  }
}

void Checker::check_global(const toml::table& table, GlobalConfig& out) {
  for (auto&& [key, value] : table) {
    const std::string_view k = key.str();
    if (!known_here(key, Section::global)) continue;
    bool ok = false;
    if (k == "log_level") {
      if (const auto* s = value.as_string()) {
        if (parse_log_level(s->get())) {
          out.log_level = s->get();
          out.log_level_from_file = ok = true;
        } else {
          error(value.source(),
                "log_level must be one of trace, debug, info, warn, error, off; not " +
                    quoted(s->get()));
        }
      } else {
        error(value.source(),
              "log_level must be a string (trace, debug, info, warn, error or off), not " +
                  what_is(value));
      }
    } else if (k == "queue_num") {
      if (auto n = integer(value, k, 0, 65535)) {
        out.queue_num = static_cast<std::uint16_t>(*n);
        out.queue_num_from_file = ok = true;
      }
    } else if (k == "queue_maxlen") {
      if (auto n = integer(value, k, kMinQueueMaxlen, kMaxQueueMaxlen)) {
        out.queue_maxlen = static_cast<std::uint32_t>(*n);
        out.queue_maxlen_from_file = ok = true;
      }
    } else if (k == "stats_listen") {
      if (auto l = listen(value, k)) {
        out.stats_listen = std::move(*l);
        ok = true;
        if (out.stats_listen && !out.stats_listen->loopback) {
          warnings_.push_back(
              at(value.source(), "stats_listen " + quoted(value.as_string()->get()) +
                                     " is not a loopback address: anyone who can reach it "
                                     "reads the stats (the server has no authentication)"));
        }
      }
    } else if (k == "control_socket") {
      if (auto p = socket_path(value, k)) {
        out.control_socket = std::move(*p);
        ok = true;
      }
    }
    if (ok) out.keys_from_file.emplace_back(k);
  }
}

Checker::TunnelCheck Checker::check_tunnel(const toml::table& table) {
  TunnelCheck r;
  TunnelConfig& c = r.config;
  c.line = static_cast<int>(table.source().begin.line);
  bool has_mss = false;
  bool has_mss6 = false;
  std::optional<Mss> mss4;
  std::optional<Mss> mss6;
  const toml::node* probe_max_at = nullptr;
  for (auto&& [key, value] : table) {
    const std::string_view k = key.str();
    if (!known_here(key, Section::tunnel)) {
      r.ok = false;
      continue;
    }
    bool ok = false;
    if (k == "interface") {
      if (auto name = interface_name(value)) {
        c.interface = std::move(*name);
        r.has_interface = ok = true;
        r.interface_at = value.source();
      }
    } else if (k == "mss") {
      has_mss = true;
      mss4 = mss(value, k, kMinMss4, kMaxMss4);
      ok = mss4.has_value();
    } else if (k == "mss6") {
      has_mss6 = true;
      mss6 = mss(value, k, kMinMss6, kMaxMss6);
      ok = mss6.has_value();
    } else if (k == "guard") {
      if (auto i = choice(value, k, {"off", "icmp"})) {
        c.guard = static_cast<Guard>(*i);
        ok = true;
      }
    } else if (k == "set_interface_mtu") {
      if (auto b = boolean(value, k)) {
        c.set_interface_mtu = *b;
        ok = true;
      }
    } else if (k == "probe_target") {
      if (auto t = target(value, k)) {
        c.probe_target = std::move(*t);
        ok = true;
      }
    } else if (k == "probe_min") {
      if (auto n = integer(value, k, kMinProbeMin, kMaxProbeMin)) {
        c.probe_min = static_cast<std::uint16_t>(*n);
        ok = true;
      }
    } else if (k == "probe_max") {
      if (const auto* s = value.as_string(); s != nullptr && s->get() == "interface") {
        c.probe_max = 0;
        ok = true;
      } else if (value.is_integer()) {
        // The lower bound is probe_min, checked once the whole table is read.
        if (auto n = integer(value, k, kMinProbeMin, kMaxProbeMax)) {
          c.probe_max = static_cast<std::uint16_t>(*n);
          probe_max_at = &value;
          ok = true;
        }
      } else {
        error(value.source(),
              "probe_max must be \"interface\" or an integer, not " + what_is(value));
      }
    } else if (k == "reprobe_interval") {
      if (auto d = duration(value, k, kMinReprobeInterval, kMaxReprobeInterval)) {
        c.reprobe_interval = *d;
        ok = true;
      }
    } else if (k == "keepalive") {
      if (auto i = choice(value, k, {"idle", "always", "off"})) {
        c.keepalive = static_cast<KeepaliveMode>(*i);
        ok = true;
      }
    } else if (k == "keepalive_interval") {
      if (auto d = duration(value, k, kMinKeepaliveInterval, kMaxKeepaliveInterval)) {
        c.keepalive_interval = *d;
        ok = true;
      }
    } else if (k == "keepalive_target") {
      if (auto t = target(value, k)) {
        c.keepalive_target = std::move(*t);
        ok = true;
      }
    } else if (k == "down_after_misses") {
      if (auto n = integer(value, k, kMinDownAfterMisses, kMaxDownAfterMisses)) {
        c.down_after_misses = static_cast<int>(*n);
        ok = true;
      }
    } else if (k == "on_down" || k == "on_up") {
      if (auto h = hooks(value, k)) {
        (k == "on_down" ? c.on_down : c.on_up) = std::move(*h);
        ok = true;
      }
    } else if (k == "hook_timeout") {
      if (auto d = duration(value, k, kMinHookTimeout, kMaxHookTimeout)) {
        c.hook_timeout = *d;
        ok = true;
      }
    } else if (k == "backoff_max") {
      if (auto d = duration(value, k, kMinBackoffMax, kMaxBackoffMax)) {
        c.backoff_max = *d;
        ok = true;
      }
    }
    if (ok) {
      c.keys_from_file.emplace_back(k);
    } else {
      r.ok = false;
    }
  }
  if (!table.contains("interface")) {
    error(table.source(),
          "this [[tunnel]] has no interface: set interface = \"NAME\" (e.g. \"ppp0\")");
    r.ok = false;
  }
  if (!has_mss) {
    error(table.source(),
          "this [[tunnel]] has no mss: set mss to the IPv4 MSS target (e.g. 1360) or \"off\"");
    r.ok = false;
  }
  if (probe_max_at != nullptr && c.probe_max < c.probe_min) {
    error(probe_max_at->source(), "probe_max must be \"interface\" or between probe_min (" +
                                      std::to_string(c.probe_min) + ") and " +
                                      std::to_string(kMaxProbeMax) + ", not " +
                                      std::to_string(c.probe_max));
    r.ok = false;
  }
  if (!mss4 || (has_mss6 && !mss6)) return r;

  // "auto" clamps to the fallback size's MSS until the first search completes.
  c.mss4_auto = mss4->is_auto;
  c.mss4 = c.mss4_auto ? clamp::mss_from_mtu4(c.probe_min) : mss4->value;
  if (has_mss6) {
    c.mss6_auto = mss6->is_auto;
    c.mss6 = c.mss6_auto ? kAutoMss6Fallback : mss6->value;
    c.mss6_from_file = true;
  } else if (c.mss4_auto) {
    c.mss6_auto = true;
    c.mss6 = kAutoMss6Fallback;
  } else if (c.mss4 != 0) {
    // Same link MTU for both families; never below what every IPv6 path carries.
    c.mss6 =
        std::max<std::uint16_t>(static_cast<std::uint16_t>(c.mss4 - kMss6Offset), kMinMss6);
  }
  // The guard needs the path MTU, which "auto" discovers.
  if (!c.from_file("guard") && (c.mss4_auto || c.mss6_auto)) c.guard = Guard::icmp;

  // Clamping off in both families is still work if a keepalive runs on this tunnel.
  const bool keepalive_on = c.keepalive != KeepaliveMode::off && accepts("keepalive");
  if (c.mss4 == 0 && c.mss6 == 0 && !keepalive_on) {
    error(table.source(),
          has_mss6 ? "mss and mss6 are both \"off\": this [[tunnel]] has nothing to do"
                   : "mss is \"off\" and mss6 follows it by default: this [[tunnel]] "
                     "has nothing to do (set mss6 to clamp IPv6 only)");
    r.ok = false;
  }
  return r;
}

bool Checker::known_here(const toml::key& key, Section section) {
  const std::string_view k = key.str();
  const KeyInfo* info = find_key(k);
  if (info == nullptr || k.find('=') != std::string_view::npos) {
    unknown_key(key, section);
    return false;
  }
  if (!info->implemented && !options_.accept_unimplemented) {
    error(key.source(), std::string(k) + " is not supported by this version of tunshim yet");
    return false;
  }
  if (info->section != section) {
    error(key.source(), std::string(k) +
                            (info->section == Section::global ? " belongs in [global], not "
                                                              : " belongs in a [[tunnel]] "
                                                                "table, not ") +
                            std::string(where(section)));
    return false;
  }
  return true;
}

void Checker::unknown_key(const toml::key& key, Section section) {
  const std::string_view k = key.str();
  std::vector<std::string_view> known;
  if (section == Section::top) known = {"global", "tunnel"};
  for (const KeyInfo& info : kKeys) {
    if (info.section == section && info.name.find('=') == std::string_view::npos) {
      known.push_back(info.name);
    }
  }
  std::string message = "unknown key '" + escaped(k) + "' " + std::string(where(section));
  std::size_t best = 3;  // suggest only within two edits: further is a guess, not a typo
  std::string_view best_key;
  for (const auto candidate : known) {
    const std::size_t d = edit_distance(k, candidate);
    if (d < best) {
      best = d;
      best_key = candidate;
    }
  }
  if (!best_key.empty()) message += "; did you mean '" + std::string(best_key) + "'?";
  error(key.source(), std::move(message));
}

std::optional<std::int64_t> Checker::integer(const toml::node& v, std::string_view key,
                                             std::int64_t min, std::int64_t max) {
  const auto* i = v.as_integer();
  if (i == nullptr) {
    error(v.source(), std::string(key) + " must be an integer, not " + what_is(v));
    return std::nullopt;
  }
  const std::int64_t n = i->get();
  if (n < min || n > max) {
    error(v.source(), std::string(key) + " must be between " + std::to_string(min) + " and " +
                          std::to_string(max) + ", not " + std::to_string(n));
    return std::nullopt;
  }
  return n;
}

std::optional<Checker::Mss> Checker::mss(const toml::node& v, std::string_view key,
                                         std::uint16_t min, std::uint16_t max) {
  const std::string k(key);
  if (const auto* s = v.as_string()) {
    if (s->get() == "off") return Mss{};
    if (s->get() == "auto") {
      if (accepts("mss=auto")) return Mss{0, true};
      error(v.source(),
            k + " = \"auto\" needs path-MTU discovery, which is not implemented in "
                "this version of tunshim yet; give a number (e.g. 1360) or \"off\"");
      return std::nullopt;
    }
  }
  const bool with_auto = accepts("mss=auto");
  if (!v.is_integer()) {
    error(v.source(), k +
                          (with_auto ? " must be an integer, \"off\" or \"auto\", not "
                                     : " must be an integer or \"off\", not ") +
                          what_is(v));
    return std::nullopt;
  }
  const std::int64_t n = *v.value<std::int64_t>();
  if (n < min || n > max) {
    error(v.source(),
          k + " must be between " + std::to_string(min) + " and " + std::to_string(max) +
              (with_auto ? " (or \"off\" or \"auto\"), not " : " (or \"off\"), not ") +
              std::to_string(n));
    return std::nullopt;
  }
  return Mss{static_cast<std::uint16_t>(n), false};
}

std::optional<bool> Checker::boolean(const toml::node& v, std::string_view key) {
  if (const auto* b = v.as_boolean()) return b->get();
  error(v.source(), std::string(key) + " must be true or false, not " + what_is(v));
  return std::nullopt;
}

std::optional<std::size_t> Checker::choice(const toml::node& v, std::string_view key,
                                           std::initializer_list<std::string_view> choices) {
  std::string list;
  std::size_t i = 0;
  for (const auto c : choices) {
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + quoted(c);
    ++i;
  }
  const auto* s = v.as_string();
  if (s == nullptr) {
    error(v.source(), std::string(key) + " must be " + list + ", not " + what_is(v));
    return std::nullopt;
  }
  const auto it = std::find(choices.begin(), choices.end(), s->get());
  if (it == choices.end()) {
    error(v.source(), std::string(key) + " must be " + list + ", not " + quoted(s->get()));
    return std::nullopt;
  }
  return static_cast<std::size_t>(it - choices.begin());
}

std::optional<Millis> Checker::duration(const toml::node& v, std::string_view key, Millis min,
                                        Millis max) {
  const std::string k(key);
  const std::string range =
      "between " + quoted(duration_text(min)) + " and " + quoted(duration_text(max));
  const auto* s = v.as_string();
  if (s == nullptr) {
    // A bare number has no unit, and guessing seconds or minutes is how outages are made.
    error(v.source(), k + " must be a duration string with a unit (h, m, s, ms), " + range +
                          ", e.g. " + quoted(duration_text(min * 10 < max ? min * 10 : min)) +
                          "; not " + what_is(v));
    return std::nullopt;
  }
  const auto d = parse_duration(s->get());
  if (!d) {
    error(v.source(), k +
                          " must be a duration such as \"500ms\", \"10s\", \"5m\" or \"1h30m\" "
                          "(units h, m, s, ms, largest first), not " +
                          quoted(s->get()));
    return std::nullopt;
  }
  if (*d < min || *d > max) {
    error(v.source(), k + " must be " + range + ", not " + quoted(s->get()));
    return std::nullopt;
  }
  return d;
}

std::optional<std::string> Checker::target(const toml::node& v, std::string_view key) {
  const auto* s = v.as_string();
  if (s == nullptr) {
    error(v.source(),
          std::string(key) + " must be \"peer\" or a numeric IP address, not " + what_is(v));
    return std::nullopt;
  }
  if (s->get() == "peer") return std::string();
  int family = 0;
  bool loopback = false;
  const std::string problem = address_problem(s->get(), family, loopback);
  if (!problem.empty()) {
    error(v.source(), std::string(key) +
                          " must be \"peer\" or a numeric IPv4 or IPv6 "
                          "unicast address; " +
                          quoted(s->get()) + ": " + problem);
    return std::nullopt;
  }
  return s->get();
}

std::optional<std::optional<ListenAddress>> Checker::listen(const toml::node& v,
                                                            std::string_view key) {
  const std::string k(key);
  const std::string form = k +
                           " must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
                           "\"[::1]:9477\") or \"off\"";
  const auto* s = v.as_string();
  if (s == nullptr) {
    error(v.source(), form + ", not " + what_is(v));
    return std::nullopt;
  }
  const std::string& text = s->get();
  if (text.empty() || text == "off") return std::optional<ListenAddress>{};
  ListenAddress a;
  std::string port;
  std::string problem;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      problem = "an IPv6 address must be followed by \"]:PORT\"";
    } else {
      a.host = text.substr(1, close - 1);
      a.ipv6 = true;
      port = text.substr(close + 2);
    }
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      problem = "the port is missing";
    } else if (text.find(':') != colon) {
      problem = "write an IPv6 address in brackets, as in \"[::1]:9477\"";
    } else {
      a.host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
  }
  if (problem.empty()) {
    int family = 0;
    // Listening on 0.0.0.0 or :: is allowed (with a warning): only probe-style checks apply.
    const std::string bad = address_problem(a.host, family, a.loopback);
    if (family != (a.ipv6 ? AF_INET6 : AF_INET)) {
      problem = quoted(a.host) +
                (a.ipv6 ? " is not a numeric IPv6 address" : " is not a numeric IPv4 address");
    } else if (bad.find("multicast") != std::string::npos) {
      problem = bad;
    }
  }
  if (problem.empty()) {
    const bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    const long n = digits ? std::stol(port) : 0;
    if (n < 1 || n > 65535) {
      problem = "the port must be a number between 1 and 65535";
    } else {
      a.port = static_cast<std::uint16_t>(n);
    }
  }
  if (!problem.empty()) {
    error(v.source(), form + "; " + quoted(text) + ": " + problem);
    return std::nullopt;
  }
  return std::optional<ListenAddress>{std::move(a)};
}

std::optional<std::string> Checker::socket_path(const toml::node& v, std::string_view key) {
  const std::string k(key);
  const auto* s = v.as_string();
  if (s == nullptr) {
    error(v.source(), k + " must be an absolute path or \"off\", not " + what_is(v));
    return std::nullopt;
  }
  const std::string& p = s->get();
  if (p == "off") return std::string();
  std::string problem;
  if (p.empty() || p.front() != '/') {
    problem = "it is not an absolute path";
  } else if (p.back() == '/') {
    problem = "it names a directory";
  } else if (p.size() > kMaxSocketPath) {
    problem = "it is " + std::to_string(p.size()) +
              " bytes long, and a socket path holds at most " + std::to_string(kMaxSocketPath);
  } else if (std::any_of(p.begin(), p.end(), [](char c) {
               const auto u = static_cast<unsigned char>(c);
               return u < 0x20 || u == 0x7f;
             })) {
    problem = "it contains a control character";
  }
  if (!problem.empty()) {
    error(v.source(),
          k + " must be an absolute path or \"off\"; " + quoted(p) + ": " + problem);
    return std::nullopt;
  }
  return p;
}

std::optional<std::vector<Argv>> Checker::hooks(const toml::node& v, std::string_view key) {
  const std::string k(key);
  const std::string form =
      k +
      " must be an array of commands, each an array of strings, e.g. "
      "[[\"/usr/sbin/poff\", \"office\"], [\"/usr/sbin/pon\", \"office\"]]";
  const auto* arr = v.as_array();
  if (arr == nullptr) {
    error(v.source(), form + "; not " + what_is(v));
    return std::nullopt;
  }
  if (!arr->empty() && arr->get(0)->is_string()) {
    error(v.source(), form + "; for one command write [[...]], not [...]");
    return std::nullopt;
  }
  std::vector<Argv> out;
  bool ok = true;
  for (const auto& cmd : *arr) {
    const auto* argv = cmd.as_array();
    if (argv == nullptr) {
      error(cmd.source(),
            "each command in " + k + " must be an array of strings, not " + what_is(cmd));
      ok = false;
      continue;
    }
    if (argv->empty()) {
      error(cmd.source(), "a command in " + k +
                              " is empty: give at least the program's "
                              "absolute path");
      ok = false;
      continue;
    }
    Argv a;
    for (const auto& arg : *argv) {
      const auto* s = arg.as_string();
      if (s == nullptr) {
        error(arg.source(), "each argument in " + k + " must be a string, not " + what_is(arg));
        ok = false;
      } else if (s->get().find('\0') != std::string::npos) {
        error(arg.source(), "an argument in " + k +
                                " contains a NUL character, which no "
                                "command line can carry");
        ok = false;
      } else {
        a.push_back(s->get());
      }
    }
    // No shell and no PATH lookup: the command run is exactly the file named.
    if (const auto* prog = argv->get(0)->as_string();
        prog != nullptr && (prog->get().empty() || prog->get().front() != '/')) {
      error(argv->get(0)->source(), "the program in " + k +
                                        " must be an absolute path (it runs "
                                        "without a shell or PATH), not " +
                                        quoted(prog->get()));
      ok = false;
    }
    out.push_back(std::move(a));
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> Checker::interface_name(const toml::node& v) {
  const auto* s = v.as_string();
  if (s == nullptr) {
    error(v.source(), "interface must be a string, not " + what_is(v));
    return std::nullopt;
  }
  const std::string& name = s->get();
  // The kernel's dev_valid_name() rules, plus '+' (an iptables wildcard: the rules would
  // match more than this tunnel) and control characters (they would garble logs).
  std::string problem;
  if (name.empty()) {
    problem = "it is empty";
  } else if (name.size() > kMaxInterfaceName) {
    problem = "it is " + std::to_string(name.size()) +
              " bytes long, and Linux allows at most " + std::to_string(kMaxInterfaceName);
  } else if (name == "." || name == "..") {
    problem = "Linux reserves \".\" and \"..\"";
  } else {
    for (const char c : name) {
      const auto u = static_cast<unsigned char>(c);
      // The kernel's isspace() also counts Latin-1 NBSP (0xA0), a byte inside some UTF-8.
      if (c == ' ' || (c >= '\t' && c <= '\r') || u == 0xA0) {
        problem = "it contains whitespace";
      } else if (u < 0x20 || u == 0x7f) {
        problem = "it contains a control character";
      } else if (c == '/' || c == ':') {
        problem = std::string("it contains '") + c + "'";
      } else if (c == '+') {
        problem = "it contains '+', which iptables would read as a wildcard";
      }
      if (!problem.empty()) break;
    }
  }
  if (!problem.empty()) {
    error(v.source(),
          "interface " + quoted(name) + " is not a valid Linux interface name: " + problem);
    return std::nullopt;
  }
  return name;
}

ConfigError syntax_error(const std::string& name, const toml::parse_error& e) {
  return {name, static_cast<int>(e.source().begin.line),
          static_cast<int>(e.source().begin.column), std::string(e.description())};
}

// One "key = value" line of check-config's output, with an aligned comment if any.
void emit(std::string& out, const std::string& text, std::string_view comment = {}) {
  out += text;
  if (!comment.empty()) {
    out.append(text.size() < 28 ? 28 - text.size() : 1, ' ');
    out += "# ";
    out += comment;
  }
  out += '\n';
}

std::string mss_text(std::uint16_t mss) { return mss == 0 ? "\"off\"" : std::to_string(mss); }

std::string hooks_text(const std::vector<Argv>& hooks) {
  std::string out = "[";
  for (std::size_t i = 0; i < hooks.size(); ++i) {
    out += i == 0 ? "[" : ", [";
    for (std::size_t j = 0; j < hooks[i].size(); ++j)
      out += (j == 0 ? "" : ", ") + quoted(hooks[i][j]);
    out += ']';
  }
  return out + ']';
}

std::string target_text(const std::string& target) {
  return quoted(target.empty() ? "peer" : target);
}

bool contains_key(const std::vector<std::string>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

}  // namespace

bool TunnelConfig::from_file(std::string_view key) const {
  return contains_key(keys_from_file, key);
}

bool GlobalConfig::from_file(std::string_view key) const {
  return contains_key(keys_from_file, key);
}

bool key_implemented(std::string_view key) {
  const KeyInfo* info = find_key(key);
  return info != nullptr && info->implemented;
}

std::string ConfigError::to_string() const {
  if (line <= 0) return file + ": " + message;
  std::string out = file + ':' + std::to_string(line);
  if (column > 0) out += ':' + std::to_string(column);
  return out + ": " + message;
}

ConfigResult parse_config(std::string_view text, const std::string& name,
                          const ParseOptions& options) {
  toml::table root;
#if TOML_EXCEPTIONS
  try {
    root = toml::parse(text, std::string_view{name});
  } catch (const toml::parse_error& e) {
    return std::vector<ConfigError>{syntax_error(name, e)};
  }
#else
  toml::parse_result parsed = toml::parse(text, std::string_view{name});
  if (!parsed) return std::vector<ConfigError>{syntax_error(name, parsed.error())};
  root = std::move(parsed).table();
#endif
  Config config;
  config.path = name;
  Checker checker(name, options);
  checker.check_root(root, config);
  std::vector<ConfigError> errors = checker.take_errors();
  if (!errors.empty()) return errors;
  config.warnings = checker.take_warnings();
  return config;
}

ConfigResult load_config(const std::string& path, const ParseOptions& options) {
  auto failed = [&path](std::string message) {
    return ConfigResult{std::vector<ConfigError>{{path, 0, 0, "cannot read: " + message}}};
  };
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "r"),
                                                             &std::fclose);
  if (!file) return failed(std::strerror(errno));
  std::string text;
  std::array<char, 65536> buf{};
  for (;;) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), file.get());
    text.append(buf.data(), n);
    if (text.size() > kMaxFileBytes)
      return failed("larger than 1 MiB, which no tunshim config is");
    if (n < buf.size()) {
      if (std::ferror(file.get())) return failed(std::strerror(errno));
      break;
    }
  }
  return parse_config(text, path, options);
}

std::string format_config(const Config& config, const ParseOptions& options) {
  // Keys the daemon does not implement are left out: printing them would suggest they act.
  const auto shown = [&options](std::string_view key) {
    return options.accept_unimplemented || key_implemented(key);
  };
  std::string out = "# Effective configuration";
  if (!config.path.empty()) out += " of " + quoted(config.path);
  out += "\n# (\"default\" marks values the file does not set.)\n";
  for (const ConfigError& w : config.warnings)
    out += "# warning: " + one_line(w.to_string()) + '\n';
  out += "\n[global]\n";
  const GlobalConfig& g = config.global;
  const auto dflt = [](bool from_file) { return from_file ? "" : "default"; };
  emit(out, "log_level = " + quoted(g.log_level), dflt(g.log_level_from_file));
  emit(out, "queue_num = " + std::to_string(g.queue_num), dflt(g.queue_num_from_file));
  emit(out, "queue_maxlen = " + std::to_string(g.queue_maxlen), dflt(g.queue_maxlen_from_file));
  if (shown("stats_listen")) {
    emit(out, "stats_listen = " + quoted(g.stats_listen ? listen_text(*g.stats_listen) : "off"),
         dflt(g.from_file("stats_listen")));
  }
  if (shown("control_socket")) {
    emit(out, "control_socket = " + quoted(g.control_socket.empty() ? "off" : g.control_socket),
         dflt(g.from_file("control_socket")));
  }
  for (const TunnelConfig& t : config.tunnels) {
    out += '\n';
    emit(out, "[[tunnel]]", t.line > 0 ? "line " + std::to_string(t.line) : "");
    emit(out, "interface = " + quoted(t.interface));
    if (t.mss4_auto) {
      emit(out, "mss = \"auto\"", "until the first search: " + std::to_string(t.mss4));
    } else {
      emit(out, "mss = " + mss_text(t.mss4));
    }
    std::string why;
    if (t.mss6_auto) {
      why = std::string(t.mss6_from_file ? "" : "default: \"auto\", like mss; ") +
            "until the first search: " + std::to_string(t.mss6);
    } else if (!t.mss6_from_file) {
      why = t.mss4 == 0                      ? "default: \"off\", like mss"
            : t.mss6 + kMss6Offset == t.mss4 ? "default: mss - 20 (same link MTU)"
                                             : "default: mss - 20, raised to the IPv6 minimum";
    }
    emit(out, "mss6 = " + (t.mss6_auto ? std::string("\"auto\"") : mss_text(t.mss6)), why);
    if (shown("guard")) {
      emit(out, std::string("guard = ") + (t.guard == Guard::icmp ? "\"icmp\"" : "\"off\""),
           t.from_file("guard")     ? ""
           : t.guard == Guard::icmp ? "default with mss \"auto\""
                                    : "default");
    }
    if (shown("set_interface_mtu")) {
      emit(out, std::string("set_interface_mtu = ") + (t.set_interface_mtu ? "true" : "false"),
           dflt(t.from_file("set_interface_mtu")));
    }
    if (shown("probe_target")) {
      emit(out, "probe_target = " + target_text(t.probe_target),
           dflt(t.from_file("probe_target")));
    }
    if (shown("probe_min")) {
      emit(out, "probe_min = " + std::to_string(t.probe_min), dflt(t.from_file("probe_min")));
    }
    if (shown("probe_max")) {
      emit(out,
           "probe_max = " +
               (t.probe_max == 0 ? std::string("\"interface\"") : std::to_string(t.probe_max)),
           dflt(t.from_file("probe_max")));
    }
    if (shown("reprobe_interval")) {
      emit(out, "reprobe_interval = " + quoted(duration_text(t.reprobe_interval)),
           dflt(t.from_file("reprobe_interval")));
    }
    if (shown("keepalive")) {
      constexpr std::array<std::string_view, 3> kModes{"idle", "always", "off"};
      emit(out, "keepalive = " + quoted(kModes[static_cast<std::size_t>(t.keepalive)]),
           dflt(t.from_file("keepalive")));
    }
    if (shown("keepalive_interval")) {
      emit(out, "keepalive_interval = " + quoted(duration_text(t.keepalive_interval)),
           dflt(t.from_file("keepalive_interval")));
    }
    if (shown("keepalive_target")) {
      emit(out, "keepalive_target = " + target_text(t.keepalive_target),
           dflt(t.from_file("keepalive_target")));
    }
    if (shown("down_after_misses")) {
      emit(out, "down_after_misses = " + std::to_string(t.down_after_misses),
           dflt(t.from_file("down_after_misses")));
    }
    if (shown("on_down"))
      emit(out, "on_down = " + hooks_text(t.on_down), dflt(t.from_file("on_down")));
    if (shown("on_up")) emit(out, "on_up = " + hooks_text(t.on_up), dflt(t.from_file("on_up")));
    if (shown("hook_timeout")) {
      emit(out, "hook_timeout = " + quoted(duration_text(t.hook_timeout)),
           dflt(t.from_file("hook_timeout")));
    }
    if (shown("backoff_max")) {
      emit(out, "backoff_max = " + quoted(duration_text(t.backoff_max)),
           dflt(t.from_file("backoff_max")));
    }
  }
  return out;
}

}  // namespace tunshim::proxy
