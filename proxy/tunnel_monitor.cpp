#include "proxy/tunnel_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <variant>

#include "proxy/config.h"

namespace tunshim::proxy {
namespace {

using keepalive::Liveness;
using keepalive::Timestamp;

// Keepalive echoes are small: they prove the path carries packets, not how large.
constexpr std::uint16_t kEchoSize = 64;

std::size_t idx(Liveness::State s) noexcept { return static_cast<std::size_t>(s); }
std::size_t idx(HookResult r) noexcept { return static_cast<std::size_t>(r); }

}  // namespace

MonitorConfig monitor_config(const TunnelConfig& tc) {
  MonitorConfig m;
  m.iface = tc.interface;
  switch (tc.keepalive) {
    case KeepaliveMode::idle:
      m.liveness.mode = keepalive::KeepaliveMode::idle;
      break;
    case KeepaliveMode::always:
      m.liveness.mode = keepalive::KeepaliveMode::always;
      break;
    case KeepaliveMode::off:
      m.liveness.mode = keepalive::KeepaliveMode::off;
      break;
  }
  m.liveness.interval = keepalive::milliseconds(tc.keepalive_interval.count());
  // Probing faster while suspect, but never slower than the configured interval.
  m.liveness.suspect_interval = std::min(keepalive::seconds(1), m.liveness.interval);
  m.liveness.reply_timeout = m.liveness.suspect_interval;
  m.liveness.down_after_misses = static_cast<std::uint32_t>(std::max(1, tc.down_after_misses));
  m.target = tc.keepalive_target;
  m.on_down = tc.on_down;
  m.on_up = tc.on_up;
  m.hook_timeout_ms = static_cast<std::uint64_t>(tc.hook_timeout.count());
  // Issue 5: on_down repeats 1 s, 2 s, 4 s … after the previous run, capped at backoff_max.
  m.backoff.initial = keepalive::seconds(1);
  m.backoff.max = keepalive::milliseconds(tc.backoff_max.count());
  return m;
}

TunnelMonitor::TunnelMonitor(uv_loop_t* loop, MonitorConfig config)
    : loop_(loop),
      cfg_(std::move(config)),
      live_(cfg_.liveness),
      backoff_(cfg_.backoff),
      rng_(std::random_device{}()) {
  timer_ = new uv_timer_t{};
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

TunnelMonitor::~TunnelMonitor() { stop(); }

Timestamp TunnelMonitor::now() const noexcept {
  return Timestamp::from_ms(static_cast<std::int64_t>(uv_now(loop_)));
}

void TunnelMonitor::start() {
  spdlog::info(
      "tunnel {}: keepalive {} every {} ms, target {}, down after {} misses, on_down {} "
      "command(s), on_up {} command(s)",
      cfg_.iface, keepalive::to_string(cfg_.liveness.mode), cfg_.liveness.interval.ms(),
      cfg_.target.empty() ? "peer" : cfg_.target, cfg_.liveness.down_after_misses,
      cfg_.on_down.size(), cfg_.on_up.size());
  resync();
  if (!present_) spdlog::info("tunnel {}: absent (no such interface yet)", cfg_.iface);
}

void TunnelMonitor::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (probe_) probe_->close();
  up_pending_ = false;
  if (down_run_) down_run_->cancel();
  if (up_run_) up_run_->cancel();
}

void TunnelMonitor::resync() {
  if (stopped_) return;
  LinkInfo li;
  std::string err;
  if (query_link(cfg_.iface, li, err)) {
    on_link(li);
  } else if (present_) {
    if (err != "no such interface")
      spdlog::warn("tunnel {}: reading the interface: {}", cfg_.iface, err);
    gone();
  }
}

void TunnelMonitor::on_link(const LinkInfo& li) {
  if (stopped_) return;
  if (li.name != cfg_.iface) {
    // Renamed away under the same index: for us the tunnel is gone.
    if (present_ && li.present && li.ifindex == ifindex_) gone();
    return;
  }
  if (!li.present) {
    if (present_ && li.ifindex == ifindex_) gone();
    return;
  }
  if (present_ && li.ifindex != ifindex_) gone();  // replaced between two notifications
  if (!present_) {
    appear(li);
  } else if (li.mtu != mtu_) {
    spdlog::info("tunnel {}: interface MTU {} -> {}", cfg_.iface, mtu_, li.mtu);
    mtu_ = li.mtu;
    if (on_interface_) on_interface_(cfg_.iface, true, mtu_);
  }
}

void TunnelMonitor::on_addr(unsigned ifindex) {
  if (stopped_ || !present_ || ifindex != ifindex_) return;
  // The peer (our default target) may have changed; reopening re-reads it.
  const std::string before = target_text_;
  open_probe();
  if (target_text_ != before) {
    spdlog::info("tunnel {}: keepalive target {} -> {}", cfg_.iface,
                 before.empty() ? "none" : before,
                 target_text_.empty() ? "none" : target_text_);
  }
}

void TunnelMonitor::appear(const LinkInfo& li) {
  present_ = true;
  ifindex_ = li.ifindex;
  mtu_ = li.mtu;
  const bool returned = ever_present_;
  ever_present_ = true;
  spdlog::info("tunnel {}: interface {} (index {}, MTU {})", cfg_.iface,
               returned ? "is back" : "present", ifindex_, mtu_);
  open_probe();
  const Timestamp t = now();
  handle(live_.on_interface(true, t));
  if (li.have_stats) handle(live_.on_rx_activity(li.rx_packets, t));
  if (on_interface_) on_interface_(cfg_.iface, true, mtu_);
  arm();
}

void TunnelMonitor::gone() {
  present_ = false;
  ifindex_ = 0;
  if (probe_) probe_->close();
  target_text_.clear();
  handle(live_.on_interface(false, now()));
  if (on_interface_) on_interface_(cfg_.iface, false, 0);
  arm();
}

void TunnelMonitor::open_probe() {
  if (probe_) probe_->close();
  target_text_.clear();
  if (cfg_.liveness.mode == keepalive::KeepaliveMode::off) return;
  std::optional<IpAddress> target;
  if (!cfg_.target.empty()) {
    target = IpAddress::parse(cfg_.target);
  } else {
    InterfaceInfo info;
    std::string err;
    if (read_interface(cfg_.iface, info, err)) target = info.peer4 ? info.peer4 : info.peer6;
  }
  if (!target) {
    spdlog::warn(
        "tunnel {}: no keepalive target (no point-to-point peer; set keepalive_target): "
        "echoes are not sent, liveness follows traffic and the interface only",
        cfg_.iface);
    return;
  }
  probe_ = std::make_unique<ProbeIo>(loop_);
  std::string err;
  auto on_reply = [this](std::uint32_t tag, std::uint16_t) {
    ++stats_.keepalive_replies;
    const Timestamp t = now();
    handle(live_.on_echo_reply(tag, t));
    // The reply itself moved the rx counter: take it as the baseline now, or the next tick
    // would see it as fresh traffic and push the idle timer a whole interval later (idle
    // echoes would go out every 2 intervals, too slow for the NAT they keep open).
    LinkInfo li;
    std::string qerr;
    if (query_link(cfg_.iface, li, qerr) && li.ifindex == ifindex_ && li.have_stats) {
      handle(live_.on_rx_activity(li.rx_packets, t));
    }
    arm();
  };
  if (!probe_->open(
          cfg_.iface, *target, on_reply, [](std::uint32_t, std::uint16_t) {}, err)) {
    spdlog::warn("tunnel {}: keepalive socket: {}", cfg_.iface, err);
    probe_.reset();
    return;
  }
  target_text_ = target->to_string();
}

void TunnelMonitor::tick() {
  ++stats_.ticks;
  const Timestamp t = now();
  if (present_) {
    LinkInfo li;
    std::string err;
    if (query_link(cfg_.iface, li, err) && li.ifindex == ifindex_) {
      if (li.have_stats) handle(live_.on_rx_activity(li.rx_packets, t));
    } else if (!li.present && err == "no such interface") {
      gone();  // the notification is on its way; no need to wait for it
    }
  }
  if (t >= live_.next_deadline()) handle(live_.on_tick(t));
  if (t >= backoff_.next_deadline() && backoff_.on_tick(t)) start_down_hook();
  arm();
}

void TunnelMonitor::arm() {
  if (stopped_ || timer_ == nullptr) return;
  const Timestamp next = keepalive::earliest(live_.next_deadline(), backoff_.next_deadline());
  if (next == keepalive::kNever) {
    uv_timer_stop(timer_);
    return;
  }
  const std::int64_t delay = std::max<std::int64_t>(0, (next - now()).ms());
  uv_timer_start(
      timer_, [](uv_timer_t* tm) { static_cast<TunnelMonitor*>(tm->data)->tick(); },
      static_cast<std::uint64_t>(delay), 0);
}

void TunnelMonitor::handle(const Liveness::Actions& actions) {
  for (const auto& a : actions) {
    if (const auto* e = std::get_if<Liveness::SendEcho>(&a)) {
      std::string err;
      if (probe_ && probe_->is_open() && probe_->send(e->id, kEchoSize, &err)) {
        ++stats_.keepalive_sent;
        spdlog::debug("tunnel {}: keepalive echo {} to {}", cfg_.iface, e->id, target_text_);
      } else {
        ++stats_.keepalive_send_errors;  // Liveness then judges it a miss, as it should
        spdlog::debug("tunnel {}: keepalive echo {} not sent: {}", cfg_.iface, e->id,
                      probe_ ? err : std::string("no target"));
      }
      continue;
    }
    const auto& sc = std::get<Liveness::StateChanged>(a);
    ++stats_.transitions_to[idx(sc.to)];
    const auto level = sc.to == Liveness::State::up ? spdlog::level::info : spdlog::level::warn;
    spdlog::log(level, "tunnel {}: {} -> {} ({}; misses {}, silent {:.1f} s)", cfg_.iface,
                keepalive::to_string(sc.from), keepalive::to_string(sc.to),
                keepalive::to_string(sc.reason), sc.misses,
                static_cast<double>(sc.silent_for.ms()) / 1000.0);
    const Timestamp t = now();
    const bool lost = sc.to == Liveness::State::down ||
                      (sc.to == Liveness::State::absent && sc.from != Liveness::State::absent);
    if (lost && !was_down_) {
      was_down_ = true;
      down_since_ = t - sc.silent_for;
      if (!cfg_.on_down.empty()) backoff_.on_tunnel_down(t, jitter());
    } else if (sc.to == Liveness::State::up) {
      if (was_down_) {
        was_down_ = false;
        ++stats_.reconnects;
        last_down_for_ = t - down_since_;
        spdlog::info("tunnel {}: up again after {:.1f} s", cfg_.iface,
                     static_cast<double>(last_down_for_.ms()) / 1000.0);
        backoff_.on_tunnel_up(t);
        start_up_hook();
      } else {
        backoff_.on_tunnel_up(t);
      }
    }
  }
}

std::vector<std::pair<std::string, std::string>> TunnelMonitor::hook_env(
    const char* event) const {
  const bool down = std::string_view(event) == "down";
  const std::int64_t down_ms = down ? (now() - down_since_).ms() : last_down_for_.ms();
  return {{"TUNSHIM_INTERFACE", cfg_.iface},
          {"TUNSHIM_EVENT", event},
          {"TUNSHIM_PEER", target_text_.empty() ? cfg_.target : target_text_},
          {"TUNSHIM_PMTU", std::to_string(pmtu_ != 0 ? pmtu_ : mtu_)},
          {"TUNSHIM_DOWN_SECONDS", std::to_string(std::max<std::int64_t>(0, down_ms) / 1000)}};
}

void TunnelMonitor::start_down_hook() {
  if (down_run_ || cfg_.on_down.empty()) return;  // HookBackoff already allows one at a time
  HookRun::Options o;
  o.label = cfg_.iface + " on_down";
  o.commands = cfg_.on_down;
  o.env = hook_env("down");
  o.timeout_ms = cfg_.hook_timeout_ms;
  spdlog::warn("tunnel {}: running on_down (attempt {}, down {} s)", cfg_.iface,
               backoff_.attempts(), o.env.back().second);
  down_done_ = 0;
  down_run_ = std::make_unique<HookRun>(
      loop_, std::move(o),
      [this](const HookCommandResult& r) {
        ++stats_.on_down_runs[idx(r.result)];
        record_hook("on_down", ++down_done_, r);
      },
      [this]() {
        auto finished = std::move(down_run_);  // destroyed when this callback returns
        if (stopped_) return;
        backoff_.on_hook_finished(now(), jitter());
        if (backoff_.next_deadline() != keepalive::kNever) {
          spdlog::info("tunnel {}: still down; on_down again in {:.1f} s", cfg_.iface,
                       static_cast<double>((backoff_.next_deadline() - now()).ms()) / 1000.0);
        }
        if (up_pending_) {
          up_pending_ = false;
          start_up_hook();
        }
        arm();
      });
  down_run_->start();
}

void TunnelMonitor::start_up_hook() {
  if (cfg_.on_up.empty() || stopped_) return;
  if (down_run_) {  // let the reconnect finish first; then restart what depends on it
    up_pending_ = true;
    return;
  }
  if (up_run_) {
    spdlog::info("tunnel {}: on_up is still running; not starting another", cfg_.iface);
    return;
  }
  HookRun::Options o;
  o.label = cfg_.iface + " on_up";
  o.commands = cfg_.on_up;
  o.env = hook_env("up");
  o.timeout_ms = cfg_.hook_timeout_ms;
  up_done_ = 0;
  up_run_ = std::make_unique<HookRun>(
      loop_, std::move(o),
      [this](const HookCommandResult& r) {
        ++stats_.on_up_runs[idx(r.result)];
        record_hook("on_up", ++up_done_, r);
      },
      [this]() { auto finished = std::move(up_run_); });
  up_run_->start();
}

// HookRun reports commands in list order, so counting them gives each one's place.
void TunnelMonitor::record_hook(const char* hook, std::size_t index,
                                const HookCommandResult& r) {
  LastHookRun h;
  h.hook = hook;
  h.index = index;
  h.result = r.result;
  h.exit_status = r.exit_status;
  h.term_signal = r.term_signal;
  h.duration_ms = r.duration_ms;
  h.finished_at =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  stats_.last_hook = h;
}

std::string TunnelMonitor::describe() const {
  const auto& rtt = live_.rtt();
  return fmt::format(
      "tunnel {}: state {} target {} keepalive sent={} replies={} send_errors={} "
      "loss_permille={} "
      "rtt srtt={:.3f}ms min={}ms max={}ms transitions up={} suspect={} down={} absent={} "
      "reconnects={} on_down ok={} failed={} timeout={} spawn_error={} on_up ok={} failed={} "
      "timeout={} spawn_error={} ticks={}",
      cfg_.iface, keepalive::to_string(live_.state()),
      target_text_.empty() ? "none" : target_text_, stats_.keepalive_sent,
      stats_.keepalive_replies, stats_.keepalive_send_errors, live_.loss().loss_permille(),
      static_cast<double>(rtt.srtt_us()) / 1000.0, rtt.min().ms(), rtt.max().ms(),
      stats_.transitions_to[1], stats_.transitions_to[2], stats_.transitions_to[3],
      stats_.transitions_to[0], stats_.reconnects, stats_.on_down_runs[0],
      stats_.on_down_runs[1], stats_.on_down_runs[2], stats_.on_down_runs[3],
      stats_.on_up_runs[0], stats_.on_up_runs[1], stats_.on_up_runs[2], stats_.on_up_runs[3],
      stats_.ticks);
}

}  // namespace tunshim::proxy

