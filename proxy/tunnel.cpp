#include "proxy/tunnel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <variant>

#include "clamp/mtu.h"
#include "proxy/config.h"
#include "proxy/test_knobs.h"

namespace tunshim::proxy {
namespace {

using keepalive::Liveness;
using keepalive::PmtuSearch;
using keepalive::Timestamp;
using PmtuState = PmtuSearch::State;

// Keepalive echoes are small: they prove the path carries packets, not how large.
constexpr std::uint16_t kEchoSize = 64;

std::size_t idx(Liveness::State s) noexcept { return static_cast<std::size_t>(s); }
std::size_t idx(HookResult r) noexcept { return static_cast<std::size_t>(r); }

std::uint16_t clamp16(std::uint32_t v) noexcept {
  return static_cast<std::uint16_t>(std::min<std::uint32_t>(v, 65535));
}

keepalive::KeepaliveMode mode_of(KeepaliveMode m) noexcept {
  switch (m) {
    case KeepaliveMode::always:
      return keepalive::KeepaliveMode::always;
    case KeepaliveMode::off:
      return keepalive::KeepaliveMode::off;
    case KeepaliveMode::idle:
      break;
  }
  return keepalive::KeepaliveMode::idle;
}

}  // namespace

TunnelSettings tunnel_settings(const TunnelConfig& tc) {
  TunnelSettings s;
  s.iface = tc.interface;
  s.fallback = clamp::ClampTarget{tc.mss4, tc.mss6};
  s.mss4_auto = tc.mss4_auto;
  s.mss6_auto = tc.mss6_auto;
  s.guard = tc.guard == Guard::icmp;

  PathMtuConfig& p = s.pmtu;
  p.enabled = tc.mss4_auto || tc.mss6_auto || tc.guard == Guard::icmp || tc.set_interface_mtu;
  p.target = tc.probe_target;
  p.probe_min = tc.probe_min;
  p.probe_max = tc.probe_max;
  p.reprobe_interval = keepalive::milliseconds(tc.reprobe_interval.count());
  p.set_interface_mtu = tc.set_interface_mtu;

  MonitorConfig& m = s.monitor;
  m.liveness.mode = mode_of(tc.keepalive);
  m.liveness.interval = keepalive::milliseconds(tc.keepalive_interval.count());
  // Probing faster while suspect, but never slower than the configured interval.
  m.liveness.suspect_interval = std::min(keepalive::seconds(1), m.liveness.interval);
  m.liveness.reply_timeout = m.liveness.suspect_interval;
  m.liveness.down_after_misses = static_cast<std::uint32_t>(std::max(1, tc.down_after_misses));
  m.target = tc.keepalive_target;
  m.on_down = tc.on_down;
  m.on_up = tc.on_up;
  m.hook_timeout_ms = static_cast<std::uint64_t>(tc.hook_timeout.count());
  // on_down repeats 1 s, 2 s, 4 s … after the previous run, capped at backoff_max.
  m.backoff.initial = keepalive::seconds(1);
  m.backoff.max = keepalive::milliseconds(tc.backoff_max.count());
  apply_test_timers(m.backoff);  // test-only TUNSHIM_TEST_TIMERS; no-op unless set
  return s;
}

Tunnel::Tunnel(TunnelHost& host, std::uint32_t id, TunnelSettings settings)
    : host_(host),
      id_(id),
      cfg_(std::move(settings)),
      live_(cfg_.monitor.liveness),
      backoff_(cfg_.monitor.backoff),
      rng_(std::random_device{}()) {
  dp_.target = cfg_.fallback;
}

Tunnel::~Tunnel() { stop(); }

Timestamp Tunnel::now() const noexcept {
  return Timestamp::from_ms(static_cast<std::int64_t>(uv_now(host_.loop())));
}

// ---- lifecycle -----------------------------------------------------------------------------

void Tunnel::start() {
  if (started_) return;
  started_ = true;
  // An instance of a pattern: the table logged the pattern's settings once.
  if (!cfg_.pattern.empty()) {
    resync();
    return;
  }
  auto show = [](std::uint16_t v, bool is_auto) {
    if (v == 0) return std::string("off");
    return is_auto ? fmt::format("auto (fallback {} until the path MTU is measured)", v)
                   : std::to_string(v);
  };
  spdlog::info("tunnel {}: clamp mss ipv4 {} ipv6 {}{}", cfg_.iface,
               show(cfg_.fallback.mss4, cfg_.mss4_auto),
               show(cfg_.fallback.mss6, cfg_.mss6_auto),
               cfg_.guard ? ", oversize guard on" : "");
  const MonitorConfig& m = cfg_.monitor;
  spdlog::info(
      "tunnel {}: keepalive {} every {} ms, target {}, down after {} misses, on_down {} "
      "command(s), on_up {} command(s)",
      cfg_.iface, keepalive::to_string(m.liveness.mode), m.liveness.interval.ms(),
      m.target.empty() ? "peer" : m.target, m.liveness.down_after_misses, m.on_down.size(),
      m.on_up.size());
  if (cfg_.pmtu.enabled) {
    const PathMtuConfig& p = cfg_.pmtu;
    spdlog::info(
        "tunnel {}: path-MTU discovery: target {}, base {} bytes, upper bound {}, re-search "
        "every {} s{}",
        cfg_.iface, p.target.empty() ? "peer" : p.target, p.probe_min,
        p.probe_max != 0 ? std::to_string(p.probe_max) : std::string("interface MTU"),
        p.reprobe_interval.ms() / 1000,
        p.set_interface_mtu ? ", writes the interface MTU" : "");
  }
  resync();
  if (!present_) spdlog::info("tunnel {}: absent (no such interface yet)", cfg_.iface);
}

void Tunnel::stop() {
  if (stopped_) return;
  stopped_ = true;
  host_.release_search(*this);
  target_ = {};
  io_target_ = {};
  up_pending_ = false;
  if (down_run_) down_run_->cancel();
  if (up_run_) up_run_->cancel();
}

void Tunnel::reconfigure(TunnelSettings next) {
  if (stopped_) return;
  TunnelSettings prev = std::move(cfg_);
  cfg_ = std::move(next);
  const Timestamp t = now();
  if (prev.fallback.mss4 != cfg_.fallback.mss4 || prev.fallback.mss6 != cfg_.fallback.mss6) {
    spdlog::info("tunnel {}: configured mss ipv4 {} -> {}, ipv6 {} -> {}", cfg_.iface,
                 prev.fallback.mss4, cfg_.fallback.mss4, prev.fallback.mss6,
                 cfg_.fallback.mss6);
  }
  // Liveness and recovery: state kept, settings replaced.
  live_.reconfigure(cfg_.monitor.liveness);
  backoff_.reconfigure(cfg_.monitor.backoff, t);
  if (present_ && (prev.monitor.target != cfg_.monitor.target ||
                   prev.monitor.liveness.mode != cfg_.monitor.liveness.mode)) {
    open_keepalive();
  }
  // Path MTU: a changed setting means a fresh search; the interface-MTU books stay.
  if (prev.pmtu != cfg_.pmtu) {
    if (present_ && prev.pmtu.set_interface_mtu && !cfg_.pmtu.set_interface_mtu) {
      if (const std::uint32_t orig = owner_.restore(); orig != 0) {
        spdlog::info("tunnel {}: set_interface_mtu is off now: interface MTU back to {}",
                     cfg_.iface, orig);
        write_link_mtu(orig);
      }
    }
    if (present_ && cfg_.pmtu.enabled) {
      begin_search();
    } else {
      end_search();
    }
  }
  update_targets();
  host_.reschedule(*this);
}

// ---- the interface -------------------------------------------------------------------------

void Tunnel::resync() {
  if (stopped_) return;
  LinkInfo li;
  std::string err;
  if (query_link(cfg_.iface, li, err)) {
    on_link(li);
  } else if (present_) {
    if (err != "no such interface")
      spdlog::warn("tunnel {}: reading the interface: {}", cfg_.iface, err);
    on_gone();
  }
}

void Tunnel::on_link(const LinkInfo& li) {
  if (stopped_ || li.name != cfg_.iface) return;
  if (!li.present) {
    if (present_ && li.ifindex == ifindex_) on_gone();
    return;
  }
  if (present_ && li.ifindex != ifindex_) on_gone();  // replaced between two notifications
  if (!present_) return appear(li);
  if (li.mtu != owner_.current()) link_mtu_changed(li.mtu);
}

void Tunnel::appear(const LinkInfo& li) {
  present_ = true;
  ifindex_ = li.ifindex;
  owner_.appear(li.mtu);
  const bool returned = ever_present_;
  ever_present_ = true;
  spdlog::info("tunnel {}: interface {} (index {}, MTU {})", cfg_.iface,
               returned ? "is back" : "present", ifindex_, li.mtu);
  open_keepalive();
  const Timestamp t = now();
  handle(live_.on_interface(true, t));
  if (li.have_stats) handle(live_.on_rx_activity(li.rx_packets, t));
  if (cfg_.pmtu.enabled) begin_search();
  // The data path follows the interface, not only the targets: a fixed MSS does not change
  // when the interface appears, but the eBPF programs must be attached to it now.
  if (!update_targets()) changed();
  host_.reschedule(*this);
}

void Tunnel::on_gone() {
  if (!present_) return;
  present_ = false;
  ifindex_ = 0;
  owner_.gone();
  target_ = {};
  io_target_ = {};
  const bool had_search = search_.has_value();
  search_.reset();
  host_.release_search(*this);
  confirmed_ = false;
  if (had_search)
    spdlog::info("tunnel {}: path-MTU search stopped (interface gone)", cfg_.iface);
  handle(live_.on_interface(false, now()));
  if (!update_targets()) changed();  // the programs leave with the interface
  host_.reschedule(*this);
}

void Tunnel::link_mtu_changed(std::uint32_t mtu) {
  const auto change = owner_.on_link_mtu(mtu);
  if (change != keepalive::MtuOwner::Change::external) {
    update_targets();
    return;  // the event of one of our own writes
  }
  // Someone else set it (pppd renegotiating, the operator): that is the new original.
  spdlog::info("tunnel {}: interface MTU {} (not by tunshim)", cfg_.iface, mtu);
  if (search_) apply(search_->on_interface_mtu(clamp16(owner_.original()), now()));
  update_targets();
  host_.reschedule(*this);
}

void Tunnel::on_addr() {
  if (stopped_ || !present_) return;
  // The peer (the default target of both) may have changed.
  if (cfg_.pmtu.enabled && cfg_.pmtu.target.empty()) {
    const auto peer = resolve("");
    const std::string text = peer ? peer->to_string() : std::string();
    if (text != io_target_[0]) {
      spdlog::info("tunnel {}: probe target {} -> {}", cfg_.iface,
                   io_target_[0].empty() ? "none" : io_target_[0],
                   text.empty() ? "none" : text);
      begin_search();
      update_targets();
    }
  }
  if (cfg_.monitor.target.empty()) {
    const std::string before = io_target_[1];
    open_keepalive();
    if (io_target_[1] != before) {
      spdlog::info("tunnel {}: keepalive target {} -> {}", cfg_.iface,
                   before.empty() ? "none" : before,
                   io_target_[1].empty() ? "none" : io_target_[1]);
    }
  }
  host_.reschedule(*this);
}

std::optional<IpAddress> Tunnel::resolve(const std::string& configured) const {
  if (!configured.empty()) return IpAddress::parse(configured);  // check-config verified it
  // A ppp or tun session's IPv4 peer in O(1); getifaddrs (every interface) only without one.
  if (auto peer = read_peer4(cfg_.iface)) return peer;
  InterfaceInfo info;
  std::string err;
  if (!read_interface(cfg_.iface, info, err)) return std::nullopt;
  return info.peer4 ? info.peer4 : info.peer6;
}

// ---- probe sockets -------------------------------------------------------------------------

bool Tunnel::set_target(Prober who, const IpAddress& target) {
  const auto me = static_cast<std::size_t>(who);
  clear_target(who);
  if (host_.probes(target.family) == nullptr) {
    spdlog::warn("tunnel {}: no {} probe socket (see above)", cfg_.iface,
                 target.family == IpFamily::ipv4 ? "ICMP" : "ICMPv6");
    return false;
  }
  target_[me] = target;
  io_target_[me] = target.to_string();
  return true;
}

void Tunnel::clear_target(Prober who) {
  const auto me = static_cast<std::size_t>(who);
  target_[me].reset();
  io_target_[me].clear();
}

bool Tunnel::send(Prober who, std::uint32_t tag, std::uint16_t size, std::string* err) {
  const auto& target = target_[static_cast<std::size_t>(who)];
  ProbeIo* io = target ? host_.probes(target->family) : nullptr;
  if (io == nullptr) {
    if (err != nullptr) *err = "no target";
    return false;
  }
  return io->send_to((std::uint64_t{id_} << 32) | tag, size, *target, ifindex_, err);
}

void Tunnel::on_probe_reply(std::uint32_t tag, std::uint16_t size) {
  if (stopped_ || !present_) return;
  const Timestamp t = now();
  if ((tag & kEchoTag) != 0) {
    ++mstats_.keepalive_replies;
    handle(live_.on_echo_reply(tag & ~kEchoTag, t));
    // The reply itself moved the rx counter: take it as the baseline now, or the next tick
    // would see it as fresh traffic and push the idle timer a whole interval later (idle
    // echoes would go out every 2 intervals, too slow for the NAT they keep open).
    LinkInfo li;
    std::string qerr;
    if (query_link(cfg_.iface, li, qerr) && li.ifindex == ifindex_ && li.have_stats) {
      handle(live_.on_rx_activity(li.rx_packets, t));
    }
  } else {
    ++totals_.probe_replies;
    if (search_) apply(search_->on_probe_reply(tag, size, t));
  }
  host_.reschedule(*this);
}

void Tunnel::on_probe_hint(std::uint32_t tag, std::uint16_t mtu) {
  if (stopped_ || !present_ || (tag & kEchoTag) != 0)
    return;  // keepalives are small: a hint is not theirs to use
  ++totals_.ptb_hints;
  // An RFC 792 router leaves the field 0: a quote without a number narrows nothing.
  if (search_ && mtu != 0) apply(search_->on_ptb_hint(mtu, now()));
  host_.reschedule(*this);
}

// ---- path MTU ------------------------------------------------------------------------------

std::uint16_t Tunnel::pmtu() const noexcept {
  return present_ && search_ ? search_->pmtu() : 0;
}

PmtuSearch::State Tunnel::pmtu_state() const noexcept {
  return present_ && search_ ? search_->state() : PmtuState::disabled;
}

void Tunnel::end_search() {
  search_.reset();
  host_.release_search(*this);
  confirmed_ = false;
  clear_target(Prober::pmtu);
}

void Tunnel::search_granted() {
  if (stopped_ || !present_ || !cfg_.pmtu.enabled) {
    host_.release_search(*this);
    return;
  }
  begin_search();
  update_targets();
  host_.reschedule(*this);
}

void Tunnel::begin_search() {
  end_search();
  // Many interfaces appearing at once (a concentrator's restart) search a few at a time;
  // the fallback MSS is in effect meanwhile.
  if (!host_.acquire_search(*this)) return;
  const auto target = resolve(cfg_.pmtu.target);
  if (!target) {
    // Never a guess from silence: without a target the fallback stays in effect.
    // pppd brings the link up before it adds the addresses: the search starts when the
    // peer address arrives (on_addr). Said once per appearance, not as a warning.
    spdlog::info(
        "tunnel {}: no path-MTU probe target yet ({} has no point-to-point peer address; "
        "waiting for one, or set probe_target): the fallback MSS is in effect",
        cfg_.iface, cfg_.iface);
    host_.release_search(*this);
    return;
  }
  if (!set_target(Prober::pmtu, *target)) {
    spdlog::warn("tunnel {}: the fallback MSS stays in effect", cfg_.iface);
    host_.release_search(*this);
    return;
  }
  keepalive::PmtuConfig pc;
  pc.family = target->family;
  pc.base = target->family == IpFamily::ipv4 ? cfg_.pmtu.probe_min : 0;
  pc.probe_max = cfg_.pmtu.probe_max;
  pc.reprobe_interval = cfg_.pmtu.reprobe_interval;
  apply_test_timers(pc);  // test-only TUNSHIM_TEST_TIMERS; no-op unless set
  search_.emplace(pc);
  logged_pmtu_ = 0;  // the first result of a fresh search is always news
  mark();
  const Timestamp t = now();
  apply(search_->on_interface_mtu(clamp16(owner_.original()), t));
  apply(search_->on_start(t));
}

void Tunnel::reprobe() {
  if (stopped_) return;
  LinkInfo li;
  std::string err;
  if (!query_link(cfg_.iface, li, err)) {
    on_gone();
    return;
  }
  if (!present_ || li.ifindex != ifindex_) {
    on_gone();
    appear(li);
    return;
  }
  owner_.reread(li.mtu);
  if (cfg_.pmtu.enabled) {
    spdlog::info("tunnel {}: reapply: searching the path MTU again", cfg_.iface);
    begin_search();
  }
  update_targets();
  host_.reschedule(*this);
}

bool Tunnel::symptom_watch() const noexcept {
  return (cfg_.mss4_auto || cfg_.mss6_auto) && present_ && search_ && confirmed_ &&
         search_->state() == PmtuState::complete;
}

void Tunnel::on_symptom_poll() {
  if (stopped_) return;
  if (!symptom_watch()) {
    watching_ = false;  // a search is under way, or nothing to re-check
    return;
  }
  const auto& s = dp_.symptoms;
  const std::uint64_t total = s.retransmits + s.icmp_too_big;
  const std::uint64_t fresh = total > symptoms_mark_ ? total - symptoms_mark_ : 0;
  symptoms_mark_ = total;
  if (!watching_) {
    watching_ = true;
    burst_.reset();
    return;
  }
  const Timestamp t = now();
  if (!burst_.on_symptoms(fresh, t)) return;
  ++totals_.symptom_rechecks;
  symptom_check_at_ = t;
  // debug: on a lossy tunnel a false alarm may come every cooldown; the metric counts them,
  // and a black hole found this way says so in its warning.
  spdlog::debug(
      "tunnel {}: black-hole symptoms (full-size retransmissions {}, ICMP too-big {} so far): "
      "re-checking path MTU {} now",
      cfg_.iface, s.retransmits, s.icmp_too_big, search_->pmtu());
  apply(search_->on_symptoms(t));
  host_.reschedule(*this);
}

void Tunnel::apply(const PmtuSearch::Actions& actions) {
  bool notify = false;
  const std::string& target = io_target_[0];
  for (const auto& a : actions) {
    if (const auto* p = std::get_if<PmtuSearch::SendProbe>(&a)) {
      // A refused send (above the interface MTU, ENOBUFS) is a lost probe: the search's
      // loss handling covers it.
      ++totals_.probes_sent;
      if (!send(Prober::pmtu, p->id & ~kEchoTag, p->size, nullptr)) ++totals_.probe_send_errors;
    } else if (const auto* c = std::get_if<PmtuSearch::PmtuChanged>(&a)) {
      notify = true;
      if (search_ && search_->state() == PmtuState::complete && confirmed_ &&
          c->pmtu < logged_pmtu_) {
        // Lowered while complete: a re-confirmation failed (black hole) — say so loudly.
        // (A search completing, first or again, raises it and has its own line.)
        spdlog::warn("tunnel {}: path MTU now {} (larger probes to {} stopped passing)",
                     cfg_.iface, c->pmtu, target);
      } else {
        spdlog::debug("tunnel {}: path MTU in effect {}", cfg_.iface, c->pmtu);
      }
    } else if (const auto* s = std::get_if<PmtuSearch::StateChanged>(&a)) {
      notify = true;
      const double secs =
          static_cast<double>(uv_now(host_.loop()) - search_started_ms_) / 1000.0;
      switch (s->state) {
        case PmtuState::complete: {
          // Every periodic re-search ends here too; only a new value is news then.
          const std::uint16_t v = search_->pmtu();
          const auto level = v != logged_pmtu_ ? spdlog::level::info : spdlog::level::debug;
          spdlog::log(level,
                      "tunnel {}: path MTU {} to {} (MSS {} IPv4, {} IPv6): {} probe rounds, "
                      "{} probes, {:.2f} s",
                      cfg_.iface, v, target, clamp::mss_from_mtu4(v), clamp::mss_from_mtu6(v),
                      search_->stats().rounds - rounds_mark_,
                      search_->stats().probes_sent - probes_mark_, secs);
          logged_pmtu_ = v;
          ++totals_.searches_completed;
          confirmed_ = true;
          host_.release_search(*this);
          break;
        }
        case PmtuState::search:
          if (confirmed_) mark();  // an upward re-search: count it on its own
          spdlog::debug("tunnel {}: searching the path MTU ({} .. {})", cfg_.iface,
                        search_->pmtu(), search_->upper_bound());
          break;
        case PmtuState::base:
          if (confirmed_) {
            mark();
            ++totals_.black_holes;
            // search_->pmtu() is the base size already; the lost size is the last logged.
            const bool by_symptoms = symptom_check_at_ != keepalive::kNever &&
                                     now() - symptom_check_at_ < keepalive::seconds(10);
            spdlog::warn(
                "tunnel {}: black hole: probes of {} bytes no longer pass while small ones "
                "do; clamping to the base size {} and searching again{}",
                cfg_.iface, logged_pmtu_, search_->base_size(),
                by_symptoms ? " (the re-check a burst of black-hole symptoms started)" : "");
            symptom_check_at_ = keepalive::kNever;
          }
          break;
        case PmtuState::error:
          ++totals_.silent;
          host_.release_search(*this);
          spdlog::warn(
              "tunnel {}: probe target {} answers no probes, not even {} bytes: keeping path "
              "MTU {} (is the tunnel up? does the target answer ping? set probe_target)",
              cfg_.iface, target, search_->base_size(), search_->pmtu());
          break;
        case PmtuState::disabled:
          break;
      }
    }
  }
  sync_interface_mtu();
  if (notify) update_targets();
}

void Tunnel::mark() {
  search_started_ms_ = uv_now(host_.loop());
  rounds_mark_ = search_ ? search_->stats().rounds : 0;
  probes_mark_ = search_ ? search_->stats().probes_sent : 0;
}

void Tunnel::sync_interface_mtu() {
  if (!search_) return;
  const PmtuState s = search_->state();
  const std::uint32_t want = owner_.want(
      cfg_.pmtu.set_interface_mtu, s == PmtuState::search, search_->upper_bound(),
      confirmed_ && (s == PmtuState::complete || s == PmtuState::base), search_->pmtu());
  if (want != 0) write_link_mtu(want);
}

void Tunnel::write_link_mtu(std::uint32_t mtu) {
  std::string err;
  if (!proxy::set_link_mtu(ifindex_, mtu, err)) {
    ++totals_.mtu_write_errors;
    spdlog::warn("tunnel {}: setting the interface MTU to {}: {}", cfg_.iface, mtu, err);
    return;
  }
  ++totals_.mtu_writes;
  spdlog::info("tunnel {}: interface MTU {} -> {}{}", cfg_.iface, owner_.current(), mtu,
               mtu < clamp::kMinMtu6 ? " (below 1280: the kernel disables IPv6 on it)" : "");
  owner_.wrote(mtu);
  update_targets();
}

// ---- data path -----------------------------------------------------------------------------

bool Tunnel::update_targets() {
  const bool measured = confirmed_ && pmtu() != 0;
  const std::uint16_t pm = measured ? pmtu() : 0;
  clamp::ClampTarget next = cfg_.fallback;
  // Never below the smallest MSS a host must accept: a tiny measured path still gets
  // its SYNs through, and the guard speaks for the rest.
  if (cfg_.mss4_auto && measured) {
    next.mss4 = std::max<std::uint16_t>(clamp::mss_from_mtu4(pm), clamp::kDefaultMss4);
  }
  if (cfg_.mss6_auto && measured) {
    next.mss6 = std::max<std::uint16_t>(clamp::mss_from_mtu6(std::max(pm, clamp::kMinMtu6)),
                                        clamp::kDefaultMss6);
  }
  bool change = false;
  if (next.mss4 != dp_.target.mss4 || next.mss6 != dp_.target.mss6) {
    spdlog::info("tunnel {}: clamp mss ipv4 {} -> {}, ipv6 {} -> {} ({})", cfg_.iface,
                 dp_.target.mss4, next.mss4, dp_.target.mss6, next.mss6,
                 measured ? fmt::format("path MTU {}", pm)
                          : std::string("path MTU not measured: fallback"));
    dp_.target = next;  // the next SYN uses it; no rule change
    change = true;
  }
  // The guard acts only on a measured value that is below what the interface lets out:
  // larger packets the kernel already refuses or fragments itself.
  const bool guard_on = cfg_.guard && measured && host_.guard_ready() && pm < owner_.current();
  const std::uint16_t guard_pmtu = guard_on ? pm : 0;
  ProbeIo* io = target_[0] ? host_.probes(target_[0]->family) : nullptr;
  const std::uint16_t ident = io != nullptr ? io->identifier() : 0;
  if (guard_pmtu != dp_.guard_pmtu || ident != dp_.probe_ident || pm != dp_.watch_mtu)
    change = true;
  dp_.guard_pmtu = guard_pmtu;
  dp_.watch_mtu = pm;
  dp_.probe_ident = ident;
  if (change) changed();
  return change;
}

void Tunnel::changed() {
  if (!stopped_) host_.targets_changed(*this);
}

// ---- liveness and recovery -----------------------------------------------------------------

keepalive::Timestamp Tunnel::next_deadline() const noexcept {
  if (stopped_) return keepalive::kNever;
  Timestamp next = keepalive::earliest(live_.next_deadline(), backoff_.next_deadline());
  if (search_ && present_) next = keepalive::earliest(next, search_->next_deadline());
  return next;
}

void Tunnel::on_tick() {
  if (stopped_) return;
  ++mstats_.ticks;
  const Timestamp t = now();
  if (present_ && live_.next_deadline() <= t) {
    LinkInfo li;
    std::string err;
    if (query_link(cfg_.iface, li, err) && li.ifindex == ifindex_) {
      if (li.have_stats) handle(live_.on_rx_activity(li.rx_packets, t));
    } else if (!li.present && err == "no such interface") {
      on_gone();  // the notification is on its way; no need to wait for it
    }
  }
  if (t >= live_.next_deadline()) handle(live_.on_tick(t));
  if (t >= backoff_.next_deadline() && backoff_.on_tick(t)) start_down_hook();
  if (search_ && present_ && t >= search_->next_deadline()) apply(search_->on_tick(t));
}

void Tunnel::open_keepalive() {
  clear_target(Prober::keepalive);
  if (!present_ || cfg_.monitor.liveness.mode == keepalive::KeepaliveMode::off) return;
  const auto target = resolve(cfg_.monitor.target);
  if (!target) {
    spdlog::warn(
        "tunnel {}: no keepalive target (no point-to-point peer; set keepalive_target): "
        "echoes are not sent, liveness follows traffic and the interface only",
        cfg_.iface);
    return;
  }
  set_target(Prober::keepalive, *target);
}

void Tunnel::handle(const Liveness::Actions& actions) {
  for (const auto& a : actions) {
    if (const auto* e = std::get_if<Liveness::SendEcho>(&a)) {
      std::string err;
      if (send(Prober::keepalive, e->id | kEchoTag, kEchoSize, &err)) {
        ++mstats_.keepalive_sent;
        spdlog::debug("tunnel {}: keepalive echo {} to {}", cfg_.iface, e->id, io_target_[1]);
      } else {
        ++mstats_.keepalive_send_errors;  // Liveness then judges it a miss, as it should
        spdlog::debug("tunnel {}: keepalive echo {} not sent: {}", cfg_.iface, e->id, err);
      }
      continue;
    }
    const auto& sc = std::get<Liveness::StateChanged>(a);
    ++mstats_.transitions_to[idx(sc.to)];
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
      if (!cfg_.monitor.on_down.empty()) backoff_.on_tunnel_down(t, jitter());
    } else if (sc.to == Liveness::State::up) {
      if (was_down_) {
        was_down_ = false;
        ++mstats_.reconnects;
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

std::vector<std::pair<std::string, std::string>> Tunnel::hook_env(const char* event) const {
  const bool down = std::string_view(event) == "down";
  const std::int64_t down_ms = down ? (now() - down_since_).ms() : last_down_for_.ms();
  const std::uint32_t pm = pmtu();
  return {{"TUNSHIM_INTERFACE", cfg_.iface},
          {"TUNSHIM_EVENT", event},
          {"TUNSHIM_PEER", io_target_[1].empty() ? cfg_.monitor.target : io_target_[1]},
          {"TUNSHIM_PMTU", std::to_string(pm != 0 ? pm : owner_.current())},
          {"TUNSHIM_DOWN_SECONDS", std::to_string(std::max<std::int64_t>(0, down_ms) / 1000)}};
}

void Tunnel::start_down_hook() {
  if (down_run_ || cfg_.monitor.on_down.empty()) return;  // one run at a time
  HookRun::Options o;
  o.label = cfg_.iface + " on_down";
  o.commands = cfg_.monitor.on_down;
  o.env = hook_env("down");
  o.timeout_ms = cfg_.monitor.hook_timeout_ms;
  spdlog::warn("tunnel {}: running on_down (attempt {}, down {} s)", cfg_.iface,
               backoff_.attempts(), o.env.back().second);
  down_done_ = 0;
  down_run_ = std::make_unique<HookRun>(
      host_.loop(), std::move(o),
      [this](const HookCommandResult& r) {
        ++mstats_.on_down_runs[idx(r.result)];
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
        host_.reschedule(*this);
      });
  down_run_->start();
}

void Tunnel::start_up_hook() {
  if (cfg_.monitor.on_up.empty() || stopped_) return;
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
  o.commands = cfg_.monitor.on_up;
  o.env = hook_env("up");
  o.timeout_ms = cfg_.monitor.hook_timeout_ms;
  up_done_ = 0;
  up_run_ = std::make_unique<HookRun>(
      host_.loop(), std::move(o),
      [this](const HookCommandResult& r) {
        ++mstats_.on_up_runs[idx(r.result)];
        record_hook("on_up", ++up_done_, r);
      },
      [this]() { auto finished = std::move(up_run_); });
  up_run_->start();
}

// HookRun reports commands in list order, so counting them gives each one's place.
void Tunnel::record_hook(const char* hook, std::size_t index, const HookCommandResult& r) {
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
  mstats_.last_hook = h;
}

// ---- reporting -----------------------------------------------------------------------------

std::vector<std::string> Tunnel::describe() const {
  std::vector<std::string> out;
  const auto& rtt = live_.rtt();
  const MonitorStats& s = mstats_;
  out.push_back(fmt::format(
      "tunnel {}: state {} target {} keepalive sent={} replies={} send_errors={} "
      "loss_permille={} rtt srtt={:.3f}ms min={}ms max={}ms transitions up={} suspect={} "
      "down={} absent={} reconnects={} on_down ok={} failed={} timeout={} spawn_error={} "
      "on_up ok={} failed={} timeout={} spawn_error={} ticks={}",
      cfg_.iface, keepalive::to_string(live_.state()),
      io_target_[1].empty() ? "none" : io_target_[1], s.keepalive_sent, s.keepalive_replies,
      s.keepalive_send_errors, live_.loss().loss_permille(),
      static_cast<double>(rtt.srtt_us()) / 1000.0, rtt.min().ms(), rtt.max().ms(),
      s.transitions_to[1], s.transitions_to[2], s.transitions_to[3], s.transitions_to[0],
      s.reconnects, s.on_down_runs[0], s.on_down_runs[1], s.on_down_runs[2], s.on_down_runs[3],
      s.on_up_runs[0], s.on_up_runs[1], s.on_up_runs[2], s.on_up_runs[3], s.ticks));
  if (cfg_.pmtu.enabled) {
    out.push_back(fmt::format(
        "tunnel {}: path MTU {} ({}{}), target {}, interface MTU {} (original {}), probes "
        "sent={} answered={} send_errors={} ptb_hints={} searches={} black_holes={} silent={} "
        "mtu_writes={}",
        cfg_.iface, pmtu(), keepalive::to_string(pmtu_state()), confirmed_ ? ", confirmed" : "",
        io_target_[0].empty() ? "none" : io_target_[0], owner_.current(), owner_.original(),
        totals_.probes_sent, totals_.probe_replies, totals_.probe_send_errors,
        totals_.ptb_hints, totals_.searches_completed, totals_.black_holes, totals_.silent,
        totals_.mtu_writes));
  }
  return out;
}

void Tunnel::fill(TunnelStats& t) const {
  t.iface = cfg_.iface;
  t.pattern = cfg_.pattern;
  t.mss4 = dp_.target.mss4;
  t.mss6 = dp_.target.mss6;
  t.syn = dp_.counters;
  if (cfg_.pmtu.enabled) {
    if (pmtu() != 0) t.pmtu = pmtu();
    t.pmtu_state = std::string(keepalive::to_string(pmtu_state()));
    t.pmtu_confirmed = confirmed_;
    const std::uint64_t answered = totals_.probe_replies;
    const std::uint64_t failed = totals_.probe_send_errors;
    const std::uint64_t sent = totals_.probes_sent;
    t.probes["answered"] = answered;
    t.probes["send_error"] = failed;
    // Includes the few still in flight: a probe is "unanswered" until its reply comes.
    t.probes["unanswered"] = sent > answered + failed ? sent - answered - failed : 0;
  }
  if (dp_.symptoms.measured) {
    t.symptoms = {{"full_size_retransmit", dp_.symptoms.retransmits},
                  {"icmp_too_big", dp_.symptoms.icmp_too_big},
                  {"oversize_df", dp_.symptoms.oversize_df}};
  } else if (cfg_.guard) {
    t.symptoms = {{"oversize_df", dp_.guard_counters.dropped}};  // what the guard dropped
  }
  if (cfg_.mss4_auto || cfg_.mss6_auto) t.symptom_rechecks = totals_.symptom_rechecks;
  if (cfg_.guard) {
    const GuardCounters& g = dp_.guard_counters;
    t.oversize_dropped = g.dropped;
    t.icmp_ptb_sent = g.ptb_sent;
    t.guard = {{"passed", g.passed},
               {"malformed", g.malformed},
               {"rate_limited", g.rate_limited},
               {"not_answered", g.not_answered},
               {"send_error", g.send_errors}};
  }
}

}  // namespace tunshim::proxy
