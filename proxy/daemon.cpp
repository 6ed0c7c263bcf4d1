#include "proxy/daemon.h"

#include <net/if.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "proxy/log.h"
#include "proxy/rule_reapply.h"
#include "proxy/stats_sources.h"

namespace tunshim::proxy {
namespace {

constexpr int kCapNetAdmin = 12;  // linux/capability.h

// CAP_NET_ADMIN in the effective set: the kernel refuses every nfnetlink message
// (verdicts included) and every rule change without it.
bool have_net_admin() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    try {
      const unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return ((caps >> kCapNetAdmin) & 1ULL) != 0;
    } catch (...) {
      return false;
    }
  }
  return false;
}

std::string format_dir(const DirectionCounters& c) {
  return fmt::format(
      "clamped={} inserted={} unchanged={} malformed={} other={} truncated={} bypassed={}",
      c.clamped, c.inserted, c.unchanged, c.malformed, c.other, c.truncated, c.bypassed);
}

std::int64_t g_log_malformed = -1;

}  // namespace

Daemon::Daemon(Config config)
    : config_(std::move(config)), firewall_(config_.global.queue_num) {
  start_time_ = unix_now();
}

Daemon::~Daemon() = default;

std::vector<FirewallTunnel> Daemon::fw_tunnels() const {
  if (table_) return table_->firewall_tunnels();  // one rule set per name or pattern
  std::vector<FirewallTunnel> out;
  for (const auto& tc : config_.tunnels) {
    const bool dup = std::any_of(out.begin(), out.end(), [&](const FirewallTunnel& o) {
      return o.iface == tc.interface;
    });
    if (!dup) out.push_back(FirewallTunnel{tc.interface, tc.mss4 != 0, tc.mss6 != 0});
  }
  return out;
}

bool Daemon::guard_wanted() const {
  return std::any_of(config_.tunnels.begin(), config_.tunnels.end(),
                     [](const TunnelConfig& tc) { return tc.guard == Guard::icmp; });
}

// ---- the packet path ------------------------------------------------------------------------

std::size_t Daemon::on_packet(QueuedPacket& pkt) noexcept {
  const bool out = pkt.hook == Hook::postrouting;
  if (pkt.hook == Hook::other) {
    ++queue_.counters().unknown_iface;
    return 0;
  }
  Tunnel* tp = table_ ? table_->by_ifindex(out ? pkt.outdev : pkt.indev) : nullptr;
  if (tp == nullptr) {
    ++queue_.counters().unknown_iface;
    return 0;
  }
  Tunnel::Datapath& t = tp->datapath();
  // Larger than the path MTU on the way out: queued by the guard's length rule (a SYN is
  // never that large; if one were, the guard's answer is the right one for it too). Our
  // own probes are larger on purpose while a search looks upward.
  if (out && t.guard_pmtu != 0 && pkt.len > t.guard_pmtu) {
    if (is_echo_request(clamp::ConstBytes(pkt.buf.data(), pkt.len), t.probe_ident)) return 0;
    const auto v = guard_.handle(clamp::ConstBytes(pkt.buf.data(), pkt.len), t.guard_pmtu,
                                 uv_now(loop_), t.guard_counters);
    return v == OversizeGuard::Verdict::drop ? kDropPacket : 0;
  }
  DirectionCounters& c = out ? t.counters.out : t.counters.in;
  if (pkt.truncated) {
    ++c.truncated;
    return 0;
  }
  const clamp::ClampResult r = clamp::clamp_mss(pkt.buf, pkt.len, t.target);
  switch (r.outcome) {
    case clamp::Outcome::clamped:
      ++c.clamped;
      return r.length;
    case clamp::Outcome::inserted:
      ++c.inserted;
      return r.length;
    case clamp::Outcome::unchanged:
      ++c.unchanged;
      return 0;
    case clamp::Outcome::malformed:
      ++c.malformed;
      if (spdlog::should_log(spdlog::level::debug)) {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        if (ts.tv_sec != g_log_malformed) {
          g_log_malformed = ts.tv_sec;
          spdlog::debug("{}: malformed SYN ({} bytes) passed unchanged", tp->iface(), pkt.len);
        }
      }
      return 0;
    default:
      // Outbound non-SYNs come from the guard rule: the segments of a GSO/GRO packet that
      // matched its length as a whole, each within the path MTU, or (a pattern's rule is
      // at its smallest instance's limit) packets within this instance's. The guard's.
      if (out && (t.guard_pmtu != 0 || tp->settings().guard) &&
          (r.outcome == clamp::Outcome::not_syn || r.outcome == clamp::Outcome::not_tcp ||
           r.outcome == clamp::Outcome::fragment || r.outcome == clamp::Outcome::disabled)) {
        ++t.guard_counters.passed;
      } else {
        ++c.other;
      }
      return 0;
  }
}

