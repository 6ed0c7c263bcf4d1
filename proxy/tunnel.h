// One tunnel interface under tunshim's control: the OS side of everything tunshim does
// for it, in one object.
//
//   data path    the MSS targets and guard limit the per-packet code reads, its counters
//   path MTU     keepalive::PmtuSearch + keepalive::MtuOwner (mss = "auto", the guard,
//                set_interface_mtu): DF probes through the tunnel, the interface MTU
//   liveness     keepalive::Liveness + keepalive::HookBackoff: echoes when idle, up →
//                suspect → down, on_down with backoff, on_up after a recovery
//
// The decisions are the keepalive/ machines'; a Tunnel turns their actions into I/O (one
// ProbeIo per probe target, hook processes, interface-MTU writes) and tells its owner
// (TunnelTable, tunnel_table.h) when its deadline or its data-path targets changed. It
// owns no timer and no rtnetlink socket: the table drives every tunnel from one timer and
// one subscription, keyed by ifindex.
//
// The interface is matched by name and keyed by ifindex while present: a tunnel is
// "present" with exactly one ifindex at a time, and a renamed or re-created interface is
// gone for the tunnel before anything of its new incarnation is used.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "clamp/mss.h"
#include "keepalive/backoff.h"
#include "keepalive/liveness.h"
#include "keepalive/mtu_owner.h"
#include "keepalive/pmtu_search.h"
#include "keepalive/symptom_burst.h"
#include "proxy/counters.h"
#include "proxy/guard.h"
#include "proxy/hooks.h"
#include "proxy/metrics.h"
#include "proxy/probe_io.h"
#include "proxy/rtnl.h"

namespace tunshim::proxy {

struct TunnelConfig;

// A tunnel's path-MTU settings (probe_target, probe_min, probe_max, reprobe_interval,
// set_interface_mtu).
struct PathMtuConfig {
  bool enabled = false;         // mss = "auto", guard = "icmp" or set_interface_mtu
  std::string target;           // probe_target; "" = the interface's point-to-point peer
  std::uint16_t probe_min = 0;  // IPv4 base size (IPv6 uses 1280)
  std::uint16_t probe_max = 0;  // 0 = the interface MTU
  keepalive::Duration reprobe_interval = keepalive::minutes(10);
  bool set_interface_mtu = false;
  bool operator==(const PathMtuConfig&) const = default;
};

// A tunnel's liveness and recovery settings (keepalive*, down_after_misses, on_down, on_up,
// hook_timeout, backoff_max). on_down repeats 1 s, 2 s, 4 s … apart, capped.
struct MonitorConfig {
  keepalive::LivenessConfig liveness;
  std::string target;  // keepalive_target; "" = the interface's point-to-point peer
  std::vector<std::vector<std::string>> on_down;
  std::vector<std::vector<std::string>> on_up;
  std::uint64_t hook_timeout_ms = 30000;
  keepalive::BackoffConfig backoff;
};

// Everything a Tunnel needs from its [[tunnel]] table.
struct TunnelSettings {
  std::string iface;
  // For an instance of an interface pattern (tunnel_table.h): the [[tunnel]]'s pattern
  // ("ppp+"); iface is then the interface's own name. "" for an exact name.
  std::string pattern;
  clamp::ClampTarget fallback;  // the configured MSS (with "auto": until a search completes)
  bool mss4_auto = false;
  bool mss6_auto = false;
  bool guard = false;  // guard = "icmp"
  PathMtuConfig pmtu;
  MonitorConfig monitor;
};
TunnelSettings tunnel_settings(const TunnelConfig& tc);

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

// Liveness and hook counters for stats and the SIGUSR1 line. Indexes follow
// Liveness::State / HookResult.
struct MonitorStats {
  std::array<std::uint64_t, 4> transitions_to{};  // absent, up, suspect, down
  std::uint64_t keepalive_sent = 0;
  std::uint64_t keepalive_send_errors = 0;
  std::uint64_t keepalive_replies = 0;
  std::array<std::uint64_t, 4> on_down_runs{};  // ok, failed, timeout, spawn_error
  std::array<std::uint64_t, 4> on_up_runs{};
  std::uint64_t reconnects = 0;  // up again after having been down or gone
  std::uint64_t ticks = 0;       // deadlines served (the idle cost)
  std::optional<LastHookRun> last_hook;
};

class Tunnel;

// What a Tunnel asks of its owner.
class TunnelHost {
 public:
  virtual uv_loop_t* loop() noexcept = 0;
  // next_deadline() changed.
  virtual void reschedule(Tunnel& t) = 0;
  // What the data path acts on changed: MSS targets, guard limit, presence.
  virtual void targets_changed(Tunnel& t) = 0;
  // Whether oversize packets can be answered at all (the guard's socket is open).
  virtual bool guard_ready() const noexcept = 0;
  // The shared probe socket of a family (opened on first use); nullptr if it cannot be
  // opened. A probe's 64-bit tag carries the tunnel's id in its top 32 bits; the host
  // hands replies back through on_probe_reply() / on_probe_hint().
  virtual ProbeIo* probes(IpFamily family) = 0;
  // Path-MTU searches run a bounded number at a time. A tunnel asks before it starts one:
  // false means it waits in line and the host calls search_granted() when its turn comes.
  // It releases its place when the search has an answer (complete or silent), ends, or
  // the tunnel stops; the periodic re-searches that follow need no place.
  virtual bool acquire_search(Tunnel& t) = 0;
  virtual void release_search(Tunnel& t) = 0;

