// Token bucket, table-driven like wireguard-go's ratelimiter test.
#include <boost/test/unit_test.hpp>

#include "keepalive/token_bucket.h"

namespace ka = tunshim::keepalive;

BOOST_AUTO_TEST_SUITE(token_bucket)

BOOST_AUTO_TEST_CASE(table) {
  // 10 tokens/s, burst 3: one token every 100 ms.
  struct Step {
    std::int64_t at_ms;
    bool allowed;
    const char* why;
  };
  const Step steps[] = {
      {0, true, "burst 1"},     {0, true, "burst 2"},       {0, true, "burst 3"},
      {0, false, "empty"},      {99, false, "99 ms: 0.99"}, {100, true, "100 ms: 1 token"},
      {100, false, "used"},     {350, true, "2.5 tokens"},  {350, true, "1.5 left"},
      {350, false, "0.5 left"}, {400, true, "0.5 + 0.5"},   {10'000, true, "refilled"},
      {10'000, true, "2"},      {10'000, true, "3"},        {10'000, false, "capped at burst"},
  };
  ka::TokenBucket b(10, 3, ka::Timestamp::from_ms(0));
  for (const auto& s : steps) {
    BOOST_TEST_CONTEXT(s.at_ms << " ms, " << s.why) {
      BOOST_TEST(b.allow(ka::Timestamp::from_ms(s.at_ms)) == s.allowed);
    }
  }
  BOOST_TEST(b.take_suppressed() == 5U);  // the five denied steps above
  BOOST_TEST(b.suppressed() == 0U);
}

BOOST_AUTO_TEST_CASE(long_run_rate) {
  // Asking every millisecond for an hour: exactly burst + rate * seconds get through.
  ka::TokenBucket b(5, 20, ka::Timestamp::from_ms(0));
  int allowed = 0;
  for (std::int64_t t = 0; t < 3'600'000; ++t)
    allowed += b.allow(ka::Timestamp::from_ms(t)) ? 1 : 0;
  BOOST_TEST(allowed == 20 + 5 * 3600 - 1);  // the token due at t = 3600 s is not asked for
}

BOOST_AUTO_TEST_CASE(edges) {
  ka::TokenBucket zero(100, 0, ka::Timestamp::from_ms(0));
  BOOST_TEST(!zero.allow(ka::Timestamp::from_ms(5000)));
  ka::TokenBucket no_refill(0, 2, ka::Timestamp::from_ms(0));
  BOOST_TEST(no_refill.allow(ka::Timestamp::from_ms(0)));
  BOOST_TEST(no_refill.allow(ka::Timestamp::from_ms(0)));
  BOOST_TEST(!no_refill.allow(ka::Timestamp::from_ms(1'000'000'000)));
  // Time going backwards adds nothing; a huge gap does not overflow.
  ka::TokenBucket b(1000, 1, ka::Timestamp::from_ms(1000));
  BOOST_TEST(b.allow(ka::Timestamp::from_ms(1000)));
  BOOST_TEST(!b.allow(ka::Timestamp::from_ms(10)));
  BOOST_TEST(b.available(ka::Timestamp::from_ms(INT64_MAX / 2)) == 1U);
}

BOOST_AUTO_TEST_SUITE_END()