// ---- lifecycle -----------------------------------------------------------------------------

bool Daemon::start(std::string& err) {
  if (!have_net_admin()) {
    err =
        "tunshim run needs CAP_NET_ADMIN (run it as root): it binds an NFQUEUE and "
        "installs netfilter rules";
    return false;
  }
  // A live process on our queue number is most likely another tunshim: its rules are not
  // stale, so refuse before touching anything. (A killed run's queue is unbound at once.)
  if (KernelQueueStats ks; NfQueue::read_kernel_stats(config_.global.queue_num, ks)) {
    err = "NFQUEUE " + std::to_string(config_.global.queue_num) +
          " is already bound by netlink port " + std::to_string(ks.peer_portid) +
          " (another tunshim running?); not touching its rules";
    return false;
  }
  // Rules left by a run that died (kill -9, crash) go first, so nothing is duplicated and
  // nothing queues to a queue number we are about to bind.
  if (!firewall_.remove_all(err)) return false;
  if (!queue_.open(config_.global.queue_num, config_.global.queue_maxlen, err)) return false;
  spdlog::info("nfqueue {}: bound, maxlen {}, receive buffer {} bytes, fail-open {}",
               queue_.num(), config_.global.queue_maxlen, queue_.rcvbuf(),
               queue_.fail_open() ? "on" : "REFUSED");

  loop_ = uv_default_loop();
  if (const int rc = poll_.init(loop_, uv_poll_init, queue_.fd()); rc != 0) {
    err = std::string("nfqueue poll: ") + uv_strerror(rc);
    return false;
  }
  poll_->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* self = static_cast<Daemon*>(p->data);
    if (self == nullptr) return;
    if (status < 0) {
      spdlog::warn("nfqueue poll: {}", uv_strerror(status));
      return;
    }
    // Link notifications first: a packet is never judged by an interface's old name.
    if (self->table_) self->table_->sync_links();
    self->queue_.drain(*self);  // handles spurious readiness: recv just says EAGAIN
  });
  constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
  for (std::size_t i = 0; i < signals_.size(); ++i) {
    signals_[i].init(loop_, uv_signal_init);
    signals_[i]->data = this;
    uv_signal_start(
        signals_[i].get(),
        [](uv_signal_t* s, int sn) {
          auto* self = static_cast<Daemon*>(s->data);
          if (self == nullptr) return;
          if (sn == SIGHUP) {
            self->reload();
          } else if (sn == SIGUSR1) {
            self->refresh_counts(true);
          } else {
            spdlog::info("{}: stopping", sn == SIGTERM ? "SIGTERM" : "SIGINT");
            self->stop();
          }
        },
        kSignals[i]);
  }
  counts_timer_.init(loop_);
  counts_timer_.start(kCountsIntervalMs, kCountsIntervalMs, [this] { refresh_counts(false); });

  installed_ = fw_tunnels();
  if (!firewall_.install(installed_, err)) {
    std::string e2;
    firewall_.remove_all(e2);  // a half-installed family must not stay behind
    return false;
  }
  for (Family f : {Family::v4, Family::v6}) {
    for (const auto& line : firewall_.describe(installed_, f)) {
      spdlog::info("installed ({}, mangle): {}",
                   f == Family::v4 ? "iptables-nft" : "ip6tables-nft", line);
    }
  }
  if (guard_wanted()) {
    std::string gerr;
    if (guard_.open(gerr)) {
      spdlog::info("oversize guard: ready (rules follow each tunnel's path MTU once measured)");
    } else {
      spdlog::error("oversize guard: {}; guard = \"icmp\" has no effect", gerr);
    }
  }
  table_ = std::make_unique<TunnelTable>(
      loop_, TunnelTable::Callbacks{[this](Tunnel&) { sync_rules(); },
                                    [this] { return guard_.is_open(); }});
  table_->start(config_);
  // Reporting starts once the rules are in place; its own failures are logged, not fatal.
  stats_ = std::make_unique<StatsService>(
      loop_, StatsSources{
                 [this] { return stats_snapshot(); },
                 [this](const std::string& iface, std::function<void(bool, std::string)> done) {
                   reapply(iface, std::move(done));
                 }});
  stats_->start(config_.global);
  return true;
}