namespace tunshim::proxy {

bool same_monitor_config(const MonitorConfig& a, const MonitorConfig& b) {
  return a.iface == b.iface && a.liveness.mode == b.liveness.mode &&
         a.liveness.interval == b.liveness.interval &&
         a.liveness.suspect_interval == b.liveness.suspect_interval &&
         a.liveness.reply_timeout == b.liveness.reply_timeout &&
         a.liveness.down_after_misses == b.liveness.down_after_misses && a.target == b.target &&
         a.on_down == b.on_down && a.on_up == b.on_up &&
         a.hook_timeout_ms == b.hook_timeout_ms && a.backoff.initial == b.backoff.initial &&
         a.backoff.max == b.backoff.max && a.backoff.jitter == b.backoff.jitter &&
         a.backoff.reset_after == b.backoff.reset_after;
}

void TunnelMonitors::start(const Config& config) {
  std::string err;
  auto on_link = [this](const LinkInfo& li) {
    for (auto& m : monitors_) m->on_link(li);
  };
  auto on_addr = [this](unsigned ifindex) {
    for (auto& m : monitors_) m->on_addr(ifindex);
  };
  auto on_resync = [this]() {
    for (auto& m : monitors_) m->resync();
  };
  if (!rtnl_.open(on_link, on_addr, on_resync, err)) {
    spdlog::error(
        "rtnetlink subscription failed ({}): interface changes are seen only at the "
        "next keepalive tick",
        err);
  }
  reconfigure(config);
}

void TunnelMonitors::reconfigure(const Config& config) {
  std::vector<std::unique_ptr<TunnelMonitor>> next;
  std::vector<MonitorConfig> next_cfg;
  for (const auto& tc : config.tunnels) {
    MonitorConfig mc = monitor_config(tc);
    bool dup = false;
    for (const auto& c : next_cfg) dup = dup || c.iface == mc.iface;
    if (dup) continue;
    std::unique_ptr<TunnelMonitor> kept;
    for (std::size_t i = 0; i < monitors_.size(); ++i) {
      if (monitors_[i] && same_monitor_config(configs_[i], mc)) kept = std::move(monitors_[i]);
    }
    if (!kept) {
      kept = std::make_unique<TunnelMonitor>(loop_, mc);
      kept->start();
    }
    next.push_back(std::move(kept));
    next_cfg.push_back(std::move(mc));
  }
  for (auto& m : monitors_) {
    if (m) m->stop();  // replaced or removed; running hooks are terminated and reaped
  }
  monitors_ = std::move(next);
  configs_ = std::move(next_cfg);
}

void TunnelMonitors::stop() {
  rtnl_.close();
  for (auto& m : monitors_) m->stop();
}

void TunnelMonitors::log_stats() const {
  for (const auto& m : monitors_) spdlog::info("{}", m->describe());
}

}  // namespace tunshim::proxy
