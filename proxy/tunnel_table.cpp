#include "proxy/tunnel_table.h"

#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <random>

#include "clamp/mtu.h"
#include "proxy/config.h"
#include "proxy/iface_pattern.h"

namespace tunshim::proxy {
namespace {

void add(DirectionCounters& to, const DirectionCounters& c) {
  to.clamped += c.clamped;
  to.inserted += c.inserted;
  to.unchanged += c.unchanged;
  to.malformed += c.malformed;
  to.other += c.other;
  to.truncated += c.truncated;
  to.bypassed += c.bypassed;
}

// What one instance adds to its pattern's totals.
void add(PatternStats& to, const Tunnel& t) {
  const Tunnel::Datapath& d = t.datapath();
  add(to.syn.out, d.counters.out);
  add(to.syn.in, d.counters.in);
  to.oversize_dropped += d.guard_counters.dropped;
  to.icmp_ptb_sent += d.guard_counters.ptb_sent;
  to.keepalive_sent += t.monitor_stats().keepalive_sent;
  to.probes_sent += t.probes_sent();
  to.searches_completed += t.searches_completed();
}

bool is_instance(const Tunnel& t) noexcept { return !t.settings().pattern.empty(); }

// A fixed fraction in [0, 1) from a name (FNV-1a): the same on every reload, different
// between sessions.
double name_fraction(std::string_view name) noexcept {
  std::uint32_t h = 2166136261U;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619U;
  }
  return static_cast<double>(h % 1024U) / 1024.0;
}

}  // namespace

TunnelTable::TunnelTable(uv_loop_t* loop, Callbacks callbacks)
    : loop_(loop), cb_(std::move(callbacks)), rtnl_(loop) {
  std::random_device rd;
  probe_ident_ = static_cast<std::uint16_t>(rd());
  timer_.init(loop_);
  kick_.init(loop_);
}

TunnelTable::~TunnelTable() { stop(); }

void TunnelTable::start(const Config& config) {
  std::string err;
  if (!rtnl_.open([this](const LinkInfo& li) { on_link(li); },
                  [this](unsigned ifindex) { on_addr(ifindex); }, [this]() { on_resync(); },
                  err)) {
    spdlog::error(
        "rtnetlink subscription failed ({}): interface changes are seen only at a tunnel's "
        "next deadline or on `tunshim reapply`{}",
        err, patterns_.empty() ? "" : "; new interfaces matching a pattern are not seen");
  }
  reconfigure(config);
}

TunnelSettings TunnelTable::instance_settings(const Pattern& p, const std::string& name) const {
  TunnelSettings s = p.settings;
  s.pattern = p.settings.iface;
  s.iface = name;
  // Sessions that appeared together would otherwise re-search together for ever.
  const std::int64_t every = s.pmtu.reprobe_interval.ms();
  s.pmtu.reprobe_interval = keepalive::milliseconds(
      every - static_cast<std::int64_t>(static_cast<double>(every) * name_fraction(name) / 4));
  return s;
}

