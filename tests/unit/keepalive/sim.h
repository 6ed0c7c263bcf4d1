// Tiny discrete-event driver for the keepalive state machines: a time-ordered queue of
// deliveries and a simulated path for PMTU probes. Time only moves when the driver jumps
// to the next deadline or delivery, so hours of simulated time take milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <variant>
#include <vector>

#include "keepalive/pmtu_search.h"
#include "keepalive/time.h"

namespace tunshim::keepalive::sim {

// Deliveries ordered by time; equal times keep insertion order (multimap guarantees it).
template <typename T>
class EventQueue {
 public:
  void push(Timestamp at, T value) { q_.emplace(at.ms(), std::move(value)); }
  Timestamp next_time() const {
    return q_.empty() ? kNever : Timestamp::from_ms(q_.begin()->first);
  }
  bool empty() const { return q_.empty(); }
  // Removes and returns the earliest item; precondition: !empty().
  T pop() {
    T v = std::move(q_.begin()->second);
    q_.erase(q_.begin());
    return v;
  }
  void clear() { q_.clear(); }

 private:
  std::multimap<std::int64_t, T> q_;
};

// A path as seen by ICMP probes: a probe of total size <= mtu that is not lost and whose
// target answers comes back after rtt. Loss is drawn per probe from a seeded generator.
struct Path {
  std::uint16_t mtu = 1500;
  Duration rtt = milliseconds(1);
  double loss = 0.0;      // probability a probe (or its reply) is lost
  bool answers = true;    // false: the target answers nothing at all
  bool ptb = false;       // too-big probes draw an ICMP too-big hint carrying `mtu`
  bool ptb_lies = false;  // the hint carries ptb_value instead of the real MTU
  std::uint16_t ptb_value = 0;
};

// Drives one PmtuSearch against a Path and records what it did.
class PmtuSim {
 public:
  struct Event {
    Timestamp at;
    PmtuSearch::Action action;
  };

  PmtuSim(const PmtuConfig& config, std::uint16_t interface_mtu, Path path, std::uint32_t seed)
      : search(config), path(path), rng_(seed), interface_mtu_(interface_mtu) {}

  void start() {
    handle(search.on_interface_mtu(interface_mtu_, now));
    handle(search.on_start(now));
  }

  // The data path reports a burst of black-hole symptoms.
  void symptoms() { handle(search.on_symptoms(now)); }

  // The interface MTU changes (0: the interface is gone).
  void set_interface_mtu(std::uint16_t mtu) { handle(search.on_interface_mtu(mtu, now)); }

  // Advances to `end` (or until `stop` returns true after an event), processing
  // deliveries before ticks at equal times. Returns whether `stop` became true.
  template <typename Stop>
  bool run_until(Timestamp end, Stop stop) {
    for (int guard = 0; guard < 10'000'000; ++guard) {
      const Timestamp t = earliest(search.next_deadline(), queue_.next_time());
      if (t > end) {
        now = end;
        return stop();
      }
      if (t < now) {
        stalled = true;  // a deadline in the past that a tick did not move
        return false;
      }
      now = t;
      while (!queue_.empty() && queue_.next_time() <= now) deliver(queue_.pop());
      if (search.next_deadline() <= now) {
        const Timestamp before = search.next_deadline();
        handle(search.on_tick(now));
        if (search.next_deadline() <= now && search.next_deadline() == before)
          ++same_deadline_ticks;
      }
      if (stop()) return true;
    }
    stalled = true;
    return false;
  }
  void run_for(Duration d) {
    run_until(now + d, [] { return false; });
  }
  bool run_until_state(PmtuSearch::State s, Duration limit) {
    return run_until(now + limit, [&] { return search.state() == s; });
  }

  // Every PmtuChanged value since the start, in order.
  std::vector<std::uint16_t> pmtu_changes() const {
    std::vector<std::uint16_t> v;
    for (const auto& e : log)
      if (const auto* p = std::get_if<PmtuSearch::PmtuChanged>(&e.action)) v.push_back(p->pmtu);
    return v;
  }
  std::vector<PmtuSearch::State> states() const {
    std::vector<PmtuSearch::State> v;
    for (const auto& e : log)
      if (const auto* p = std::get_if<PmtuSearch::StateChanged>(&e.action))
        v.push_back(p->state);
    return v;
  }

  PmtuSearch search;
  Path path;
  Timestamp now = Timestamp::from_ms(1'000'000);  // arbitrary non-zero epoch
  std::vector<Event> log;                         // every action, with its time
  std::uint64_t probes = 0;
  bool overflowed = false;  // an ActionList filled up (must never happen)
  bool stalled = false;     // the driver could not make progress (must never happen)
  int same_deadline_ticks = 0;

 private:
  struct Delivery {
    bool is_ptb = false;
    std::uint32_t id = 0;
    std::uint16_t size = 0;
  };

  void handle(const PmtuSearch::Actions& actions) {
    overflowed = overflowed || actions.overflowed();
    for (const auto& a : actions) {
      log.push_back({now, a});
      if (const auto* p = std::get_if<PmtuSearch::SendProbe>(&a)) send(*p);
    }
  }
  void send(const PmtuSearch::SendProbe& p) {
    ++probes;
    std::bernoulli_distribution lost(path.loss);
    if (p.size > path.mtu) {
      if (path.ptb) {
        queue_.push(now + path.rtt / 2,
                    Delivery{true, p.id, path.ptb_lies ? path.ptb_value : path.mtu});
      }
      return;
    }
    if (!path.answers || lost(rng_)) return;
    queue_.push(now + path.rtt, Delivery{false, p.id, p.size});
  }
  void deliver(const Delivery& d) {
    handle(d.is_ptb ? search.on_ptb_hint(d.size, now)
                    : search.on_probe_reply(d.id, d.size, now));
  }

  std::mt19937 rng_;
  std::uint16_t interface_mtu_;
  EventQueue<Delivery> queue_;
};

}  // namespace tunshim::keepalive::sim
