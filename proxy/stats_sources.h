// Feature state -> TunnelStats: one function per feature, called from
// Daemon::stats_snapshot(), so a feature's numbers reach /metrics, /stats.json, `tunshim
// stats` and STATUS= by filling fields (metrics.h) rather than touching the renderers.
#pragma once

#include "proxy/metrics.h"
#include "proxy/tunnel_monitor.h"

namespace tunshim::proxy {

// Liveness, keepalives, RTT, hooks and reconnects of one tunnel's monitor.
void add_monitor_stats(const TunnelMonitor& m, TunnelStats& t);

}  // namespace tunshim::proxy