void TunnelTable::reconfigure(const Config& config) {
  if (stopped_) return;
  max_searches_ = std::max<std::size_t>(1, config.global.max_concurrent_searches);

  // Patterns first: instances below follow theirs.
  std::vector<std::unique_ptr<Pattern>> next_patterns;
  for (const auto& tc : config.tunnels) {
    if (!is_iface_pattern(tc.interface)) continue;
    auto it = std::find_if(patterns_.begin(), patterns_.end(), [&](const auto& p) {
      return p && p->settings.iface == tc.interface;
    });
    std::unique_ptr<Pattern> p;
    if (it != patterns_.end()) {
      p = std::move(*it);
    } else {
      p = std::make_unique<Pattern>();
      p->totals.pattern = tc.interface;
    }
    p->settings = tunnel_settings(tc);
    const TunnelSettings& s = p->settings;
    spdlog::info(
        "tunnel pattern {}: every interface whose name starts with \"{}\" is a tunnel of its "
        "own while it exists: clamp mss ipv4 {}{} ipv6 {}{}{}, path MTU {}, keepalive {}, "
        "on_down {} on_up {} command(s)",
        s.iface, iface_prefix(s.iface), s.fallback.mss4, s.mss4_auto ? " (auto)" : "",
        s.fallback.mss6, s.mss6_auto ? " (auto)" : "", s.guard ? ", oversize guard on" : "",
        s.pmtu.enabled ? "searched" : "off", keepalive::to_string(s.monitor.liveness.mode),
        s.monitor.on_down.size(), s.monitor.on_up.size());
    next_patterns.push_back(std::move(p));
  }
  patterns_ = std::move(next_patterns);

  std::vector<std::unique_ptr<Tunnel>> next;
  std::vector<Tunnel*> fresh;
  for (const auto& tc : config.tunnels) {
    if (is_iface_pattern(tc.interface)) continue;
    TunnelSettings s = tunnel_settings(tc);
    const bool dup = std::any_of(next.begin(), next.end(),
                                 [&](const auto& t) { return t->iface() == s.iface; });
    if (dup) continue;
    auto it = std::find_if(tunnels_.begin(), tunnels_.end(), [&](const auto& t) {
      return t && !is_instance(*t) && t->iface() == s.iface;
    });
    if (it != tunnels_.end()) {
      next.push_back(std::move(*it));
      next.back()->reconfigure(std::move(s));
    } else {
      next.push_back(std::make_unique<Tunnel>(*this, next_id_++, std::move(s)));
      fresh.push_back(next.back().get());
      by_id_[next.back()->id()] = next.back().get();
    }
  }
  // Instances whose pattern stays and whose name no exact tunnel claims now keep going.
  for (auto& t : tunnels_) {
    if (!t || !is_instance(*t)) continue;
    const bool claimed = std::any_of(next.begin(), next.end(),
                                     [&](const auto& n) { return n->iface() == t->iface(); });
    Pattern* p = claimed ? nullptr : pattern_for(t->iface());
    if (p == nullptr || p->settings.iface != t->settings().pattern) continue;
    t->reconfigure(instance_settings(*p, t->iface()));
    next.push_back(std::move(t));
  }
  by_name_.clear();
  for (auto& t : next) by_name_[t->iface()] = t.get();
  for (auto& t : tunnels_) {
    if (!t) continue;
    spdlog::info("tunnel {}: removed", t->iface());
    t->stop();
    scheduled_.erase(t.get());
    std::erase_if(deadlines_, [&](const auto& d) { return d.second == t.get(); });
    retired_.push_back(std::move(t));
  }
  tunnels_ = std::move(next);
  // Started once the table is in place: starting reports to the daemon, which looks here.
  for (Tunnel* t : fresh) {
    // A retired tunnel of the same name gives up its index to the new one.
    for (auto& r : retired_) {
      if (r->iface() == t->iface()) unindex(*r);
    }
    t->start();
    reindex(*t);
  }
  scan_patterns();
  arm();
}

void TunnelTable::drop_retired() {
  for (auto& r : retired_) {
    unindex(*r);
    by_id_.erase(r->id());
  }
  retired_.clear();
}

void TunnelTable::stop() {
  if (stopped_) return;
  stopped_ = true;
  rtnl_.close();
  for (auto& t : tunnels_) t->stop();
  for (auto& t : retired_) t->stop();
  for (auto& t : ended_) t->stop();
  deadlines_.clear();
  scheduled_.clear();
  waiting_.clear();
  queued_.clear();
  searching_.clear();
  for (auto& p : probes_) {
    if (p) p->close();
  }
  timer_.reset();
  kick_.reset();
}

void TunnelTable::sync_links() noexcept {
  if (rtnl_.is_open()) rtnl_.drain();
}

Tunnel* TunnelTable::find(std::string_view iface) noexcept {
  const auto it = by_name_.find(iface);
  return it != by_name_.end() ? it->second : nullptr;
}

const Tunnel* TunnelTable::find(std::string_view iface) const noexcept {
  const auto it = by_name_.find(iface);
  return it != by_name_.end() ? it->second : nullptr;
}

TunnelTable::Pattern* TunnelTable::pattern_for(std::string_view name) noexcept {
  // The config refuses overlapping patterns: at most one matches.
  for (auto& p : patterns_) {
    if (iface_matches(p->settings.iface, name)) return p.get();
  }
  return nullptr;
}

// ---- instances -----------------------------------------------------------------------------

