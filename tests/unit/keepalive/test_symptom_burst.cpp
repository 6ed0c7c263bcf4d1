// Symptom bursts on simulated time: threshold within the window, expiry, the cooldown,
// folding of many polls, and the rate of re-checks under symptoms that never stop.
#include <boost/test/unit_test.hpp>

#include "keepalive/symptom_burst.h"

namespace ka = tunshim::keepalive;
using ka::milliseconds;
using ka::seconds;

namespace {
ka::Timestamp at(std::int64_t ms) { return ka::Timestamp::from_ms(ms); }
}  // namespace

BOOST_AUTO_TEST_SUITE(symptom_burst)

BOOST_AUTO_TEST_CASE(table) {
  // threshold 3, window 2 s, cooldown 30 s.
  struct Step {
    std::int64_t at_ms;
    std::uint64_t n;
    bool fires;
    const char* why;
  };
  const Step steps[] = {
      {0, 1, false, "1 in window"},
      {500, 1, false, "2 in window"},
      {2000, 1, false, "the first expired at exactly 2 s: 2 in window"},
      {2400, 1, true, "3 within 2 s: a burst"},
      {2500, 5, false, "cooldown"},
      {20'000, 0, false, "nothing new"},
      {32'300, 1, false, "cooldown over, but the old ones expired: 1"},
      {32'450, 2, true, "3 within 2 s after the cooldown"},
      {32'500, 0, false, "window emptied by the burst"},
  };
  ka::SymptomBurst b({.threshold = 3, .window = seconds(2), .cooldown = seconds(30)});
  for (const auto& s : steps) {
    BOOST_TEST_CONTEXT(s.at_ms << " ms, " << s.why) {
      BOOST_TEST(b.on_symptoms(s.n, at(s.at_ms)) == s.fires);
    }
  }
  BOOST_TEST(b.stats().symptoms == 12U);
  BOOST_TEST(b.stats().bursts == 2U);
  BOOST_TEST(b.stats().suppressed == 1U);
  BOOST_TEST(b.quiet_until().ms() == 62'450);
}

BOOST_AUTO_TEST_CASE(one_poll_with_many) {
  ka::SymptomBurst b;  // the defaults: 2 within 2 s, 30 s cooldown
  BOOST_TEST(b.on_symptoms(1000, at(10)));
  BOOST_TEST(b.in_window() == 0U);
  BOOST_TEST(!b.on_symptoms(1000, at(20)));
}

BOOST_AUTO_TEST_CASE(reset_forgets_the_window_not_the_cooldown) {
  ka::SymptomBurst b({.threshold = 2, .window = seconds(10), .cooldown = seconds(5)});
  BOOST_TEST(!b.on_symptoms(1, at(0)));
  b.reset();
  BOOST_TEST(!b.on_symptoms(1, at(100)));
  BOOST_TEST(b.on_symptoms(1, at(200)));
  b.reset();
  BOOST_TEST(!b.on_symptoms(2, at(300)));  // cooldown until 5200
  BOOST_TEST(b.on_symptoms(1, at(5200)));  // the window kept the 2 of 300 ms
}

BOOST_AUTO_TEST_CASE(many_polls_fold_and_time_backwards) {
  // More polls within the window than the ring holds: the sum stays exact.
  ka::SymptomBurst b({.threshold = 100, .window = seconds(60), .cooldown = seconds(1)});
  for (int i = 0; i < 99; ++i) BOOST_REQUIRE(!b.on_symptoms(1, at(i * 10)));
  BOOST_TEST(b.in_window() == 99U);
  BOOST_TEST(b.on_symptoms(1, at(5)));  // earlier than the last call: taken as 980
  BOOST_TEST(b.stats().bursts == 1U);
  // Folded buckets carry the newest time: they expire late, never early.
  ka::SymptomBurst c({.threshold = 1000, .window = seconds(1), .cooldown = seconds(1)});
  for (int i = 0; i < 40; ++i) c.on_symptoms(1, at(i));
  BOOST_TEST(c.in_window() == 40U);
  c.on_symptoms(0, at(1031));
  BOOST_TEST(c.in_window() == 9U);  // 0..30 ms expired; 31 ms and the 8 folded into it stay
  c.on_symptoms(0, at(1040));
  BOOST_TEST(c.in_window() == 0U);
}

// Symptoms that never stop (a host that ignores every too-big error, or steady congestion
// loss): one re-check per cooldown, never more.
BOOST_AUTO_TEST_CASE(endless_symptoms_one_burst_per_cooldown) {
  ka::SymptomBurst b;  // the defaults
  int bursts = 0;
  for (std::int64_t t = 0; t < 600'000; t += 250) bursts += b.on_symptoms(1, at(t)) ? 1 : 0;
  BOOST_TEST(bursts == 20);  // 10 minutes / 30 s
  // The defaults: one symptom is no burst, two within 2 s are, two 2 s apart are not.
  ka::SymptomBurst c;
  BOOST_TEST(!c.on_symptoms(1, at(0)));
  BOOST_TEST(!c.on_symptoms(1, at(2000)));
  BOOST_TEST(c.on_symptoms(1, at(3999)));
}

BOOST_AUTO_TEST_CASE(config_floors) {
  ka::SymptomBurst b({.threshold = 0, .window = milliseconds(0), .cooldown = milliseconds(0)});
  BOOST_TEST(!b.on_symptoms(0, at(0)));
  BOOST_TEST(b.on_symptoms(1, at(0)));
  BOOST_TEST(b.on_symptoms(1, at(1)));
}

BOOST_AUTO_TEST_SUITE_END()
