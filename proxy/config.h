// The daemon's configuration: TOML in, a validated immutable Config out. No side effects:
// loading a config never touches the system, so a reload can be refused cleanly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "clamp/mtu.h"

namespace tunshim::proxy {

// Accepted MSS targets. The minima are what a host must accept without an MSS option
// (RFC 1122: 536; RFC 8200's 1280-byte minimum MTU: 1220), so a clamp never asks for less
// than the path is guaranteed to carry. The maxima are the largest IP packet minus the
// minimal headers (65535 - 40, 65535 - 60).
inline constexpr std::uint16_t kMinMss4 = clamp::kDefaultMss4;
inline constexpr std::uint16_t kMaxMss4 = 65535 - clamp::kIpv4HeaderMin - clamp::kTcpHeaderMin;
inline constexpr std::uint16_t kMinMss6 = clamp::kDefaultMss6;
inline constexpr std::uint16_t kMaxMss6 = 65535 - clamp::kIpv6HeaderLen - clamp::kTcpHeaderMin;
// An IPv6 packet carries 20 more header bytes than IPv4 over the same link MTU.
inline constexpr std::uint16_t kMss6Offset = clamp::kIpv6HeaderLen - clamp::kIpv4HeaderMin;
// IFNAMSIZ (16) includes the terminating NUL.
inline constexpr std::size_t kMaxInterfaceName = 15;

struct TunnelConfig {
  std::string interface;        // matched by name; may not exist yet (e.g. "ppp0")
  std::uint16_t mss4 = 0;       // clamp target for IPv4 SYNs; 0 = clamping off
  std::uint16_t mss6 = 0;       // clamp target for IPv6 SYNs; 0 = clamping off
  int line = 0;                 // where the [[tunnel]] table starts, for messages
  bool mss6_from_file = false;  // false: mss6 was derived from mss (check-config says so)
};

// NFQUEUE defaults: a queue number unlikely to collide with other users, and a queue long
// enough to ride out a SYN burst; the socket buffer is sized from it (see nfqueue.cpp).
inline constexpr std::uint16_t kDefaultQueueNum = 4770;
inline constexpr std::uint32_t kDefaultQueueMaxlen = 8192;
// Below 64 a single SYN burst overflows the queue; above 2^20 the receive buffer sized
// from it would pin hundreds of MB.
inline constexpr std::uint32_t kMinQueueMaxlen = 64;
inline constexpr std::uint32_t kMaxQueueMaxlen = 1048576;

struct GlobalConfig {
  std::string log_level = "info";
  std::uint16_t queue_num = kDefaultQueueNum;
  std::uint32_t queue_maxlen = kDefaultQueueMaxlen;
  // Which values the file set; the others are defaults (check-config marks them).
  bool log_level_from_file = false;
  bool queue_num_from_file = false;
  bool queue_maxlen_from_file = false;
};

struct Config {
  std::string path;  // file it came from
  GlobalConfig global;
  std::vector<TunnelConfig> tunnels;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is about the whole file
  int column = 0;  // 1-based; 0 when unknown
  std::string message;
  // "file:line:column: message" (or "file: message" without a position).
  std::string to_string() const;
};

using ConfigResult = std::variant<Config, std::vector<ConfigError>>;

// Parses and validates TOML text; `name` is used in messages. Every error found is
// returned, not just the first, sorted by position. Never throws, never touches the system.
ConfigResult parse_config(std::string_view text, const std::string& name);
// Reads `path` and parses it; an unreadable file is one ConfigError.
ConfigResult load_config(const std::string& path);

// The effective configuration as TOML: every value, defaults filled in and marked with a
// comment. Parsing the output again yields the same values.
std::string format_config(const Config& config);

}  // namespace tunshim::proxy