void TunnelTable::maybe_instance(const std::string& name) {
  if (stopped_ || by_name_.contains(name)) return;
  Pattern* p = pattern_for(name);
  if (p == nullptr) return;
  tunnels_.push_back(std::make_unique<Tunnel>(*this, next_id_++, instance_settings(*p, name)));
  Tunnel& t = *tunnels_.back();
  by_id_[t.id()] = &t;
  by_name_[name] = &t;
  ++p->totals.appeared;
  // A retired tunnel of this name (a reload just turned it into an instance) gives up
  // its index.
  for (auto& r : retired_) {
    if (r->iface() == name) unindex(*r);
  }
  t.start();
  if (!t.present()) {  // gone again before we looked
    end_instance(t);
    return;
  }
  reindex(t);
  reschedule(t);
}

void TunnelTable::scan_patterns() {
  if (patterns_.empty()) return;
  // The kernel's list of names (one netlink dump); each match is then read by name.
  struct if_nameindex* all = ::if_nameindex();
  if (all == nullptr) {
    spdlog::warn(
        "listing interfaces failed: those matching a pattern are seen when they change");
    return;
  }
  std::vector<std::string> names;
  for (const struct if_nameindex* i = all; i->if_index != 0 && i->if_name != nullptr; ++i) {
    names.emplace_back(i->if_name);
  }
  ::if_freenameindex(all);
  const std::size_t before = tunnels_.size();
  for (const auto& n : names) maybe_instance(n);
  spdlog::info("interfaces: {} listed, {} new instance(s) of a pattern", names.size(),
               tunnels_.size() - std::min(before, tunnels_.size()));
}

void TunnelTable::end_instance(Tunnel& t) {
  if (Pattern* p = pattern_for(t.iface());
      p != nullptr && p->settings.iface == t.settings().pattern) {
    add(p->totals, t);
    ++p->totals.gone;
  }
  spdlog::info("tunnel {}: interface gone: the {} instance ends", t.iface(),
               t.settings().pattern);
  forget(t);
  if (cb_.targets_changed) cb_.targets_changed(t);  // a pattern's guard limit may rise
  kick();
}

void TunnelTable::forget(Tunnel& t) {
  unindex(t);
  if (const auto s = scheduled_.find(&t); s != scheduled_.end()) {
    deadlines_.erase({s->second, &t});
    scheduled_.erase(s);
  }
  t.stop();              // releases its search place
  by_id_.erase(t.id());  // a late reply to its probes finds no one
  if (const auto n = by_name_.find(t.iface()); n != by_name_.end() && n->second == &t) {
    by_name_.erase(n);
  }
  const auto it = std::find_if(tunnels_.begin(), tunnels_.end(),
                               [&](const auto& p) { return p.get() == &t; });
  if (it != tunnels_.end()) {
    ended_.push_back(std::move(*it));
    tunnels_.erase(it);
  }
}

std::string TunnelTable::rule_name(std::string_view iface) const {
  const Tunnel* t = find(iface);
  return t != nullptr && is_instance(*t) ? t->settings().pattern : std::string(iface);
}

std::vector<FirewallTunnel> TunnelTable::firewall_tunnels() const {
  std::vector<FirewallTunnel> out;
  // Exact names first: their rules decide before a pattern's (the verdict would pick the
  // exact tunnel either way; the lookup is by interface, not by rule).
  for (const auto& tp : tunnels_) {
    if (is_instance(*tp)) continue;
    const Tunnel::Datapath& d = tp->datapath();
    FirewallTunnel ft{tp->iface(), d.target.mss4 != 0, d.target.mss6 != 0};
    ft.guard4 = d.guard_pmtu;
    // Below 1280 IPv6 cannot work over the tunnel at all, and hosts raise a smaller
    // packet-too-big to 1280 (RFC 8201 4): the guard has nothing useful to say.
    ft.guard6 = d.guard_pmtu >= clamp::kMinMtu6 ? d.guard_pmtu : 0;
    out.push_back(std::move(ft));
  }
  std::map<std::string_view, std::size_t> at;
  for (const auto& p : patterns_) {
    const TunnelSettings& s = p->settings;
    at[s.iface] = out.size();
    out.push_back(FirewallTunnel{s.iface, s.fallback.mss4 != 0, s.fallback.mss6 != 0});
  }
  // One guard rule per pattern, at the smallest limit among its instances: it queues a
  // superset of what each instance's own rule would, and the verdict applies the
  // instance's own limit to each packet.
  auto lower = [](std::uint16_t& slot, std::uint16_t v) {
    if (v != 0 && (slot == 0 || v < slot)) slot = v;
  };
  for (const auto& tp : tunnels_) {
    if (!is_instance(*tp)) continue;
    const auto it = at.find(tp->settings().pattern);
    if (it == at.end()) continue;
    const std::uint16_t g = tp->datapath().guard_pmtu;
    lower(out[it->second].guard4, g);
    lower(out[it->second].guard6, g >= clamp::kMinMtu6 ? g : 0);
  }
  return out;
}

