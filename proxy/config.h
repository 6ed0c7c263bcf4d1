// The daemon's configuration: TOML in, a validated immutable Config out. No side effects:
// loading a config never touches the system, so a reload can be refused cleanly.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace tunshim::proxy {

struct TunnelConfig {
  std::string interface;   // matched by name; may not exist yet (e.g. "ppp0")
  std::uint16_t mss4 = 0;  // clamp target for IPv4 SYNs; 0 = clamping off
  std::uint16_t mss6 = 0;  // clamp target for IPv6 SYNs; 0 = clamping off
  int line = 0;            // where the [[tunnel]] table starts, for messages
};

// NFQUEUE defaults: a queue number unlikely to collide with other users, and a queue long
// enough to ride out a SYN burst; the socket buffer is sized from it (see nfqueue.cpp).
inline constexpr std::uint16_t kDefaultQueueNum = 4770;
inline constexpr std::uint32_t kDefaultQueueMaxlen = 8192;

struct GlobalConfig {
  std::string log_level = "info";
  std::uint16_t queue_num = kDefaultQueueNum;
  std::uint32_t queue_maxlen = kDefaultQueueMaxlen;
};

struct Config {
  std::string path;  // file it came from
  GlobalConfig global;
  std::vector<TunnelConfig> tunnels;
};

struct ConfigError {
  std::string file;
  int line = 0;     // 1-based; 0 when the error is about the whole file
  int column = 0;   // 1-based; 0 when unknown
  std::string message;
  // "file:line:column: message" (or "file: message" without a position).
  std::string to_string() const;
};

using ConfigResult = std::variant<Config, std::vector<ConfigError>>;

// Parses and validates TOML text; `name` is used in messages. Every error found is
// returned, not just the first.
ConfigResult parse_config(std::string_view text, const std::string& name);
// Reads `path` and parses it; an unreadable file is one ConfigError.
ConfigResult load_config(const std::string& path);

}  // namespace tunshim::proxy
