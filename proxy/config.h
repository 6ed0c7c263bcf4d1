// The daemon's configuration: TOML in, a validated immutable Config out. Nothing here changes
// the system, so a reload can be refused cleanly. load_config() also refuses a file, or a hook
// program, that a user other than root could change (see tunshim.conf(5), FILE PERMISSIONS).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
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

// Path-MTU probing. probe_min is the IPv4 fallback packet size (RFC 8899 BASE_PLPMTU) in
// effect until a search completes; 576 is the size every IPv4 host accepts (RFC 791), 9000
// a jumbo frame: a larger "minimum" is a typo. The IPv6 base is the 1280-byte minimum MTU.
inline constexpr std::uint16_t kDefaultProbeMin = 1200;
inline constexpr std::uint16_t kMinProbeMin = clamp::kMinMtu4;
inline constexpr std::uint16_t kMaxProbeMin = 9000;
inline constexpr std::uint16_t kProbeBase6 = clamp::kMinMtu6;
inline constexpr std::uint16_t kMaxProbeMax = 65535;
// mss = "auto": the clamp in effect until the first search completes is the fallback
// size's MSS (probe_min - 40 for IPv4, 1280 - 60 = 1220 for IPv6), which the path carries
// if it carries anything.
inline constexpr std::uint16_t kAutoMss6Fallback = clamp::mss_from_mtu6(kProbeBase6);

// Durations; each range keeps a typo ("10" meant as minutes, "1ms") from becoming a flood
// of probes or a watch that never fires.
using Millis = std::chrono::milliseconds;
inline constexpr Millis kDefaultReprobeInterval = std::chrono::minutes(10);
inline constexpr Millis kMinReprobeInterval = std::chrono::minutes(1);
inline constexpr Millis kMaxReprobeInterval = std::chrono::hours(24);
inline constexpr Millis kDefaultKeepaliveInterval = std::chrono::seconds(10);
inline constexpr Millis kMinKeepaliveInterval = std::chrono::seconds(1);
inline constexpr Millis kMaxKeepaliveInterval = std::chrono::hours(1);
inline constexpr Millis kDefaultHookTimeout = std::chrono::seconds(30);
inline constexpr Millis kMinHookTimeout = std::chrono::seconds(1);
inline constexpr Millis kMaxHookTimeout = std::chrono::hours(1);
inline constexpr Millis kDefaultBackoffMax = std::chrono::minutes(5);
inline constexpr Millis kMinBackoffMax = std::chrono::seconds(1);
inline constexpr Millis kMaxBackoffMax = std::chrono::hours(24);

// Liveness: consecutive missed keepalives before the tunnel is declared down.
inline constexpr int kDefaultDownAfterMisses = 3;
inline constexpr int kMinDownAfterMisses = 1;
inline constexpr int kMaxDownAfterMisses = 100;

// Oversize-DF guard: "off", or "icmp" (drop and answer with ICMP frag-needed / ICMPv6
// packet-too-big). Default: "icmp" when mss or mss6 is "auto" (the path MTU is known
// then), "off" otherwise.
enum class Guard : std::uint8_t { off, icmp };
// When keepalive echoes are sent: "idle" (only after keepalive_interval without traffic),
// "always" (every keepalive_interval) or "off". Default "idle".
enum class KeepaliveMode : std::uint8_t { idle, always, off };

// One hook command: argv[0] is an absolute path (no shell, no PATH lookup), never empty.
using Argv = std::vector<std::string>;

// Where something is written in the config file (1-based; 0 = unknown).
struct SourcePosition {
  int line = 0;
  int column = 0;
};

struct TunnelConfig {
  std::string interface;  // matched by name; may not exist yet (e.g. "ppp0")
  // Clamp targets; 0 = clamping off for that family. With mss4_auto / mss6_auto the value
  // is the fallback in effect until the first path-MTU search completes (probe_min - 40,
  // 1220); afterwards the clamp follows the discovered PMTU (PMTU - 40 / PMTU - 60).
  std::uint16_t mss4 = 0;
  std::uint16_t mss6 = 0;
  bool mss4_auto = false;          // mss = "auto"
  bool mss6_auto = false;          // mss6 = "auto", or mss = "auto" with mss6 unset
  Guard guard = Guard::off;        // see Guard for the default
  bool set_interface_mtu = false;  // write the discovered PMTU to the interface
  std::string probe_target;        // numeric IPv4/IPv6 address; "" = "peer" (the p-t-p peer)
  std::uint16_t probe_min = kDefaultProbeMin;  // IPv4 fallback / search floor (total IP bytes)
  std::uint16_t probe_max = 0;  // search ceiling; 0 = "interface" (the interface MTU)
  Millis reprobe_interval = kDefaultReprobeInterval;
  KeepaliveMode keepalive = KeepaliveMode::idle;
  Millis keepalive_interval = kDefaultKeepaliveInterval;
  std::string keepalive_target;  // numeric IPv4/IPv6 address; "" = "peer"
  int down_after_misses = kDefaultDownAfterMisses;
  std::vector<Argv> on_down;  // run in order when the tunnel goes down (e.g. reconnect)
  std::vector<Argv> on_up;    // run in order when it comes back (e.g. restart the app)
  // Where each command's program (argv[0]) is written, for the checks of check_hooks().
  std::vector<SourcePosition> on_down_at;
  std::vector<SourcePosition> on_up_at;
  Millis hook_timeout = kDefaultHookTimeout;  // a hook still running then is killed
  Millis backoff_max = kDefaultBackoffMax;    // ceiling of the on_down retry backoff
  int line = 0;                               // where the [[tunnel]] table starts, for messages
  // The keys the file set (valid ones, in key order); the others are defaults, which
  // check-config marks. An mss6 not from the file was derived from mss.
  std::vector<std::string> keys_from_file;
  bool from_file(std::string_view key) const;
};