std::vector<PatternStats> TunnelTable::pattern_stats() const {
  std::vector<PatternStats> out;
  std::map<std::string_view, std::size_t> at;
  for (const auto& p : patterns_) {
    at[p->settings.iface] = out.size();
    out.push_back(p->totals);
  }
  for (const auto& tp : tunnels_) {
    if (!is_instance(*tp)) continue;
    const auto it = at.find(tp->settings().pattern);
    if (it == at.end()) continue;
    PatternStats& ps = out[it->second];
    add(ps, *tp);
    if (tp->present()) ++ps.instances;
    if (tp->present() && tp->pmtu_confirmed()) ++ps.measured;
  }
  return out;
}

ProbeIo* TunnelTable::probes(IpFamily family) {
  const auto i = static_cast<std::size_t>(family == IpFamily::ipv4 ? 0 : 1);
  if (probes_[i] && probes_[i]->is_open()) return probes_[i].get();
  if (stopped_) return nullptr;
  auto io = std::make_unique<ProbeIo>(loop_);
  std::string err;
  auto reply = [this](std::uint64_t tag, std::uint16_t size) {
    if (auto it = by_id_.find(static_cast<std::uint32_t>(tag >> 32)); it != by_id_.end()) {
      it->second->on_probe_reply(static_cast<std::uint32_t>(tag), size);
    }
  };
  auto hint = [this](std::uint64_t tag, std::uint16_t mtu) {
    if (auto it = by_id_.find(static_cast<std::uint32_t>(tag >> 32)); it != by_id_.end()) {
      it->second->on_probe_hint(static_cast<std::uint32_t>(tag), mtu);
    }
  };
  if (!io->open_shared(family, probe_ident_, reply, hint, err)) {
    if (!probes_failed_[i]) {
      spdlog::error("{} probe socket: {} (path-MTU probes and keepalives cannot be sent)",
                    family == IpFamily::ipv4 ? "ICMP" : "ICMPv6", err);
    }
    probes_failed_[i] = true;
    return nullptr;
  }
  probes_failed_[i] = false;
  probes_[i] = std::move(io);
  return probes_[i].get();
}

// ---- path-MTU search places ----------------------------------------------------------------

bool TunnelTable::acquire_search(Tunnel& t) {
  if (stopped_) return false;
  if (searching_.contains(&t)) return true;
  if (&t == granting_ || (queued_.empty() && searching_.size() < max_searches_)) {
    searching_.insert(&t);
    return true;
  }
  if (!queued_.contains(&t)) {
    waiting_.push_back(&t);
    queued_[&t] = std::prev(waiting_.end());
    spdlog::debug("tunnel {}: path-MTU search waits for a place ({} running, {} waiting)",
                  t.iface(), searching_.size(), queued_.size());
  }
  return false;
}

void TunnelTable::release_search(Tunnel& t) {
  const bool freed = searching_.erase(&t) > 0;
  if (const auto q = queued_.find(&t); q != queued_.end()) {
    waiting_.erase(q->second);
    queued_.erase(q);
  }
  if (freed && !queued_.empty()) kick();
}

void TunnelTable::kick() {
  if (stopped_ || !kick_ || kick_.active()) return;
  kick_.start(0, [this] { on_kick(); });
}

void TunnelTable::on_kick() {
  ended_.clear();  // no callback of theirs is on the stack now
  while (!stopped_ && searching_.size() < max_searches_ && !waiting_.empty()) {
    Tunnel* t = waiting_.front();
    waiting_.pop_front();
    queued_.erase(t);
    granting_ = t;
    t->search_granted();
    granting_ = nullptr;
  }
}

// ---- rtnetlink -----------------------------------------------------------------------------

