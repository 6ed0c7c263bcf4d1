// Config parsing and validation. toml++ does the syntax; this file checks every key against
// the known set and every value against its type and range, and collects all problems with
// the position toml++ recorded for the offending key or value.
#include "proxy/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "proxy/log.h"

namespace tunshim::proxy {
namespace {

// Far above any real config; refusing early keeps a mistaken path (a log, a disk image)
// from being read into memory.
constexpr std::size_t kMaxFileBytes = std::size_t{1} << 20;

constexpr std::array<std::string_view, 3> kGlobalKeys{"log_level", "queue_num", "queue_maxlen"};
constexpr std::array<std::string_view, 3> kTunnelKeys{"interface", "mss", "mss6"};
// Keys of the design that this version does not implement yet. They are refused by name,
// so a config written for a later version fails loudly instead of silently doing less.
constexpr std::array<std::string_view, 2> kGlobalPlanned{"stats_listen", "control_socket"};
// clang-format off
constexpr std::array<std::string_view, 14> kTunnelPlanned{
    "guard", "set_interface_mtu", "probe_target", "probe_min", "probe_max", "reprobe_interval",
    "keepalive", "keepalive_interval", "keepalive_target", "down_after_misses", "on_down",
    "on_up", "hook_timeout", "backoff_max"};
// clang-format on

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
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

enum class Section { top, global, tunnel };

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

// Collects errors while walking the parsed document; each check reports and carries on.
class Checker {
 public:
  explicit Checker(const std::string& file) : file_(file) {}

  void check_root(const toml::table& root, Config& out);
  std::vector<ConfigError> take_errors();

 private:
  struct TunnelCheck {
    TunnelConfig config;
    bool ok = true;
    bool has_interface = false;
    toml::source_region interface_at;
  };

  void error(const toml::source_region& at, std::string message) {
    errors_.push_back({file_, static_cast<int>(at.begin.line),
                       static_cast<int>(at.begin.column), std::move(message)});
  }
  void error(std::string message) { errors_.push_back({file_, 0, 0, std::move(message)}); }

  void check_global(const toml::table& table, GlobalConfig& out);
  TunnelCheck check_tunnel(const toml::table& table);
  void unknown_key(const toml::key& key, Section section);
  std::optional<std::int64_t> integer(const toml::node& v, std::string_view key,
                                      std::int64_t min, std::int64_t max);
  std::optional<std::uint16_t> mss(const toml::node& v, std::string_view key, std::uint16_t min,
                                   std::uint16_t max);
  std::optional<std::string> interface_name(const toml::node& v);

