#include "keepalive/rtt.h"

#include <algorithm>
#include <bit>

namespace tunshim::keepalive {

void RttEstimator::on_sample(Duration rtt) noexcept {
  const Duration r = std::max(rtt, Duration{});
  const std::int64_t r_us = r.ms() * 1000;
  if (samples_ == 0) {
    srtt_us_ = r_us;
    rttvar_us_ = r_us / 2;
    min_ = r;
    max_ = r;
  } else {
    const std::int64_t err = srtt_us_ > r_us ? srtt_us_ - r_us : r_us - srtt_us_;
    // RTTVAR first, with the old SRTT, as RFC 6298 2.3 orders it.
    rttvar_us_ = (3 * rttvar_us_ + err) / 4;
    srtt_us_ = (7 * srtt_us_ + r_us) / 8;
    min_ = std::min(min_, r);
    max_ = std::max(max_, r);
  }
  ++samples_;
}

Duration RttEstimator::srtt() const noexcept { return milliseconds((srtt_us_ + 999) / 1000); }

Duration RttEstimator::rto(Duration floor, Duration ceiling, Duration initial) const noexcept {
  Duration v = initial;
  if (samples_ > 0) {
    constexpr std::int64_t kGranularityUs = 1000;  // G: our clock ticks in milliseconds
    const std::int64_t us = srtt_us_ + std::max(kGranularityUs, 4 * rttvar_us_);
    v = milliseconds((us + 999) / 1000);
  }
  return std::min(std::max(v, floor), ceiling);
}

void LossWindow::record(bool lost) noexcept {
  bits_ = (bits_ << 1) | (lost ? 1U : 0U);
  total_ = std::min(total_ + 1, kWindow);
}

int LossWindow::lost() const noexcept {
  const std::uint64_t mask =
      total_ >= kWindow ? ~std::uint64_t{0} : (std::uint64_t{1} << total_) - 1;
  return std::popcount(bits_ & mask);
}

int LossWindow::loss_permille() const noexcept {
  return total_ == 0 ? 0 : lost() * 1000 / total_;
}

}  // namespace tunshim::keepalive