void TunnelTable::on_link(const LinkInfo& li) {
  if (stopped_) return;
  // This index under another name first: renamed away (or deleted) is gone for its tunnel.
  if (auto it = by_ifindex_.find(li.ifindex);
      it != by_ifindex_.end() && (!li.present || it->second->iface() != li.name)) {
    Tunnel* old = it->second;
    unindex(*old);
    if (old->ifindex() == li.ifindex) old->on_gone();
    if (is_instance(*old) && find(old->iface()) == old) {
      end_instance(*old);
    } else {
      reschedule(*old);
    }
  }
  if (!li.present) {
    // An instance that already saw its interface go (a tick found it missing).
    if (Tunnel* t = find(li.name); t != nullptr && is_instance(*t) && !t->present()) {
      end_instance(*t);
    }
    return;
  }
  if (Tunnel* t = find(li.name)) {
    t->on_link(li);
    reindex(*t);
    reschedule(*t);
  } else {
    maybe_instance(li.name);
  }
}

void TunnelTable::on_addr(unsigned ifindex) {
  if (Tunnel* t = by_ifindex(ifindex); t != nullptr && !stopped_) {
    t->on_addr();
    reschedule(*t);
  }
}

void TunnelTable::on_resync() {
  if (stopped_) return;
  std::vector<Tunnel*> gone;
  for (auto& t : tunnels_) {
    const unsigned before = t->present() ? t->ifindex() : 0;
    t->resync();
    reindex(*t);
    // An instance whose interface was replaced (deleted and re-created under its name while
    // the notifications were lost) ends, and scan_patterns() starts the new session's, as
    // the notifications would have: the pattern's books count each session once.
    if (is_instance(*t) && (!t->present() || (before != 0 && t->ifindex() != before))) {
      gone.push_back(t.get());
    } else {
      reschedule(*t);
    }
  }
  for (Tunnel* t : gone) end_instance(*t);
  scan_patterns();
}

void TunnelTable::reindex(Tunnel& t) {
  const auto it = indexed_.find(&t);
  const unsigned want = t.present() ? t.ifindex() : 0;
  if (it != indexed_.end() && it->second == want) return;
  unindex(t);
  if (want == 0) return;
  // Whoever held this index before has lost it (a renamed interface's tunnel).
  if (auto prev = by_ifindex_.find(want); prev != by_ifindex_.end()) {
    indexed_.erase(prev->second);
  }
  by_ifindex_[want] = &t;
  indexed_[&t] = want;
}

void TunnelTable::unindex(Tunnel& t) {
  const auto it = indexed_.find(&t);
  if (it == indexed_.end()) return;
  const auto b = by_ifindex_.find(it->second);
  if (b != by_ifindex_.end() && b->second == &t) by_ifindex_.erase(b);
  indexed_.erase(it);
}

// ---- TunnelHost ----------------------------------------------------------------------------

void TunnelTable::targets_changed(Tunnel& t) {
  reindex(t);
  if (cb_.targets_changed) cb_.targets_changed(t);
}

void TunnelTable::reschedule(Tunnel& t) {
  if (stopped_) return;
  reindex(t);
  const keepalive::Timestamp next = t.next_deadline();
  const std::int64_t key = next == keepalive::kNever ? -1 : next.ms();
  const auto it = scheduled_.find(&t);
  if (it != scheduled_.end()) {
    if (it->second == key) return;
    deadlines_.erase({it->second, &t});
    scheduled_.erase(it);
  }
  if (key >= 0) {
    deadlines_.insert({key, &t});
    scheduled_[&t] = key;
  }
  arm();
}

void TunnelTable::arm() {
  if (stopped_ || !timer_) return;
  if (deadlines_.empty()) {
    timer_.stop();
    return;
  }
  const std::int64_t now = static_cast<std::int64_t>(uv_now(loop_));
  const std::int64_t delay = std::max<std::int64_t>(0, deadlines_.begin()->first - now);
  timer_.start(static_cast<std::uint64_t>(delay), [this] { on_timer(); });
}

void TunnelTable::on_timer() {
  const std::int64_t now = static_cast<std::int64_t>(uv_now(loop_));
  // Each due tunnel once per wake-up: a machine that asks for "now" again is served on
  // the next turn of the loop, after I/O, rather than spinning here.
  std::vector<Tunnel*> due;
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now;) {
    due.push_back(it->second);
    scheduled_.erase(it->second);
    it = deadlines_.erase(it);
  }
  for (Tunnel* t : due) {
    if (stopped_) return;
    t->on_tick();
    // An instance whose tick found its interface missing ends now, not at the
    // notification (which may have been lost).
    if (is_instance(*t) && !t->present() && find(t->iface()) == t) {
      end_instance(*t);
    } else {
      reschedule(*t);
    }
  }
  arm();
}

}  // namespace tunshim::proxy