int Daemon::run() {
  std::string err;
  if (!start(err)) {
    spdlog::error("{}", err);
    queue_.close();
    stopped_ = true;
    close_handles();
    if (loop_ != nullptr) uv_run(loop_, UV_RUN_DEFAULT);  // the close callbacks
    return 1;
  }
  sd_notify(0, "READY=1");
  spdlog::info("tunshim {} running: {} tunnel(s), queue {}", TUNSHIM_VERSION,
               table_->tunnels().size(), queue_.num());
  uv_run(loop_, UV_RUN_DEFAULT);
  table_.reset();
  uv_run(loop_, UV_RUN_DEFAULT);  // their handles' close callbacks
  uv_loop_close(loop_);
  return exit_code_;
}

void Daemon::stop() {
  if (stopped_) return;
  if (fw_busy_) {  // let the running rule change finish, then remove everything
    stop_pending_ = true;
    return;
  }
  finish_stop();
}

void Daemon::finish_stop() {
  stopped_ = true;
  sd_notify(0, "STOPPING=1");
  // Rules first, so no new SYN is queued; then answer what is already queued (unbinding
  // drops packets still waiting for a verdict); then unbind.
  std::string err;
  if (!firewall_.remove_all(err)) {
    spdlog::error("removing rules: {}", err);
    exit_code_ = 1;
  } else {
    spdlog::info("rules removed");
  }
  if (table_) table_->stop();  // hooks still running are terminated and reaped
  queue_.drain(*this);         // queued oversize packets still get their ICMP error
  queue_.close();
  guard_.close();
  log_counters();
  if (stats_) stats_->stop();
  close_handles();
}

void Daemon::close_handles() noexcept {
  poll_.reset();
  for (auto& s : signals_) s.reset();
  counts_timer_.reset();
}

// ---- reload ---------------------------------------------------------------------------------

void Daemon::reload() {
  if (stopped_) return;
  if (fw_busy_) {
    reload_pending_ = true;
    return;
  }
  spdlog::info("SIGHUP: reloading {}", config_.path);
  sd_notify(0, "RELOADING=1");
  ConfigResult res = load_config(config_.path);
  if (auto* errors = std::get_if<std::vector<ConfigError>>(&res)) {
    ++reloads_failed_;
    for (const auto& e : *errors) spdlog::error("{}", e.to_string());
    spdlog::error("reload refused: {} error(s); still running with the previous config",
                  errors->size());
    sd_notify(0, "READY=1");
    if (stats_) stats_->send_status();
    return;
  }
  Config next = std::get<Config>(std::move(res));
  next.path = config_.path;  // keep reloading the file given on the command line
  if (next.global.queue_num != config_.global.queue_num) {
    spdlog::warn("queue_num {} -> {} needs a restart; keeping queue {}",
                 config_.global.queue_num, next.global.queue_num, config_.global.queue_num);
    next.global.queue_num = config_.global.queue_num;
  }
  if (next.global.queue_maxlen != config_.global.queue_maxlen) {
    queue_.set_maxlen(next.global.queue_maxlen);
    spdlog::info("queue maxlen {} -> {}, receive buffer {} bytes", config_.global.queue_maxlen,
                 next.global.queue_maxlen, queue_.rcvbuf());
  }
  if (auto lvl = parse_log_level(next.global.log_level)) spdlog::set_level(*lvl);
  log_config_warnings(next);

  config_ = std::move(next);
  // Busy from here: rule changes the tunnels ask for while they take the new settings
  // wait for this apply (rules_pending_), not start a second one against the old installed_.
  fw_busy_ = true;
  if (guard_wanted() && !guard_.is_open()) {
    std::string gerr;
    if (!guard_.open(gerr))
      spdlog::error("oversize guard: {}; guard = \"icmp\" has no effect", gerr);
  }
  // Kept tunnels take the new settings now (a changed MSS applies to the next SYN) with
  // their state and counters; removed ones keep clamping until their rules are gone.
  table_->reconfigure(config_);

  const std::vector<FirewallTunnel> to = fw_tunnels();
  firewall_.apply_async(loop_, installed_, to, [this, to](bool ok, std::string err) {
    fw_busy_ = false;
    if (ok) {
      installed_ = to;
      table_->drop_retired();
      ++reloads_ok_;
      spdlog::info("reload applied: {} tunnel(s)", table_->tunnels().size());
    } else {
      ++reloads_failed_;
      spdlog::error(
          "reload: rules could not be updated ({}); removed tunnels keep their "
          "old rules and targets",
          err);
    }
    sd_notify(0, "READY=1");
    if (stats_) stats_->apply(config_.global);
    after_rule_change();
  });
}

