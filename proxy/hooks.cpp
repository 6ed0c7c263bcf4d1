#include "proxy/hooks.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <utility>

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

HookRun::HookRun(uv_loop_t* loop, Options options, CommandFn on_command, DoneFn on_done)
    : loop_(loop),
      opt_(std::move(options)),
      on_command_(std::move(on_command)),
      on_done_(std::move(on_done)),
      lines_(kLineRate, kLineBurst,
             keepalive::Timestamp::from_ms(static_cast<std::int64_t>(uv_now(loop)))),
      timer_(loop),
      defer_(loop) {}

HookRun::~HookRun() {
  if (child_.running()) {
    // Destroyed mid-run (owners wait for done, so only at teardown). Kill it and what it
    // started; the loop still reaps it (the Process core outlives this object).
    child_.signal(SIGKILL);
    kill_tagged(tag_, SIGKILL);
  }
}

void HookRun::start() {
  if (started_) return;
  started_ = true;
  defer_.start(0, [this] { next(); });
}

void HookRun::cancel() {
  if (done_) return;
  cancelled_ = true;
  if (child_.running() && !killed_by_us_) terminate();
}

// SIGTERM to the command's process group and to every descendant carrying its tag (those
// that left the group with setsid and were re-parented to us), SIGKILL after the grace.
void HookRun::terminate() {
  killed_by_us_ = true;
  child_.signal(SIGTERM);
  kill_tagged(tag_, SIGTERM);
  timer_.start(opt_.kill_grace_ms, [this] {
    if (child_.running())
      spdlog::warn("hook {}: {} ignored SIGTERM; killing it", opt_.label, current_.argv0);
    child_.signal(SIGKILL);
    kill_tagged(tag_, SIGKILL);
  });
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
  static std::uint64_t runs = 0;  // one tag per command run in this process
  const Argv& argv = opt_.commands[index_++];
  current_ = HookCommandResult{};
  current_.argv0 = argv.empty() ? std::string() : argv[0];
  killed_by_us_ = false;
  logged_bytes_ = 0;
  logged_lines_ = 0;
  split_.flush();
  started_at_ = uv_now(loop_);
  tag_ = std::to_string(::getpid()) + "-" + std::to_string(++runs);

  SpawnOptions so;
  so.argv = argv;
  so.env = opt_.env;
  so.env.emplace_back(kHookTagVar, tag_);
  so.merge_output = true;  // one stream, in the order the child wrote it
  so.own_group = true;     // so the timeout can terminate everything it started
  child_ = Process::spawn(
      loop_, std::move(so), [this](int, std::string_view d) { on_output(d); },
      [this](const ProcessExit& e) { on_exit(e); });
  if (child_.pid() <= 0) return;  // not started: on_exit reports it from the loop
  spdlog::info("hook {}: started {} (pid {})", opt_.label, current_.argv0, child_.pid());
  timer_.start(opt_.timeout_ms, [this] {
    if (killed_by_us_ || !child_.running()) return;
    spdlog::warn("hook {}: {} still running at the timeout; terminating it", opt_.label,
                 current_.argv0);
    terminate();
  });
}

void HookRun::log_line(const std::string& line) {
  const auto now = keepalive::Timestamp::from_ms(static_cast<std::int64_t>(uv_now(loop_)));
  if (logged_lines_ >= kMaxLoggedLines || logged_bytes_ + line.size() > kMaxLoggedBytes ||
      !lines_.allow(now)) {
    current_.output_not_logged += line.size() + 1;
    return;
  }
  ++logged_lines_;
  logged_bytes_ += line.size() + 1;
  spdlog::info("hook {}: {}", opt_.label, line);
}

void HookRun::on_output(std::string_view d) {
  current_.output_bytes += d.size();
  // Past the limits nothing more can be logged: count without splitting.
  if (logged_lines_ >= kMaxLoggedLines || logged_bytes_ >= kMaxLoggedBytes) {
    current_.output_not_logged += d.size();
    return;
  }
  for (const auto& l : split_.feed(d.data(), d.size())) log_line(l);
}

void HookRun::on_exit(const ProcessExit& e) {
  timer_.stop();
  HookCommandResult r = std::move(current_);
  current_ = HookCommandResult{};
  if (auto rest = split_.flush(); !rest.empty()) {
    current_.output_not_logged = r.output_not_logged;  // log_line() counts into current_
    log_line(rest);
    r.output_not_logged = current_.output_not_logged;
  }
  if (!e.started) {
    spdlog::error("hook {}: cannot run {}", opt_.label, e.spawn_error);
    r.result = HookResult::spawn_error;
    r.exit_status = -1;
  } else {
    r.exit_status = e.exit_status;
    r.term_signal = e.term_signal;
    r.result = classify_exit(e.exit_status, e.term_signal, killed_by_us_);
    r.duration_ms = static_cast<std::int64_t>(uv_now(loop_) - started_at_);
    if (killed_by_us_) {
      // Terminated: nothing it started may outlive it.
      r.leftovers_killed = kill_tagged(tag_, SIGKILL);
    }
    if (r.output_not_logged > 0) {
      spdlog::warn("hook {}: {}: output truncated, {} more bytes not logged", opt_.label,
                   r.argv0, r.output_not_logged);
    }
    spdlog::log(r.result == HookResult::ok ? spdlog::level::info : spdlog::level::warn,
                "hook {}: {} finished: {} (exit status {}, signal {}, {} ms)", opt_.label,
                r.argv0, to_string(r.result), r.exit_status, r.term_signal, r.duration_ms);
    if (r.leftovers_killed > 0) {
      spdlog::warn("hook {}: killed {} process(es) {} left behind", opt_.label,
                   r.leftovers_killed, r.argv0);
    }
  }
  if (on_command_) on_command_(r);
  defer_.start(0, [this] { next(); });
}

}  // namespace tunshim::proxy
