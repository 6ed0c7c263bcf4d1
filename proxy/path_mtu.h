// The daemon's path-MTU discovery, one PathMtu per tunnel that needs it (mss = "auto",
// guard = "icmp" or set_interface_mtu = true): a keepalive::PmtuSearch decides, a ProbeIo
// sends DF echoes through the tunnel to the peer (or probe_target), one uv_timer armed at
// the search's next deadline drives it. The owner (the daemon) is told whenever what it
// acts on changes: the path MTU in effect, whether a search has confirmed it, or the
// interface MTU.
//
// The interface MTU (set_interface_mtu = true). The search's upper bound is the MTU the
// interface had before tunshim touched it (or probe_max), not the value tunshim wrote, or
// the first search would cap every later one. The kernel refuses to send a probe larger
// than the interface MTU, so while searching upward the interface MTU is raised to the
// upper bound; once the search completes it is set to the result. A change that tunshim did
// not make (pppd renegotiating, the operator) becomes the new original.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keepalive/pmtu_search.h"
#include "proxy/metrics.h"
#include "proxy/probe_io.h"
#include "proxy/rtnl.h"

namespace tunshim::proxy {

struct Config;
struct TunnelConfig;

struct PathMtuConfig {
  std::string iface;
  std::string target;           // probe_target; "" = the interface's point-to-point peer
  std::uint16_t probe_min = 0;  // IPv4 base size (IPv6 uses 1280)
  std::uint16_t probe_max = 0;  // 0 = the interface MTU
  keepalive::Duration reprobe_interval = keepalive::minutes(10);
  bool set_interface_mtu = false;
  bool operator==(const PathMtuConfig&) const = default;
};

// Whether a tunnel needs path-MTU discovery at all, and its settings.
bool needs_path_mtu(const TunnelConfig& tc);
PathMtuConfig path_mtu_config(const TunnelConfig& tc);

class PathMtu {
 public:
  // Something the daemon acts on changed (pmtu(), confirmed(), interface_mtu()).
  using ChangeFn = std::function<void(const std::string& iface)>;

  PathMtu(uv_loop_t* loop, PathMtuConfig config, ChangeFn on_change);
  ~PathMtu();
  PathMtu(const PathMtu&) = delete;
  PathMtu& operator=(const PathMtu&) = delete;

  // Before start(), on reload: takes over what `old` (the same interface under its
  // previous settings) knows of the interface MTU, so that a value tunshim wrote is not
  // mistaken for the operator's, and is put back if set_interface_mtu was turned off.
  void inherit(const PathMtu& old);
  // Reads the interface and starts searching if it is there.
  void start();
  // Stops the timer and the socket. The interface MTU is left as it is.
  void stop();

  void on_link(const LinkInfo& li);
  void on_addr(unsigned ifindex);
  void resync();
  // `tunshim reapply`: re-read the interface, write its MTU again if configured, and
  // search from scratch.
  void reprobe();

  const std::string& iface() const noexcept { return cfg_.iface; }
  // The path MTU in effect: the fallback until a search completes; 0 while the interface
  // is absent or no search could start (no target).
  std::uint16_t pmtu() const noexcept;
  // A search completed since the interface (re)appeared: pmtu() is measured, not assumed.
  bool confirmed() const noexcept { return confirmed_; }
  // The interface's MTU now (0: absent).
  std::uint32_t interface_mtu() const noexcept { return cur_mtu_; }
  keepalive::PmtuSearch::State state() const noexcept;
  // The ICMP identifier of the probe socket (0: none open), so the guard can tell our
  // probes, larger than the path MTU while searching upward, from traffic.
  std::uint16_t probe_identifier() const noexcept {
    return io_ && io_->is_open() ? io_->identifier() : 0;
  }
  // One line for the log (SIGUSR1).
  std::string describe() const;
  // Fills the path-MTU fields of the tunnel's stats.
  void fill(TunnelStats& t) const;

 private:
  keepalive::Timestamp now() const noexcept;
  void appear(const LinkInfo& li);
  void gone();
  void begin();  // a fresh search on the interface as it is now
  void apply(const keepalive::PmtuSearch::Actions& actions);
  void arm();
  void tick();
  void mark();
  void sync_interface_mtu();
  void set_link_mtu(std::uint32_t mtu);
  void changed() {
    if (on_change_) on_change_(cfg_.iface);
  }

  uv_loop_t* loop_;
  PathMtuConfig cfg_;
  ChangeFn on_change_;
  uv_timer_t* timer_ = nullptr;
  std::optional<keepalive::PmtuSearch> search_;
  std::unique_ptr<ProbeIo> io_;
  std::string target_text_;
  bool started_ = false;
  bool stopped_ = false;
  std::uint16_t logged_pmtu_ = 0;
  bool present_ = false;
  unsigned ifindex_ = 0;
  std::uint32_t cur_mtu_ = 0;    // the interface's MTU now
  std::uint32_t orig_mtu_ = 0;   // its MTU as someone other than tunshim set it
  std::uint32_t wrote_mtu_ = 0;  // what tunshim last wrote (0: nothing yet)
  bool confirmed_ = false;
  std::uint64_t search_started_ms_ = 0;  // when the current search began, for its log line
  std::uint64_t rounds_mark_ = 0;
  std::uint64_t probes_mark_ = 0;
  std::array<std::uint32_t, 4> recent_writes_{};  // our writes whose events may still come
  std::size_t recent_next_ = 0;
  struct Inherited {
    unsigned ifindex = 0;
    std::uint32_t cur = 0, orig = 0, wrote = 0;
    std::array<std::uint32_t, 4> recent{};
  };
  std::optional<Inherited> inherited_;  // from inherit(), used by the first appear()
  // Cumulative over every search of this tunnel (a search is replaced when the interface
  // comes back or on reapply).
  struct Totals {
    std::uint64_t probes_sent = 0;
    std::uint64_t probe_replies = 0;
    std::uint64_t probe_send_errors = 0;
    std::uint64_t ptb_hints = 0;
    std::uint64_t searches_completed = 0;
    std::uint64_t black_holes = 0;
    std::uint64_t silent = 0;  // entered ERROR: the target answered nothing
    std::uint64_t mtu_writes = 0;
    std::uint64_t mtu_write_errors = 0;
  } totals_;
};

// Every tunnel's PathMtu plus the rtnetlink subscription that feeds them.
class PathMtus {
 public:
  using ChangeFn = PathMtu::ChangeFn;
  PathMtus(uv_loop_t* loop, ChangeFn on_change) noexcept
      : loop_(loop), rtnl_(loop), on_change_(std::move(on_change)) {}
  void start(const Config& config);
  // Keeps searches whose settings did not change; replaces the others; stops removed ones.
  void reconfigure(const Config& config);
  void stop();
  // nullptr if the tunnel has no path-MTU discovery.
  PathMtu* find(const std::string& iface) noexcept;
  const PathMtu* find(const std::string& iface) const noexcept;
  void log_stats() const;

 private:
  // Opens the rtnetlink subscription that feeds every tunnel's link and address events.
  bool subscribe(std::string& err);
  uv_loop_t* loop_;
  Rtnl rtnl_;
  ChangeFn on_change_;
  std::vector<std::unique_ptr<PathMtu>> items_;
  std::vector<PathMtuConfig> configs_;  // parallel to items_
};

}  // namespace tunshim::proxy