  const std::string& file_;
  std::vector<ConfigError> errors_;
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
      unknown_key(key, Section::top);
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
    if (k == "log_level") {
      if (const auto* s = value.as_string()) {
        if (parse_log_level(s->get())) {
          out.log_level = s->get();
          out.log_level_from_file = true;
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
        out.queue_num_from_file = true;
      }
    } else if (k == "queue_maxlen") {
      if (auto n = integer(value, k, kMinQueueMaxlen, kMaxQueueMaxlen)) {
        out.queue_maxlen = static_cast<std::uint32_t>(*n);
        out.queue_maxlen_from_file = true;
      }
    } else {
      unknown_key(key, Section::global);
    }
  }
}

Checker::TunnelCheck Checker::check_tunnel(const toml::table& table) {
  TunnelCheck r;
  r.config.line = static_cast<int>(table.source().begin.line);
  bool has_mss = false;
  bool has_mss6 = false;
  std::optional<std::uint16_t> mss4;
  std::optional<std::uint16_t> mss6;
  for (auto&& [key, value] : table) {
    const std::string_view k = key.str();
    if (k == "interface") {
      if (auto name = interface_name(value)) {
        r.config.interface = std::move(*name);
        r.has_interface = true;
        r.interface_at = value.source();
      } else {
        r.ok = false;
      }
    } else if (k == "mss") {
      has_mss = true;
      mss4 = mss(value, k, kMinMss4, kMaxMss4);
      r.ok = r.ok && mss4.has_value();
    } else if (k == "mss6") {
      has_mss6 = true;
      mss6 = mss(value, k, kMinMss6, kMaxMss6);
      r.ok = r.ok && mss6.has_value();
    } else {
      unknown_key(key, Section::tunnel);
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
  if (!mss4 || (has_mss6 && !mss6)) return r;

  r.config.mss4 = *mss4;
  if (has_mss6) {
    r.config.mss6 = *mss6;
    r.config.mss6_from_file = true;
  } else if (*mss4 != 0) {
    // Same link MTU for both families; never below what every IPv6 path carries.
    r.config.mss6 =
        std::max<std::uint16_t>(static_cast<std::uint16_t>(*mss4 - kMss6Offset), kMinMss6);
  }
  if (r.config.mss4 == 0 && r.config.mss6 == 0) {
    error(table.source(),
          has_mss6 ? "mss and mss6 are both \"off\": this [[tunnel]] has nothing to do"
                   : "mss is \"off\" and mss6 follows it by default: this [[tunnel]] "
                     "has nothing to do (set mss6 to clamp IPv6 only)");
    r.ok = false;
  }
  return r;
}

void Checker::unknown_key(const toml::key& key, Section section) {
  const std::string_view k = key.str();
  if (contains(kGlobalPlanned, k) || contains(kTunnelPlanned, k)) {
    error(key.source(), std::string(k) + " is not supported by this version of tunshim yet");
  } else if (section != Section::global && contains(kGlobalKeys, k)) {
    error(key.source(),
          std::string(k) + " belongs in [global], not " + std::string(where(section)));
  } else if (section != Section::tunnel && contains(kTunnelKeys, k)) {
    error(key.source(), std::string(k) + " belongs in a [[tunnel]] table, not " +
                            std::string(where(section)));
  } else {
    std::vector<std::string_view> known;
    if (section == Section::top) known = {"global", "tunnel"};
    if (section == Section::global) {
      known.assign(kGlobalKeys.begin(), kGlobalKeys.end());
      known.insert(known.end(), kGlobalPlanned.begin(), kGlobalPlanned.end());
    }
    if (section == Section::tunnel) {
      known.assign(kTunnelKeys.begin(), kTunnelKeys.end());
      known.insert(known.end(), kTunnelPlanned.begin(), kTunnelPlanned.end());
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

std::optional<std::uint16_t> Checker::mss(const toml::node& v, std::string_view key,
                                          std::uint16_t min, std::uint16_t max) {
  const std::string k(key);
  if (const auto* s = v.as_string()) {
    if (s->get() == "off") return std::uint16_t{0};
    if (s->get() == "auto") {
      error(v.source(),
            k + " = \"auto\" needs path-MTU discovery, which is not implemented in "
                "this version of tunshim yet; give a number (e.g. 1360) or \"off\"");
      return std::nullopt;
    }
  }
  if (!v.is_integer()) {
    error(v.source(), k + " must be an integer or \"off\", not " + what_is(v));
    return std::nullopt;
  }
  const std::int64_t n = *v.value<std::int64_t>();
  if (n < min || n > max) {
    error(v.source(), k + " must be between " + std::to_string(min) + " and " +
                          std::to_string(max) + " (or \"off\"), not " + std::to_string(n));
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(n);
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

}  // namespace

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
  return config;
}

ConfigResult load_config(const std::string& path) {
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
  return parse_config(text, path);
}

std::string format_config(const Config& config) {
  std::string out = "# Effective configuration";
  if (!config.path.empty()) out += " of " + quoted(config.path);
  out += "\n# (\"default\" marks values the file does not set.)\n\n[global]\n";
  const GlobalConfig& g = config.global;
  emit(out, "log_level = " + quoted(g.log_level), g.log_level_from_file ? "" : "default");
  emit(out, "queue_num = " + std::to_string(g.queue_num),
       g.queue_num_from_file ? "" : "default");
  emit(out, "queue_maxlen = " + std::to_string(g.queue_maxlen),
       g.queue_maxlen_from_file ? "" : "default");
  for (const TunnelConfig& t : config.tunnels) {
    out += '\n';
    emit(out, "[[tunnel]]", t.line > 0 ? "line " + std::to_string(t.line) : "");
    emit(out, "interface = " + quoted(t.interface));
    emit(out, "mss = " + mss_text(t.mss4));
    std::string why;
    if (!t.mss6_from_file) {
      why = t.mss4 == 0                      ? "default: \"off\", like mss"
            : t.mss6 + kMss6Offset == t.mss4 ? "default: mss - 20 (same link MTU)"
                                             : "default: mss - 20, raised to the IPv6 minimum";
    }
    emit(out, "mss6 = " + mss_text(t.mss6), why);
  }
  return out;
}

}  // namespace tunshim::proxy
