// Child processes on the event loop: the one place tunshim starts programs (firewall
// commands, recovery hooks).
//
// - Nothing blocks the loop; every child is reaped (the core that owns its handles lives
//   until the child has exited, even when its owner is gone).
// - A child inherits only stdio: every other descriptor of the daemon is marked close-on-exec
//   right before each spawn (close_range), whoever opened it.
// - own_group children run in their own session and process group, so a signal to the group
//   reaches what they start; Subreaper makes the daemon the parent of their detached
//   descendants, and kill_tagged() finds those by the TUNSHIM_HOOK_RUN tag they inherit.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/uv_handle.h"

namespace tunshim::proxy {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is searched in PATH
  // Added to the daemon's environment, replacing variables of the same name.
  std::vector<std::pair<std::string, std::string>> env;
  // Written to the child's stdin, which is then closed; without input, stdin is /dev/null.
  std::string input;
  bool merge_output = false;  // stderr into stdout's pipe: one stream, in the child's order
  bool own_group = false;     // its own session and process group (setsid)
};

struct ProcessExit {
  bool started = false;     // false: could not be spawned (why in spawn_error)
  std::string spawn_error;  // "argv0: no such file or directory"
  std::int64_t exit_status = -1;
  int term_signal = 0;
};

// A running child. Move-only; destroying it (or detach()) stops the callbacks but not the
// child, which the loop still reaps.
class Process {
 public:
  using OutputFn = std::function<void(int stream, std::string_view data)>;  // 1 out, 2 err
  using ExitFn = std::function<void(const ProcessExit&)>;

  Process() noexcept = default;
  ~Process() { detach(); }
  Process(Process&& o) noexcept : core_(std::exchange(o.core_, nullptr)) {}
  Process& operator=(Process&& o) noexcept {
    if (this != &o) {
      detach();
      core_ = std::exchange(o.core_, nullptr);
    }
    return *this;
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts the program. `on_output` gets its output as it arrives; `on_exit` once, after the
  // exit and the output written before it (also when the spawn fails). Neither runs from
  // inside spawn().
  static Process spawn(uv_loop_t* loop, SpawnOptions options, OutputFn on_output,
                       ExitFn on_exit);

  pid_t pid() const noexcept;
  bool running() const noexcept;  // started and not yet exited
  // Signals the child, or with own_group its whole process group. False once it has exited.
  bool signal(int sig) const noexcept;
  void detach() noexcept;
  // Gives the child up but keeps the callbacks: they still run, and the core frees itself
  // after reporting (fire and forget).
  void release() noexcept;

  struct Core;  // spawn.cpp

 private:
  explicit Process(Core* c) noexcept : core_(c) {}
  Core* core_ = nullptr;
};

// What a program run printed and how it ended (for commands whose output is small: firewall
// programs).
struct ProcessResult {
  bool started = false;  // false: could not be spawned (error in `err`)
  int exit_status = -1;
  int term_signal = 0;
  std::string out;
  std::string err;
  bool ok() const { return started && exit_status == 0 && term_signal == 0; }
  std::string describe() const;  // "exit 2: <stderr>" for log lines
};

using ProcessCallback = std::function<void(ProcessResult)>;

// Runs argv[0] (PATH search) with `input` on its stdin, collecting stdout and stderr, on
// `loop`; `done` is called from the loop when the program has exited.
void run_process_async(uv_loop_t* loop, std::vector<std::string> argv, std::string input,
                       ProcessCallback done);
// The same, blocking until the program ends (on a private loop): for startup and exit.
ProcessResult run_process(std::vector<std::string> argv, std::string input = {});

// PR_SET_CHILD_SUBREAPER for the daemon's run: descendants whose parent exits (a hook's
// `setsid cmd &`, a double fork) are re-parented to the daemon rather than to init, so they
// are reaped here (a SIGCHLD watcher waits for the ones libuv does not know) and stop() can
// end them all.
class Subreaper {
 public:
  Subreaper() = default;
  ~Subreaper() { stop(0); }
  Subreaper(const Subreaper&) = delete;
  Subreaper& operator=(const Subreaper&) = delete;

  bool start(uv_loop_t* loop, std::string& err);
  // Ends every descendant: SIGTERM, SIGKILL to what is left after `grace_ms`, and reaps the
  // adopted ones. Blocking; for the daemon's exit, after its loop has finished.
  void stop(std::uint64_t grace_ms = 1000);
  // Waits for adopted orphans that have exited (what the SIGCHLD watcher does).
  static void reap_adopted();

 private:
  UvHandle<uv_signal_t> sigchld_;
  bool started_ = false;
};

// Every descendant of this process (children, their children…), by /proc.
std::vector<pid_t> descendants();
// Sends `sig` to every descendant whose environment has `TUNSHIM_HOOK_RUN=tag` (a hook run's
// leftovers, wherever they were re-parented in our tree). Returns how many were signalled.
int kill_tagged(const std::string& tag, int sig);
inline constexpr const char* kHookTagVar = "TUNSHIM_HOOK_RUN";

}  // namespace tunshim::proxy
