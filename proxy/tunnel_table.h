// Every tunnel of the daemon, keyed by ifindex, driven by one rtnetlink subscription and
// one timer.
//
// A [[tunnel]] names one interface ("ppp0") or a pattern ("ppp+", iface_pattern.h). An
// exact name is one Tunnel for the daemon's life, present or not. A pattern is a template:
// each interface that matches it is a Tunnel of its own (an instance) from the moment it
// appears until it is deleted or renamed away, with its own path-MTU search, targets,
// liveness, hooks and counters; when it goes, its counters are added to the pattern's
// totals and the instance is freed. An exact name beats a pattern; the config refuses two
// patterns that could match one name.
//
// The per-packet path finds a packet's tunnel with by_ifindex(): a hash lookup, no
// syscall, no allocation, whatever the number of tunnels. The index follows rtnetlink: an
// interface that appears under a tunnel's name is indexed, one that is deleted or renamed
// away is dropped before its new name is looked at. sync_links() reads pending
// notifications, and the queue path calls it before each batch of packets: the kernel
// queued a rename's (or a new interface's) notification before any packet that matched a
// rule under the new name, so reading notifications first means no packet is ever judged
// by an interface's previous name, and a new instance exists before its first SYN.
//
// Time: every tunnel reports its next deadline; the table keeps them ordered and arms its
// one timer at the earliest, so an idle daemon wakes once per due deadline, not once per
// tunnel per period.
//
// Path-MTU searches run at most `max_concurrent_searches` at a time ([global]); the others
// wait in line in arrival order with the fallback MSS in effect. An instance's
// reprobe_interval is shortened by a fixed fraction (up to a quarter) taken from its name,
// so sessions that appeared together do not re-search together.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "proxy/firewall.h"
#include "proxy/metrics.h"
#include "proxy/rtnl.h"
#include "proxy/tunnel.h"
#include "proxy/uv_handle.h"

namespace tunshim::proxy {

struct Config;

class TunnelTable final : public TunnelHost {
 public:
  struct Callbacks {
    // A tunnel's data-path targets changed (MSS, guard limit, presence).
    std::function<void(Tunnel&)> targets_changed;
    // Whether the oversize guard can answer (its socket is open).
    std::function<bool()> guard_ready;
  };

  // One [[tunnel]] with a pattern: its settings and what its instances did.
  struct Pattern {
    TunnelSettings settings;  // iface is the pattern ("ppp+")
    PatternStats totals;      // of instances that have gone (live ones are added on read)
  };

  TunnelTable(uv_loop_t* loop, Callbacks callbacks);
  ~TunnelTable();
  TunnelTable(const TunnelTable&) = delete;
  TunnelTable& operator=(const TunnelTable&) = delete;

  // Subscribes to rtnetlink (a failure is logged: interfaces are then re-read on every
  // tunnel deadline and on `tunshim reapply`), starts one tunnel per exact name and one
  // instance per existing interface that matches a pattern.
  void start(const Config& config);
  // A reload: tunnels whose interface name stays (instances whose pattern stays) are
  // reconfigured in place (state and counters kept), new ones start, removed ones retire:
  // they stop, but the packet path still finds them until drop_retired() (their rules are
  // being removed).
  void reconfigure(const Config& config);
  void drop_retired();
  // Stops every tunnel (running hooks are terminated and reaped by the loop).
  void stop();

  // Reads the rtnetlink notifications that are waiting, now.
  void sync_links() noexcept;

  // The tunnel whose interface has this index now; nullptr if none. The packet path.
  Tunnel* by_ifindex(unsigned ifindex) noexcept {
    const auto it = by_ifindex_.find(ifindex);
    return it != by_ifindex_.end() ? it->second : nullptr;
  }
  // Active (not retired) tunnel by interface name (an instance by its interface's name).
  Tunnel* find(std::string_view iface) noexcept;
  const Tunnel* find(std::string_view iface) const noexcept;
  // Exact-name tunnels in config order, then the instances of patterns.
  const std::vector<std::unique_ptr<Tunnel>>& tunnels() const noexcept { return tunnels_; }
  bool subscribed() const noexcept { return rtnl_.is_open(); }

