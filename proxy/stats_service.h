// Everything the operator sees of a running daemon, in one object the Daemon owns:
//   - the HTTP server (stats_listen): GET /metrics, GET /stats.json
//   - the control socket (control_socket): "stats", "stats table", "reapply IFACE"
//   - systemd: STATUS= every 10 s (and on reload), WATCHDOG=1 at half of WATCHDOG_USEC
//   - the SIGUSR1 summary in the log
// The Daemon supplies a snapshot function and a reapply function; this object adds the
// interface presence (and since when) and renders. Failing to bind a server is logged and
// not fatal: clamping matters more than reporting it.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "proxy/config.h"
#include "proxy/control_server.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/uv_handle.h"

namespace tunshim::proxy {

struct StatsSources {
  // The daemon's numbers now (counters, targets, whatever features measure).
  std::function<StatsSnapshot()> snapshot;
  // Re-applies an interface's settings; `done(ok, message)` when finished.
  std::function<void(const std::string& iface, std::function<void(bool, std::string)> done)>
      reapply;
};

class StatsService {
 public:
  static constexpr std::uint64_t kStatusIntervalMs = 10000;

  StatsService(uv_loop_t* loop, StatsSources sources);
  ~StatsService();
  StatsService(const StatsService&) = delete;
  StatsService& operator=(const StatsService&) = delete;

  // Starts the servers `global` asks for, the STATUS= timer and the watchdog (if systemd
  // set one), and sends a first STATUS=.
  void start(const GlobalConfig& global);
  // After a reload: restarts a server whose address changed, sends STATUS= now.
  void apply(const GlobalConfig& global);
  // Closes servers and timers (asynchronously; the loop finishes the closes).
  void stop();

  // The daemon's snapshot plus interface presence, and since when each state holds.
  StatsSnapshot snapshot();
  // SIGUSR1: the `tunshim stats` table, one log line per table line.
  void log_summary();
  void send_status();

 private:
  HttpResponse http(std::string_view path);
  void control(std::string_view line, ControlServer::Reply reply);
  void start_http(const std::optional<ListenAddress>& addr);
  void start_control(const std::string& path);

  struct Seen {
    std::string state;
    double since = 0;  // unix seconds
  };

  uv_loop_t* loop_;
  StatsSources sources_;
  HttpServer http_;
  ControlServer control_;
  std::optional<ListenAddress> http_addr_;
  std::string control_path_;
  UvTimer status_timer_;
  UvTimer watchdog_timer_;
  std::map<std::string, Seen> seen_;  // by interface
  std::string last_status_;
  bool stopped_ = false;
};

// Unix time now, in seconds.
double unix_now();

}  // namespace tunshim::proxy
