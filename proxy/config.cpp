// Config parsing and validation. toml++ does the syntax; one schema (kGlobalKeys,
// kTunnelKeys) says per key how its value is read, checked and printed and which member it
// sets, and drives parsing, "unknown key" messages and check-config's printout. The checks
// that involve several keys run after the table pass. Every problem is collected with the
// position toml++ recorded for the offending key or value.
#include "proxy/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

#include "proxy/iface_pattern.h"
#include "proxy/log.h"

namespace tunshim::proxy {
namespace {

// Far above any real config; refusing early keeps a mistaken path (a log, a disk image)
// from being read into memory.
constexpr std::size_t kMaxFileBytes = std::size_t{1} << 20;

enum class Section { top, global, tunnel };

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
// The value readers are what the schema's entries call: each returns the value, or nullopt
// after reporting why it is not one.
class Checker {
 public:
  explicit Checker(const std::string& file) : file_(file) {}

  void check_root(const toml::table& root, Config& out);
  std::vector<ConfigError> take_errors();
  std::vector<ConfigError> take_warnings() { return std::move(warnings_); }

  // An MSS setting as written: a number, "off" (0) or "auto".
  struct Mss {
    std::uint16_t value = 0;
    bool is_auto = false;
  };

  void error(const toml::source_region& where, std::string message) {
    errors_.push_back(at(where, std::move(message)));
  }
  void warning(const toml::source_region& where, std::string message) {
    warnings_.push_back(at(where, std::move(message)));
  }
  std::optional<std::int64_t> integer(const toml::node& v, std::string_view key,
                                      std::int64_t min, std::int64_t max);
  std::optional<Mss> mss(const toml::node& v, std::string_view key, std::uint16_t min,
                         std::uint16_t max);
  std::optional<std::string> interface_name(const toml::node& v);
  std::optional<bool> boolean(const toml::node& v, std::string_view key);
  // The index of the string value in `choices`.
  std::optional<std::size_t> choice(const toml::node& v, std::string_view key,
                                    std::span<const std::string_view> choices);
  std::optional<Millis> duration(const toml::node& v, std::string_view key, Millis min,
                                 Millis max);
  // "peer" (returned as "") or a numeric unicast IPv4/IPv6 address.
  std::optional<std::string> target(const toml::node& v, std::string_view key);
  std::optional<std::optional<ListenAddress>> listen(const toml::node& v, std::string_view key);
  std::optional<std::string> socket_path(const toml::node& v, std::string_view key);
  // The commands, and in `programs` where each one's program (argv[0]) is written.
  std::optional<std::vector<Argv>> hooks(const toml::node& v, std::string_view key,
                                         std::vector<SourcePosition>& programs);

 private:
  struct TunnelCheck {
    TunnelConfig config;
    bool ok = true;
    bool has_interface = false;
    toml::source_region interface_at;
  };

  ConfigError at(const toml::source_region& where, std::string message) const {
    return {file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column),
            std::move(message)};
  }
  void error(std::string message) { errors_.push_back({file_, 0, 0, std::move(message)}); }

  void check_global(const toml::table& table, GlobalConfig& out);
  TunnelCheck check_tunnel(const toml::table& table);
  // Reports a key that is not in `section`'s schema: misplaced, or unknown (with the
  // nearest known name when it looks like a typo).
  void not_here(const toml::key& key, Section section);

