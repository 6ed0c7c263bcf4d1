// Token-bucket rate limiter for ICMP errors and log lines: time in, allow/deny out.
#pragma once

#include <cstdint>

#include "keepalive/time.h"

namespace tunshim::keepalive {

// Holds up to `burst` tokens and gains `rate_per_second` tokens per second. Kept in
// millitokens so a refill of rate tokens/s over whole milliseconds is exact integer
// arithmetic: one millisecond adds exactly rate_per_second millitokens.
class TokenBucket {
 public:
  // A bucket that starts full. rate_per_second 0 means nothing beyond the initial burst;
  // burst 0 means every call is denied.
  TokenBucket(std::uint32_t rate_per_second, std::uint32_t burst, Timestamp now) noexcept;

  // Takes one token if there is one. Returns whether the event may happen; a denied
  // event is counted in suppressed() (so a log line can say "N suppressed"). A `now`
  // earlier than the previous call adds nothing (the clock is monotonic; this only
  // guards against misuse).
  bool allow(Timestamp now) noexcept;

  // Events denied since the last take_suppressed(); returns that count and resets it.
  std::uint64_t take_suppressed() noexcept;
  std::uint64_t suppressed() const noexcept { return suppressed_; }
  // Whole tokens available at `now` (refilling first).
  std::uint32_t available(Timestamp now) noexcept;

 private:
  void refill(Timestamp now) noexcept;

  std::int64_t rate_;       // millitokens per millisecond == tokens per second
  std::int64_t cap_milli_;  // burst * 1000
  std::int64_t milli_;      // current millitokens
  Timestamp last_;
  std::uint64_t suppressed_ = 0;
};

}  // namespace tunshim::keepalive
