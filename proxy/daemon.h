// `tunshim run`: the inline MSS clamp. Owns the libuv loop, the NFQUEUE, the firewall
// rules, the per-tunnel counters, and the signal handling:
//   SIGTERM/SIGINT  remove the rules, unbind the queue, exit 0
//   SIGHUP          reload the config; a bad file is logged and the old config kept
//   SIGUSR1         refresh the counters and log one line per tunnel, then the stats table
// What the operator sees (HTTP /metrics, the control socket, STATUS=) is StatsService's.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clamp/mss.h"
#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/firewall.h"
#include "proxy/guard.h"
#include "proxy/nfqueue.h"
#include "proxy/path_mtu.h"
#include "proxy/stats_service.h"
#include "proxy/tunnel_monitor.h"

namespace tunshim::proxy {

class Daemon final : public PacketHandler {
 public:
  explicit Daemon(Config config);
  ~Daemon() override;
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Startup (privilege check, stale-rule cleanup, queue bind, rule install, READY=1), the
  // loop, and teardown. Returns the process exit code.
  int run();

  std::size_t on_packet(QueuedPacket& pkt) noexcept override;

  // The numbers StatsService renders (counters, targets, queue, reloads), copied now.
  StatsSnapshot stats_snapshot() const;
  // `tunshim reapply IFACE`: re-applies the interface's rules, writes its MTU again (with
  // set_interface_mtu) and searches its path MTU again; `done(ok, message)` on the loop.
  void reapply(const std::string& iface, std::function<void(bool, std::string)> done);

 private:
  struct Tunnel {
    std::string iface;
    clamp::ClampTarget target;    // in effect now
    clamp::ClampTarget fallback;  // from the config (with "auto": until a search completes)
    bool mss4_auto = false;
    bool mss6_auto = false;
    bool guard = false;            // guard = "icmp" configured
    std::uint16_t guard_pmtu = 0;  // outbound packets above this are the guard's; 0: off
    std::uint16_t probe_ident =
        0;  // ICMP identifier of our path-MTU probes (guard lets them by)
    TunnelCounters counters;
    GuardCounters guard_counters;
    bool retiring = false;  // removed by a reload; kept until its rules are gone
    // Bookkeeping for the "bypassed" estimate (see refresh_counts()).
    struct Epoch {
      std::uint64_t last_rule = 0;      // rule packet count at the previous sample
      std::uint64_t seen_base = 0;      // seen() when the current rule counters started
      std::uint64_t bypassed_base = 0;  // bypassed before the current rule counters started
    } epoch_out, epoch_in;
  };
  // ifindex -> tunnel, direct-mapped; entries expire so a reused ifindex is noticed.
  struct CacheEntry {
    std::uint32_t ifindex = 0;
    int tunnel = -1;  // index into tunnels_, -1: no tunnel has this interface
    std::uint64_t expires = 0;
  };
  static constexpr std::size_t kCacheSize = 64;
  static constexpr std::uint64_t kCacheTtlMs = 1000;
  static constexpr std::uint64_t kCountsIntervalMs = 10000;

  static std::vector<FirewallTunnel> fw_tunnels(const std::vector<Tunnel>& tunnels);
  static std::vector<Tunnel> tunnels_from(const Config& config);

  bool start(std::string& err);
  void stop();
  void finish_stop();
  void reload();
  void refresh_counts(bool log_after);
  void update_bypassed(Tunnel& t, const RulePackets& rp, std::uint64_t unaccounted);
  void log_counters() const;
  void after_rule_change();
  // Brings the firewall to what tunnels_ needs now (guard rules follow the path MTU).
  void sync_rules();
  // A tunnel's path MTU, its confirmation or its interface MTU changed: MSS and guard.
  void on_path_mtu(const std::string& iface);
  void apply_path_mtu(Tunnel& t);
  int lookup(std::uint32_t ifindex) noexcept;
  void clear_cache() noexcept { cache_.fill(CacheEntry{}); }

  Config config_;
  std::vector<Tunnel> tunnels_;
  std::vector<FirewallTunnel> installed_;  // what the firewall holds now
  Firewall firewall_;
  NfQueue queue_;
  std::array<CacheEntry, kCacheSize> cache_{};
  std::unique_ptr<TunnelMonitors> monitors_;  // keepalive, liveness, hooks (tunnel_monitor.h)
  std::unique_ptr<PathMtus> pmtus_;           // path-MTU discovery (path_mtu.h)
  OversizeGuard guard_;

  uv_loop_t* loop_ = nullptr;
  uv_poll_t poll_{};
  uv_signal_t sig_term_{}, sig_int_{}, sig_hup_{}, sig_usr1_{};
  uv_timer_t counts_timer_{};
  bool handles_open_ = false;

  bool fw_busy_ = false;         // a rule change is running
  bool reload_pending_ = false;  // SIGHUP arrived while busy
  bool rules_pending_ = false;   // sync_rules() was asked while busy
  bool stop_pending_ = false;    // SIGTERM arrived while busy
  bool stopped_ = false;
  bool counts_busy_ = false;
  bool log_after_counts_ = false;
  int exit_code_ = 0;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  double start_time_ = 0;                // unix seconds
  std::unique_ptr<StatsService> stats_;  // from start() to finish_stop()
};

}  // namespace tunshim::proxy
