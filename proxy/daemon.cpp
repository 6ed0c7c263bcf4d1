#include "proxy/daemon.h"

#include <net/if.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "proxy/log.h"
#include "proxy/stats_sources.h"
#include "proxy/test_knobs.h"

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
      if (std::uint64_t n = 0;
          spdlog::should_log(spdlog::level::debug) && log_malformed_.allow(uv_now(loop_), n)) {
        spdlog::debug("{}: malformed SYN ({} bytes) passed unchanged ({} more not logged)",
                      tp->iface(), pkt.len, n);
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
        "tunshim run needs CAP_NET_ADMIN (run it as root): it binds an NFQUEUE or attaches "
        "eBPF programs, and installs netfilter rules";
    return false;
  }
  if (!choose_datapath(err)) return false;
  // A live process on our queue number is most likely another tunshim: its rules are not
  // stale, so refuse before touching anything. (A killed run's queue is unbound at once.)
  if (KernelQueueStats ks; NfQueue::read_kernel_stats(config_.global.queue_num, ks)) {
    err = "NFQUEUE " + std::to_string(config_.global.queue_num) +
          " is already bound by netlink port " + std::to_string(ks.peer_portid) +
          " (another tunshim running?); not touching its rules";
    return false;
  }
  // Rules left by a run that died (kill -9, crash) go first, so nothing is duplicated and
  // nothing queues to a queue number we are about to bind. With the eBPF data path there
  // are no rules of ours at all: a queue-path predecessor's go too.
  if (!firewall_.remove_all(err)) return false;
  loop_ = uv_default_loop();
  // Detached hook descendants are re-parented to us, reaped, and ended at exit (spawn.h).
  if (std::string serr; !subreaper_.start(loop_, serr)) spdlog::warn("hooks: {}", serr);
  if (!bpf_active()) {
    if (!queue_.open(config_.global.queue_num, config_.global.queue_maxlen, err)) return false;
    spdlog::info("nfqueue {}: bound, maxlen {}, receive buffer {} bytes, fail-open {}",
                 queue_.num(), config_.global.queue_maxlen, queue_.rcvbuf(),
                 queue_.fail_open() ? "on" : "REFUSED");
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
      // Budgeted: under a flood the rest waits for the next iteration, after the timers.
      self->queue_.drain(*self, uv_now(self->loop_));
    });
    // Before any hook can run: the watchdog must inherit nothing but the queue's socket.
    if (std::string werr; !queue_.start_watchdog(loop_, werr)) {
      spdlog::error(
          "nfqueue: no stall watchdog ({}): a stalled loop would hold new connections", werr);
    }
  } else if (!start_bpf_handles(err)) {
    return false;
  }
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

  if (!bpf_active()) {
    std::vector<FirewallTunnel> installed = fw_tunnels();
    if (!firewall_.install(installed, err)) {
      std::string e2;
      firewall_.remove_all(e2);  // a half-installed family must not stay behind
      return false;
    }
    for (Family f : {Family::v4, Family::v6}) {
      for (const auto& line : firewall_.describe(installed, f)) {
        spdlog::info("installed ({}, mangle): {}",
                     f == Family::v4 ? "iptables-nft" : "ip6tables-nft", line);
      }
    }
    fw_sync_ = std::make_unique<FirewallSync>(FirewallSync::for_firewall(loop_, firewall_),
                                              std::move(installed));
  }
  if (guard_wanted()) {
    std::string gerr;
    if (guard_.open(gerr)) {
      spdlog::info("oversize guard: ready ({} follow each tunnel's path MTU once measured)",
                   bpf_active() ? "the eBPF programs' limits" : "rules");
    } else {
      spdlog::error("oversize guard: {}; guard = \"icmp\" has no effect", gerr);
    }
  }
  table_ = std::make_unique<TunnelTable>(
      loop_, TunnelTable::Callbacks{[this](Tunnel& t) {
                                      if (bpf_active()) {
                                        sync_bpf(t);
                                      } else {
                                        sync_rules();
                                      }
                                    },
                                    [this] { return guard_.is_open(); }});
  table_->start(config_);
  // Interfaces present now get their programs now: a tunnel with a fixed MSS reports no
  // target change after its start.
  if (bpf_active()) {
    for (const auto& tp : table_->tunnels()) sync_bpf(*tp);
  }
  // Reporting starts once the rules are in place; its own failures are logged, not fatal.
  stats_ = std::make_unique<StatsService>(
      loop_, StatsSources{
                 [this] {
                   if (bpf_active()) pull_bpf_counters();
                   return stats_snapshot();
                 },
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
    bpf_.close();
    if (loop_ != nullptr) uv_run(loop_, UV_RUN_DEFAULT);  // the close callbacks
    return 1;
  }
  sd_notify(0, "READY=1");
  if (bpf_active()) {
    spdlog::info("tunshim {} running: {} tunnel(s), eBPF data path", TUNSHIM_VERSION,
                 table_->tunnels().size());
  } else {
    spdlog::info("tunshim {} running: {} tunnel(s), queue {}", TUNSHIM_VERSION,
                 table_->tunnels().size(), queue_.num());
  }
  uv_run(loop_, UV_RUN_DEFAULT);
  table_.reset();
  subreaper_.stop();              // whatever hooks left running ends with us
  uv_run(loop_, UV_RUN_DEFAULT);  // their handles' close callbacks
  uv_loop_close(loop_);
  return exit_code_;
}

