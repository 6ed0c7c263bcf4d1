// Feature state -> TunnelStats: one function per feature, called from
// Daemon::stats_snapshot(), so a feature's numbers reach /metrics, /stats.json, `tunshim
// stats` and STATUS= by filling fields (metrics.h) rather than touching the renderers.
#pragma once

#include <string>
#include <string_view>

#include "proxy/metrics.h"
#include "proxy/tunnel.h"

namespace tunshim::proxy {

// Liveness, keepalives, RTT, hooks (counts and the last run) and reconnects of one tunnel.
void add_monitor_stats(const Tunnel& m, TunnelStats& t);

// The last hook run as one line, `when` being its finish time as shown to the operator:
//   "on_down #1 exit 0, 12:03:11 (4.2 s)"         "on_up #2 exit 3, …"
//   "on_down #1 killed by SIGSEGV, …"              "on_down #2 timeout (SIGTERM), …"
//   "on_up #1 could not start, …"
std::string describe_last_hook(const LastHookRun& h, std::string_view when);

}  // namespace tunshim::proxy