// ---- counters -------------------------------------------------------------------------------

// Estimates how many SYNs matched a tunnel's rule but never reached us. Every packet the
// rule counted was either queued to us (and is then in seen() or still held by the kernel,
// which `unaccounted` bounds from above) or passed by fail-open/bypass. So
// rule - seen - unaccounted is a lower bound of what bypassed, and so is the running max.
void Daemon::update_bypassed(Tunnel& tunnel, const RulePackets& rp, std::uint64_t unaccounted) {
  Tunnel::Datapath& t = tunnel.datapath();
  auto one = [unaccounted](DirectionCounters& c, Tunnel::Datapath::Epoch& e,
                           std::uint64_t rule) {
    const std::uint64_t seen = c.seen();
    if (rule < e.last_rule) {  // rules were re-created: their counters restarted
      e.bypassed_base = c.bypassed;
      e.seen_base = seen > rule ? seen - rule : 0;
    }
    e.last_rule = rule;
    const std::uint64_t seen_epoch = seen - e.seen_base;
    if (rule > seen_epoch + unaccounted) {
      const std::uint64_t est = e.bypassed_base + (rule - seen_epoch - unaccounted);
      if (est > c.bypassed) c.bypassed = est;
    }
  };
  one(t.counters.out, t.epoch_out, rp.post);
  one(t.counters.in, t.epoch_in, rp.pre);
}

void Daemon::refresh_counts(bool log_after) {
  if (stopped_) return;
  log_after_counts_ = log_after_counts_ || log_after;
  if (counts_busy_) return;
  counts_busy_ = true;
  firewall_.read_counts_async(loop_, [this](bool ok, RuleCounts counts) {
    counts_busy_ = false;
    // Drain first so what the kernel delivered by now is in seen(), then read how many it
    // still holds.
    if (!stopped_) queue_.drain(*this);
    KernelQueueStats ks;
    const bool have_ks = NfQueue::read_kernel_stats(queue_.num(), ks);
    if (have_ks) {
      queue_.counters().kernel_queue_dropped = ks.queue_dropped;
      queue_.counters().kernel_user_dropped = ks.user_dropped;
    }
    if (ok && have_ks) {
      const std::uint64_t unaccounted = ks.queue_total + queue_.counters().unknown_iface;
      for (const auto& tp : table_->tunnels()) {
        const TunnelCounters& c = tp->datapath().counters;
        const std::uint64_t before = c.out.bypassed + c.in.bypassed;
        auto it = counts.find(tp->iface());
        update_bypassed(*tp, it != counts.end() ? it->second : RulePackets{}, unaccounted);
        const std::uint64_t after = c.out.bypassed + c.in.bypassed;
        if (after > before) {
          spdlog::warn(
              "tunnel {}: {} more SYN(s) passed unclamped (queue full or tunshim not "
              "reading; fail-open), {} in all",
              tp->iface(), after - before, after);
        }
      }
    } else if (!ok) {
      spdlog::warn("could not read the rule counters (iptables-nft-save -c)");
    }
    if (log_after_counts_) {
      log_after_counts_ = false;
      log_counters();
      if (stats_) stats_->log_summary();
    }
  });
}

void Daemon::log_counters() const {
  const std::vector<std::unique_ptr<Tunnel>> none;
  for (const auto& tp : table_ ? table_->tunnels() : none) {
    for (const auto& line : tp->describe()) spdlog::info("{}", line);
    const Tunnel::Datapath& t = tp->datapath();
    spdlog::info("tunnel {}: out {} | in {}", tp->iface(), format_dir(t.counters.out),
                 format_dir(t.counters.in));
    if (tp->settings().guard) {
      const GuardCounters& g = t.guard_counters;
      spdlog::info(
          "tunnel {}: guard above {} bytes: dropped={} icmp_sent={} rate_limited={} "
          "not_answered={} send_errors={} passed={} malformed={}",
          tp->iface(), t.guard_pmtu, g.dropped, g.ptb_sent, g.rate_limited, g.not_answered,
          g.send_errors, g.passed, g.malformed);
    }
  }
  const QueueCounters& q = queue_.counters();
  spdlog::info(
      "queue {}: packets={} verdicts={} batches={} modified={} dropped={} id_gaps={} "
      "enobufs={} "
      "send_errors={} bad_messages={} unknown_iface={} kernel_queue_dropped={} "
      "kernel_user_dropped={} reloads_ok={} reloads_failed={}",
      queue_.num(), q.packets, q.verdicts, q.batches, q.modified, q.dropped, q.id_gaps,
      q.enobufs, q.send_errors, q.bad_messages, q.unknown_iface, q.kernel_queue_dropped,
      q.kernel_user_dropped, reloads_ok_, reloads_failed_);
}

}  // namespace tunshim::proxy

