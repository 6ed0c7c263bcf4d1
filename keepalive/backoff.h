// When to run a tunnel's on_down hook: at once on the first failure, then with capped
// exponential backoff while the tunnel stays down or keeps flapping; never two runs of the
// hook at the same time. Jitter is an argument (a uniform [0,1) value from the caller).
#pragma once

#include <cstdint>

#include "keepalive/time.h"

namespace tunshim::keepalive {

struct BackoffConfig {
  // Delay before the second run; each further run doubles it. 5 s: long enough for a VPN
  // client to finish one connect attempt, short enough that an office barely notices.
  Duration initial = seconds(5);
  // Cap on the delay (the config's backoff_max, default 5 min).
  Duration max = minutes(5);
  // Fraction of the delay that jitter may take away, in [0, 1]. Jitter only shortens, so
  // a delay never exceeds the cap; 0.25 spreads tunnels that fail together.
  double jitter = 0.25;
  // A tunnel that stayed up this long before going down starts again from an immediate
  // run; a shorter up (a flap) keeps the backoff growing.
  Duration reset_after = minutes(5);
};

// Delay before run number `attempt` (0-based, counted since the last reset): 0 for
// attempt 0, else d = min(max, initial * 2^(attempt-1)) shortened by jitter:
// d - d * jitter * u, rounded to the millisecond, so it lies in [d * (1 - jitter), d].
// `u` outside [0, 1) and a `jitter` outside [0, 1] are clamped into range.
Duration backoff_delay(const BackoffConfig& config, std::uint32_t attempt, double u) noexcept;

class HookBackoff {
 public:
  enum class Phase : std::uint8_t {
    idle,     // nothing scheduled, no hook running
    waiting,  // a run is scheduled at next_deadline()
    running,  // the hook runs; on_hook_finished() ends it
  };

  // Starts idle, tunnel not down, no runs counted.
  explicit HookBackoff(const BackoffConfig& config) noexcept : config_(config) {}

  // New settings (a reload): attempts, phase and a scheduled run are kept, so a reload
  // never restarts the backoff at attempt 1 nor defeats its cap; a scheduled run that the
  // new cap makes later than allowed is brought forward to now + the capped delay.
  void reconfigure(const BackoffConfig& config, Timestamp now) noexcept;
  const BackoffConfig& config() const noexcept { return config_; }

  // Call when liveness declares the tunnel down. Schedules a run (unless one is already
  // scheduled or running: at most one run at a time), after backoff_delay(attempts(), u).
  void on_tunnel_down(Timestamp now, double u) noexcept;
  // Call when liveness declares the tunnel up. Cancels a scheduled run; a running hook is
  // left to finish (the daemon owns its timeout).
  void on_tunnel_up(Timestamp now) noexcept;
  // Call at or after next_deadline(). Returns true when the hook must be started now;
  // the phase is then `running` until on_hook_finished().
  bool on_tick(Timestamp now) noexcept;
  // Call when the hook's process has exited or was killed on timeout. If the tunnel is
  // still down, the next run is scheduled with the grown delay.
  void on_hook_finished(Timestamp now, double u) noexcept;

  // When on_tick() must be called next; kNever unless a run is scheduled.
  Timestamp next_deadline() const noexcept {
    return phase_ == Phase::waiting ? run_at_ : kNever;
  }
  Phase phase() const noexcept { return phase_; }
  // Runs started since the last reset.
  std::uint32_t attempts() const noexcept { return attempts_; }
  bool tunnel_down() const noexcept { return down_; }

 private:
  void schedule(Timestamp now, double u) noexcept;

  BackoffConfig config_;
  Phase phase_ = Phase::idle;
  Timestamp run_at_ = kNever;
  Timestamp up_since_ = kNever;  // kNever: not up (or never seen up)
  std::uint32_t attempts_ = 0;
  bool down_ = false;
};

}  // namespace tunshim::keepalive
