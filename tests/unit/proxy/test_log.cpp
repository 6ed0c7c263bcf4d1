// LogLimiter: one line per second from the loop's time, and the count of the lines it held
// back reported with the next one.
#include <boost/test/unit_test.hpp>

#include "proxy/log.h"

using tunshim::proxy::LogLimiter;

BOOST_AUTO_TEST_SUITE(log_limiter)

BOOST_AUTO_TEST_CASE(one_per_second_then_the_suppressed_count) {
  LogLimiter lim;  // 1 per second, burst 1
  std::uint64_t n = 99;
  BOOST_TEST(lim.allow(5000, n));
  BOOST_TEST(n == 0u);
  for (std::uint64_t t = 5000; t < 6000; t += 100) BOOST_TEST(!lim.allow(t, n));
  BOOST_TEST(lim.allow(6000, n));
  BOOST_TEST(n == 10u);  // the ten denied since the previous line
  BOOST_TEST(!lim.allow(6001, n));
  BOOST_TEST(lim.allow(9000, n));
  BOOST_TEST(n == 1u);
}

BOOST_AUTO_TEST_CASE(time_going_backwards_adds_nothing) {
  LogLimiter lim;
  std::uint64_t n = 0;
  BOOST_TEST(lim.allow(10'000, n));
  BOOST_TEST(!lim.allow(1'000, n));
  BOOST_TEST(!lim.allow(10'500, n));
  BOOST_TEST(lim.allow(11'000, n));
  BOOST_TEST(n == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
