// Every tunnel of the daemon, keyed by ifindex, driven by one rtnetlink subscription and
// one timer.
//
// The per-packet path finds a packet's tunnel with by_ifindex(): a hash lookup, no
// syscall, no allocation. The index follows rtnetlink: an interface that appears under a
// tunnel's name is indexed, one that is deleted or renamed away is dropped before its new
// name is looked at. sync_links() reads pending notifications, and the queue path calls
// it before each batch of packets: the kernel queued a rename's notification before any
// packet that matched a rule under the new name, so reading notifications first means no
// packet is ever judged by an interface's previous name.
//
// Time: every tunnel reports its next deadline; the table keeps them ordered and arms its
// one timer at the earliest, so an idle daemon wakes once per due deadline, not once per
// tunnel per period.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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

  TunnelTable(uv_loop_t* loop, Callbacks callbacks);
  ~TunnelTable();
  TunnelTable(const TunnelTable&) = delete;
  TunnelTable& operator=(const TunnelTable&) = delete;

  // Subscribes to rtnetlink (a failure is logged: interfaces are then re-read on every
  // tunnel deadline and on `tunshim reapply`) and starts one tunnel per [[tunnel]].
  void start(const Config& config);
  // A reload: tunnels whose interface name stays are reconfigured in place (state and
  // counters kept), new ones start, removed ones retire: they stop, but the packet path
  // still finds them until drop_retired() (their rules are being removed).
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
  // Active (not retired) tunnel by interface name.
  Tunnel* find(std::string_view iface) noexcept;
  const Tunnel* find(std::string_view iface) const noexcept;
  const std::vector<std::unique_ptr<Tunnel>>& tunnels() const noexcept { return tunnels_; }
  bool subscribed() const noexcept { return rtnl_.is_open(); }

  // TunnelHost.
  uv_loop_t* loop() noexcept override { return loop_; }
  void reschedule(Tunnel& t) override;
  void targets_changed(Tunnel& t) override;
  bool guard_ready() const noexcept override { return cb_.guard_ready && cb_.guard_ready(); }
  ProbeIo* probes(IpFamily family) override;

 private:
  void on_link(const LinkInfo& li);
  void on_addr(unsigned ifindex);
  void on_resync();
  // Keeps by_ifindex_ equal to what `t` says of itself.
  void reindex(Tunnel& t);
  void unindex(Tunnel& t);
  void arm();
  void on_timer();

  uv_loop_t* loop_;
  Callbacks cb_;
  Rtnl rtnl_;
  UvTimer timer_;
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
  std::unordered_map<unsigned, Tunnel*> by_ifindex_;
  std::unordered_map<const Tunnel*, unsigned> indexed_;  // the reverse of by_ifindex_
  // (deadline in loop ms, tunnel) in time order, and each tunnel's entry in it.
  std::set<std::pair<std::int64_t, Tunnel*>> deadlines_;
  std::unordered_map<const Tunnel*, std::int64_t> scheduled_;
};

}  // namespace tunshim::proxy