  const std::string& file_;
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
      not_here(key, Section::top);
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
      // An exact name beats a pattern; two patterns that could match one name leave no
      // rule to pick the settings by.
      const std::string& a = tunnels[i].config.interface;
      const std::string& b = tunnels[j].config.interface;
      if (tunnels[j].has_interface && iface_patterns_overlap(a, b)) {
        error(tunnels[i].interface_at,
              "interface pattern " + quoted(a) + " overlaps " + quoted(b) +
                  " of the [[tunnel]] at line " + std::to_string(tunnels[j].config.line) +
                  ": an interface such as " + quoted(iface_overlap_longer(a, b)) +
                  " would match both (make the prefixes part, e.g. \"ppp+\" and \"tun+\", "
                  "or name the interface exactly: an exact name beats a pattern)");
        tunnels[i].ok = false;
        break;
      }
    }
    if (tunnels[i].ok) out.tunnels.push_back(tunnels[i].config);
  }
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
    if (s->get() == "auto") return Mss{0, true};
  }
  if (!v.is_integer()) {
    error(v.source(), k + " must be an integer, \"off\" or \"auto\", not " + what_is(v));
    return std::nullopt;
  }
  const std::int64_t n = *v.value<std::int64_t>();
  if (n < min || n > max) {
    error(v.source(), k + " must be between " + std::to_string(min) + " and " +
                          std::to_string(max) + " (or \"off\" or \"auto\"), not " +
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
                                           std::span<const std::string_view> choices) {
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

std::optional<std::vector<Argv>> Checker::hooks(const toml::node& v, std::string_view key,
                                                std::vector<SourcePosition>& programs) {
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
    const toml::source_region& p = argv->get(0)->source();
    programs.push_back({static_cast<int>(p.begin.line), static_cast<int>(p.begin.column)});
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
  // The kernel's dev_valid_name() rules, plus control characters (they would garble logs);
  // a final '+' makes it a pattern (iface_pattern.h), as in iptables.
  std::string problem;
  if (name.empty()) {
    problem = "it is empty";
  } else if (name.size() > kMaxInterfaceName) {
    problem = "it is " + std::to_string(name.size()) +
              " bytes long, and Linux allows at most " + std::to_string(kMaxInterfaceName);
  } else if (name == "." || name == "..") {
    problem = "Linux reserves \".\" and \"..\"";
  } else {
    for (std::size_t i = 0; i < name.size(); ++i) {
      const char c = name[i];
      const auto u = static_cast<unsigned char>(c);
      // The kernel's isspace() also counts Latin-1 NBSP (0xA0), a byte inside some UTF-8.
      if (c == ' ' || (c >= '\t' && c <= '\r') || u == 0xA0) {
        problem = "it contains whitespace";
      } else if (u < 0x20 || u == 0x7f) {
        problem = "it contains a control character";
      } else if (c == '/' || c == ':') {
        problem = std::string("it contains '") + c + "'";
      } else if (c == '+' && i + 1 != name.size()) {
        problem = "'+' may only end it (\"ppp+\": every interface whose name starts with ppp)";
      } else if (c == '+' && name.size() == 1) {
        problem =
            "\"+\" alone would match every interface (lo and the LAN included); "
            "write the prefix, e.g. \"ppp+\"";
      }
      if (!problem.empty()) break;
    }
  }
  if (!problem.empty()) {
    error(v.source(),
          "interface " + quoted(name) + " is not a valid Linux interface name: " + problem);
    return std::nullopt;
  }
  // '*' is a legal byte in a name and iptables reads it literally: so does tunshim.
  if (name.find('*') != std::string::npos) {
    warnings_.push_back(at(v.source(), "interface " + quoted(name) +
                                           " is matched literally ('*' is no wildcard); for "
                                           "every interface starting with a prefix write \"" +
                                           name.substr(0, name.find('*')) + "+\""));
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

// ---- the schema
// ------------------------------------------------------------------------------ One entry per
// key, in check-config's print order: how its value is read into the section's struct
// (reporting why not), how it prints as TOML that reads back to the same value, and the comment
// printed after it (none given: "default" when the file does not set the key). Keys whose value
// depends on other keys (mss, mss6, guard, probe_max) store what was written;
// Checker::check_tunnel resolves them after the table pass.

template <class S>
struct Key {
  std::string_view name;
  std::function<bool(Checker&, const toml::node&, S&)> read;
  std::function<std::string(const S&)> print;
  std::function<std::string(const S&)> note;
};

// A key stored in one member through one of Checker's readers; `read(checker, value, name)`
// returns an optional of something convertible to the member.
template <class S, class T, class Read, class Print>
Key<S> member(std::string_view name, T S::*field, Read read, Print print,
              std::type_identity_t<std::function<std::string(const S&)>> note = nullptr) {
  return {name,
          [name, field, read](Checker& c, const toml::node& v, S& out) {
            auto value = read(c, v, name);
            if (!value) return false;
            out.*field = static_cast<T>(std::move(*value));
            return true;
          },
          [field, print](const S& s) { return print(s.*field); }, std::move(note)};
}

auto integer(std::int64_t min, std::int64_t max) {
  return [min, max](Checker& c, const toml::node& v, std::string_view k) {
    return c.integer(v, k, min, max);
  };
}
auto duration(Millis min, Millis max) {
  return [min, max](Checker& c, const toml::node& v, std::string_view k) {
    return c.duration(v, k, min, max);
  };
}
template <std::size_t N>
auto choice(const std::array<std::string_view, N>& names) {
  return [&names](Checker& c, const toml::node& v, std::string_view k) {
    return c.choice(v, k, names);
  };
}
template <class E, std::size_t N>
auto choice_text(const std::array<std::string_view, N>& names) {
  return [&names](E e) { return quoted(names[static_cast<std::size_t>(e)]); };
}
const auto boolean = [](Checker& c, const toml::node& v, std::string_view k) {
  return c.boolean(v, k);
};
const auto target = [](Checker& c, const toml::node& v, std::string_view k) {
  return c.target(v, k);
};
const auto number = [](auto n) { return std::to_string(n); };
const auto duration_value = [](Millis d) { return quoted(duration_text(d)); };

constexpr std::array<std::string_view, 2> kGuardNames{"off", "icmp"};  // Guard's order
constexpr std::array<std::string_view, 3> kKeepaliveNames{"idle", "always", "off"};
constexpr std::array<std::string_view, 3> kDatapathNames{"auto", "bpf", "queue"};  // Datapath's

const std::vector<Key<GlobalConfig>> kGlobalKeys{
    member(
        "log_level", &GlobalConfig::log_level,
        [](Checker& c, const toml::node& v, std::string_view) -> std::optional<std::string> {
          const auto* s = v.as_string();
          if (s == nullptr) {
            c.error(
                v.source(),
                "log_level must be a string (trace, debug, info, warn, error or off), not " +
                    what_is(v));
            return std::nullopt;
          }
          if (!parse_log_level(s->get())) {
            c.error(v.source(),
                    "log_level must be one of trace, debug, info, warn, error, off; not " +
                        quoted(s->get()));
            return std::nullopt;
          }
          return s->get();
        },
        quoted),
    member("datapath", &GlobalConfig::datapath, choice(kDatapathNames),
           choice_text<Datapath>(kDatapathNames)),
    member("queue_num", &GlobalConfig::queue_num, integer(0, 65535), number),
    member("queue_maxlen", &GlobalConfig::queue_maxlen,
           integer(kMinQueueMaxlen, kMaxQueueMaxlen), number),
    member("max_concurrent_searches", &GlobalConfig::max_concurrent_searches,
           integer(kMinMaxConcurrentSearches, kMaxMaxConcurrentSearches), number),
    member(
        "stats_listen", &GlobalConfig::stats_listen,
        [](Checker& c, const toml::node& v, std::string_view k) {
          auto l = c.listen(v, k);
          if (l && *l && !(*l)->loopback) {
            c.warning(v.source(), "stats_listen " + quoted(v.as_string()->get()) +
                                      " is not a loopback address: anyone who can reach it "
                                      "reads the stats (the server has no authentication)");
          }
          return l;
        },
        [](const std::optional<ListenAddress>& l) {
          return quoted(l ? listen_text(*l) : "off");
        }),
    member(
        "control_socket", &GlobalConfig::control_socket,
        [](Checker& c, const toml::node& v, std::string_view k) { return c.socket_path(v, k); },
        [](const std::string& p) { return quoted(p.empty() ? "off" : p); }),
};

// on_down / on_up: the commands and where each program is written.
Key<TunnelConfig> hook_key(std::string_view name, std::vector<Argv> TunnelConfig::*commands,
                           std::vector<SourcePosition> TunnelConfig::*programs) {
  return {name,
          [name, commands, programs](Checker& c, const toml::node& v, TunnelConfig& t) {
            std::vector<SourcePosition> at;
            auto h = c.hooks(v, name, at);
            if (!h) return false;
            t.*commands = std::move(*h);
            t.*programs = std::move(at);
            return true;
          },
          [commands](const TunnelConfig& t) { return hooks_text(t.*commands); }, nullptr};
}

const std::vector<Key<TunnelConfig>> kTunnelKeys{
    member(
        "interface", &TunnelConfig::interface,
        [](Checker& c, const toml::node& v, std::string_view) { return c.interface_name(v); },
        quoted, [](const TunnelConfig&) { return std::string(); }),  // required: no default
    {"mss",
     [](Checker& c, const toml::node& v, TunnelConfig& t) {
       const auto m = c.mss(v, "mss", kMinMss4, kMaxMss4);
       if (!m) return false;
       t.mss4 = m->value;
       t.mss4_auto = m->is_auto;
       return true;
     },
     [](const TunnelConfig& t) { return t.mss4_auto ? "\"auto\"" : mss_text(t.mss4); },
     [](const TunnelConfig& t) {
       return t.mss4_auto ? "until the first search: " + std::to_string(t.mss4) : "";
     }},
    {"mss6",
     [](Checker& c, const toml::node& v, TunnelConfig& t) {
       const auto m = c.mss(v, "mss6", kMinMss6, kMaxMss6);
       if (!m) return false;
       t.mss6 = m->value;
       t.mss6_auto = m->is_auto;
       return true;
     },
     [](const TunnelConfig& t) { return t.mss6_auto ? "\"auto\"" : mss_text(t.mss6); },
     [](const TunnelConfig& t) -> std::string {
       const bool set = t.from_file("mss6");
       if (t.mss6_auto) {
         return std::string(set ? "" : "default: \"auto\", like mss; ") +
                "until the first search: " + std::to_string(t.mss6);
       }
       if (set) return "";
       return t.mss4 == 0 ? "default: \"off\", like mss"
              : t.mss6 + kMss6Offset == t.mss4
                  ? "default: mss - 20 (same link MTU)"
                  : "default: mss - 20, raised to the IPv6 minimum";
     }},
    member("guard", &TunnelConfig::guard, choice(kGuardNames), choice_text<Guard>(kGuardNames),
           [](const TunnelConfig& t) -> std::string {
             return t.from_file("guard")     ? ""
                    : t.guard == Guard::icmp ? "default with mss \"auto\""
                                             : "default";
           }),
    member("set_interface_mtu", &TunnelConfig::set_interface_mtu, boolean,
           [](bool b) { return std::string(b ? "true" : "false"); }),
    member("probe_target", &TunnelConfig::probe_target, target, target_text),
    member("probe_min", &TunnelConfig::probe_min, integer(kMinProbeMin, kMaxProbeMin), number),
    member(
        "probe_max", &TunnelConfig::probe_max,
        [](Checker& c, const toml::node& v, std::string_view k) -> std::optional<std::int64_t> {
          if (const auto* s = v.as_string(); s != nullptr && s->get() == "interface") return 0;
          if (v.is_integer()) return c.integer(v, k, kMinProbeMin, kMaxProbeMax);
          c.error(v.source(),
                  "probe_max must be \"interface\" or an integer, not " + what_is(v));
          return std::nullopt;
        },
        [](std::uint16_t n) {
          return n == 0 ? std::string("\"interface\"") : std::to_string(n);
        }),
    member("reprobe_interval", &TunnelConfig::reprobe_interval,
           duration(kMinReprobeInterval, kMaxReprobeInterval), duration_value),
    member("keepalive", &TunnelConfig::keepalive, choice(kKeepaliveNames),
           choice_text<KeepaliveMode>(kKeepaliveNames)),
    member("keepalive_interval", &TunnelConfig::keepalive_interval,
           duration(kMinKeepaliveInterval, kMaxKeepaliveInterval), duration_value),
    member("keepalive_target", &TunnelConfig::keepalive_target, target, target_text),
    member("down_after_misses", &TunnelConfig::down_after_misses,
           integer(kMinDownAfterMisses, kMaxDownAfterMisses), number),
    hook_key("on_down", &TunnelConfig::on_down, &TunnelConfig::on_down_at),
    hook_key("on_up", &TunnelConfig::on_up, &TunnelConfig::on_up_at),
    member("hook_timeout", &TunnelConfig::hook_timeout,
           duration(kMinHookTimeout, kMaxHookTimeout), duration_value),
    member("backoff_max", &TunnelConfig::backoff_max, duration(kMinBackoffMax, kMaxBackoffMax),
           duration_value),
};

template <class S>
const Key<S>* find_key(const std::vector<Key<S>>& keys, std::string_view name) {
  for (const Key<S>& k : keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

// A key's line in check-config's output.
template <class S>
void emit_key(std::string& out, const Key<S>& k, const S& section) {
  const std::string value = std::string(k.name) + " = " + k.print(section);
  if (k.note) {
    emit(out, value, k.note(section));
  } else {
    emit(out, value, section.from_file(k.name) ? "" : "default");
  }
}

// ---- the table pass and the checks across keys ----------------------------------------------

void Checker::check_global(const toml::table& table, GlobalConfig& out) {
  for (auto&& [key, value] : table) {
    const Key<GlobalConfig>* k = find_key(kGlobalKeys, key.str());
    if (k == nullptr) {
      not_here(key, Section::global);
    } else if (k->read(*this, value, out)) {
      out.keys_from_file.emplace_back(k->name);
    }
  }
}

Checker::TunnelCheck Checker::check_tunnel(const toml::table& table) {
  TunnelCheck r;
  TunnelConfig& c = r.config;
  c.line = static_cast<int>(table.source().begin.line);
  for (auto&& [key, value] : table) {
    const Key<TunnelConfig>* k = find_key(kTunnelKeys, key.str());
    if (k == nullptr) {
      not_here(key, Section::tunnel);
      r.ok = false;
    } else if (k->read(*this, value, c)) {
      c.keys_from_file.emplace_back(k->name);
    } else {
      r.ok = false;
    }
  }
  if (const toml::node* name = table.get("interface"); name == nullptr) {
    error(table.source(),
          "this [[tunnel]] has no interface: set interface = \"NAME\" (e.g. \"ppp0\")");
    r.ok = false;
  } else if (c.from_file("interface")) {
    r.has_interface = true;
    r.interface_at = name->source();
  }
  const bool has_mss = table.contains("mss");
  const bool has_mss6 = table.contains("mss6");
  if (!has_mss) {
    error(table.source(),
          "this [[tunnel]] has no mss: set mss to the IPv4 MSS target (e.g. 1360) or \"off\"");
    r.ok = false;
  }
  // probe_max's lower bound is probe_min.
  if (c.from_file("probe_max") && c.probe_max != 0 && c.probe_max < c.probe_min) {
    error(table.get("probe_max")->source(),
          "probe_max must be \"interface\" or between probe_min (" +
              std::to_string(c.probe_min) + ") and " + std::to_string(kMaxProbeMax) + ", not " +
              std::to_string(c.probe_max));
    r.ok = false;
  }
  if (!c.from_file("mss") || (has_mss6 && !c.from_file("mss6"))) return r;

  // "auto" clamps to the fallback size's MSS until the first search completes.
  if (c.mss4_auto) c.mss4 = clamp::mss_from_mtu4(c.probe_min);
  if (has_mss6) {
    if (c.mss6_auto) c.mss6 = kAutoMss6Fallback;
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
  if (c.mss4 == 0 && c.mss6 == 0 && c.keepalive == KeepaliveMode::off) {
    error(table.source(),
          has_mss6 ? "mss and mss6 are both \"off\": this [[tunnel]] has nothing to do"
                   : "mss is \"off\" and mss6 follows it by default: this [[tunnel]] "
                     "has nothing to do (set mss6 to clamp IPv6 only)");
    r.ok = false;
  }
  return r;
}

void Checker::not_here(const toml::key& key, Section section) {
  const std::string_view k = key.str();
  const bool global = find_key(kGlobalKeys, k) != nullptr;
  if (global || find_key(kTunnelKeys, k) != nullptr) {
    error(key.source(),
          std::string(k) +
              (global ? " belongs in [global], not " : " belongs in a [[tunnel]] table, not ") +
              std::string(where(section)));
    return;
  }
  std::vector<std::string_view> known;
  if (section == Section::top) known = {"global", "tunnel"};
  if (section == Section::global) {
    for (const auto& g : kGlobalKeys) known.push_back(g.name);
  }
  if (section == Section::tunnel) {
    for (const auto& t : kTunnelKeys) known.push_back(t.name);
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

std::string ConfigError::to_string() const {
  if (line <= 0) return file + ": " + message;
  std::string out = file + ':' + std::to_string(line);
  if (column > 0) out += ':' + std::to_string(column);
  return out + ": " + message;
}

ConfigResult parse_config(std::string_view text, const std::string& name) {
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
  Checker checker(name);
  checker.check_root(root, config);
  std::vector<ConfigError> errors = checker.take_errors();
  if (!errors.empty()) return errors;
  config.warnings = checker.take_warnings();
  return config;
}

// ---- reading the file, and whom it can be trusted from --------------------------------------

namespace {

// "a FIFO" …: what a file is when it is not a regular file; "" for a regular file.
std::string special_kind(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Why a config at `path` cannot be read, or "" with its bytes in `text`. Nothing here can
// block: special files are refused from their stat() (before open(), which for a device
// has effects of its own, and for a FIFO would wait for a writer), and the regular file is
// opened non-blocking, checked again through its descriptor and read up to a bound.
std::string read_regular_file(const std::string& path, std::string& text) {
  const auto kind_problem = [](mode_t mode) -> std::string {
    if (S_ISDIR(mode)) return std::strerror(EISDIR);
    const std::string kind = special_kind(mode);
    return kind.empty() ? "" : "it is " + kind + ", and a config must be a regular file";
  };
  const std::string too_big = "larger than 1 MiB, which no tunshim config is";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::strerror(errno);
  if (std::string p = kind_problem(st.st_mode); !p.empty()) return p;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return std::strerror(errno);
  const std::unique_ptr<const int, void (*)(const int*)> closer(
      &fd, [](const int* f) { ::close(*f); });
  // The path may name another file by now.
  if (::fstat(fd, &st) != 0) return std::strerror(errno);
  if (std::string p = kind_problem(st.st_mode); !p.empty()) return p;
  if (static_cast<std::uint64_t>(st.st_size) > kMaxFileBytes) return too_big;
  std::array<char, 65536> buf{};
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "";
    text.append(buf.data(), static_cast<std::size_t>(n));
    if (text.size() > kMaxFileBytes) return too_big;  // it grew after fstat()
  }
}

std::string mode_text(mode_t mode) {
  std::array<char, 8> buf{};
  std::snprintf(buf.data(), buf.size(), "%04o", static_cast<unsigned>(mode & 07777));
  return buf.data();
}

// What root may not trust about one entry met on a path (lstat() result); "" if nothing.
std::string entry_problem(const std::string& shown, const struct stat& st) {
  const bool dir = S_ISDIR(st.st_mode);
  const bool link = S_ISLNK(st.st_mode);
  const std::string what = dir ? "directory " + shown : link ? "symlink " + shown : shown;
  const std::string can = dir ? "can replace what is in it" : "can change it";
  if (st.st_uid != 0) {
    return what + " is owned by uid " + std::to_string(st.st_uid) +
           ", not root, so that user " + can + "; fix: chown " + (link ? "-h " : "") + "root " +
           shown;
  }
  // A symlink's own mode means nothing; a sticky directory (like /tmp) lets no one but
  // root rename or remove the root-owned entries checked after it.
  const mode_t writable = st.st_mode & (S_IWGRP | S_IWOTH);
  if (link || writable == 0 || (dir && (st.st_mode & S_ISVTX) != 0)) return "";
  const std::string who = writable == (S_IWGRP | S_IWOTH) ? "group and others"
                          : writable == S_IWGRP           ? "group"
                                                          : "others";
  return what + " is writable by " + who + " (mode " + mode_text(st.st_mode) +
         "), so users other than root " + can + "; fix: chmod go-w " + shown;
}

}  // namespace

std::vector<std::string> trust_problems(const std::string& path) {
  std::vector<std::string> problems;
  // The walk the kernel does to open `path`, one component at a time: every directory
  // passed through, every symlink followed (and the directories of its target) and the
  // file itself are checked, so no one but root can change what the path leads to.
  std::vector<std::string> todo;  // components still to walk, the next one last
  const auto push_front = [&todo](const std::string& p) {
    std::vector<std::string> parts;
    std::size_t at = 0;
    while (at <= p.size()) {
      const std::size_t slash = std::min(p.find('/', at), p.size());
      if (slash > at) parts.push_back(p.substr(at, slash - at));
      at = slash + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push_front(path);
  std::string at;  // the real path walked so far; "" is "/"
  if (path.empty() || path.front() != '/') {
    std::array<char, 4096> cwd{};
    if (::getcwd(cwd.data(), cwd.size()) == nullptr) {
      return {"cannot check " + one_line(path) + ": " + std::strerror(errno)};
    }
    push_front(cwd.data());
  }
  struct stat st {};
  if (::lstat("/", &st) != 0) return {std::string("cannot check /: ") + std::strerror(errno)};
  if (std::string p = entry_problem("/", st); !p.empty()) problems.push_back(p);
  int links = 0;
  while (!todo.empty()) {
    const std::string name = std::move(todo.back());
    todo.pop_back();
    if (name == ".") continue;
    if (name == "..") {
      at.resize(at.rfind('/') == std::string::npos ? 0 : at.rfind('/'));
      continue;
    }
    const std::string next = at + '/' + name;
    const std::string shown = one_line(next);
    if (::lstat(next.c_str(), &st) != 0) {
      problems.push_back("cannot check " + shown + ": " + std::strerror(errno));
      return problems;
    }
    if (std::string p = entry_problem(shown, st); !p.empty()) problems.push_back(p);
    if (!S_ISLNK(st.st_mode)) {
      at = next;
      continue;
    }
    // Linux follows at most 40 symlinks in one lookup.
    std::array<char, 4096> link_to{};
    const ssize_t n =
        ++links > 40 ? -1 : ::readlink(next.c_str(), link_to.data(), link_to.size());
    if (n < 0 || static_cast<std::size_t>(n) >= link_to.size()) {
      problems.push_back("cannot check " + shown + ": " +
                         std::strerror(links > 40 ? ELOOP
                                       : n < 0    ? errno
                                                  : ENAMETOOLONG));
      return problems;
    }
    const std::string to(link_to.data(), static_cast<std::size_t>(n));
    if (!to.empty() && to.front() == '/') at.clear();
    push_front(to);
  }
  return problems;
}

std::vector<ConfigError> check_hooks(const Config& config) {
  std::vector<ConfigError> errors;
  std::map<std::string, std::vector<std::string>> seen;  // program -> its problems
  const auto problems_of = [&seen](const std::string& program) {
    const auto found = seen.find(program);
    if (found != seen.end()) return found->second;
    std::vector<std::string> out;
    const std::string shown = one_line(program);
    struct stat st {};
    if (::stat(program.c_str(), &st) != 0) {
      out.push_back(errno == ENOENT
                        ? "does not exist"
                        : std::string("cannot be checked: ") + std::strerror(errno));
    } else if (const std::string kind = special_kind(st.st_mode); !kind.empty()) {
      out.push_back("is " + kind + ", not a program");
    } else {
      if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
        out.push_back("is not executable (mode " + mode_text(st.st_mode) +
                      "); fix: chmod u+x " + shown);
      }
      for (const std::string& p : trust_problems(program)) {
        out.push_back("could be changed by users other than root, and it runs as root: " + p);
      }
    }
    seen.emplace(program, out);
    return out;
  };
  for (const TunnelConfig& t : config.tunnels) {
    for (const auto& [key, commands, at] : {std::tuple{"on_down", &t.on_down, &t.on_down_at},
                                            std::tuple{"on_up", &t.on_up, &t.on_up_at}}) {
      for (std::size_t i = 0; i < commands->size(); ++i) {
        const std::string& program = (*commands)[i].at(0);
        const SourcePosition where = i < at->size() ? (*at)[i] : SourcePosition{t.line, 0};
        for (const std::string& p : problems_of(program)) {
          errors.push_back(
              {config.path, where.line, where.column,
               std::string("the program in ") + key + ", " + quoted(program) + ", " + p});
        }
      }
    }
  }
  return errors;
}

ConfigResult read_config(const std::string& path) {
  std::string text;
  if (std::string why = read_regular_file(path, text); !why.empty()) {
    return std::vector<ConfigError>{{path, 0, 0, "cannot read: " + why}};
  }
  return parse_config(text, path);
}

ConfigResult load_config(const std::string& path) {
  std::string text;
  if (std::string why = read_regular_file(path, text); !why.empty()) {
    return std::vector<ConfigError>{{path, 0, 0, "cannot read: " + why}};
  }
  std::vector<ConfigError> errors;
  for (const std::string& p : trust_problems(path)) {
    errors.push_back({path, 0, 0, "refused, root runs what this file says: " + p});
  }
  ConfigResult parsed = parse_config(text, path);
  if (auto* more = std::get_if<std::vector<ConfigError>>(&parsed)) {
    errors.insert(errors.end(), more->begin(), more->end());
  } else {
    for (ConfigError& e : check_hooks(std::get<Config>(parsed))) errors.push_back(std::move(e));
  }
  if (!errors.empty()) return errors;
  return parsed;
}

void log_config_warnings(const Config& config) {
  for (const ConfigError& w : config.warnings) spdlog::warn("{}", one_line(w.to_string()));
}

std::string format_config(const Config& config) {
  std::string out = "# Effective configuration";
  if (!config.path.empty()) out += " of " + quoted(config.path);
  out += "\n# (\"default\" marks values the file does not set.)\n";
  for (const ConfigError& w : config.warnings)
    out += "# warning: " + one_line(w.to_string()) + '\n';
  out += "\n[global]\n";
  for (const auto& k : kGlobalKeys) emit_key(out, k, config.global);
  for (const TunnelConfig& t : config.tunnels) {
    out += '\n';
    emit(out, "[[tunnel]]", t.line > 0 ? "line " + std::to_string(t.line) : "");
    for (const auto& k : kTunnelKeys) emit_key(out, k, t);
  }
  return out;
}

}  // namespace tunshim::proxy
