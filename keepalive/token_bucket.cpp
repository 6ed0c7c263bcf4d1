#include "keepalive/token_bucket.h"

#include <algorithm>

namespace tunshim::keepalive {

namespace {
constexpr std::int64_t kMilli = 1000;
}

TokenBucket::TokenBucket(std::uint32_t rate_per_second, std::uint32_t burst,
                         Timestamp now) noexcept
    : rate_(rate_per_second),
      cap_milli_(std::int64_t{burst} * kMilli),
      milli_(std::int64_t{burst} * kMilli),
      last_(now) {}

void TokenBucket::refill(Timestamp now) noexcept {
  if (now <= last_) return;
  const std::int64_t elapsed = (now - last_).ms();
  // Once the bucket would be full, the exact elapsed time no longer matters; cap it so
  // the product cannot overflow after a very long pause.
  const std::int64_t needed = rate_ > 0 ? (cap_milli_ - milli_) / rate_ + 1 : 0;
  milli_ = std::min(cap_milli_, milli_ + std::min(elapsed, needed) * rate_);
  last_ = now;
}

bool TokenBucket::allow(Timestamp now) noexcept {
  refill(now);
  if (milli_ >= kMilli) {
    milli_ -= kMilli;
    return true;
  }
  ++suppressed_;
  return false;
}

std::uint64_t TokenBucket::take_suppressed() noexcept {
  const std::uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

std::uint32_t TokenBucket::available(Timestamp now) noexcept {
  refill(now);
  return static_cast<std::uint32_t>(milli_ / kMilli);
}

}  // namespace tunshim::keepalive
