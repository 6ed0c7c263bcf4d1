// Burst detection for passive black-hole symptoms, sans-I/O: the daemon counts symptoms
// on a tunnel's data path (full-size TCP retransmissions, ICMP frag-needed / packet-too-big
// arriving; proxy/tunnel.cpp) and passes each poll's new ones here with the time. A burst
// (`threshold` symptoms within `window`) says "re-search the path MTU now"; afterwards
// nothing fires for `cooldown`, so a path that keeps showing symptoms (a host that never
// learns, ordinary congestion loss) costs one re-check per cooldown and cannot loop.
//
// The caller feeds symptoms only while a re-check could help (the search is complete);
// reset() forgets what was counted when that stops being so.
#pragma once

#include <array>
#include <cstdint>

#include "keepalive/time.h"

namespace tunshim::keepalive {

// Implementation constants (docs/DOCTOR.md, "In the daemon"). A segment lost in a black
// hole is sent again when its RTO expires, and again after each doubled RTO (about 0.2 s,
// 0.6 s, 1.4 s … after the loss on a short path; a tail-loss probe may come first): one
// stalled connection makes two symptoms within about 0.6 s, three only after about 1.4 s.
// Two, so the re-search can start within 2 s of the loss. Ordinary loss recovery makes
// such pairs too on a busy tunnel; the cooldown is the re-confirmation interval, so a false
// alarm costs at most what the periodic re-confirmation costs anyway, one probe of the
// current size per 30 s.
struct SymptomBurstConfig {
  std::uint32_t threshold = 2;
  Duration window = seconds(2);
  Duration cooldown = seconds(30);
};

class SymptomBurst {
 public:
  struct Stats {
    std::uint64_t symptoms = 0;    // every symptom passed in
    std::uint64_t bursts = 0;      // on_symptoms() returned true
    std::uint64_t suppressed = 0;  // calls at or above the threshold within the cooldown
  };

  // A threshold of 0 is raised to 1; window and cooldown to at least 1 ms.
  explicit SymptomBurst(const SymptomBurstConfig& config = {}) noexcept;

  // `n` new symptoms seen up to `now` (0 is fine: it only ages the window). True when they
  // complete a burst outside the cooldown; the window is then emptied. A `now` earlier than
  // the previous call is taken as the previous one.
  bool on_symptoms(std::uint64_t n, Timestamp now) noexcept;
  // Forget the symptoms in the window (the cooldown stays).
  void reset() noexcept;

  // Symptoms in the window as of the last call.
  std::uint64_t in_window() const noexcept { return sum_; }
  // When the cooldown of the last burst ends (the epoch before the first burst).
  Timestamp quiet_until() const noexcept { return quiet_until_; }
  const Stats& stats() const noexcept { return stats_; }

 private:
  struct Bucket {
    Timestamp at{};
    std::uint64_t n = 0;
  };
  // Polls arrive a few times a second; more calls within the window than this fold into
  // the newest bucket (its time then is the newest call's: a bucket expires late, never
  // early).
  static constexpr std::size_t kBuckets = 32;

  void expire(Timestamp now) noexcept;

  SymptomBurstConfig config_;
  std::array<Bucket, kBuckets> ring_{};
  std::size_t head_ = 0;  // oldest bucket
  std::size_t size_ = 0;
  std::uint64_t sum_ = 0;
  Timestamp last_{};
  bool fired_ = false;
  Timestamp quiet_until_{};
  Stats stats_;
};

}  // namespace tunshim::keepalive
