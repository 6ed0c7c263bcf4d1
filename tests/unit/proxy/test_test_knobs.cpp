// The test-only timer knob: only a plain integer 2..1000 is taken; anything else leaves
// production timers alone.
#include <boost/test/unit_test.hpp>
#include <cstdlib>

#include "proxy/test_knobs.h"

namespace px = tunshim::proxy;

BOOST_AUTO_TEST_SUITE(test_knobs)

BOOST_AUTO_TEST_CASE(parse_test_timers_accepts_only_plain_divisors) {
  BOOST_TEST(px::parse_test_timers("10").value_or(0) == 10);
  BOOST_TEST(px::parse_test_timers("2").value_or(0) == 2);
  BOOST_TEST(px::parse_test_timers("1000").value_or(0) == 1000);
  for (const char* bad :
       {"", "1", "0", "-5", "1001", "10x", " 10", "10 ", "0x10", "1e1", "ten"})
    BOOST_TEST(!px::parse_test_timers(bad).has_value(), "accepted \"" << bad << "\"");
}

// The unit tests run without the variable: the configs keep their production values.
BOOST_AUTO_TEST_CASE(unset_changes_nothing) {
  BOOST_REQUIRE(std::getenv(px::kTestTimersEnv) == nullptr);
  tunshim::keepalive::PmtuConfig p;
  tunshim::keepalive::BackoffConfig b;
  px::apply_test_timers(p);
  px::apply_test_timers(b);
  BOOST_TEST(p.confirm_interval.ms() == 30'000);
  BOOST_TEST(p.error_retry_interval.ms() == 5'000);
  BOOST_TEST(p.reprobe_interval.ms() == 600'000);
  BOOST_TEST(b.reset_after.ms() == 300'000);
}

BOOST_AUTO_TEST_SUITE_END()
