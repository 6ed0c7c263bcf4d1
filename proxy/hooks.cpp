#include "proxy/hooks.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

extern char** environ;

namespace tunshim::proxy {

const char* to_string(HookResult r) noexcept {
  switch (r) {
    case HookResult::ok:
      return "ok";
    case HookResult::failed:
      return "failed";
    case HookResult::timeout:
      return "timeout";
    case HookResult::spawn_error:
      return "spawn_error";
  }
  return "?";
}

HookResult classify_exit(std::int64_t exit_status, int term_signal,
                         bool killed_by_us) noexcept {
  if (killed_by_us) return HookResult::timeout;
  if (term_signal != 0 || exit_status != 0) return HookResult::failed;
  return HookResult::ok;
}

std::vector<std::string> LineSplitter::feed(const char* data, std::size_t len) {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < len; ++i) {
    const char c = data[i];
    if (c == '\n') {
      lines.push_back(std::move(partial_));
      partial_.clear();
      continue;
    }
    if (c == '\r') continue;
    partial_.push_back(c);
    if (partial_.size() >= max_) {
      lines.push_back(std::move(partial_));
      partial_.clear();
    }
  }
  return lines;
}

std::string LineSplitter::flush() {
  std::string s = std::move(partial_);
  partial_.clear();
  return s;
}

// One running command. Its three handles are embedded; it frees itself once all are closed,
// which may be after the HookRun that started it is gone (owner then null).
struct HookRun::Child {
  HookRun* owner = nullptr;
  std::string label;
  std::string argv0;
  uv_process_t proc{};
  uv_pipe_t out{};
  uv_timer_t timer{};
  int open_handles = 0;
  bool exited = false;
  bool killed_by_us = false;
  bool sent_kill = false;
  std::uint64_t grace_ms = 2000;
  std::uint64_t started = 0;
  LineSplitter split{1024};

  void log_lines(const char* data, std::size_t len) {
    for (const auto& l : split.feed(data, len)) spdlog::info("hook {}: {}", label, l);
  }
  void close_all() {
    auto closed = [](uv_handle_t* h) {
      auto* c = static_cast<Child*>(h->data);
      if (--c->open_handles == 0) delete c;
    };
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&proc), reinterpret_cast<uv_handle_t*>(&out),
          reinterpret_cast<uv_handle_t*>(&timer)}) {
      if (!uv_is_closing(h)) uv_close(h, closed);
    }
  }
  // Signals the child's whole process group (it runs in its own session), so a shell
  // hook's own children go too.
  void signal_group(int sig) const {
    if (!exited && proc.pid > 0) ::kill(-proc.pid, sig);
  }
};

HookRun::HookRun(uv_loop_t* loop, Options options, CommandFn on_command, DoneFn on_done)
    : loop_(loop),
      opt_(std::move(options)),
      on_command_(std::move(on_command)),
      on_done_(std::move(on_done)) {}

