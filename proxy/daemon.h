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
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "clamp/mss.h"
#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/datapath_bpf.h"
#include "proxy/firewall.h"
#include "proxy/guard.h"
#include "proxy/nfqueue.h"
#include "proxy/spawn.h"
#include "proxy/stats_service.h"
#include "proxy/tunnel_table.h"
#include "proxy/uv_handle.h"

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
  static constexpr std::uint64_t kCountsIntervalMs = 10000;

  // The rules the active tunnels need now (guard rules follow the path MTU).
  std::vector<FirewallTunnel> fw_tunnels() const;

  bool start(std::string& err);
  void stop();
  void finish_stop();
  void close_handles() noexcept;
  void reload();
  void refresh_counts(bool log_after);
  void update_bypassed(Tunnel& t, const RulePackets& rp, std::uint64_t unaccounted);
  bool guard_wanted() const;
  void log_counters() const;
  // Asks the firewall for what the tunnels need now (guard rules follow the path MTU);
  // `then(ok, error)` once that state, or a later one, is in place or has failed.
  void sync_rules(std::function<void(bool, std::string)> then = {});

  // ---- the eBPF data path (datapath = "bpf", or "auto" where it loads) ----
  bool bpf_active() const noexcept { return bpf_.is_open(); }
  // Loads the programs if the config asks for them; false only if "bpf" was required and
  // could not be had. Sets datapath_ and datapath_reason_.
  bool choose_datapath(std::string& err);
  bool start_bpf_handles(std::string& err);
  // Attaches, retargets or detaches `t`'s interface to match what it says of itself.
  void sync_bpf(Tunnel& t);
  // A packet the guard dropped in the kernel: answered by the guard as a queued one.
  void on_bpf_report(const BpfReport& r);
  // Copies the kernel's counters into the tunnels' (carried over re-attachments).
  void pull_bpf_counters();
  struct BpfTunnel;
  void pull_bpf_counters(Tunnel& t, BpfTunnel& b);
  // Every heartbeat (1 s) and at each symptom nudge of the programs: the symptom counts of
  // the tunnels that watch them, to their burst detectors (Tunnel::on_symptom_poll).
  // Starts or stops the heartbeat (and with it the symptom reads) as tunnels need it.
  void update_heartbeat();
  // `only`: that tunnel alone (a nudge names its interface).
  void poll_symptoms(Tunnel* only = nullptr);

  Config config_;
  Firewall firewall_;
  // The queue path's rule changes, one at a time, latest wanted state wins (firewall.h).
  std::unique_ptr<FirewallSync> fw_sync_;
  NfQueue queue_;
  LogLimiter log_malformed_;  // debug lines about malformed SYNs: one per second
  OversizeGuard guard_;
  std::unique_ptr<TunnelTable> table_;  // every tunnel, by ifindex (tunnel_table.h)

  uv_loop_t* loop_ = nullptr;
  UvHandle<uv_poll_t> poll_;                      // the queue's socket
  std::array<UvHandle<uv_signal_t>, 4> signals_;  // TERM, INT, HUP, USR1
  UvTimer counts_timer_;

  bool reconfiguring_ = false;  // a reload is handing tunnels their settings: one apply after
  bool stopping_ = false;       // the rules are being removed; finish_stop() follows
  bool stopped_ = false;
  bool counts_busy_ = false;
  bool log_after_counts_ = false;
  int exit_code_ = 0;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  double start_time_ = 0;                // unix seconds
  std::unique_ptr<StatsService> stats_;  // from start() to finish_stop()

  BpfDatapath bpf_;
  std::string datapath_ = "queue";  // in effect: "bpf" or "queue"
  std::string datapath_reason_;
  UvHandle<uv_poll_t> bpf_poll_;  // the programs' report ring buffer
  UvTimer heartbeat_timer_;
  // Per tunnel: the interface its programs are attached to (0: none) and what earlier
  // attachments counted (a re-created interface starts a fresh kernel slot).
  struct BpfTunnel {
    unsigned ifindex = 0;
    TunnelCounters base;
    std::uint64_t guard_dropped_base = 0;
    TunnelCounters last;
    std::uint64_t guard_dropped_last = 0;
    std::array<std::uint64_t, BpfCounters::kSymptoms> symptom_base{};
    std::array<std::uint64_t, BpfCounters::kSymptoms> symptom_last{};
  };
  std::map<const Tunnel*, BpfTunnel> bpf_tunnels_;
  // A reported packet rebuilt at its full IP length for OversizeGuard::handle (which
  // quotes only its first bytes): zero beyond what a report copies in, and zeroed again.
  std::vector<std::uint8_t> report_buf_;
  Subreaper subreaper_;  // hook descendants (spawn.h)
};

}  // namespace tunshim::proxy
