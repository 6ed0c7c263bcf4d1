// Test-only knobs, read from the environment in this one place and nowhere else.
//
// TUNSHIM_TEST_TIMERS=N (an integer 2..1000) divides the long production timer floors by
// N, so the end-to-end tests can watch a re-confirmation or an upward re-search in seconds
// instead of minutes:
//   - the path-MTU search's re-confirmation (30 s) and its retry while in ERROR (5 s),
//   - reprobe_interval (the configured value, whose floor is 1 minute),
//   - the on_down backoff's reset after a long up (5 minutes).
// Nothing else changes: the shorter timers (probe timeouts, keepalive, hook timeouts,
// backoff delays) are the ones the tests measure. Unset (or empty) it does nothing; set,
// the daemon says so as a warning at start. Never set it in production.
#pragma once

#include <optional>
#include <string_view>

#include "keepalive/backoff.h"
#include "keepalive/pmtu_search.h"
#include "proxy/config.h"

namespace tunshim::proxy {

inline constexpr const char* kTestTimersEnv = "TUNSHIM_TEST_TIMERS";

// The divisor in TUNSHIM_TEST_TIMERS's value: nullopt for anything but an integer in
// 2..1000 (an unusable value is ignored, and said so, rather than guessed at).
std::optional<int> parse_test_timers(std::string_view value) noexcept;

// The divisor in effect: 1 unless TUNSHIM_TEST_TIMERS holds a valid one. Reads the
// environment once; the first call logs the knob (a warning when set).
int test_timer_divisor();

// Divide the timers listed above by test_timer_divisor() (never below 1 ms). Called where
// proxy/ builds the machines' configs; a no-op when the knob is unset.
void apply_test_timers(keepalive::PmtuConfig& config);
void apply_test_timers(keepalive::BackoffConfig& config);

// TUNSHIM_TEST_DATAPATH=auto|bpf|queue: the data path of a daemon whose config file does
// not set `datapath`, so that the end-to-end suite runs each script on either path without
// a second copy of its config (tests/e2e/lib.sh sets it from TUNSHIM_DATAPATH, default
// queue). nullopt when unset or unusable (said so); set, the daemon warns at start.
inline constexpr const char* kTestDatapathEnv = "TUNSHIM_TEST_DATAPATH";
std::optional<Datapath> test_datapath();

// TUNSHIM_TEST_RTNL_RCVBUF=BYTES (65536..4194304): the receive buffer of the daemon's
// rtnetlink subscription instead of 4 MB, so that a test can make the kernel drop
// notifications (an overrun, then a re-read of every interface) with a few hundred
// interface changes instead of thousands. nullopt when unset or unusable (said so).
inline constexpr const char* kTestRtnlRcvbufEnv = "TUNSHIM_TEST_RTNL_RCVBUF";
std::optional<int> test_rtnl_rcvbuf();

// TUNSHIM_TEST_SYMPTOMS=off: the eBPF programs count no black-hole symptoms (so they nudge
// the daemon never, and nothing triggers), so that bench/symptoms_bench.sh can measure what
// they cost against the same daemon without. Anything else: counted (the default). Read once;
// set to off, the daemon warns at start.
inline constexpr const char* kTestSymptomsEnv = "TUNSHIM_TEST_SYMPTOMS";
bool test_symptoms_off();

}  // namespace tunshim::proxy
