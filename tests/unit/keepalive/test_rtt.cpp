// RFC 6298 estimator against hand-computed values; the loss window.
#include <boost/test/unit_test.hpp>

#include "keepalive/rtt.h"

namespace ka = tunshim::keepalive;
using ka::milliseconds;
using ka::seconds;

BOOST_AUTO_TEST_SUITE(rtt)

BOOST_AUTO_TEST_CASE(rfc6298_by_hand) {
  ka::RttEstimator e;
  BOOST_TEST(!e.has_sample());
  // No sample: the initial RTO, within bounds.
  BOOST_TEST(e.rto(milliseconds(200), seconds(60), seconds(1)).ms() == 1000);

  e.on_sample(milliseconds(100));
  // First: SRTT = R = 100, RTTVAR = R/2 = 50, RTO = 100 + 4*50 = 300.
  BOOST_TEST(e.srtt_us() == 100'000);
  BOOST_TEST(e.rttvar_us() == 50'000);
  BOOST_TEST(e.rto(milliseconds(0), seconds(60), seconds(1)).ms() == 300);

  e.on_sample(milliseconds(200));
  // RTTVAR = 3/4*50 + 1/4*|100-200| = 37.5 + 25 = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5.
  BOOST_TEST(e.rttvar_us() == 62'500);
  BOOST_TEST(e.srtt_us() == 112'500);
  // RTO = 112.5 + 250 = 362.5 -> 363 (rounded up to the clock).
  BOOST_TEST(e.rto(milliseconds(0), seconds(60), seconds(1)).ms() == 363);

  e.on_sample(milliseconds(80));
  // RTTVAR = 3/4*62.5 + 1/4*|112.5-80| = 46.875 + 8.125 = 55; SRTT = 7/8*112.5 + 10 = 108.4375.
  BOOST_TEST(e.rttvar_us() == 55'000);
  BOOST_TEST(e.srtt_us() == 108'437);  // 108437.5 truncated
  BOOST_TEST(e.srtt().ms() == 109);
  BOOST_TEST(e.min().ms() == 80);
  BOOST_TEST(e.max().ms() == 200);
  BOOST_TEST(e.samples() == 3U);
  // Floor and ceiling.
  BOOST_TEST(e.rto(seconds(1), seconds(60), seconds(1)).ms() == 1000);
  BOOST_TEST(e.rto(milliseconds(0), milliseconds(250), seconds(1)).ms() == 250);
}

BOOST_AUTO_TEST_CASE(granularity_term) {
  // A perfectly steady 1 ms RTT: RTTVAR decays to ~0, and G = 1 ms keeps RTO above SRTT.
  ka::RttEstimator e;
  for (int i = 0; i < 100; ++i) e.on_sample(milliseconds(1));
  BOOST_TEST(e.srtt_us() == 1000);
  BOOST_TEST(e.rttvar_us() == 0);
  BOOST_TEST(e.rto(milliseconds(0), seconds(60), seconds(1)).ms() == 2);
}

BOOST_AUTO_TEST_CASE(converges_to_new_level) {
  ka::RttEstimator e;
  e.on_sample(milliseconds(10));
  for (int i = 0; i < 200; ++i) e.on_sample(milliseconds(50));
  BOOST_TEST(e.srtt().ms() == 50);
  BOOST_TEST(e.min().ms() == 10);
  BOOST_TEST(e.max().ms() == 50);
  e.on_sample(milliseconds(-5));  // clock misuse: treated as 0, not negative
  BOOST_TEST(e.min().ms() == 0);
}

BOOST_AUTO_TEST_CASE(loss_window) {
  ka::LossWindow w;
  BOOST_TEST(w.loss_permille() == 0);
  for (int i = 0; i < 10; ++i) w.record(i % 5 == 0);  // 2 of 10 lost
  BOOST_TEST(w.total() == 10);
  BOOST_TEST(w.lost() == 2);
  BOOST_TEST(w.loss_permille() == 200);
  // Slides: 64 answered push the losses out.
  for (int i = 0; i < 64; ++i) w.record(false);
  BOOST_TEST(w.total() == 64);
  BOOST_TEST(w.lost() == 0);
  for (int i = 0; i < 64; ++i) w.record(true);
  BOOST_TEST(w.loss_permille() == 1000);
  w.clear();
  BOOST_TEST(w.total() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
