// Time types and the fixed-capacity action list.
#include <boost/test/unit_test.hpp>

#include "keepalive/action_list.h"
#include "keepalive/time.h"

namespace ka = tunshim::keepalive;

BOOST_AUTO_TEST_SUITE(time_and_actions)

BOOST_AUTO_TEST_CASE(arithmetic_and_never) {
  const auto t = ka::Timestamp::from_ms(1000);
  BOOST_TEST((t + ka::seconds(2)).ms() == 3000);
  BOOST_TEST((t - ka::milliseconds(1)).ms() == 999);
  BOOST_TEST((ka::Timestamp::from_ms(5000) - t).ms() == 4000);
  BOOST_TEST(ka::minutes(10).ms() == 600'000);
  BOOST_TEST((ka::seconds(3) * 2).ms() == 6000);
  BOOST_TEST((ka::seconds(3) / 4).ms() == 750);
  // kNever saturates: adding to it, or adding a huge span, stays "never".
  BOOST_TEST((ka::kNever + ka::seconds(1) == ka::kNever));
  BOOST_TEST((ka::Timestamp::from_ms(INT64_MAX - 5) + ka::seconds(1) == ka::kNever));
  BOOST_TEST((ka::earliest(ka::kNever, t) == t));
  BOOST_TEST((ka::earliest(t, t + ka::milliseconds(1)) == t));
  BOOST_TEST((t < ka::kNever));
}

BOOST_AUTO_TEST_CASE(action_list_capacity) {
  ka::ActionList<int, 2> a;
  BOOST_TEST(a.empty());
  a.push(1);
  a.push(2);
  BOOST_TEST(!a.overflowed());
  a.push(3);
  BOOST_TEST(a.overflowed());
  BOOST_TEST(a.size() == 2U);
  int sum = 0;
  for (int v : a) sum += v;
  BOOST_TEST(sum == 3);
}

BOOST_AUTO_TEST_SUITE_END()