 protected:
  ~TunnelHost() = default;
};

class Tunnel {
 public:
  // What the per-packet path reads and counts. Written on the loop only.
  struct Datapath {
    clamp::ClampTarget target;      // in effect now
    std::uint16_t guard_pmtu = 0;   // outbound packets above this are the guard's; 0: off
    std::uint16_t probe_ident = 0;  // ICMP identifier of our probes (the guard lets them by)
    TunnelCounters counters;
    GuardCounters guard_counters;
    // Passive black-hole symptoms (docs/DOCTOR.md, "In the daemon"): totals the data path
    // counted. `measured` is false on a path that counts none of them (the queue path).
    struct Symptoms {
      bool measured = false;
      std::uint64_t retransmits = 0;   // full-size TCP segments sent again
      std::uint64_t icmp_too_big = 0;  // frag-needed / packet-too-big arriving
      std::uint64_t oversize_df = 0;   // DF packets above the measured path MTU
    } symptoms;
    std::uint16_t watch_mtu = 0;  // the measured path MTU the oversize count uses; 0: none
    // Bookkeeping for the "bypassed" estimate (Daemon::refresh_counts).
    struct Epoch {
      std::uint64_t last_rule = 0;
      std::uint64_t seen_base = 0;
      std::uint64_t bypassed_base = 0;
    } epoch_out, epoch_in;
  };

  // `id`: unique for the daemon's lifetime, never reused (stale replies find no one).
  Tunnel(TunnelHost& host, std::uint32_t id, TunnelSettings settings);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // Logs the settings and reads the interface once; events then come from the table.
  void start();
  // Stops probing and terminates running hooks (the loop still reaps them). The interface
  // MTU is left as it is.
  void stop();
  // A reload with new settings for the same interface name. Liveness state, misses, RTT
  // history, the hook backoff and the counters carry over; a changed path-MTU setting
  // starts a fresh search (the interface-MTU bookkeeping carries over, so a value tunshim
  // wrote is never taken for the operator's, and is put back when set_interface_mtu is
  // turned off).
  void reconfigure(TunnelSettings settings);

  // rtnetlink, routed here by the table: this name's link (present, any ifindex), the
  // interface gone (deleted or renamed away), an address change on it.
  void on_link(const LinkInfo& li);
  void on_gone();
  void on_addr();
  // Re-read the interface by name (notifications were lost).
  void resync();
  // A reply or a too-big error for one of this tunnel's probes (the tag's low 32 bits).
  void on_probe_reply(std::uint32_t tag, std::uint16_t size);
  void on_probe_hint(std::uint32_t tag, std::uint16_t mtu);
  // Serve every machine whose deadline has passed.
  void on_tick();
  keepalive::Timestamp next_deadline() const noexcept;
  // The host's answer to acquire_search(): the search this tunnel waited for may start.
  void search_granted();
  // `tunshim reapply`: re-read the interface, write its MTU again if configured, and
  // search its path MTU from scratch.
  void reprobe();
  // Whether the symptom counts should be polled often: mss = "auto" with a completed
  // search, where a burst brings the re-confirmation forward.
  bool symptom_watch() const noexcept;
  // Each poll: datapath().symptoms was refreshed if symptom_watch(); new full-size
  // retransmissions and ICMP errors go to the burst detector, and a burst re-checks the
  // path MTU now. What was counted while not watching (during a search) is not news.
  void on_symptom_poll();
  std::uint64_t symptom_rechecks() const noexcept { return totals_.symptom_rechecks; }

  std::uint32_t id() const noexcept { return id_; }
  const std::string& iface() const noexcept { return cfg_.iface; }
  const TunnelSettings& settings() const noexcept { return cfg_; }
  bool present() const noexcept { return present_; }
  // Ended (an instance whose interface went, a tunnel a reload removed): it is told nothing
  // more, and its memory goes soon after.
  bool stopped() const noexcept { return stopped_; }
  unsigned ifindex() const noexcept { return ifindex_; }
  Datapath& datapath() noexcept { return dp_; }
  const Datapath& datapath() const noexcept { return dp_; }

