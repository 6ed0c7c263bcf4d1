// Hook backoff: the schedule, jitter bounds, the cap, reset after a long up, one run at a time.
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <random>

#include "keepalive/backoff.h"

namespace ka = tunshim::keepalive;
using ka::minutes;
using ka::seconds;

BOOST_AUTO_TEST_SUITE(backoff)

BOOST_AUTO_TEST_CASE(schedule_without_jitter) {
  const ka::BackoffConfig cfg;  // 5 s initial, 5 min cap
  const std::int64_t expect_s[] = {0, 5, 10, 20, 40, 80, 160, 300, 300, 300};
  for (std::uint32_t i = 0; i < 10; ++i)
    BOOST_TEST(ka::backoff_delay(cfg, i, 0.0).ms() == expect_s[i] * 1000);
  BOOST_TEST(ka::backoff_delay(cfg, 1'000'000, 0.0).ms() == 300'000);  // no overflow
}

BOOST_AUTO_TEST_CASE(jitter_bounds) {
  const ka::BackoffConfig cfg;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::uint32_t attempt = 1; attempt < 20; ++attempt) {
    const auto full = ka::backoff_delay(cfg, attempt, 0.0).ms();
    for (int i = 0; i < 200; ++i) {
      const auto d = ka::backoff_delay(cfg, attempt, u(rng)).ms();
      BOOST_REQUIRE_LE(d, full);
      BOOST_REQUIRE_GE(d, full - full / 4);
      BOOST_REQUIRE_LE(d, 300'000);
    }
  }
  // Extreme and invalid jitter values are clamped.
  BOOST_TEST(ka::backoff_delay(cfg, 2, 1.0).ms() == 7500);
  BOOST_TEST(ka::backoff_delay(cfg, 2, -3.0).ms() == 10'000);
  BOOST_TEST(ka::backoff_delay(cfg, 2, std::nan("")).ms() == 10'000);
  BOOST_TEST(ka::backoff_delay(cfg, 2, 0.5).ms() == 8750);
}

BOOST_AUTO_TEST_CASE(runs_while_down) {
  ka::HookBackoff b(ka::BackoffConfig{});
  auto t = ka::Timestamp::from_ms(0);
  b.on_tunnel_up(t);
  t = t + minutes(1);
  b.on_tunnel_down(t, 0.0);
  BOOST_TEST((b.next_deadline() == t));  // first run at once
  BOOST_TEST(b.on_tick(t));
  BOOST_TEST((b.phase() == ka::HookBackoff::Phase::running));
  // At most one run at a time: a second "down" while running schedules nothing.
  b.on_tunnel_down(t, 0.0);
  BOOST_TEST((b.next_deadline() == ka::kNever));
  BOOST_TEST(!b.on_tick(t + minutes(10)));
  // The hook ran 30 s and the tunnel is still down: runs at +5 s, +10 s, +20 s ... after each.
  std::int64_t expect = 5'000;
  for (int i = 0; i < 9; ++i) {
    t = t + seconds(30);
    b.on_hook_finished(t, 0.0);
    BOOST_TEST(b.next_deadline().ms() - t.ms() == expect);
    BOOST_TEST(!b.on_tick(b.next_deadline() - ka::Duration::from_ms(1)));
    t = b.next_deadline();
    BOOST_TEST(b.on_tick(t));
    expect = std::min<std::int64_t>(expect * 2, 300'000);
  }
  BOOST_TEST(b.attempts() == 10U);
}

BOOST_AUTO_TEST_CASE(up_cancels_and_flap_keeps_growing) {
  ka::HookBackoff b(ka::BackoffConfig{});
  auto t = ka::Timestamp::from_ms(0);
  b.on_tunnel_down(t, 0.0);
  BOOST_TEST(b.on_tick(t));
  b.on_hook_finished(t + seconds(10), 0.0);
  BOOST_TEST((b.phase() == ka::HookBackoff::Phase::waiting));
  // Tunnel comes back before the next run: the run is cancelled.
  b.on_tunnel_up(t + seconds(12));
  BOOST_TEST((b.phase() == ka::HookBackoff::Phase::idle));
  BOOST_TEST((b.next_deadline() == ka::kNever));
  // Down again after a 1-minute up (a flap): the backoff keeps growing (attempt 1 -> 5 s).
  t = t + seconds(72);
  b.on_tunnel_down(t, 0.0);
  BOOST_TEST(b.next_deadline().ms() - t.ms() == 5000);
  t = b.next_deadline();
  BOOST_TEST(b.on_tick(t));
  b.on_hook_finished(t + seconds(1), 0.0);
  BOOST_TEST(b.next_deadline().ms() - (t + seconds(1)).ms() == 10'000);
}

BOOST_AUTO_TEST_CASE(long_up_resets) {
  ka::HookBackoff b(ka::BackoffConfig{});
  auto t = ka::Timestamp::from_ms(0);
  for (int i = 0; i < 4; ++i) {
    b.on_tunnel_down(t, 0.0);
    t = b.next_deadline();
    BOOST_TEST(b.on_tick(t));
    t = t + seconds(1);
    b.on_hook_finished(t, 0.0);
  }
  BOOST_TEST(b.attempts() == 4U);
  b.on_tunnel_up(t);
  t = t + minutes(5);  // up for reset_after
  b.on_tunnel_down(t, 0.0);
  BOOST_TEST((b.next_deadline() == t));
  BOOST_TEST(b.on_tick(t));
  BOOST_TEST(b.attempts() == 1U);
}

BOOST_AUTO_TEST_CASE(finished_without_run_is_ignored) {
  ka::HookBackoff b(ka::BackoffConfig{});
  b.on_hook_finished(ka::Timestamp::from_ms(5), 0.0);
  BOOST_TEST((b.phase() == ka::HookBackoff::Phase::idle));
  BOOST_TEST((b.next_deadline() == ka::kNever));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(backoff_reconfigure)

// A reload keeps the attempt count: the next run after a reload is as late as without it.
BOOST_AUTO_TEST_CASE(reload_keeps_attempts_and_cap) {
  using namespace tunshim::keepalive;
  BackoffConfig c;
  c.initial = seconds(1);
  c.max = seconds(60);
  c.jitter = 0;
  HookBackoff b(c);
  Timestamp t = Timestamp::from_ms(0);
  b.on_tunnel_down(t, 0);
  for (int i = 0; i < 4; ++i) {  // runs at 0, 1, 2, 4 s after each finish
    BOOST_REQUIRE(b.on_tick(b.next_deadline()));
    t = b.next_deadline() == kNever ? t : b.next_deadline();
    b.on_hook_finished(t, 0);
  }
  BOOST_TEST(b.attempts() == 4u);
  const Timestamp before = b.next_deadline();
  b.reconfigure(c, t);  // the same settings, reloaded
  BOOST_TEST(b.attempts() == 4u);
  BOOST_TEST((b.phase() == HookBackoff::Phase::waiting));
  BOOST_TEST((b.next_deadline() == before));
  // A smaller cap brings the scheduled run forward to at most now + the new cap.
  c.max = seconds(2);
  b.reconfigure(c, t);
  BOOST_TEST((b.next_deadline() - t).ms() <= 2000);
  BOOST_TEST(b.attempts() == 4u);
}

BOOST_AUTO_TEST_SUITE_END()
