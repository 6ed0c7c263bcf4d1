#include "proxy/tunnel_table.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "proxy/config.h"

namespace tunshim::proxy {

TunnelTable::TunnelTable(uv_loop_t* loop, Callbacks callbacks)
    : loop_(loop), cb_(std::move(callbacks)), rtnl_(loop) {
  std::random_device rd;
  probe_ident_ = static_cast<std::uint16_t>(rd());
  timer_.init(loop_);
}

TunnelTable::~TunnelTable() { stop(); }

void TunnelTable::start(const Config& config) {
  std::string err;
  if (!rtnl_.open([this](const LinkInfo& li) { on_link(li); },
                  [this](unsigned ifindex) { on_addr(ifindex); }, [this]() { on_resync(); },
                  err)) {
    spdlog::error(
        "rtnetlink subscription failed ({}): interface changes are seen only at a tunnel's "
        "next deadline or on `tunshim reapply`",
        err);
  }
  reconfigure(config);
}

void TunnelTable::reconfigure(const Config& config) {
  if (stopped_) return;
  std::vector<std::unique_ptr<Tunnel>> next;
  std::vector<Tunnel*> fresh;
  for (const auto& tc : config.tunnels) {
    TunnelSettings s = tunnel_settings(tc);
    const bool dup = std::any_of(next.begin(), next.end(),
                                 [&](const auto& t) { return t->iface() == s.iface; });
    if (dup) continue;
    auto it = std::find_if(tunnels_.begin(), tunnels_.end(),
                           [&](const auto& t) { return t && t->iface() == s.iface; });
    if (it != tunnels_.end()) {
      next.push_back(std::move(*it));
      next.back()->reconfigure(std::move(s));
    } else {
      next.push_back(std::make_unique<Tunnel>(*this, next_id_++, std::move(s)));
      fresh.push_back(next.back().get());
      by_id_[next.back()->id()] = next.back().get();
    }
  }
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
  deadlines_.clear();
  scheduled_.clear();
  for (auto& p : probes_) {
    if (p) p->close();
  }
  timer_.reset();
}

void TunnelTable::sync_links() noexcept {
  if (rtnl_.is_open()) rtnl_.drain();
}

Tunnel* TunnelTable::find(std::string_view iface) noexcept {
  for (auto& t : tunnels_) {
    if (t->iface() == iface) return t.get();
  }
  return nullptr;
}

const Tunnel* TunnelTable::find(std::string_view iface) const noexcept {
  for (const auto& t : tunnels_) {
    if (t->iface() == iface) return t.get();
  }
  return nullptr;
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

// ---- rtnetlink -----------------------------------------------------------------------------

void TunnelTable::on_link(const LinkInfo& li) {
  if (stopped_) return;
  // This index under another name first: renamed away (or deleted) is gone for its tunnel.
  if (auto it = by_ifindex_.find(li.ifindex);
      it != by_ifindex_.end() && (!li.present || it->second->iface() != li.name)) {
    Tunnel* old = it->second;
    unindex(*old);
    if (old->ifindex() == li.ifindex) old->on_gone();
    reschedule(*old);
  }
  if (!li.present) return;
  if (Tunnel* t = find(li.name)) {
    t->on_link(li);
    reindex(*t);
    reschedule(*t);
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
  for (auto& t : tunnels_) {
    t->resync();
    reindex(*t);
    reschedule(*t);
  }
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
    reschedule(*t);
  }
  arm();
}

}  // namespace tunshim::proxy
