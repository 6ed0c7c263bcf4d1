// Round-trip time estimation (RFC 6298 SRTT/RTTVAR) and a sliding-window loss estimate.
// Fed by the machines that own probes (PmtuSearch, Liveness); read by proxy/ for stats.
#pragma once

#include <cstdint>

#include "keepalive/time.h"

namespace tunshim::keepalive {

// RFC 6298 section 2 estimator, kept in microseconds so the 1/8 and 1/4 gains do not
// vanish in integer arithmetic on ~1 ms tunnels. Samples come from replies to uniquely
// numbered probes, so every sample is unambiguous (Karn's problem does not arise).
class RttEstimator {
 public:
  // Adds one measured round trip (negative samples are treated as 0).
  // First sample R: SRTT = R, RTTVAR = R/2. Later: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|,
  // then SRTT = 7/8 SRTT + 1/8 R (RFC 6298 2.2 and 2.3, alpha = 1/8, beta = 1/4).
  void on_sample(Duration rtt) noexcept;

  // True once at least one sample was taken.
  bool has_sample() const noexcept { return samples_ > 0; }
  std::uint64_t samples() const noexcept { return samples_; }

  // Smoothed RTT and its variation in microseconds (0 before the first sample).
  std::int64_t srtt_us() const noexcept { return srtt_us_; }
  std::int64_t rttvar_us() const noexcept { return rttvar_us_; }
  // Smallest and largest sample seen, in milliseconds (0 before the first sample).
  Duration min() const noexcept { return min_; }
  Duration max() const noexcept { return max_; }
  // Smoothed RTT rounded up to whole milliseconds.
  Duration srtt() const noexcept;

  // RFC 6298 2.2/2.3 retransmission timeout, SRTT + max(G, 4 RTTVAR) with G = 1 ms, rounded
  // up to a millisecond and held within [floor, ceiling]. Before any sample: `initial`
  // (RFC 6298 2.1 suggests 1 s), also held within the bounds.
  Duration rto(Duration floor, Duration ceiling, Duration initial) const noexcept;

 private:
  std::int64_t srtt_us_ = 0;
  std::int64_t rttvar_us_ = 0;
  Duration min_{};
  Duration max_{};
  std::uint64_t samples_ = 0;
};

// Loss over the last up to 64 probe outcomes (one bit each). A probe is recorded once,
// when it is answered or when its owner gives up waiting for it.
class LossWindow {
 public:
  static constexpr int kWindow = 64;

  // Records the outcome of one probe: `lost` when it went unanswered.
  void record(bool lost) noexcept;
  // Outcomes held (at most kWindow) and how many of them were losses.
  int total() const noexcept { return total_; }
  int lost() const noexcept;
  // lost() / total() in per mille (0 when empty), integer so callers need no floats.
  int loss_permille() const noexcept;
  // Forgets everything (e.g. when the interface is replaced by a new one).
  void clear() noexcept {
    bits_ = 0;
    total_ = 0;
  }

 private:
  std::uint64_t bits_ = 0;  // bit i set: the i-th most recent outcome was a loss
  int total_ = 0;
};

}  // namespace tunshim::keepalive
