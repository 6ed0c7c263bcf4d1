// The stall watchdog of the NFQUEUE path. A queued packet waits for the daemon's verdict
// with no time limit in the kernel: while the event loop is stopped (SIGSTOP, a debugger)
// or blocked, the queue is neither full (fail-open) nor unbound (--queue-bypass), so every
// new connection through the tunnel would hang. The watchdog is a small process forked at
// start that shares the queue's netlink socket (the same socket, so the same port id the
// kernel sends packets to) and a shared-memory page with the loop:
//
//   - The loop beats on the page each time it drains the queue (one relaxed atomic add: no
//     clock, no syscall on the packet path), and whenever the watchdog pings it.
//   - The watchdog sleeps in poll() on the socket: an idle daemon costs it no wake-ups.
//     When a packet is waiting it gives the loop kStallMs to drain; if the beat count did
//     not move and a packet still waits, the loop is stalled. It then accepts, unmodified,
//     everything queued (a batch verdict up to the kernel's last id, which also releases
//     packets the stalled loop had read but not answered), and from then on reads the
//     socket itself and accepts each packet (single verdicts: never one the loop is
//     clamping), pinging the loop through an eventfd every kPingMs.
//   - As soon as the beat count moves again it stops reading; the loop logs how many
//     packets went through unclamped.
//
// The watchdog holds nothing but the socket, the eventfd and the page (every other fd is
// closed), dies with the daemon (PR_SET_PDEATHSIG, then a getppid() check against the
// race), and is killed and reaped by stop(). The loop watches it through a pidfd and logs
// if it dies on its own.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "proxy/uv_handle.h"

namespace tunshim::proxy {

class QueueWatchdog {
 public:
  // A packet may wait this long for the loop before the watchdog takes over.
  static constexpr int kStallMs = 1000;
  // While it passes packets, how often it asks the loop to show it is alive again.
  static constexpr int kPingMs = 250;

  QueueWatchdog() = default;
  ~QueueWatchdog();
  QueueWatchdog(const QueueWatchdog&) = delete;
  QueueWatchdog& operator=(const QueueWatchdog&) = delete;

  // Forks the watchdog for queue `num` on the netlink socket `queue_fd` and watches it
  // from `loop`. False with `err` if a resource or the fork fails (nothing left behind).
  bool start(uv_loop_t* loop, int queue_fd, std::uint16_t num, std::string& err);
  // Kills and reaps the watchdog and closes its handles. Safe to repeat.
  void stop() noexcept;
  bool running() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }

  // The loop is alive: called at every drain of the queue.
  void beat() noexcept {
    if (shared_ != nullptr) shared_->beats.fetch_add(1, std::memory_order_relaxed);
  }
  // Packets the watchdog accepted while the loop was stalled, since start().
  std::uint64_t passed() const noexcept {
    return shared_ != nullptr ? shared_->passed.load(std::memory_order_relaxed) : 0;
  }
  // Times the watchdog took over.
  std::uint64_t stalls() const noexcept {
    return shared_ != nullptr ? shared_->stalls.load(std::memory_order_relaxed) : 0;
  }

 private:
  // The page both processes map. Lock-free atomics work across processes.
  struct Shared {
    std::atomic<std::uint64_t> beats{0};
    std::atomic<std::uint64_t> passed{0};
    std::atomic<std::uint64_t> stalls{0};
  };
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

  void on_ping() noexcept;
  void on_exit() noexcept;
  void report() noexcept;
  [[noreturn]] void child_main(pid_t parent) noexcept;
  // The child's work, from stall to resumption; returns when the loop beats again.
  void pass_until_resumed() noexcept;
  std::uint64_t release_all_queued(std::uint32_t& upto) noexcept;
  std::uint64_t accept_readable(std::uint32_t released_upto, bool have_released) noexcept;
  void say(const char* text) noexcept;

  uv_loop_t* loop_ = nullptr;
  UvHandle<uv_poll_t> ping_poll_;
  UvHandle<uv_poll_t> exit_poll_;
  Shared* shared_ = nullptr;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int eventfd_ = -1;
  int queue_fd_ = -1;
  std::uint16_t num_ = 0;
  bool journal_ = false;
  std::uint64_t reported_ = 0;
  std::uint64_t stalls_reported_ = 0;
  // The child's buffers, allocated before the fork: it allocates nothing.
  std::vector<char> rx_;
  std::vector<char> tx_;
};

}  // namespace tunshim::proxy
