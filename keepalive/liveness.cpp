#include "keepalive/liveness.h"

#include <algorithm>

namespace tunshim::keepalive {

Liveness::Liveness(const LivenessConfig& config) noexcept { reconfigure(config); }

void Liveness::reconfigure(const LivenessConfig& config) noexcept {
  config_ = config;
  // Guard against configurations that would make the machine spin or never judge.
  config_.interval = std::max(config_.interval, milliseconds(1));
  config_.suspect_interval = std::max(config_.suspect_interval, milliseconds(1));
  config_.reply_timeout =
      std::clamp(config_.reply_timeout, milliseconds(1), config_.suspect_interval);
  config_.down_after_misses = std::max<std::uint32_t>(config_.down_after_misses, 1);
}

void Liveness::transition(Actions& out, State to, Reason reason, Timestamp now) noexcept {
  if (to == state_) return;
  const Duration silent = state_ == State::absent ? Duration{} : now - last_life_;
  out.push(StateChanged{state_, to, reason, misses_, silent});
  state_ = to;
}

void Liveness::life(Actions& out, Reason reason, Timestamp now) noexcept {
  last_life_ = now;
  misses_ = 0;
  if (state_ == State::suspect || state_ == State::down)
    transition(out, State::up, reason, now);
}

Liveness::Actions Liveness::on_interface(bool present, Timestamp now) noexcept {
  Actions out;
  if (present == (state_ != State::absent)) return out;
  if (present) {
    // A new interface (a reconnect) is a new tunnel: fresh counters and idle timer.
    misses_ = 0;
    last_life_ = now;
    last_echo_ = now;
    have_rx_ = false;
    transition(out, State::up, Reason::interface_appeared, now);
  } else {
    transition(out, State::absent, Reason::interface_gone, now);
    misses_ = 0;
    pending_id_ = 0;
    judge_at_ = kNever;
    ring_ = {};
  }
  return out;
}

Liveness::Actions Liveness::on_rx_activity(std::uint64_t rx_packets, Timestamp now) noexcept {
  Actions out;
  if (state_ == State::absent) return out;
  const bool changed = have_rx_ && rx_packets != rx_packets_;
  rx_packets_ = rx_packets;
  have_rx_ = true;
  if (changed) {
    life_since_echo_ = true;
    life(out, Reason::rx_activity, now);
  }
  return out;
}

Liveness::Actions Liveness::on_echo_reply(std::uint32_t id, Timestamp now) noexcept {
  Actions out;
  if (state_ == State::absent || id == 0) return out;
  auto it =
      std::find_if(ring_.begin(), ring_.end(), [id](const Sent& s) { return s.id == id; });
  if (it == ring_.end()) return out;
  rtt_.on_sample(now - it->at);
  it->id = 0;  // a duplicate reply is not a second sample
  ++replies_;
  if (id == pending_id_) {
    loss_.record(false);
    pending_id_ = 0;
    judge_at_ = kNever;
  }
  life(out, Reason::echo_reply, now);
  return out;
}

Timestamp Liveness::next_echo_at() const noexcept {
  switch (state_) {
    case State::absent:
      return kNever;
    case State::up:
      if (config_.mode == KeepaliveMode::off) return kNever;
      if (config_.mode == KeepaliveMode::always) return last_echo_ + config_.interval;
      return std::max(last_life_, last_echo_) + config_.interval;
    case State::suspect:
    case State::down:
      return last_echo_ + config_.suspect_interval;
  }
  return kNever;
}

Timestamp Liveness::next_deadline() const noexcept {
  if (state_ == State::absent) return kNever;
  // While an echo awaits judgment no other echo is sent; judging comes first.
  return pending_id_ != 0 ? judge_at_ : next_echo_at();
}

Liveness::Actions Liveness::on_tick(Timestamp now) noexcept {
  Actions out;
  if (state_ == State::absent) return out;
  if (pending_id_ != 0 && now >= judge_at_) {
    loss_.record(true);
    pending_id_ = 0;
    judge_at_ = kNever;
    if (!life_since_echo_) {
      ++misses_;
      if (misses_ >= config_.down_after_misses) {
        transition(out, State::down, Reason::misses_exceeded, now);
      } else if (state_ == State::up) {
        transition(out, State::suspect, Reason::echo_unanswered, now);
      }
    }
    // With rx activity since the echo was sent the loss is just a lost echo:
    // on_rx_activity() already counted the traffic as life.
  }
  if (pending_id_ == 0 && now >= next_echo_at()) {
    const std::uint32_t id = next_id_;
    next_id_ = next_id_ == UINT32_MAX ? 1 : next_id_ + 1;
    ring_[id % kRing] = Sent{id, now};
    pending_id_ = id;
    judge_at_ = now + config_.reply_timeout;
    life_since_echo_ = false;
    last_echo_ = now;
    ++echoes_sent_;
    out.push(SendEcho{id});
  }
  return out;
}

std::string_view to_string(Liveness::State s) noexcept {
  switch (s) {
    case Liveness::State::absent:
      return "absent";
    case Liveness::State::up:
      return "up";
    case Liveness::State::suspect:
      return "suspect";
    case Liveness::State::down:
      return "down";
  }
  return "?";
}

std::string_view to_string(Liveness::Reason r) noexcept {
  switch (r) {
    case Liveness::Reason::interface_appeared:
      return "interface appeared";
    case Liveness::Reason::interface_gone:
      return "interface gone";
    case Liveness::Reason::echo_unanswered:
      return "echo unanswered";
    case Liveness::Reason::misses_exceeded:
      return "echoes unanswered and nothing received";
    case Liveness::Reason::echo_reply:
      return "echo reply";
    case Liveness::Reason::rx_activity:
      return "traffic received";
  }
  return "?";
}

std::string_view to_string(KeepaliveMode m) noexcept {
  switch (m) {
    case KeepaliveMode::idle:
      return "idle";
    case KeepaliveMode::always:
      return "always";
    case KeepaliveMode::off:
      return "off";
  }
  return "?";
}

}  // namespace tunshim::keepalive
