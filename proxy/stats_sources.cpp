#include "proxy/stats_sources.h"

#include <fmt/format.h>

#include <cstddef>
#include <cstring>
#include <ctime>
#include <string>

namespace tunshim::proxy {
namespace {

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

// Local time of day: a hook run is recent by nature, and the table's "since" row carries
// the date when it matters.
std::string local_hms(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

}  // namespace

std::string describe_last_hook(const LastHookRun& h, std::string_view when) {
  std::string what;
  switch (h.result) {
    case HookResult::ok:
      what = "exit 0";
      break;
    case HookResult::failed:
      what = h.term_signal != 0 ? "killed by " + signal_name(h.term_signal)
                                : fmt::format("exit {}", h.exit_status);
      break;
    case HookResult::timeout:
      what = h.term_signal != 0 ? "timeout (" + signal_name(h.term_signal) + ")" : "timeout";
      break;
    case HookResult::spawn_error:
      what = "could not start";
      break;
  }
  return fmt::format("{} #{} {}, {} ({:.1f} s)", h.hook, h.index, what, when,
                     static_cast<double>(h.duration_ms) / 1000.0);
}

void add_monitor_stats(const Tunnel& m, TunnelStats& t) {
  using State = keepalive::Liveness::State;
  const MonitorStats& s = m.monitor_stats();
  t.state = std::string(keepalive::to_string(m.state()));
  t.up = m.state() == State::up;
  for (std::size_t i = 0; i < s.transitions_to.size(); ++i) {
    t.transitions[std::string(keepalive::to_string(static_cast<State>(i)))] =
        s.transitions_to[i];
  }
  t.keepalive_sent = s.keepalive_sent;
  t.keepalive_replies = s.keepalive_replies;
  const keepalive::RttEstimator& rtt = m.liveness().rtt();
  if (rtt.has_sample()) {
    t.rtt_smoothed = static_cast<double>(rtt.srtt_us()) / 1e6;
    t.rtt_min = static_cast<double>(rtt.min().ms()) / 1e3;
    t.rtt_max = static_cast<double>(rtt.max().ms()) / 1e3;
  }
  for (std::size_t i = 0; i < s.on_down_runs.size(); ++i) {
    const char* result = to_string(static_cast<HookResult>(i));
    t.hook_runs[{"on_down", result}] = s.on_down_runs[i];
    t.hook_runs[{"on_up", result}] = s.on_up_runs[i];
  }
  t.reconnects = s.reconnects;
  if (s.last_hook)
    t.last_hook = describe_last_hook(*s.last_hook, local_hms(s.last_hook->finished_at));
}

}  // namespace tunshim::proxy