  // The rules the tunnels need now: one set per exact name, one per pattern (iptables'
  // own "ppp+"), never one per instance. A pattern's guard rule queues what is longer
  // than the smallest guarded path MTU among its instances; the verdict then applies each
  // instance's own limit (docs/GUARD.md).
  std::vector<FirewallTunnel> firewall_tunnels() const;
  // The [[tunnel]] name whose rules cover `iface`: the pattern of an instance, else
  // `iface` itself.
  std::string rule_name(std::string_view iface) const;
  // Per pattern: instances now, and counters of all its instances ever (gone and live).
  std::vector<PatternStats> pattern_stats() const;
  std::size_t searches_running() const noexcept { return searching_.size(); }
  std::size_t searches_waiting() const noexcept { return queued_.size(); }

  // TunnelHost.
  uv_loop_t* loop() noexcept override { return loop_; }
  void reschedule(Tunnel& t) override;
  void targets_changed(Tunnel& t) override;
  bool guard_ready() const noexcept override { return cb_.guard_ready && cb_.guard_ready(); }
  ProbeIo* probes(IpFamily family) override;
  bool acquire_search(Tunnel& t) override;
  void release_search(Tunnel& t) override;

 private:
  void on_link(const LinkInfo& li);
  void on_addr(unsigned ifindex);
  void on_resync();
  // Starts an instance for `name` if a pattern (and no exact name) claims it.
  void maybe_instance(const std::string& name);
  // Every existing interface a pattern claims and no tunnel has yet.
  void scan_patterns();
  Pattern* pattern_for(std::string_view name) noexcept;
  TunnelSettings instance_settings(const Pattern& p, const std::string& name) const;
  // The instance's interface went: its counters join the pattern's totals, and it is
  // stopped and freed (on the next turn of the loop: a callback may be on its stack).
  void end_instance(Tunnel& t);
  void forget(Tunnel& t);
  // Keeps by_ifindex_ equal to what `t` says of itself.
  void reindex(Tunnel& t);
  void unindex(Tunnel& t);
  void arm();
  void on_timer();
  void kick();  // grant search places and free ended instances, from the loop
  void on_kick();

  uv_loop_t* loop_;
  Callbacks cb_;
  Rtnl rtnl_;
  UvTimer timer_;
  UvTimer kick_;
  bool stopped_ = false;
  // One probe socket per family for every tunnel, opened on first use; a probe's tag
  // carries its tunnel's id, so a reply reaches the tunnel that sent it, or no one.
  std::array<std::unique_ptr<ProbeIo>, 2> probes_;
  std::array<bool, 2> probes_failed_{};  // said once; retried on each use
  std::uint16_t probe_ident_ = 0;
  std::uint32_t next_id_ = 1;
  std::unordered_map<std::uint32_t, Tunnel*> by_id_;
  std::vector<std::unique_ptr<Tunnel>> tunnels_;
  std::vector<std::unique_ptr<Tunnel>> retired_;
  std::vector<std::unique_ptr<Tunnel>> ended_;  // instances to free on the next kick
  // Looks names up as string_view without building a std::string (find() is noexcept).
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, Tunnel*, NameHash, std::equal_to<>> by_name_;  // active
  std::vector<std::unique_ptr<Pattern>> patterns_;
  std::unordered_map<unsigned, Tunnel*> by_ifindex_;
  std::unordered_map<const Tunnel*, unsigned> indexed_;  // the reverse of by_ifindex_
  // (deadline in loop ms, tunnel) in time order, and each tunnel's entry in it.
  std::set<std::pair<std::int64_t, Tunnel*>> deadlines_;
  std::unordered_map<const Tunnel*, std::int64_t> scheduled_;
  // Path-MTU searches: running, and waiting in arrival order.
  std::size_t max_searches_ = 16;
  std::unordered_set<const Tunnel*> searching_;
  std::list<Tunnel*> waiting_;
  std::unordered_map<const Tunnel*, std::list<Tunnel*>::iterator> queued_;
  Tunnel* granting_ = nullptr;
};

}  // namespace tunshim::proxy
