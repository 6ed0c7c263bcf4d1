#include "keepalive/symptom_burst.h"

#include <algorithm>

namespace tunshim::keepalive {

SymptomBurst::SymptomBurst(const SymptomBurstConfig& config) noexcept : config_(config) {
  config_.threshold = std::max<std::uint32_t>(config_.threshold, 1);
  config_.window = std::max(config_.window, milliseconds(1));
  config_.cooldown = std::max(config_.cooldown, milliseconds(1));
}

void SymptomBurst::expire(Timestamp now) noexcept {
  while (size_ > 0 && ring_[head_].at + config_.window <= now) {
    sum_ -= ring_[head_].n;
    ring_[head_] = Bucket{};
    head_ = (head_ + 1) % kBuckets;
    --size_;
  }
}

void SymptomBurst::reset() noexcept {
  ring_ = {};
  head_ = size_ = 0;
  sum_ = 0;
}

bool SymptomBurst::on_symptoms(std::uint64_t n, Timestamp now) noexcept {
  now = std::max(now, last_);
  last_ = now;
  stats_.symptoms += n;
  expire(now);
  if (n == 0) return false;
  if (size_ == kBuckets) {
    Bucket& newest = ring_[(head_ + size_ - 1) % kBuckets];
    newest.at = now;
    newest.n += n;
  } else {
    ring_[(head_ + size_) % kBuckets] = Bucket{now, n};
    ++size_;
  }
  sum_ += n;
  if (sum_ < config_.threshold) return false;
  if (fired_ && now < quiet_until_) {
    // Held back: the window keeps counting, so the first poll after the cooldown decides
    // on what is recent, not on what piled up during it.
    ++stats_.suppressed;
    return false;
  }
  fired_ = true;
  quiet_until_ = now + config_.cooldown;
  ++stats_.bursts;
  reset();
  return true;
}

}  // namespace tunshim::keepalive
