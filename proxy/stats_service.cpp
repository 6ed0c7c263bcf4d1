#include "proxy/stats_service.h"

#include <net/if.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <chrono>
#include <sstream>

#include "proxy/stats_report.h"

namespace tunshim::proxy {
namespace {

std::string describe(const ListenAddress& a) {
  return (a.ipv6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

}  // namespace

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

StatsService::StatsService(uv_loop_t* loop, StatsSources sources)
    : loop_(loop),
      sources_(std::move(sources)),
      http_(loop, [this](std::string_view path) { return http(path); }),
      control_(loop, [this](std::string_view line, ControlServer::Reply reply) {
        control(line, std::move(reply));
      }) {}

StatsService::~StatsService() { stop(); }

void StatsService::start(const GlobalConfig& global) {
  start_http(global.stats_listen);
  start_control(global.control_socket);

  status_timer_.init(loop_);
  status_timer_.start(kStatusIntervalMs, kStatusIntervalMs, [this] { send_status(); });

  // systemd's watchdog: feed it from the loop, so a stuck loop is what it catches.
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    const std::uint64_t every_ms = std::max<std::uint64_t>(usec / 2000, 1);
    watchdog_timer_.init(loop_);
    watchdog_timer_.start(0, every_ms, [] { sd_notify(0, "WATCHDOG=1"); });
    spdlog::info("systemd watchdog: {} ms, WATCHDOG=1 every {} ms", usec / 1000, every_ms);
  }
  send_status();
}

void StatsService::start_http(const std::optional<ListenAddress>& addr) {
  http_addr_ = addr;
  if (!addr) {
    spdlog::info("stats server off (stats_listen)");
    return;
  }
  std::string err;
  if (http_.start(*addr, err)) {
    spdlog::info(
        "stats: http://{}/metrics and /stats.json{}", describe(*addr),
        addr->loopback ? "" : " (not loopback: reachable from the network, no authentication)");
  } else {
    spdlog::error("stats server: cannot listen on {}; running without it", err);
  }
}

void StatsService::start_control(const std::string& path) {
  control_path_ = path;
  if (path.empty()) {
    spdlog::info("control socket off (control_socket)");
    return;
  }
  std::string err;
  if (control_.start(path, err)) {
    spdlog::info("control socket: {} (root only)", path);
  } else {
    spdlog::error(
        "control socket: {}; `tunshim stats` and `tunshim reapply` will not reach this "
        "instance",
        err);
  }
}

void StatsService::apply(const GlobalConfig& global) {
  if (stopped_) return;
  if (global.stats_listen != http_addr_) {
    http_.stop();
    start_http(global.stats_listen);
  }
  if (global.control_socket != control_path_) {
    control_.stop();
    start_control(global.control_socket);
  }
  send_status();
}

void StatsService::stop() {
  if (stopped_) return;
  stopped_ = true;
  http_.stop();
  control_.stop();
  status_timer_.reset();
  watchdog_timer_.reset();
}

StatsSnapshot StatsService::snapshot() {
  StatsSnapshot s = sources_.snapshot();
  s.now = unix_now();
  if (http_addr_) s.clients_dropped.emplace_back("http", http_.drops());
  if (!control_path_.empty()) s.clients_dropped.emplace_back("control", control_.drops());
  // Presence is looked up when asked, and the state (liveness, or presence without it)
  // compared with the last one seen. Snapshots are taken at least every 10 s (STATUS=), so
  // "since" is when this process first saw the current state, at most that late.
  for (TunnelStats& t : s.tunnels) {
    t.present = ::if_nametoindex(t.iface.c_str()) != 0;
    if (t.state.empty()) t.state = t.present ? "present" : "absent";
    auto [it, fresh] = seen_.try_emplace(t.iface, Seen{t.state, s.now});
    if (!fresh && it->second.state != t.state) it->second = Seen{t.state, s.now};
    if (t.state_since == 0) t.state_since = it->second.since;
  }
  summarize_patterns(s);
  return s;
}

void StatsService::send_status() {
  const std::string line = status_line(snapshot());
  sd_notify(0, ("STATUS=" + line).c_str());
  if (line != last_status_) spdlog::debug("status: {}", line);
  last_status_ = line;
}

void StatsService::log_summary() {
  std::istringstream is(render_table(snapshot()));
  std::string line;
  while (std::getline(is, line)) spdlog::info("stats: {}", line);
}

HttpResponse StatsService::http(std::string_view path) {
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(snapshot())};
  if (path == "/stats.json") return {200, "application/json", render_json(snapshot())};
  return {404, "text/plain; charset=utf-8", "not found; try /metrics or /stats.json\n"};
}

void StatsService::control(std::string_view line, ControlServer::Reply reply) {
  if (line == "stats" || line == "stats json") return reply(true, render_json(snapshot()));
  if (line == "stats table") return reply(true, render_table(snapshot()));
  if (line == "stats table all")
    return reply(true, render_table(snapshot(), nullptr, {StatsView::Mode::all, {}}));
  // "stats table one IFACE", "stats json one IFACE": one tunnel, or a pattern's instances.
  for (const bool json : {false, true}) {
    const std::string_view prefix = json ? "stats json one " : "stats table one ";
    if (!line.starts_with(prefix)) continue;
    const StatsView view{StatsView::Mode::one, std::string(line.substr(prefix.size()))};
    if (view.iface.empty() || view.iface.size() > 64 ||
        view.iface.find(' ') != std::string::npos)
      return reply(false, "usage: " + std::string(prefix) + "IFACE");
    StatsSnapshot s = snapshot();
    if (std::string err = view_error(s, view); !err.empty()) return reply(false, err);
    if (!json) return reply(true, render_table(s, nullptr, view));
    keep_view_tunnels(s, view);
    return reply(true, render_json(s));
  }
  if (line.starts_with("reapply ")) {
    const std::string iface(line.substr(8));
    if (iface.empty() || iface.find(' ') != std::string::npos)
      return reply(false, "usage: reapply IFACE");
    spdlog::info("control socket: reapply {}", iface);
    sources_.reapply(iface, [reply, iface](bool ok, std::string msg) {
      if (ok)
        spdlog::info("reapply {}: {}", iface, msg);
      else
        spdlog::error("reapply {}: {}", iface, msg);
      reply(ok, ok ? iface + ": " + msg + "\n" : msg);
    });
    return;
  }
  std::string shown(line.substr(0, 64));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  reply(false, "unknown request '" + shown +
                   "' (known: stats, stats table [all | one IFACE], stats json [one IFACE], "
                   "reapply IFACE)");
}

}  // namespace tunshim::proxy