HookRun::~HookRun() {
  if (child_) {
    // Destroyed mid-run (should not happen: owners wait for done). Kill it; the loop still
    // reaps it because the process handle stays open until its exit callback.
    child_->owner = nullptr;
    child_->killed_by_us = true;
    child_->signal_group(SIGKILL);
    child_ = nullptr;
  }
  if (defer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(defer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    defer_ = nullptr;
  }
}

void HookRun::start() {
  if (started_) return;
  started_ = true;
  defer_ = new uv_timer_t{};
  uv_timer_init(loop_, defer_);
  defer_->data = this;
  uv_timer_start(
      defer_, [](uv_timer_t* t) { static_cast<HookRun*>(t->data)->next(); }, 0, 0);
}

void HookRun::cancel() {
  if (done_) return;
  cancelled_ = true;
  if (child_ && !child_->killed_by_us) {
    child_->killed_by_us = true;
    child_->signal_group(SIGTERM);
    uv_timer_start(
        &child_->timer,
        [](uv_timer_t* t) {
          auto* c = static_cast<Child*>(t->data);
          c->sent_kill = true;
          c->signal_group(SIGKILL);
        },
        child_->grace_ms, 0);
  }
}

void HookRun::next() {
  if (cancelled_ || index_ >= opt_.commands.size()) {
    done_ = true;
    if (on_done_) {
      DoneFn fn = on_done_;  // the callback may destroy us: nothing touches members after
      fn();
    }
    return;
  }
  const Argv& argv = opt_.commands[index_++];
  HookCommandResult res;
  res.argv0 = argv.empty() ? std::string() : argv[0];
  auto fail_spawn = [&](const std::string& why) {
    spdlog::error("hook {}: cannot run {}: {}", opt_.label, res.argv0, why);
    res.result = HookResult::spawn_error;
    res.exit_status = -1;
    if (on_command_) on_command_(res);
    uv_timer_start(
        defer_, [](uv_timer_t* t) { static_cast<HookRun*>(t->data)->next(); }, 0, 0);
  };
  if (argv.empty()) return fail_spawn("empty command");

  // Environment: ours with the hook's variables added or replaced.
  std::vector<std::string> env_store;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = false;
    for (const auto& [k, v] : opt_.env) {
      replaced = replaced ||
                 (kv.size() > k.size() && kv.substr(0, k.size()) == k && kv[k.size()] == '=');
    }
    if (!replaced) env_store.emplace_back(kv);
  }
  for (const auto& [k, v] : opt_.env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store(argv);
  std::vector<char*> args;
  for (auto& s : argv_store) args.push_back(s.data());
  args.push_back(nullptr);

  int fds[2] = {-1, -1};
  if (int rc = uv_pipe(fds, 0, 0); rc != 0)
    return fail_spawn(std::string("pipe: ") + uv_strerror(rc));

  // Freed by the close callback of its last handle (see Child::close_all).
  auto* raw = new Child();
  Child* c = raw;
  c->owner = this;
  c->label = opt_.label;
  c->argv0 = argv[0];
  c->grace_ms = opt_.kill_grace_ms;
  c->started = uv_now(loop_);

  uv_pipe_init(loop_, &raw->out, 0);
  raw->out.data = raw;
  uv_pipe_open(&raw->out, fds[0]);
  uv_timer_init(loop_, &raw->timer);
  raw->timer.data = raw;
  raw->open_handles = 2;

  std::array<uv_stdio_container_t, 3> stdio{};
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = fds[1];
  uv_process_options_t po{};
  po.file = args[0];
  po.args = args.data();
  po.env = envp.data();
  po.stdio_count = static_cast<int>(stdio.size());
  po.stdio = stdio.data();
  // Its own session and process group, so the timeout can terminate everything it started.
  po.flags = UV_PROCESS_DETACHED;
  po.exit_cb = [](uv_process_t* p, std::int64_t status, int sig) {
    auto* ch = static_cast<Child*>(p->data);
    ch->exited = true;
    // Whatever the child wrote just before exiting may still sit in the pipe.
    int fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&ch->out), &fd) == 0) {
      std::array<char, 4096> buf{};
      for (int i = 0; i < 16; ++i) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n <= 0) break;
        ch->log_lines(buf.data(), static_cast<std::size_t>(n));
      }
    }
    if (auto rest = ch->split.flush(); !rest.empty())
      spdlog::info("hook {}: {}", ch->label, rest);
    HookCommandResult r;
    r.argv0 = ch->argv0;
    r.exit_status = status;
    r.term_signal = sig;
    r.result = classify_exit(status, sig, ch->killed_by_us);
    r.duration_ms = static_cast<std::int64_t>(uv_now(p->loop) - ch->started);
    HookRun* owner = ch->owner;
    ch->owner = nullptr;
    ch->close_all();
    if (owner != nullptr) owner->finish_child(std::move(r));
  };
  const int rc = uv_spawn(loop_, &raw->proc, &po);
  ::close(fds[1]);
  raw->proc.data = raw;
  if (rc != 0) {
    // uv_spawn failed: the process handle still has to be closed (libuv's rule).
    raw->open_handles = 3;
    raw->exited = true;
    raw->owner = nullptr;
    raw->close_all();  // the close callbacks delete it
    return fail_spawn(uv_strerror(rc));
  }
  raw->open_handles = 3;
  spdlog::info("hook {}: started {} (pid {})", opt_.label, argv[0], raw->proc.pid);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&raw->out),
      [](uv_handle_t*, std::size_t, uv_buf_t* b) {
        static std::array<char, 4096> buf{};
        *b = uv_buf_init(buf.data(), static_cast<unsigned>(buf.size()));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* ch = static_cast<Child*>(s->data);
        if (n > 0) {
          ch->log_lines(b->base, static_cast<std::size_t>(n));
        } else if (n < 0) {
          uv_read_stop(s);  // EOF (or an error): the exit callback finishes up
        }
      });
  uv_timer_start(
      &raw->timer,
      [](uv_timer_t* t) {
        auto* ch = static_cast<Child*>(t->data);
        if (!ch->killed_by_us) {
          spdlog::warn("hook {}: {} still running at the timeout; terminating it", ch->label,
                       ch->argv0);
          ch->killed_by_us = true;
          ch->signal_group(SIGTERM);
          uv_timer_start(
              &ch->timer,
              [](uv_timer_t* t2) {
                auto* c2 = static_cast<Child*>(t2->data);
                spdlog::warn("hook {}: {} ignored SIGTERM; killing it", c2->label, c2->argv0);
                c2->sent_kill = true;
                c2->signal_group(SIGKILL);
              },
              ch->grace_ms, 0);
        }
      },
      opt_.timeout_ms, 0);
  child_ = raw;
}

void HookRun::finish_child(HookCommandResult r) {
  child_ = nullptr;  // it frees itself once its handles are closed
  spdlog::log(r.result == HookResult::ok ? spdlog::level::info : spdlog::level::warn,
              "hook {}: {} finished: {} (exit status {}, signal {}, {} ms)", opt_.label,
              r.argv0, to_string(r.result), r.exit_status, r.term_signal, r.duration_ms);
  if (on_command_) on_command_(r);
  uv_timer_start(
      defer_, [](uv_timer_t* t) { static_cast<HookRun*>(t->data)->next(); }, 0, 0);
}

}  // namespace tunshim::proxy