// ---- stats and control ----------------------------------------------------------------------

namespace tunshim::proxy {

StatsSnapshot Daemon::stats_snapshot() const {
  StatsSnapshot s;
  s.version = TUNSHIM_VERSION;
  s.start_time = start_time_;
  s.queue_num = queue_.num();
  s.queue = queue_.counters();
  s.reloads_ok = reloads_ok_;
  s.reloads_failed = reloads_failed_;
  if (table_) {
    for (const auto& tp : table_->tunnels()) {
      TunnelStats ts;
      tp->fill(ts);
      add_monitor_stats(*tp, ts);
      s.tunnels.push_back(std::move(ts));
    }
    s.patterns = table_->pattern_stats();
    s.searches_running = table_->searches_running();
    s.searches_waiting = table_->searches_waiting();
  }
  return s;
}

void Daemon::reapply(const std::string& iface, std::function<void(bool, std::string)> done) {
  const FirewallTunnel* ft = nullptr;
  std::string names;
  // An instance of a pattern ("ppp7" of "ppp+") re-applies its pattern's rules.
  const std::string rule = table_ ? table_->rule_name(iface) : iface;
  for (const auto& t : installed_) {
    if (t.iface == rule) ft = &t;
    names += (names.empty() ? "" : ", ") + t.iface;
  }
  if (ft == nullptr)
    return done(false, iface + " is not a configured tunnel (configured: " + names + ")");
  if (stopped_) return done(false, "tunshim is stopping");
  if (fw_busy_) return done(false, "a rule change is in progress; try again in a moment");
  fw_busy_ = true;
  reapply_rules_async(loop_, firewall_, *ft, [this, done, iface](bool ok, std::string msg) {
    fw_busy_ = false;
    if (Tunnel* t = table_ ? table_->find(iface) : nullptr) {
      t->reprobe();  // the interface may have been re-created with a new ifindex
      if (t->settings().pmtu.enabled) msg += "; path-MTU search restarted";
    }
    done(ok, msg);
    after_rule_change();
  });
}

// Runs what waited for a rule change to finish.
void Daemon::after_rule_change() {
  if (stop_pending_) return stop();
  if (reload_pending_) {
    reload_pending_ = false;
    return reload();
  }
  if (rules_pending_) {
    rules_pending_ = false;
    sync_rules();
  }
}

void Daemon::sync_rules() {
  if (stopped_) return;
  if (fw_busy_) {
    rules_pending_ = true;
    return;
  }
  const std::vector<FirewallTunnel> to = fw_tunnels();
  auto same = [](const std::vector<FirewallTunnel>& a, const std::vector<FirewallTunnel>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].iface != b[i].iface || a[i].v4 != b[i].v4 || a[i].v6 != b[i].v6 ||
          a[i].guard4 != b[i].guard4 || a[i].guard6 != b[i].guard6) {
        return false;
      }
    }
    return true;
  };
  if (same(to, installed_)) return;
  fw_busy_ = true;
  firewall_.apply_async(loop_, installed_, to, [this, to](bool ok, std::string err) {
    fw_busy_ = false;
    if (ok) {
      for (const auto& n : to) {
        for (const auto& o : installed_) {
          if (o.iface == n.iface && (o.guard4 != n.guard4 || o.guard6 != n.guard6)) {
            spdlog::info(
                "tunnel {}: guard rule now for packets above {} bytes{}", n.iface, n.guard4,
                n.guard4 == 0 ? " (none: path MTU not measured or not below the interface MTU)"
                              : "");
          }
        }
      }
      installed_ = to;
    } else {
      spdlog::error("updating the guard rules failed ({}); the previous rules stay", err);
    }
    after_rule_change();
  });
}

}  // namespace tunshim::proxy
