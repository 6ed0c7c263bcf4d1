// Monotonic time for the pure state machines: whole milliseconds in an int64. The machines
// never read a clock; the caller passes `now` (proxy/ converts uv_now()), so tests can run
// hours of simulated time in milliseconds of real time.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>

namespace tunshim::keepalive {

// A span of time in milliseconds. Arithmetic is plain int64 (no saturation): durations
// in this code are configuration values and measured RTTs, far from the int64 range.
class Duration {
 public:
  constexpr Duration() noexcept = default;
  // A duration of `ms` milliseconds.
  static constexpr Duration from_ms(std::int64_t ms) noexcept { return Duration(ms); }
  // The length in milliseconds.
  constexpr std::int64_t ms() const noexcept { return ms_; }

  friend constexpr auto operator<=>(Duration, Duration) noexcept = default;
  friend constexpr Duration operator+(Duration a, Duration b) noexcept {
    return Duration(a.ms_ + b.ms_);
  }
  friend constexpr Duration operator-(Duration a, Duration b) noexcept {
    return Duration(a.ms_ - b.ms_);
  }
  friend constexpr Duration operator*(Duration a, std::int64_t k) noexcept {
    return Duration(a.ms_ * k);
  }
  friend constexpr Duration operator*(std::int64_t k, Duration a) noexcept {
    return Duration(a.ms_ * k);
  }
  friend constexpr Duration operator/(Duration a, std::int64_t k) noexcept {
    return Duration(a.ms_ / k);
  }

 private:
  constexpr explicit Duration(std::int64_t ms) noexcept : ms_(ms) {}
  std::int64_t ms_ = 0;
};

constexpr Duration milliseconds(std::int64_t v) noexcept { return Duration::from_ms(v); }
constexpr Duration seconds(std::int64_t v) noexcept { return Duration::from_ms(v * 1000); }
constexpr Duration minutes(std::int64_t v) noexcept { return Duration::from_ms(v * 60'000); }

// A point on the caller's monotonic clock, in milliseconds since an arbitrary epoch.
// The largest value is the kNever sentinel ("no deadline"); adding to it stays kNever.
class Timestamp {
 public:
  constexpr Timestamp() noexcept = default;
  // The instant `ms` milliseconds after the epoch.
  static constexpr Timestamp from_ms(std::int64_t ms) noexcept { return Timestamp(ms); }
  // Milliseconds since the epoch.
  constexpr std::int64_t ms() const noexcept { return ms_; }

  friend constexpr auto operator<=>(Timestamp, Timestamp) noexcept = default;
  // Saturates at the sentinel, so `kNever + d` and deadlines far away stay "never".
  friend constexpr Timestamp operator+(Timestamp t, Duration d) noexcept {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    if (t.ms_ == kMax || (d.ms() > 0 && t.ms_ > kMax - d.ms())) return Timestamp(kMax);
    return Timestamp(t.ms_ + d.ms());
  }
  friend constexpr Timestamp operator-(Timestamp t, Duration d) noexcept {
    return Timestamp(t.ms_ - d.ms());
  }
  friend constexpr Duration operator-(Timestamp a, Timestamp b) noexcept {
    return Duration::from_ms(a.ms_ - b.ms_);
  }

 private:
  constexpr explicit Timestamp(std::int64_t ms) noexcept : ms_(ms) {}
  std::int64_t ms_ = 0;
};

// "No deadline": what next_deadline() returns when a machine waits for nothing.
inline constexpr Timestamp kNever =
    Timestamp::from_ms(std::numeric_limits<std::int64_t>::max());

// The earlier of two deadlines (kNever loses to everything).
constexpr Timestamp earliest(Timestamp a, Timestamp b) noexcept { return a < b ? a : b; }

}  // namespace tunshim::keepalive
