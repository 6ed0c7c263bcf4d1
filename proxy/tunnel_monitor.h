// Per-tunnel liveness glue: turns rtnetlink events, the interface's rx counter and echo
// replies into keepalive::Liveness inputs; performs its actions (keepalive echoes through a
// ProbeIo, state changes logged and counted); drives keepalive::HookBackoff and runs the
// operator's on_down / on_up hooks (HookRun). One uv_timer per tunnel, armed at the
// earliest deadline of the machines: an idle tunnel costs one wake-up per keepalive
// interval (plus the echo reply), none in between.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "keepalive/backoff.h"
#include "keepalive/liveness.h"
#include "proxy/hooks.h"
#include "proxy/probe_io.h"
#include "proxy/rtnl.h"

namespace tunshim::proxy {

struct TunnelConfig;

struct MonitorConfig {
  std::string iface;
  keepalive::LivenessConfig liveness;
  std::string target;  // keepalive_target; "" = the interface's point-to-point peer
  std::vector<std::vector<std::string>> on_down;
  std::vector<std::vector<std::string>> on_up;
  std::uint64_t hook_timeout_ms = 30000;
  keepalive::BackoffConfig backoff;
};

// The monitor's view of a tunnel's config keys (keepalive*, down_after_misses, on_down,
// on_up, hook_timeout, backoff_max). on_down repeats 1 s, 2 s, 4 s … apart, capped.
MonitorConfig monitor_config(const TunnelConfig& tc);

// The last hook command that finished, for the "last hook" of `tunshim stats`.
struct LastHookRun {
  const char* hook = "";  // "on_down" or "on_up"
  std::size_t index = 0;  // its place in that list, from 1
  HookResult result = HookResult::ok;
  std::int64_t exit_status = 0;
  int term_signal = 0;
  std::int64_t duration_ms = 0;
  double finished_at = 0;  // unix seconds (wall clock)
};

// Counters for stats and the SIGUSR1 line. Indexes follow Liveness::State / HookResult.
struct MonitorStats {
  std::array<std::uint64_t, 4> transitions_to{};  // absent, up, suspect, down
  std::uint64_t keepalive_sent = 0;
  std::uint64_t keepalive_send_errors = 0;
  std::uint64_t keepalive_replies = 0;
  std::array<std::uint64_t, 4> on_down_runs{};  // ok, failed, timeout, spawn_error
  std::array<std::uint64_t, 4> on_up_runs{};
  std::uint64_t reconnects = 0;          // up again after having been down or gone
  std::uint64_t ticks = 0;               // timer callbacks (the idle cost)
  std::optional<LastHookRun> last_hook;  // none until a hook command has finished
};

class TunnelMonitor {
 public:
  // Interface present (with its MTU) or gone; for the path-MTU wiring and the interface
  // MTU re-apply, which belong to others. Called on every appearance, including a new
  // ifindex under the same name, and on MTU changes.
  using InterfaceFn =
      std::function<void(const std::string& iface, bool present, std::uint32_t mtu)>;

  TunnelMonitor(uv_loop_t* loop, MonitorConfig config);
  ~TunnelMonitor();
  TunnelMonitor(const TunnelMonitor&) = delete;
  TunnelMonitor& operator=(const TunnelMonitor&) = delete;

  void set_interface_listener(InterfaceFn fn) { on_interface_ = std::move(fn); }
  // The path MTU in effect (for TUNSHIM_PMTU); 0 = unknown (the interface MTU is given).
  void set_pmtu(std::uint32_t pmtu) noexcept { pmtu_ = pmtu; }

  // Reads the interface once and starts; events then come from the daemon's Rtnl.
  void start();
  // Stops the timer and the socket and terminates running hooks (they are still reaped
  // by the loop). `done` is not needed: the loop ends once the children have exited.
  void stop();

  void on_link(const LinkInfo& li);
  void on_addr(unsigned ifindex);
  // Notifications were lost: re-read the interface.
  void resync();

  const std::string& iface() const noexcept { return cfg_.iface; }
  keepalive::Liveness::State state() const noexcept { return live_.state(); }
  const keepalive::Liveness& liveness() const noexcept { return live_; }
  const MonitorStats& stats() const noexcept { return stats_; }
  // One log line: state, rtt, loss, counters.
  std::string describe() const;

 private:
  keepalive::Timestamp now() const noexcept;
  void appear(const LinkInfo& li);
  void gone();
  void open_probe();
  void tick();
  void handle(const keepalive::Liveness::Actions& actions);
  void arm();
  void start_down_hook();
  void start_up_hook();
  std::vector<std::pair<std::string, std::string>> hook_env(const char* event) const;
  void record_hook(const char* hook, std::size_t index, const HookCommandResult& r);
  double jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  uv_loop_t* loop_;
  MonitorConfig cfg_;
  keepalive::Liveness live_;
  keepalive::HookBackoff backoff_;
  std::unique_ptr<ProbeIo> probe_;
  std::string target_text_;
  uv_timer_t* timer_ = nullptr;
  InterfaceFn on_interface_;
  bool present_ = false;
  bool ever_present_ = false;
  bool stopped_ = false;
  unsigned ifindex_ = 0;
  std::uint32_t mtu_ = 0;
  std::uint32_t pmtu_ = 0;
  bool was_down_ = false;  // declared down or gone since it was last up
  keepalive::Timestamp down_since_{};
  keepalive::Duration last_down_for_{};
  std::unique_ptr<HookRun> down_run_;
  std::unique_ptr<HookRun> up_run_;
  bool up_pending_ = false;
  std::size_t down_done_ = 0;  // commands of the running on_down / on_up list finished so far
  std::size_t up_done_ = 0;
  std::mt19937_64 rng_;
  MonitorStats stats_;
};

}  // namespace tunshim::proxy

namespace tunshim::proxy {

struct Config;

// Every tunnel's monitor plus the one rtnetlink subscription that feeds them. The daemon
// only creates, starts, reconfigures and stops this.
class TunnelMonitors {
 public:
  explicit TunnelMonitors(uv_loop_t* loop) noexcept : loop_(loop), rtnl_(loop) {}
  // Subscribes to rtnetlink and starts one monitor per tunnel. A failed subscription is
  // logged (liveness then still follows the keepalives and a re-read every tick).
  void start(const Config& config);
  // Applies a reloaded config: monitors whose settings did not change are kept (with their
  // state and counters), the others are replaced, removed tunnels stopped.
  void reconfigure(const Config& config);
  // Stops everything; running hooks are terminated and reaped by the loop.
  void stop();
  void log_stats() const;
  const std::vector<std::unique_ptr<TunnelMonitor>>& monitors() const noexcept {
    return monitors_;
  }

 private:
  uv_loop_t* loop_;
  Rtnl rtnl_;
  std::vector<std::unique_ptr<TunnelMonitor>> monitors_;
  std::vector<MonitorConfig> configs_;  // parallel to monitors_
};

// True when two monitor configs would behave the same (a reload keeps the monitor).
bool same_monitor_config(const MonitorConfig& a, const MonitorConfig& b);

}  // namespace tunshim::proxy
