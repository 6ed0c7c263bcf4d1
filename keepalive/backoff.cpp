#include "keepalive/backoff.h"

#include <algorithm>
#include <cmath>

namespace tunshim::keepalive {

Duration backoff_delay(const BackoffConfig& config, std::uint32_t attempt, double u) noexcept {
  if (attempt == 0) return Duration{};
  // Doubling from `initial` reaches any sane cap within 40 steps; stop there so the
  // shift cannot overflow.
  const std::uint32_t shift = std::min<std::uint32_t>(attempt - 1, 40);
  const std::int64_t initial = std::max<std::int64_t>(config.initial.ms(), 0);
  const std::int64_t cap = std::max<std::int64_t>(config.max.ms(), 0);
  std::int64_t d = cap;
  if (initial == 0) {
    d = 0;
  } else if (initial <= (cap >> shift)) {
    d = initial << shift;
  }
  if (!(u >= 0.0)) u = 0.0;  // also catches NaN
  if (u >= 1.0) u = std::nextafter(1.0, 0.0);
  const double j = std::clamp(config.jitter, 0.0, 1.0);
  const auto cut = static_cast<std::int64_t>(std::llround(static_cast<double>(d) * j * u));
  return milliseconds(std::clamp<std::int64_t>(d - cut, 0, d));
}

void HookBackoff::schedule(Timestamp now, double u) noexcept {
  phase_ = Phase::waiting;
  run_at_ = now + backoff_delay(config_, attempts_, u);
}

void HookBackoff::on_tunnel_down(Timestamp now, double u) noexcept {
  if (up_since_ != kNever && now - up_since_ >= config_.reset_after) attempts_ = 0;
  up_since_ = kNever;
  down_ = true;
  if (phase_ == Phase::idle) schedule(now, u);
}

void HookBackoff::on_tunnel_up(Timestamp now) noexcept {
  down_ = false;
  up_since_ = now;
  if (phase_ == Phase::waiting) {
    phase_ = Phase::idle;
    run_at_ = kNever;
  }
}

bool HookBackoff::on_tick(Timestamp now) noexcept {
  if (phase_ != Phase::waiting || now < run_at_) return false;
  phase_ = Phase::running;
  run_at_ = kNever;
  ++attempts_;
  return true;
}

void HookBackoff::on_hook_finished(Timestamp now, double u) noexcept {
  if (phase_ != Phase::running) return;
  phase_ = Phase::idle;
  if (down_) schedule(now, u);
}

}  // namespace tunshim::keepalive

namespace tunshim::keepalive {

void HookBackoff::reconfigure(const BackoffConfig& config, Timestamp now) noexcept {
  config_ = config;
  if (phase_ == Phase::waiting) {
    const Timestamp latest = now + backoff_delay(config_, attempts_, 0.0);
    if (run_at_ > latest) run_at_ = latest;
  }
}

}  // namespace tunshim::keepalive