// NFQUEUE defaults: a queue number unlikely to collide with other users, and a queue long
// enough to ride out a SYN burst; the socket buffer is sized from it (see nfqueue.cpp).
inline constexpr std::uint16_t kDefaultQueueNum = 4770;
inline constexpr std::uint32_t kDefaultQueueMaxlen = 8192;
// Below 64 a single SYN burst overflows the queue; above 2^20 the receive buffer sized
// from it would pin hundreds of MB.
inline constexpr std::uint32_t kMinQueueMaxlen = 64;
inline constexpr std::uint32_t kMaxQueueMaxlen = 1048576;

// A numeric TCP listen address: "127.0.0.1:9477" or "[::1]:9477" in the file.
struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 address, without brackets
  std::uint16_t port = 0;
  bool ipv6 = false;
  bool loopback = false;  // 127.0.0.0/8 or ::1: reachable from this machine only
  friend bool operator==(const ListenAddress&, const ListenAddress&) = default;
};

// Stats (Prometheus /metrics, /stats.json) on loopback by default: the numbers describe
// the network, and the server has no authentication.
inline constexpr std::string_view kDefaultStatsHost = "127.0.0.1";
inline constexpr std::uint16_t kDefaultStatsPort = 9477;
// Root-only control socket for `tunshim stats` and `tunshim reapply`. sun_path holds 108
// bytes including the NUL.
inline constexpr std::string_view kDefaultControlSocket = "/run/tunshim.sock";
inline constexpr std::size_t kMaxSocketPath = 107;

// Path-MTU searches running at once, over all tunnels: a concentrator whose thousand
// sessions appear together sends a few searches' probes at a time, not a thousand.
inline constexpr std::uint32_t kDefaultMaxConcurrentSearches = 16;
inline constexpr std::uint32_t kMinMaxConcurrentSearches = 1;
inline constexpr std::uint32_t kMaxMaxConcurrentSearches = 1024;

// Where the per-packet work runs: "bpf" (tc programs on each tunnel interface, see
// docs/DATAPATH.md), "queue" (NFQUEUE, in the daemon) or "auto" (bpf where the kernel and
// the privileges allow it, else queue). Default "auto".
enum class Datapath : std::uint8_t { automatic, bpf, queue };

struct GlobalConfig {
  std::string log_level = "info";
  Datapath datapath = Datapath::automatic;
  std::uint32_t max_concurrent_searches = kDefaultMaxConcurrentSearches;
  std::uint16_t queue_num = kDefaultQueueNum;
  std::uint32_t queue_maxlen = kDefaultQueueMaxlen;
  // nullopt: stats server off ("off" or "" in the file).
  std::optional<ListenAddress> stats_listen =
      ListenAddress{std::string(kDefaultStatsHost), kDefaultStatsPort, false, true};
  std::string control_socket{kDefaultControlSocket};  // absolute path; "" = "off"
  std::vector<std::string> keys_from_file;  // the keys the file set (others are defaults)
  bool from_file(std::string_view key) const;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is about the whole file
  int column = 0;  // 1-based; 0 when unknown
  std::string message;
  // "file:line:column: message" (or "file: message" without a position).
  std::string to_string() const;
};

struct Config {
  std::string path;  // file it came from
  GlobalConfig global;
  std::vector<TunnelConfig> tunnels;
  // Accepted but worth a second look (e.g. stats on a non-loopback address); check-config
  // prints them as comments, the daemon logs them (log_config_warnings).
  std::vector<ConfigError> warnings;
};

using ConfigResult = std::variant<Config, std::vector<ConfigError>>;

// Parses and validates TOML text; `name` is used in messages. Every error found is
// returned, not just the first, sorted by position. Never throws, never touches the system.
ConfigResult parse_config(std::string_view text, const std::string& name);

// Reads `path` and parses it, without ever blocking: only a regular file of at most 1 MiB is
// read (a FIFO, device or directory is refused at once). No ownership checks: for tests and
// tools that read a config they do not act on.
ConfigResult read_config(const std::string& path);

// Why root should not act on `path`, one message per problem (empty: it may). `path` and every
// directory and symlink met while resolving it must be owned by root and not writable by
// group or others; a directory writable by others is accepted only with the sticky bit (like
// /tmp), since then no one but root can rename or remove the root-owned entry under it.
// Each problem names the offending path and the command that fixes it.
std::vector<std::string> trust_problems(const std::string& path);

// The hook programs of `config` (argv[0] of every on_down and on_up command): each must
// exist, be an executable regular file and pass trust_problems(). Errors carry the position
// of the program in the file.
std::vector<ConfigError> check_hooks(const Config& config);

// What `run`, reload (SIGHUP) and `check-config` use: read_config(), plus the file's
// trust_problems() and check_hooks(). Every problem is returned.
ConfigResult load_config(const std::string& path);

// Logs each of config.warnings at warning level, as file:line:column: message.
void log_config_warnings(const Config& config);

// The effective configuration as TOML: every value, defaults filled in and marked with a
// comment, warnings as comments at the top. Parsing the output again yields the same values.
std::string format_config(const Config& config);

}  // namespace tunshim::proxy
