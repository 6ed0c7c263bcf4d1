#include "proxy/path_mtu.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <variant>

#include "clamp/mtu.h"
#include "proxy/config.h"

namespace tunshim::proxy {
namespace {

using keepalive::PmtuSearch;
using keepalive::Timestamp;
using State = PmtuSearch::State;

}  // namespace

bool needs_path_mtu(const TunnelConfig& tc) {
  return tc.mss4_auto || tc.mss6_auto || tc.guard == Guard::icmp || tc.set_interface_mtu;
}

PathMtuConfig path_mtu_config(const TunnelConfig& tc) {
  PathMtuConfig c;
  c.iface = tc.interface;
  c.target = tc.probe_target;
  c.probe_min = tc.probe_min;
  c.probe_max = tc.probe_max;
  c.reprobe_interval = keepalive::milliseconds(tc.reprobe_interval.count());
  c.set_interface_mtu = tc.set_interface_mtu;
  return c;
}

PathMtu::PathMtu(uv_loop_t* loop, PathMtuConfig config, ChangeFn on_change)
    : loop_(loop), cfg_(std::move(config)), on_change_(std::move(on_change)) {
  timer_ = new uv_timer_t{};
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

PathMtu::~PathMtu() { stop(); }

Timestamp PathMtu::now() const noexcept {
  return Timestamp::from_ms(static_cast<std::int64_t>(uv_now(loop_)));
}

std::uint16_t PathMtu::pmtu() const noexcept {
  return present_ && search_ ? search_->pmtu() : 0;
}

PmtuSearch::State PathMtu::state() const noexcept {
  return present_ && search_ ? search_->state() : State::disabled;
}

void PathMtu::start() {
  if (started_) return;
  started_ = true;
  spdlog::info(
      "tunnel {}: path-MTU discovery: target {}, base {} bytes, upper bound {}, re-search "
      "every {} s{}",
      cfg_.iface, cfg_.target.empty() ? "peer" : cfg_.target, cfg_.probe_min,
      cfg_.probe_max != 0 ? std::to_string(cfg_.probe_max) : std::string("interface MTU"),
      cfg_.reprobe_interval.ms() / 1000,
      cfg_.set_interface_mtu ? ", writes the interface MTU" : "");
  resync();
}

void PathMtu::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (io_) io_->close();
}

void PathMtu::resync() {
  if (stopped_) return;
  LinkInfo li;
  std::string err;
  if (query_link(cfg_.iface, li, err)) {
    on_link(li);
  } else if (present_) {
    gone();
  }
}

void PathMtu::on_link(const LinkInfo& li) {
  if (stopped_) return;
  if (li.name != cfg_.iface) {
    if (present_ && li.present && li.ifindex == ifindex_) gone();  // renamed away
    return;
  }
  if (!li.present) {
    if (present_ && li.ifindex == ifindex_) gone();
    return;
  }
  if (present_ && li.ifindex != ifindex_) gone();  // replaced between two notifications
  if (!present_) return appear(li);
  if (li.mtu == cur_mtu_) return;
  if (std::find(recent_writes_.begin(), recent_writes_.end(), li.mtu) != recent_writes_.end()) {
    return;  // the event of one of our own writes (cur_mtu_ already has the latest)
  }
  // Someone else set it (pppd renegotiating, the operator): that is the new original.
  spdlog::info("tunnel {}: interface MTU {} -> {} (not by tunshim)", cfg_.iface, cur_mtu_,
               li.mtu);
  cur_mtu_ = orig_mtu_ = li.mtu;
  recent_writes_.fill(0);
  if (search_) {
    apply(search_->on_interface_mtu(
        static_cast<std::uint16_t>(std::min<std::uint32_t>(orig_mtu_, 65535)), now()));
    arm();
  }
  changed();
}

void PathMtu::on_addr(unsigned ifindex) {
  if (stopped_ || !present_ || ifindex != ifindex_ || !cfg_.target.empty()) return;
  // The peer is our target: if it changed, the search starts over toward the new one.
  InterfaceInfo info;
  std::string err;
  if (!read_interface(cfg_.iface, info, err)) return;
  const auto peer = info.peer4 ? info.peer4 : info.peer6;
  const std::string text = peer ? peer->to_string() : std::string();
  if (text != target_text_) {
    spdlog::info("tunnel {}: probe target {} -> {}", cfg_.iface,
                 target_text_.empty() ? "none" : target_text_, text.empty() ? "none" : text);
    begin();
  }
}

void PathMtu::inherit(const PathMtu& old) {
  if (started_ || !old.present_ || old.wrote_mtu_ == 0) return;
  inherited_ =
      Inherited{old.ifindex_, old.cur_mtu_, old.orig_mtu_, old.wrote_mtu_, old.recent_writes_};
}

void PathMtu::appear(const LinkInfo& li) {
  present_ = true;
  ifindex_ = li.ifindex;
  cur_mtu_ = orig_mtu_ = li.mtu;
  recent_writes_.fill(0);
  if (inherited_ && inherited_->ifindex == li.ifindex && inherited_->cur == li.mtu) {
    // Still what the previous settings wrote: the original is the one they kept.
    orig_mtu_ = inherited_->orig;
    wrote_mtu_ = inherited_->wrote;
    recent_writes_ = inherited_->recent;
    if (!cfg_.set_interface_mtu && orig_mtu_ != cur_mtu_) {
      spdlog::info("tunnel {}: set_interface_mtu is off now: interface MTU back to {}",
                   cfg_.iface, orig_mtu_);
      set_link_mtu(orig_mtu_);
    }
  }
  inherited_.reset();
  begin();
}

void PathMtu::gone() {
  present_ = false;
  ifindex_ = 0;
  cur_mtu_ = orig_mtu_ = 0;
  confirmed_ = false;
  if (io_) io_->close();
  io_.reset();
  search_.reset();
  target_text_.clear();
  arm();
  spdlog::info("tunnel {}: path-MTU search stopped (interface gone)", cfg_.iface);
  changed();
}

void PathMtu::reprobe() {
  if (stopped_) return;
  LinkInfo li;
  std::string err;
  if (!query_link(cfg_.iface, li, err)) {
    if (present_) gone();
    return;
  }
  if (!present_ || li.ifindex != ifindex_) {
    if (present_) gone();
    return appear(li);
  }
  // The interface MTU as it is now is the original unless it is what we last wrote.
  if (li.mtu != cur_mtu_ || wrote_mtu_ == 0) cur_mtu_ = orig_mtu_ = li.mtu;
  spdlog::info("tunnel {}: reapply: searching the path MTU again", cfg_.iface);
  begin();
}

void PathMtu::begin() {
  if (io_) io_->close();
  io_.reset();
  search_.reset();
  confirmed_ = false;
  target_text_.clear();
  std::optional<IpAddress> target;
  if (!cfg_.target.empty()) {
    target = IpAddress::parse(cfg_.target);  // check-config verified the syntax
  } else {
    InterfaceInfo info;
    std::string err;
    if (read_interface(cfg_.iface, info, err)) target = info.peer4 ? info.peer4 : info.peer6;
  }
  if (!target) {
    // Never a guess from silence: without a target the fallback stays in effect.
    // pppd brings the link up before it adds the addresses: the search starts when the
    // peer address arrives (on_addr). Said once per appearance, not as a warning.
    spdlog::info(
        "tunnel {}: no path-MTU probe target yet ({} has no point-to-point peer address; "
        "waiting for one, or set probe_target): the fallback MSS is in effect",
        cfg_.iface, cfg_.iface);
    arm();
    changed();
    return;
  }
  keepalive::PmtuConfig pc;
  pc.family = target->family;
  pc.base = target->family == IpFamily::ipv4 ? cfg_.probe_min : 0;
  pc.probe_max = cfg_.probe_max;
  pc.reprobe_interval = cfg_.reprobe_interval;
  search_.emplace(pc);
  io_ = std::make_unique<ProbeIo>(loop_);
  std::string err;
  const bool opened = io_->open(
      cfg_.iface, *target,
      [this](std::uint32_t tag, std::uint16_t size) {
        ++totals_.probe_replies;
        if (search_) apply(search_->on_probe_reply(tag, size, now()));
        arm();
      },
      [this](std::uint32_t, std::uint16_t mtu) {
        ++totals_.ptb_hints;
        // An RFC 792 router leaves the field 0: a quote without a number narrows nothing.
        if (search_ && mtu != 0) apply(search_->on_ptb_hint(mtu, now()));
        arm();
      },
      err);
  if (!opened) {
    spdlog::warn("tunnel {}: path-MTU probe socket: {}; the fallback MSS stays in effect",
                 cfg_.iface, err);
    io_.reset();
    search_.reset();
    arm();
    changed();
    return;
  }
  target_text_ = target->to_string();
  logged_pmtu_ = 0;  // the first result of a fresh search is always news
  mark();
  const Timestamp t = now();
  apply(search_->on_interface_mtu(
      static_cast<std::uint16_t>(std::min<std::uint32_t>(orig_mtu_, 65535)), t));
  apply(search_->on_start(t));
  arm();
  changed();
}

void PathMtu::apply(const PmtuSearch::Actions& actions) {
  bool notify = false;
  for (const auto& a : actions) {
    if (const auto* p = std::get_if<PmtuSearch::SendProbe>(&a)) {
      // A refused send (above the interface MTU, ENOBUFS) is a lost probe: the search's
      // loss handling covers it.
      ++totals_.probes_sent;
      if (!io_ || !io_->send(p->id, p->size)) ++totals_.probe_send_errors;
    } else if (const auto* c = std::get_if<PmtuSearch::PmtuChanged>(&a)) {
      notify = true;
      if (search_ && search_->state() == State::complete && confirmed_) {
        // Lowered while complete: a re-confirmation failed (black hole) — say so loudly.
        spdlog::warn("tunnel {}: path MTU now {} (larger probes to {} stopped passing)",
                     cfg_.iface, c->pmtu, target_text_);
      } else {
        spdlog::debug("tunnel {}: path MTU in effect {}", cfg_.iface, c->pmtu);
      }
    } else if (const auto* s = std::get_if<PmtuSearch::StateChanged>(&a)) {
      notify = true;
      const double secs = static_cast<double>(uv_now(loop_) - search_started_ms_) / 1000.0;
      switch (s->state) {
        case State::complete: {
          // Every periodic re-search ends here too; only a new value is news then.
          const std::uint16_t v = search_->pmtu();
          const auto level = v != logged_pmtu_ ? spdlog::level::info : spdlog::level::debug;
          spdlog::log(level,
                      "tunnel {}: path MTU {} to {} (MSS {} IPv4, {} IPv6): {} probe rounds, "
                      "{} probes, {:.2f} s",
                      cfg_.iface, v, target_text_, clamp::mss_from_mtu4(v),
                      clamp::mss_from_mtu6(v), search_->stats().rounds - rounds_mark_,
                      search_->stats().probes_sent - probes_mark_, secs);
          logged_pmtu_ = v;
          ++totals_.searches_completed;
          confirmed_ = true;
          break;
        }
        case State::search:
          if (confirmed_) mark();  // an upward re-search: count it on its own
          spdlog::debug("tunnel {}: searching the path MTU ({} .. {})", cfg_.iface,
                        search_->pmtu(), search_->upper_bound());
          break;
        case State::base:
          if (confirmed_) {
            mark();
            ++totals_.black_holes;
            spdlog::warn(
                "tunnel {}: black hole: probes of {} bytes no longer pass while small ones do; "
                "clamping to the base size {} and searching again",
                cfg_.iface, search_->pmtu(), search_->base_size());
          }
          break;
        case State::error:
          ++totals_.silent;
          spdlog::warn(
              "tunnel {}: probe target {} answers no probes, not even {} bytes: keeping path "
              "MTU "
              "{} (is the tunnel up? does the target answer ping? set probe_target)",
              cfg_.iface, target_text_, search_->base_size(), search_->pmtu());
          break;
        case State::disabled:
          break;
      }
    }
  }
  sync_interface_mtu();
  if (notify) changed();
}

void PathMtu::mark() {
  search_started_ms_ = uv_now(loop_);
  rounds_mark_ = search_ ? search_->stats().rounds : 0;
  probes_mark_ = search_ ? search_->stats().probes_sent : 0;
}

void PathMtu::sync_interface_mtu() {
  if (!cfg_.set_interface_mtu || !present_ || !search_) return;
  std::uint32_t want = 0;
  switch (search_->state()) {
    case State::search:
      want = search_->upper_bound();  // so the larger probes can leave at all
      break;
    case State::complete:
    case State::base:
      if (confirmed_) want = search_->pmtu();
      break;
    default:
      break;
  }
  if (want != 0 && want != cur_mtu_) set_link_mtu(want);
}

void PathMtu::set_link_mtu(std::uint32_t mtu) {
  std::string err;
  if (!proxy::set_link_mtu(ifindex_, mtu, err)) {
    ++totals_.mtu_write_errors;
    spdlog::warn("tunnel {}: setting the interface MTU to {}: {}", cfg_.iface, mtu, err);
    return;
  }
  ++totals_.mtu_writes;
  spdlog::info("tunnel {}: interface MTU {} -> {}{}", cfg_.iface, cur_mtu_, mtu,
               mtu < clamp::kMinMtu6 ? " (below 1280: the kernel disables IPv6 on it)" : "");
  cur_mtu_ = mtu;
  wrote_mtu_ = mtu;
  recent_writes_[recent_next_] = mtu;
  recent_next_ = (recent_next_ + 1) % recent_writes_.size();
  changed();
}

void PathMtu::arm() {
  if (stopped_ || timer_ == nullptr) return;
  const Timestamp next = search_ && present_ ? search_->next_deadline() : keepalive::kNever;
  if (next == keepalive::kNever) {
    uv_timer_stop(timer_);
    return;
  }
  const std::int64_t delay = std::max<std::int64_t>(0, (next - now()).ms());
  uv_timer_start(
      timer_, [](uv_timer_t* tm) { static_cast<PathMtu*>(tm->data)->tick(); },
      static_cast<std::uint64_t>(delay), 0);
}

void PathMtu::tick() {
  if (search_ && now() >= search_->next_deadline()) apply(search_->on_tick(now()));
  arm();
}

std::string PathMtu::describe() const {
  return fmt::format(
      "tunnel {}: path MTU {} ({}{}), target {}, interface MTU {} (original {}), probes "
      "sent={} "
      "answered={} send_errors={} ptb_hints={} searches={} black_holes={} silent={} "
      "mtu_writes={}",
      cfg_.iface, pmtu(), keepalive::to_string(state()), confirmed_ ? ", confirmed" : "",
      target_text_.empty() ? "none" : target_text_, cur_mtu_, orig_mtu_, totals_.probes_sent,
      totals_.probe_replies, totals_.probe_send_errors, totals_.ptb_hints,
      totals_.searches_completed, totals_.black_holes, totals_.silent, totals_.mtu_writes);
}

void PathMtu::fill(TunnelStats& t) const {
  if (pmtu() != 0) t.pmtu = pmtu();
  t.pmtu_state = std::string(keepalive::to_string(state()));
  t.pmtu_confirmed = confirmed_;
  const std::uint64_t answered = totals_.probe_replies;
  const std::uint64_t failed = totals_.probe_send_errors;
  const std::uint64_t sent = totals_.probes_sent;
  t.probes["answered"] = answered;
  t.probes["send_error"] = failed;
  // Includes the few still in flight: a probe is "unanswered" until its reply comes.
  t.probes["unanswered"] = sent > answered + failed ? sent - answered - failed : 0;
}

// ---- PathMtus ------------------------------------------------------------------------------

bool PathMtus::subscribe(std::string& err) {
  return rtnl_.open(
      [this](const LinkInfo& li) {
        for (auto& p : items_) p->on_link(li);
      },
      [this](unsigned ifindex) {
        for (auto& p : items_) p->on_addr(ifindex);
      },
      [this]() {
        for (auto& p : items_) p->resync();
      },
      err);
}

void PathMtus::start(const Config& config) {
  std::string err;
  bool any = false;
  for (const auto& tc : config.tunnels) any = any || needs_path_mtu(tc);
  if (any && !subscribe(err)) {
    spdlog::error(
        "rtnetlink subscription for path-MTU discovery failed ({}): a returning interface "
        "is noticed only on `tunshim reapply`",
        err);
  }
  reconfigure(config);
}

void PathMtus::reconfigure(const Config& config) {
  std::vector<std::unique_ptr<PathMtu>> next;
  std::vector<PathMtuConfig> next_cfg;
  for (const auto& tc : config.tunnels) {
    if (!needs_path_mtu(tc)) continue;
    PathMtuConfig pc = path_mtu_config(tc);
    bool dup = false;
    for (const auto& c : next_cfg) dup = dup || c.iface == pc.iface;
    if (dup) continue;
    std::unique_ptr<PathMtu> kept;
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (items_[i] && configs_[i] == pc) kept = std::move(items_[i]);
    }
    if (!kept) {
      if (!rtnl_.is_open()) {
        std::string err;
        subscribe(err);
      }
      kept = std::make_unique<PathMtu>(loop_, pc, on_change_);
      for (std::size_t i = 0; i < items_.size(); ++i) {
        if (items_[i] && configs_[i].iface == pc.iface)
          kept->inherit(*items_[i]);  // settings changed
      }
    }
    next.push_back(std::move(kept));
    next_cfg.push_back(std::move(pc));
  }
  for (auto& p : items_) {
    if (p) p->stop();
  }
  items_ = std::move(next);
  configs_ = std::move(next_cfg);
  // Started after the table is in place: start() reports to the daemon, which looks here.
  for (auto& p : items_) {
    p->start();  // no-op for kept ones
  }
}

void PathMtus::stop() {
  rtnl_.close();
  for (auto& p : items_) p->stop();
}

PathMtu* PathMtus::find(const std::string& iface) noexcept {
  for (auto& p : items_) {
    if (p->iface() == iface) return p.get();
  }
  return nullptr;
}

const PathMtu* PathMtus::find(const std::string& iface) const noexcept {
  for (const auto& p : items_) {
    if (p->iface() == iface) return p.get();
  }
  return nullptr;
}

void PathMtus::log_stats() const {
  for (const auto& p : items_) spdlog::info("{}", p->describe());
}

}  // namespace tunshim::proxy
