#include "proxy/stats_sources.h"

#include <cstddef>
#include <string>

namespace tunshim::proxy {

void add_monitor_stats(const TunnelMonitor& m, TunnelStats& t) {
  using State = keepalive::Liveness::State;
  const MonitorStats& s = m.stats();
  t.state = std::string(keepalive::to_string(m.state()));
  t.up = m.state() == State::up;
  for (std::size_t i = 0; i < s.transitions_to.size(); ++i) {
    t.transitions[std::string(keepalive::to_string(static_cast<State>(i)))] = s.transitions_to[i];
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
}

}  // namespace tunshim::proxy
