// Recovery hooks: runs an operator's list of commands (argv arrays, no shell) one after
// the other as child processes of the event loop (spawn.h), each bounded by a timeout (then
// SIGTERM to its process group and whatever it left detached, then SIGKILL), with its output
// logged line by line within limits and its exit status reported. Nothing here blocks the
// loop, and every child is reaped: a HookRun that is cancelled still waits for its child's
// exit before it reports done.
//
// Output limits, per command: at most kMaxLoggedBytes and kMaxLoggedLines are logged, and
// lines are rate-limited per run (kLineRate/s, bursts of kLineBurst); the rest is read (so the
// child never blocks on a full pipe), counted, and reported in one line at its end.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keepalive/token_bucket.h"
#include "proxy/spawn.h"
#include "proxy/uv_handle.h"

namespace tunshim::proxy {

enum class HookResult : std::uint8_t {
  ok,           // exit status 0
  failed,       // non-zero exit status, or killed by a signal it did not get from us
  timeout,      // still running at the timeout: terminated by us
  spawn_error,  // could not be started (no such file, not executable…)
};
const char* to_string(HookResult r) noexcept;

// Collapses a child's exit into a HookResult (pure; exposed for tests).
HookResult classify_exit(std::int64_t exit_status, int term_signal, bool killed_by_us) noexcept;

// Splits output into lines for the log: complete lines are returned, the rest is kept for
// the next chunk. A line longer than `max_line` is cut there (and the cut part returned as
// a line) so a child writing without newlines cannot grow our memory. Pure; exposed for tests.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line = 1024) : max_(max_line) {}
  std::vector<std::string> feed(const char* data, std::size_t len);
  // What is left without a newline (at the child's exit), and clears it.
  std::string flush();

 private:
  std::size_t max_;
  std::string partial_;
};

// One command's outcome in a run.
struct HookCommandResult {
  std::string argv0;
  HookResult result = HookResult::ok;
  std::int64_t exit_status = 0;
  int term_signal = 0;
  std::int64_t duration_ms = 0;
  std::uint64_t output_bytes = 0;       // everything it wrote
  std::uint64_t output_not_logged = 0;  // bytes past the limits, counted only
  int leftovers_killed = 0;             // descendants still alive at its end, killed
};

// A sequence of commands run in order (all of them, even after one fails: "poff" failing
// because the link is already gone must not keep "pon" from running).
class HookRun {
 public:
  static constexpr std::size_t kMaxLoggedBytes = 64 * 1024;
  static constexpr std::size_t kMaxLoggedLines = 256;
  static constexpr std::uint32_t kLineRate = 20;
  static constexpr std::uint32_t kLineBurst = 64;

  using Argv = std::vector<std::string>;
  // Called once per finished command, then once with done() true at the end.
  using CommandFn = std::function<void(const HookCommandResult&)>;
  using DoneFn = std::function<void()>;

  struct Options {
    std::string label;  // for log lines: "ppp0 on_down"
    std::vector<Argv> commands;
    std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing in) ours
    std::uint64_t timeout_ms = 30000;
    // After SIGTERM at the timeout, how long before SIGKILL.
    std::uint64_t kill_grace_ms = 2000;
  };

  HookRun(uv_loop_t* loop, Options options, CommandFn on_command, DoneFn on_done);
  ~HookRun();
  HookRun(const HookRun&) = delete;
  HookRun& operator=(const HookRun&) = delete;

  // Starts the first command. The callbacks run from the loop, never from inside start().
  void start();
  // Terminates the running command (SIGTERM, then SIGKILL after the grace) and runs no
  // further ones; done is still reported once the child is reaped.
  void cancel();
  bool running() const noexcept { return !done_; }

 private:
  void next();
  void on_output(std::string_view data);
  void on_exit(const ProcessExit& e);
  void terminate();
  void log_line(const std::string& line);

  uv_loop_t* loop_;
  Options opt_;
  CommandFn on_command_;
  DoneFn on_done_;
  std::size_t index_ = 0;
  bool cancelled_ = false;
  bool done_ = false;
  bool started_ = false;
  // The running command and what is known of it.
  Process child_;
  std::string tag_;  // TUNSHIM_HOOK_RUN: marks its descendants, wherever they end up
  HookCommandResult current_;
  bool killed_by_us_ = false;
  std::uint64_t started_at_ = 0;
  std::size_t logged_bytes_ = 0;
  std::size_t logged_lines_ = 0;
  LineSplitter split_{1024};
  keepalive::TokenBucket lines_;
  UvTimer timer_;  // the timeout, then the grace before SIGKILL
  UvTimer defer_;  // steps to the next command from the loop, not re-entrantly
};

}  // namespace tunshim::proxy