  // The path MTU in effect: the fallback until a search completes; 0 while absent or
  // without a search.
  std::uint16_t pmtu() const noexcept;
  bool pmtu_confirmed() const noexcept { return confirmed_; }
  keepalive::PmtuSearch::State pmtu_state() const noexcept;
  std::uint32_t interface_mtu() const noexcept { return owner_.current(); }
  keepalive::Liveness::State state() const noexcept { return live_.state(); }
  const keepalive::Liveness& liveness() const noexcept { return live_; }
  const MonitorStats& monitor_stats() const noexcept { return mstats_; }
  std::uint64_t probes_sent() const noexcept { return totals_.probes_sent; }
  std::uint64_t searches_completed() const noexcept { return totals_.searches_completed; }

  // Fills the tunnel's stats (data path, path MTU, liveness, hooks).
  void fill(TunnelStats& t) const;
  // Log lines for SIGUSR1.
  std::vector<std::string> describe() const;

 private:
  using Timestamp = keepalive::Timestamp;
  enum class Prober : std::uint8_t { pmtu, keepalive };
  // Probe tags: the top bit tells keepalive echoes from path-MTU probes when both share
  // a socket (same target).
  static constexpr std::uint32_t kEchoTag = 0x80000000U;

  Timestamp now() const noexcept;
  void appear(const LinkInfo& li);
  void link_mtu_changed(std::uint32_t mtu);
  std::optional<IpAddress> resolve(const std::string& configured) const;
  // Points `who` at `target` (the shared socket of its family); false if none opens.
  bool set_target(Prober who, const IpAddress& target);
  void clear_target(Prober who);
  bool send(Prober who, std::uint32_t tag, std::uint16_t size, std::string* err);

  // Path MTU.
  void begin_search();
  void end_search();
  void apply(const keepalive::PmtuSearch::Actions& actions);
  void sync_interface_mtu();
  void write_link_mtu(std::uint32_t mtu);
  void mark();
  // Liveness.
  void open_keepalive();
  void handle(const keepalive::Liveness::Actions& actions);
  void start_down_hook();
  void start_up_hook();
  std::vector<std::pair<std::string, std::string>> hook_env(const char* event) const;
  void record_hook(const char* hook, std::size_t index, const HookCommandResult& r);
  double jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  // Data path: recompute targets and guard limit from what is measured now; true if the
  // host was told (something changed).
  bool update_targets();
  void changed();

  TunnelHost& host_;
  const std::uint32_t id_;
  TunnelSettings cfg_;
  bool started_ = false;
  bool stopped_ = false;

  // The interface.
  bool present_ = false;
  bool ever_present_ = false;
  unsigned ifindex_ = 0;

  // Probe targets: [0] path MTU, [1] keepalive.
  std::array<std::optional<IpAddress>, 2> target_;
  std::array<std::string, 2> io_target_;  // text of each one's target ("" = none)

  // Path MTU.
  std::optional<keepalive::PmtuSearch> search_;
  keepalive::MtuOwner owner_;
  bool confirmed_ = false;
  std::uint16_t logged_pmtu_ = 0;
  std::uint64_t search_started_ms_ = 0;
  std::uint64_t rounds_mark_ = 0;
  std::uint64_t probes_mark_ = 0;
  struct Totals {
    std::uint64_t probes_sent = 0;
    std::uint64_t probe_replies = 0;
    std::uint64_t probe_send_errors = 0;
    std::uint64_t ptb_hints = 0;
    std::uint64_t searches_completed = 0;
    std::uint64_t black_holes = 0;
    std::uint64_t silent = 0;
    std::uint64_t mtu_writes = 0;
    std::uint64_t mtu_write_errors = 0;
    std::uint64_t symptom_rechecks = 0;  // bursts of symptoms that re-checked the path MTU
  } totals_;
  keepalive::SymptomBurst burst_;
  std::uint64_t symptoms_mark_ = 0;  // retransmits + icmp_too_big already passed to burst_
  bool watching_ = false;            // symptom_watch() at the last poll
  Timestamp symptom_check_at_ = keepalive::kNever;  // the last re-check symptoms started

  // Liveness and recovery.
  keepalive::Liveness live_;
  keepalive::HookBackoff backoff_;
  bool was_down_ = false;  // declared down or gone since it was last up
  Timestamp down_since_{};
  keepalive::Duration last_down_for_{};
  std::unique_ptr<HookRun> down_run_;
  std::unique_ptr<HookRun> up_run_;
  bool up_pending_ = false;
  std::size_t down_done_ = 0;
  std::size_t up_done_ = 0;
  std::mt19937_64 rng_;
  MonitorStats mstats_;

  Datapath dp_;
};

}  // namespace tunshim::proxy