void Daemon::stop() {
  if (stopped_ || stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  if (!fw_sync_) return finish_stop();
  // Rules first, so no new SYN is queued: after the rule change running now (if any);
  // changes waiting behind it are dropped.
  fw_sync_->stop([this](bool ok, const std::string& err) {
    if (ok) {
      spdlog::info("rules removed");
    } else {
      spdlog::error("removing rules: {}", err);
      exit_code_ = 1;
    }
    finish_stop();
  });
}

void Daemon::finish_stop() {
  stopped_ = true;
  // The rules are gone (stop()); answer what is already queued (unbinding drops packets
  // still waiting for a verdict), then unbind.
  if (bpf_active()) {
    // Counters first (they live in the programs' maps), then every filter and the maps.
    pull_bpf_counters();
    bpf_.close();
    bpf_tunnels_.clear();
    spdlog::info("eBPF programs detached");
  }
  if (table_) table_->stop();  // hooks still running are terminated and reaped
  while (queue_.drain(*this, uv_now(loop_))) {
  }  // queued oversize packets still get their ICMP error
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
  bpf_poll_.reset();
  heartbeat_timer_.reset();
}

// ---- reload ---------------------------------------------------------------------------------

void Daemon::reload() {
  if (stopped_ || stopping_) return;
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
  if (next.global.datapath != config_.global.datapath) {
    spdlog::warn("datapath: a change needs a restart; keeping the {} data path", datapath_);
    next.global.datapath = config_.global.datapath;
  }
  if (next.global.queue_maxlen != config_.global.queue_maxlen) {
    queue_.set_maxlen(next.global.queue_maxlen);
    spdlog::info("queue maxlen {} -> {}, receive buffer {} bytes", config_.global.queue_maxlen,
                 next.global.queue_maxlen, queue_.rcvbuf());
  }
  if (auto lvl = parse_log_level(next.global.log_level)) spdlog::set_level(*lvl);
  log_config_warnings(next);

  config_ = std::move(next);
  if (guard_wanted() && !guard_.is_open()) {
    std::string gerr;
    if (!guard_.open(gerr))
      spdlog::error("oversize guard: {}; guard = \"icmp\" has no effect", gerr);
  }
  // Kept tunnels take the new settings now (a changed MSS applies to the next SYN) with
  // their state and counters; removed ones keep clamping until their rules are gone.
  // Rule changes they ask for meanwhile are the one applied below.
  reconfiguring_ = true;
  table_->reconfigure(config_);
  reconfiguring_ = false;

  if (bpf_active()) {
    // No rules to change: retired tunnels' programs go, the others take their new targets.
    for (auto it = bpf_tunnels_.begin(); it != bpf_tunnels_.end();) {
      const bool active = std::any_of(table_->tunnels().begin(), table_->tunnels().end(),
                                      [&](const auto& tp) { return tp.get() == it->first; });
      if (!active && it->second.ifindex != 0) bpf_.detach(it->second.ifindex);
      it = active ? std::next(it) : bpf_tunnels_.erase(it);
    }
    table_->drop_retired();
    for (const auto& tp : table_->tunnels()) sync_bpf(*tp);
    ++reloads_ok_;
    spdlog::info("reload applied: {} tunnel(s)", table_->tunnels().size());
    sd_notify(0, "READY=1");
    if (stats_) stats_->apply(config_.global);
    return;
  }
  sync_rules([this](bool ok, const std::string& err) {
    if (ok) {
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
  if (bpf_active()) {  // no rules and no queue: the programs' counters are the whole story
    pull_bpf_counters();
    if (log_after) {
      log_counters();
      if (stats_) stats_->log_summary();
    }
    return;
  }
  log_after_counts_ = log_after_counts_ || log_after;
  if (counts_busy_) return;
  counts_busy_ = true;
  firewall_.read_counts_async(loop_, [this](bool ok, RuleCounts counts) {
    counts_busy_ = false;
    // Drain first so what the kernel delivered by now is in seen(), then read how many it
    // still holds.
    if (!stopped_) queue_.drain(*this, uv_now(loop_));
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
  spdlog::info("datapath {}: {}", datapath_, datapath_reason_);
  if (bpf_active()) return;
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
  s.datapath = datapath_;
  s.datapath_reason = datapath_reason_;
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
  if (bpf_active()) {
    Tunnel* t = table_ ? table_->find(iface) : nullptr;
    if (t == nullptr) return done(false, iface + " is not a configured tunnel");
    if (stopped_) return done(false, "tunshim is stopping");
    t->reprobe();  // the interface may have been re-created with a new ifindex
    sync_bpf(*t);
    const auto it = bpf_tunnels_.find(t);
    bool on = it != bpf_tunnels_.end() && it->second.ifindex != 0;
    std::string err;
    // Like the rules a firewall reload flushes: the qdisc or a filter removed behind our back.
    if (on && !bpf_.reattach(it->second.ifindex, err)) on = false;
    std::string msg = on            ? "eBPF programs attached to " + iface
                      : err.empty() ? "eBPF programs not attached (" + iface + " absent)"
                                    : "eBPF programs not attached to " + iface + ": " + err;
    if (t->settings().pmtu.enabled) msg += "; path-MTU search restarted";
    return done(on, msg);
  }
  if (stopped_ || stopping_ || !fw_sync_) return done(false, "tunshim is stopping");
  // An instance of a pattern ("ppp7" of "ppp+") re-applies its pattern's rules. Queued
  // behind a rule change that is running (the ip-up path must not be refused for it).
  const std::string rule = table_ ? table_->rule_name(iface) : iface;
  fw_sync_->reapply(rule, [this, done, iface](bool ok, std::string msg) {
    if (Tunnel* t = table_ ? table_->find(iface) : nullptr) {
      t->reprobe();  // the interface may have been re-created with a new ifindex
      if (t->settings().pmtu.enabled) msg += "; path-MTU search restarted";
    }
    done(ok, msg);
  });
}

void Daemon::sync_rules(std::function<void(bool, std::string)> then) {
  if (stopped_ || stopping_ || bpf_active() || !fw_sync_ || reconfiguring_) {
    if (then) then(false, "no rule changes now");
    return;
  }
  std::vector<FirewallTunnel> to = fw_tunnels();
  fw_sync_->want(std::move(to), [this, from = fw_sync_->installed(), then = std::move(then)](
                                    bool ok, std::string err) {
    // A changed guard limit is worth a line; the rest of a change is the reload's.
    for (const auto& n : ok ? fw_sync_->installed() : FirewallSync::Rules{}) {
      for (const auto& o : from) {
        if (o.iface == n.iface && (o.guard4 != n.guard4 || o.guard6 != n.guard6)) {
          spdlog::info(
              "tunnel {}: guard rule now for packets above {} bytes{}", n.iface, n.guard4,
              n.guard4 == 0 ? " (none: path MTU not measured or not below the interface MTU)"
                            : "");
        }
      }
    }
    // Tunnels a reload removed clamp until their rules are gone: once no newer state waits
    // (a later reload may have retired more, whose rules are still in place).
    if (ok && fw_sync_->settled()) table_->drop_retired();
    if (!ok && !then && !stopping_) {
      spdlog::error("updating the guard rules failed ({}); the previous rules stay", err);
    }
    if (then) then(ok, std::move(err));
  });
}

// ---- the eBPF data path -------------------------------------------------------------------

namespace {

// Bytes in front of the IP header as tc sees the interface's packets: Ethernet-like links
// (veth, TAP, bridges) carry a 14-byte header, TUN, WireGuard, PPP and IP tunnels none.
std::uint8_t link_header_len(const std::string& iface) {
  std::ifstream f("/sys/class/net/" + iface + "/type");
  int type = -1;
  f >> type;
  return type == 1 ? 14 : 0;  // ARPHRD_ETHER
}

TunnelCounters bpf_tunnel_counters(const BpfCounters& c) {
  // Outcome order of clamp::Outcome. Only what a SYN rule would have queued is counted:
  // the programs see every packet, and not_syn / not_tcp / fragment are not the clamp's.
  auto dir = [&c](std::size_t d) {
    DirectionCounters o;
    o.clamped = c.clamp[d][0];
    o.inserted = c.clamp[d][1];
    o.unchanged = c.clamp[d][2];
    o.malformed = c.clamp[d][7];
    o.other = c.clamp[d][3] + c.clamp[d][8];  // no room, family off
    return o;
  };
  return TunnelCounters{dir(0), dir(1)};
}

DirectionCounters add(const DirectionCounters& a, const DirectionCounters& b) {
  DirectionCounters o;
  o.clamped = a.clamped + b.clamped;
  o.inserted = a.inserted + b.inserted;
  o.unchanged = a.unchanged + b.unchanged;
  o.malformed = a.malformed + b.malformed;
  o.other = a.other + b.other;
  return o;
}

}  // namespace

bool Daemon::choose_datapath(std::string& err) {
  Datapath want = config_.global.datapath;
  if (!config_.global.from_file("datapath")) {
    if (const auto t = test_datapath()) want = *t;
  }
  if (want == Datapath::queue) {
    datapath_ = "queue";
    datapath_reason_ = "configured (datapath = \"queue\")";
    spdlog::info("datapath: queue ({})", datapath_reason_);
    return true;
  }
  std::string why;
  if (bpf_.open(why)) {
    datapath_ = "bpf";
    datapath_reason_ = want == Datapath::bpf ? "configured (datapath = \"bpf\")"
                                             : "auto: the kernel accepted the eBPF programs";
    spdlog::info("datapath: bpf ({}); no NFQUEUE rules", datapath_reason_);
    return true;
  }
  if (want == Datapath::bpf) {
    err = "datapath = \"bpf\": " + why;
    return false;
  }
  datapath_ = "queue";
  datapath_reason_ = "auto: eBPF unavailable: " + why;
  spdlog::warn("datapath: queue ({})", datapath_reason_);
  return true;
}

bool Daemon::start_bpf_handles(std::string& err) {
  report_buf_.assign(65536, 0);
  bpf_.set_report_handler([this](const BpfReport& r) { on_bpf_report(r); });
  if (const int rc = bpf_poll_.init(loop_, uv_poll_init, bpf_.report_fd()); rc != 0) {
    err = std::string("eBPF report poll: ") + uv_strerror(rc);
    return false;
  }
  bpf_poll_->data = this;
  uv_poll_start(bpf_poll_.get(), UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* self = static_cast<Daemon*>(p->data);
    if (self == nullptr) return;
    if (status < 0) {
      spdlog::warn("eBPF report poll: {}", uv_strerror(status));
      return;
    }
    self->bpf_.consume_reports();
  });
  heartbeat_timer_.init(loop_);
  return true;
}

// The guard drops only while the daemon beats (BpfDatapath::kDefaultStaleNs: 3 s), so it
// beats once a second while some tunnel has a guard limit or a measured path MTU to watch
// for symptoms, and not at all otherwise: a clamp-only daemon has no timer of its own. (A
// live daemon's programs are recognised by the datapath lock, not by the beat.)
void Daemon::update_heartbeat() {
  // Not while a reload rebuilds the table (its list is in motion); the reload syncs every
  // tunnel afterwards.
  if (stopped_ || !bpf_active() || !table_ || reconfiguring_) return;
  bool need = false;
  for (const auto& tp : table_->tunnels()) {
    const Tunnel::Datapath& d = tp->datapath();
    if (tp->present() && (d.guard_pmtu != 0 || d.watch_mtu != 0)) {
      need = true;
      break;
    }
  }
  if (need == heartbeat_timer_.active()) return;
  if (need) {
    bpf_.heartbeat();  // before the limit reaches the programs
    // The symptom counts ride on the beat (no wake-up of their own); a symptom that may
    // start a burst nudges the daemon through the report ring at once (on_bpf_report).
    heartbeat_timer_.start(1000, 1000, [this] {
      bpf_.heartbeat();
      poll_symptoms();
    });
  } else {
    heartbeat_timer_.stop();
    bpf_.stop_heartbeat();  // no limit left to enforce: the guard passes everything
  }
}

void Daemon::sync_bpf(Tunnel& t) {
  // During a reload the table is being rebuilt; the reload syncs every tunnel after it.
  if (stopped_ || !bpf_active() || reconfiguring_) return;
  update_heartbeat();  // beating before a guard limit is written; stopped once none is left
  BpfTunnel& b = bpf_tunnels_[&t];
  const unsigned want = t.present() && !t.stopped() ? t.ifindex() : 0;
  if (b.ifindex != 0 && b.ifindex != want) {
    pull_bpf_counters();
    b.base.out = add(b.base.out, b.last.out);
    b.base.in = add(b.base.in, b.last.in);
    b.guard_dropped_base += b.guard_dropped_last;
    for (std::size_t k = 0; k < b.symptom_base.size(); ++k)
      b.symptom_base[k] += b.symptom_last[k];
    b.last = {};
    b.guard_dropped_last = 0;
    b.symptom_last = {};
    bpf_.detach(b.ifindex);
    spdlog::info("tunnel {}: eBPF programs detached (ifindex {} gone)", t.iface(), b.ifindex);
    b.ifindex = 0;
  }
  // An ended instance's record goes with it: a churning concentrator would grow the map, and
  // a later tunnel at the same address would start from this one's counters.
  if (t.stopped()) {
    bpf_tunnels_.erase(&t);
    return;
  }
  if (want == 0) return;
  const Tunnel::Datapath& d = t.datapath();
  BpfTargets bt{d.target.mss4, d.target.mss6, d.guard_pmtu, d.probe_ident};
  // Symptoms: always counted (docs/PERFORMANCE.md has their cost). A full-size segment is
  // within kFullSlack bytes of what the clamp lets a sender put on the wire (MSS + 40 /
  // + 60): TCP options and a peer announcing a little less still count.
  constexpr int kFullSlack = 64;
  auto full = [](std::uint16_t mss, int hdrs) {
    return mss == 0 ? std::uint16_t{0}
                    : static_cast<std::uint16_t>(std::max(1, mss + hdrs - kFullSlack));
  };
  bt.symptoms = !test_symptoms_off();
  bt.watch_mtu = d.watch_mtu;
  bt.full4 = full(d.target.mss4, 40);
  bt.full6 = full(d.target.mss6, 60);
  if (b.ifindex == want) {
    if (!bpf_.set_targets(want, bt))
      spdlog::error("tunnel {}: writing the eBPF targets failed", t.iface());
    spdlog::debug("tunnel {}: eBPF targets mss {}/{}, guard above {}", t.iface(), bt.mss4,
                  bt.mss6, bt.guard_mtu);
    return;
  }
  std::string err;
  const std::uint8_t l2 = link_header_len(t.iface());
  if (!bpf_.attach(want, l2, bt, err)) {
    spdlog::error("tunnel {}: eBPF programs not attached: {}", t.iface(), err);
    return;
  }
  b.ifindex = want;
  spdlog::info(
      "tunnel {}: eBPF programs attached (ifindex {}, link header {} bytes{}): mss {}/{}, "
      "guard above {}",
      t.iface(), want, l2, bpf_.adopted(want) ? ", replacing a dead tunshim's" : "", bt.mss4,
      bt.mss6, bt.guard_mtu);
}

void Daemon::pull_bpf_counters() {
  if (!table_ || !bpf_active()) return;
  for (const auto& tp : table_->tunnels()) {
    const auto it = bpf_tunnels_.find(tp.get());
    if (it != bpf_tunnels_.end()) pull_bpf_counters(*tp, it->second);
  }
}

void Daemon::pull_bpf_counters(Tunnel& t, BpfTunnel& b) {
  if (b.ifindex != 0) {
    if (const auto c = bpf_.counters(b.ifindex)) {
      b.last = bpf_tunnel_counters(*c);
      b.guard_dropped_last = c->guard_dropped;
      b.symptom_last = c->symptom;
    }
  }
  Tunnel::Datapath& d = t.datapath();
  d.counters.out = add(b.base.out, b.last.out);
  d.counters.in = add(b.base.in, b.last.in);
  d.guard_counters.dropped = b.guard_dropped_base + b.guard_dropped_last;
  auto& s = d.symptoms;
  s.measured = true;
  s.retransmits =
      b.symptom_base[BpfCounters::kRetransmit] + b.symptom_last[BpfCounters::kRetransmit];
  s.icmp_too_big =
      b.symptom_base[BpfCounters::kIcmpTooBig] + b.symptom_last[BpfCounters::kIcmpTooBig];
  s.oversize_df =
      b.symptom_base[BpfCounters::kOversizeDf] + b.symptom_last[BpfCounters::kOversizeDf];
}

void Daemon::poll_symptoms(Tunnel* only) {
  if (stopped_ || !table_ || !bpf_active()) return;
  auto one = [this](Tunnel& t) {
    const auto it = bpf_tunnels_.find(&t);
    if (it == bpf_tunnels_.end() || it->second.ifindex == 0) return;
    // Only the tunnels that watch read the kernel's counters; the others are told to stop.
    if (t.symptom_watch()) pull_bpf_counters(t, it->second);
    t.on_symptom_poll();
  };
  if (only != nullptr) return one(*only);
  for (const auto& tp : table_->tunnels()) one(*tp);
}

void Daemon::on_bpf_report(const BpfReport& r) {
  Tunnel* tp = table_ ? table_->by_ifindex(r.ifindex) : nullptr;
  if (r.mtu == 0) {  // a symptom nudge, not a dropped packet
    if (tp != nullptr) poll_symptoms(tp);
    return;
  }
  if (tp == nullptr || r.head.size() < 20 || r.head.size() > report_buf_.size()) return;
  // The kernel dropped the packet and kept its first bytes; the guard answers from those
  // (its quote never reaches past them) once the packet has its full IP length again.
  const std::uint8_t version = r.head[0] >> 4;
  std::size_t ip_len = version == 4                          ? clamp::load16(r.head, 2)
                       : version == 6 && r.head.size() >= 40 ? 40U + clamp::load16(r.head, 4)
                                                             : r.head.size();
  if (ip_len < r.head.size() || ip_len > report_buf_.size()) ip_len = r.head.size();
  std::copy(r.head.begin(), r.head.end(), report_buf_.begin());
  GuardCounters g;  // the kernel counted the drop; the answer's outcome is counted here
  guard_.handle(clamp::ConstBytes(report_buf_.data(), ip_len), r.mtu, uv_now(loop_), g);
  std::fill(report_buf_.begin(),
            report_buf_.begin() + static_cast<std::ptrdiff_t>(r.head.size()), std::uint8_t{0});
  GuardCounters& t = tp->datapath().guard_counters;
  t.ptb_sent += g.ptb_sent;
  t.rate_limited += g.rate_limited;
  t.not_answered += g.not_answered;
  t.send_errors += g.send_errors;
  t.passed += g.passed;
  t.malformed += g.malformed;
}

}  // namespace tunshim::proxy
