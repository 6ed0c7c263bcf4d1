// PMTU search on simulated time: exact results, round counts, loss, silence, black holes,
// too-big hints, the raise timer and interface changes.
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <random>
#include <variant>

#include "keepalive/pmtu_search.h"
#include "unit/keepalive/sim.h"

namespace ka = tunshim::keepalive;
using ka::milliseconds;
using ka::minutes;
using ka::seconds;
using State = ka::PmtuSearch::State;

namespace {

struct Outcome {
  bool completed = false;
  std::uint16_t pmtu = 0;
  std::uint64_t rounds = 0;
  std::int64_t ms = 0;
  std::uint64_t probes = 0;
};

Outcome converge(ka::PmtuConfig cfg, std::uint16_t if_mtu, ka::sim::Path path,
                 std::uint32_t seed = 1, ka::Duration limit = seconds(60)) {
  ka::sim::PmtuSim s(cfg, if_mtu, path, seed);
  const ka::Timestamp t0 = s.now;
  s.start();
  Outcome o;
  o.completed = s.run_until_state(State::complete, limit);
  o.pmtu = s.search.pmtu();
  o.rounds = s.search.stats().rounds;
  o.ms = (s.now - t0).ms();
  o.probes = s.probes;
  BOOST_REQUIRE(!s.overflowed);
  BOOST_REQUIRE(!s.stalled);
  BOOST_REQUIRE_EQUAL(s.same_deadline_ticks, 0);
  // Nothing below the fallback is ever announced.
  for (auto v : s.pmtu_changes()) BOOST_REQUIRE_GE(v, s.search.base_size());
  return o;
}

template <typename T>
const T* find_action(const ka::PmtuSearch::Actions& a) {
  for (const auto& x : a)
    if (const auto* p = std::get_if<T>(&x)) return p;
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pmtu_search)

// ngtcp2-style walk: every action and deadline checked by hand on a 1 ms path with MTU 1400.
BOOST_AUTO_TEST_CASE(step_by_step) {
  ka::PmtuSearch s(ka::PmtuConfig{});
  const auto t0 = ka::Timestamp::from_ms(5000);
  BOOST_TEST(s.on_start(t0).empty());  // no interface yet: waits
  BOOST_TEST((s.state() == State::disabled));
  BOOST_TEST((s.next_deadline() == ka::kNever));

  auto a = s.on_interface_mtu(1500, t0);
  BOOST_REQUIRE_EQUAL(a.size(), 3U);
  BOOST_TEST(std::get<ka::PmtuSearch::PmtuChanged>(a[0]).pmtu == 1200);
  BOOST_TEST((std::get<ka::PmtuSearch::StateChanged>(a[1]).state == State::base));
  auto p = std::get<ka::PmtuSearch::SendProbe>(a[2]);
  BOOST_TEST(p.id == 1U);
  BOOST_TEST(p.size == 1200);
  // No RTT yet: 1 s initial timeout, tries 250 ms apart.
  BOOST_TEST((s.next_deadline() == t0 + milliseconds(250)));

  a = s.on_probe_reply(1, 1200, t0 + milliseconds(1));
  BOOST_REQUIRE_EQUAL(a.size(), 2U);
  BOOST_TEST((std::get<ka::PmtuSearch::StateChanged>(a[0]).state == State::search));
  p = std::get<ka::PmtuSearch::SendProbe>(a[1]);
  BOOST_TEST(p.size == 1350);  // upper middle of (1200, 1500]
  // RTT 1 ms: timeout floor 200 ms, spacing floor 20 ms.
  BOOST_TEST(s.probe_timeout().ms() == 200);
  BOOST_TEST(s.try_spacing().ms() == 20);
  const auto t1 = t0 + milliseconds(1);
  BOOST_TEST((s.next_deadline() == t1 + milliseconds(20)));

  a = s.on_probe_reply(p.id, 1350, t1 + milliseconds(1));
  p = std::get<ka::PmtuSearch::SendProbe>(a[0]);
  BOOST_TEST(p.size == 1425);
  const auto t2 = t1 + milliseconds(1);

  // 1425 does not fit: try 2 goes with a 1200 control probe, then try 3, then the verdict.
  a = s.on_tick(t2 + milliseconds(20));
  BOOST_REQUIRE_EQUAL(a.size(), 2U);
  const auto try2 = std::get<ka::PmtuSearch::SendProbe>(a[0]);
  const auto ctl2 = std::get<ka::PmtuSearch::SendProbe>(a[1]);
  BOOST_TEST(try2.size == 1425);
  BOOST_TEST(ctl2.size == 1200);
  BOOST_TEST(s.on_probe_reply(ctl2.id, 1200, t2 + milliseconds(21)).empty());
  a = s.on_tick(t2 + milliseconds(40));
  BOOST_REQUIRE_EQUAL(a.size(), 2U);
  BOOST_TEST((s.next_deadline() == t2 + milliseconds(240)));
  BOOST_TEST(s.on_tick(t2 + milliseconds(239)).empty());  // early tick: nothing
  a = s.on_tick(t2 + milliseconds(240));
  p = std::get<ka::PmtuSearch::SendProbe>(a[0]);
  BOOST_TEST(p.size == 1387);    // 1425 judged too big once: search (1350, 1424]
  BOOST_TEST(s.pmtu() == 1200);  // nothing in effect changes until the search completes
}

// Every path MTU from 1200 to 1500 under several interface MTUs: the exact answer, at most
// 12 rounds and under 3 s on a 1 ms tunnel without loss.
BOOST_AUTO_TEST_CASE(exact_for_every_mtu_ipv4) {
  std::uint64_t worst_rounds = 0;
  std::int64_t worst_ms = 0;
  for (std::uint16_t upper : {1500, 1492, 1400, 1280}) {
    for (int m = 1200; m <= 1500; ++m) {
      const auto mtu = static_cast<std::uint16_t>(m);
      const Outcome o = converge(ka::PmtuConfig{}, upper, {.mtu = mtu});
      BOOST_REQUIRE_MESSAGE(o.completed, "mtu " << m << " upper " << upper);
      BOOST_REQUIRE_EQUAL(o.pmtu, std::min(mtu, upper));
      BOOST_REQUIRE_LE(o.rounds, 12U);
      BOOST_REQUIRE_LT(o.ms, 3000);
      worst_rounds = std::max(worst_rounds, o.rounds);
      worst_ms = std::max(worst_ms, o.ms);
    }
  }
  BOOST_TEST_MESSAGE("IPv4 base 1200, path 1200..1500, upper 1500/1492/1400/1280: worst "
                     << worst_rounds << " rounds, " << worst_ms << " ms");
}

BOOST_AUTO_TEST_CASE(exact_for_every_mtu_low_base_and_ipv6) {
  std::uint64_t worst_rounds = 0;
  std::int64_t worst_ms = 0;
  ka::PmtuConfig v4low;
  v4low.base = 576;
  for (int m = 576; m <= 1500; ++m) {
    const auto mtu = static_cast<std::uint16_t>(m);
    const Outcome o = converge(v4low, 1500, {.mtu = mtu});
    BOOST_REQUIRE(o.completed);
    BOOST_REQUIRE_EQUAL(o.pmtu, mtu);
    BOOST_REQUIRE_LE(o.rounds, 12U);
    BOOST_REQUIRE_LT(o.ms, 3000);
    worst_rounds = std::max(worst_rounds, o.rounds);
    worst_ms = std::max(worst_ms, o.ms);
  }
  BOOST_TEST_MESSAGE("IPv4 base 576, path 576..1500: worst " << worst_rounds << " rounds, "
                                                             << worst_ms << " ms");
  ka::PmtuConfig v6;
  v6.family = ka::IpFamily::ipv6;
  worst_rounds = 0;
  worst_ms = 0;
  for (int m = 1280; m <= 1500; ++m) {
    const auto mtu = static_cast<std::uint16_t>(m);
    const Outcome o = converge(v6, 1500, {.mtu = mtu});
    BOOST_REQUIRE(o.completed);
    BOOST_REQUIRE_EQUAL(o.pmtu, mtu);
    BOOST_REQUIRE_LE(o.rounds, 12U);
    BOOST_REQUIRE_LT(o.ms, 3000);
    worst_rounds = std::max(worst_rounds, o.rounds);
    worst_ms = std::max(worst_ms, o.ms);
  }
  BOOST_TEST_MESSAGE("IPv6 base 1280, path 1280..1500: worst " << worst_rounds << " rounds, "
                                                               << worst_ms << " ms");
}

// probe_max above the interface MTU: the bound is the operator's, the answer still exact.
// (The 12-round goal is for bounds up to 1500; 9000 needs up to 15.)
BOOST_AUTO_TEST_CASE(probe_max_above_interface) {
  ka::PmtuConfig cfg;
  cfg.probe_max = 9000;
  std::uint64_t worst_rounds = 0;
  for (int m : {1200, 1201, 1400, 1500, 1501, 4000, 8999, 9000, 20000}) {
    const Outcome o = converge(cfg, 1500, {.mtu = static_cast<std::uint16_t>(m)});
    BOOST_REQUIRE(o.completed);
    BOOST_REQUIRE_EQUAL(o.pmtu, std::min(m, 9000));
    BOOST_REQUIRE_LE(o.rounds, 15U);
    worst_rounds = std::max(worst_rounds, o.rounds);
  }
  BOOST_TEST_MESSAGE("probe_max 9000: worst " << worst_rounds << " rounds");
}

// Kernel SCTP once never completed when every probe succeeded; both extremes terminate.
BOOST_AUTO_TEST_CASE(all_pass_terminates) {
  const Outcome o = converge(ka::PmtuConfig{}, 1500, {.mtu = 65535});
  BOOST_TEST(o.completed);
  BOOST_TEST(o.pmtu == 1500);
  BOOST_TEST(o.rounds == 10U);  // base + ceil(log2(300)) sizes, no failure to re-check
}

BOOST_AUTO_TEST_CASE(all_above_base_fail_terminates) {
  const Outcome o = converge(ka::PmtuConfig{}, 1500, {.mtu = 1200});
  BOOST_TEST(o.completed);
  BOOST_TEST(o.pmtu == 1200);
}

// 10-30 % random loss, fixed seeds: the result is still exact.
BOOST_AUTO_TEST_CASE(random_loss_exact) {
  int runs = 0;
  for (double loss : {0.10, 0.20, 0.30}) {
    std::uint64_t worst_rounds = 0;
    std::int64_t worst_ms = 0;
    for (std::uint32_t seed = 1; seed <= 40; ++seed) {
      const auto mtu = static_cast<std::uint16_t>(1200 + (seed * 37) % 301);
      const Outcome o = converge(ka::PmtuConfig{}, 1500, {.mtu = mtu, .loss = loss}, seed);
      BOOST_REQUIRE_MESSAGE(o.completed && o.pmtu == mtu, "loss " << loss << " seed " << seed
                                                                  << " mtu " << mtu << " got "
                                                                  << o.pmtu);
      worst_rounds = std::max(worst_rounds, o.rounds);
      worst_ms = std::max(worst_ms, o.ms);
      ++runs;
    }
    BOOST_TEST_MESSAGE(
        "loss " << loss * 100
                << " %, seeds 1..40 (mtu = 1200 + seed*37 % 301): all exact, worst "
                << worst_rounds << " rounds, " << worst_ms << " ms");
  }
  BOOST_TEST(runs == 120);
}

// The e2e lab's paths (tests/e2e/test_pmtu_probe.sh: underlays 1528, 1437, 1400, 1333 and
// 1251 behind a 28-byte tunnel overhead, ppp0 MTU 1500) with its loss: 10 % of the tunnel's
// packets each way, so 19 % of probes or their replies, on a ~1 ms path and a slower one.
// The e2e test runs one lossy search on the real path; the many runs are here: every one
// must be exact, the all-pass path (1500) included.
BOOST_AUTO_TEST_CASE(lab_paths_under_loss_exact) {
  int runs = 0;
  for (std::uint16_t mtu : {1500, 1409, 1372, 1305, 1223}) {
    for (ka::Duration rtt : {milliseconds(1), milliseconds(20)}) {
      for (std::uint32_t seed = 1; seed <= 100; ++seed) {
        const Outcome o =
            converge(ka::PmtuConfig{}, 1500, {.mtu = mtu, .rtt = rtt, .loss = 0.19}, seed);
        BOOST_REQUIRE_MESSAGE(o.completed && o.pmtu == mtu, "mtu " << mtu << " rtt " << rtt.ms()
                                                                   << " ms seed " << seed
                                                                   << " got " << o.pmtu);
        ++runs;
      }
    }
  }
  BOOST_TEST(runs == 1000);
}

// Many more searches at 30 % loss: the rare misjudgement that survives one boundary
// re-check (about 0.4 % per search with two strikes) must not show up.
BOOST_AUTO_TEST_CASE(heavy_loss_many_seeds_exact) {
  int wrong = 0;
  std::uint64_t rounds = 0;
  for (std::uint32_t seed = 1000; seed < 3000; ++seed) {
    const auto mtu = static_cast<std::uint16_t>(1200 + (seed * 53) % 301);
    const Outcome o = converge(ka::PmtuConfig{}, 1500, {.mtu = mtu, .loss = 0.3}, seed);
    if (!o.completed || o.pmtu != mtu) {
      ++wrong;
      BOOST_TEST_MESSAGE("seed " << seed << " mtu " << mtu << " got " << o.pmtu);
    }
    rounds += o.rounds;
  }
  BOOST_TEST_MESSAGE("30 % loss, seeds 1000..2999: " << wrong << " wrong, mean "
                                                     << rounds / 2000 << " rounds");
  BOOST_TEST(wrong == 0);
}

// Loss must never make a live path look silent. A too-big round is answered only by its
// two base-size control probes; losing both (3.6 % at 19 % round-trip loss, the lab's
// 10 % each way) used to be followed by the same round again, and two such rounds meant
// ERROR (`tunshim probe` gave up). Now a silent round is followed by rounds of base-size
// probes alone, and only two of those silent too mean ERROR (kMaxSilentRounds).
BOOST_AUTO_TEST_CASE(loss_never_looks_like_silence) {
  for (double loss : {0.19, 0.30}) {
    int errors = 0;
    int wrong = 0;
    for (std::uint32_t seed = 5000; seed < 7000; ++seed) {
      const auto mtu = static_cast<std::uint16_t>(1200 + (seed * 41) % 301);
      ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = mtu, .loss = loss}, seed);
      s.start();
      BOOST_REQUIRE(s.run_until_state(State::complete, seconds(120)));
      const auto st = s.states();
      if (std::find(st.begin(), st.end(), State::error) != st.end()) ++errors;
      if (s.search.pmtu() != mtu) {
        ++wrong;
        BOOST_TEST_MESSAGE("loss " << loss << " seed " << seed << " mtu " << mtu << " got "
                                   << s.search.pmtu());
      }
    }
    BOOST_TEST_MESSAGE("loss " << loss * 100 << " %: " << errors
                               << " of 2000 searches passed through ERROR, " << wrong
                               << " ended below the truth");
    // The known residual (pmtu_search.h, kBoundaryStrikes): a fitting size judged too big
    // at two boundary checks, ~0.05 % of searches at 19 % loss; never above the truth.
    BOOST_TEST(wrong <= 3);
    // Expected about 1e-5 (19 %) and 4e-4 (30 %) per search with ~6 too-big rounds.
    BOOST_TEST(errors <= (loss < 0.25 ? 0 : 3));
  }
}

// A target that never answers: ERROR, said plainly; the fallback stays; no tiny MTU.
BOOST_AUTO_TEST_CASE(target_never_answers) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500, .answers = false}, 1);
  s.start();
  s.run_for(minutes(60));
  BOOST_TEST((s.search.state() == State::error));
  BOOST_TEST(s.search.pmtu() == 1200);
  BOOST_TEST((s.pmtu_changes() == std::vector<std::uint16_t>{1200}));
  BOOST_TEST((s.states() == std::vector<State>{State::base, State::error}));
  // Still trying, at a bounded rate: 3 base-size probes per retry interval.
  BOOST_TEST(s.probes > 1000U);
  BOOST_TEST(s.probes < 3U * 3600U / 5U + 10U);
  for (const auto& e : s.log)
    if (const auto* p = std::get_if<ka::PmtuSearch::SendProbe>(&e.action))
      BOOST_REQUIRE_EQUAL(p->size, 1200);
  BOOST_TEST(!s.stalled);
}

// A path that only carries less than the fallback looks silent too: no guess below it.
BOOST_AUTO_TEST_CASE(path_below_base_is_error_not_tiny) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1000}, 1);
  s.start();
  s.run_for(minutes(5));
  BOOST_TEST((s.search.state() == State::error));
  BOOST_TEST(s.search.pmtu() == 1200);
}

// The target stops answering mid-life: ERROR, the confirmed value is kept (silence says
// nothing about size); when it answers again the search runs and completes.
BOOST_AUTO_TEST_CASE(target_stops_answering_mid_life) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1450}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_REQUIRE_EQUAL(s.search.pmtu(), 1450);
  s.path.answers = false;
  s.run_for(minutes(30));
  BOOST_TEST((s.search.state() == State::error));
  BOOST_TEST(s.search.pmtu() == 1450);
  BOOST_TEST(s.search.stats().black_holes == 0U);
  s.path.answers = true;
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(15)));
  BOOST_TEST(s.search.pmtu() == 1450);
  BOOST_TEST((s.pmtu_changes() == std::vector<std::uint16_t>{1200, 1450}));
}

// A black hole appears mid-life: dropped to BASE and the fallback at once (within one
// confirmation interval plus two rounds), then re-converged to the new, lower size.
BOOST_AUTO_TEST_CASE(black_hole_mid_life) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_REQUIRE_EQUAL(s.search.pmtu(), 1500);
  s.run_for(minutes(3));
  BOOST_REQUIRE((s.search.state() == State::complete));
  s.path.mtu = 1380;  // larger packets now vanish silently
  const auto hole_at = s.now;
  BOOST_REQUIRE(s.run_until(s.now + minutes(1), [&] { return s.search.pmtu() != 1500; }));
  const auto dropped_at = s.now;
  BOOST_TEST(s.search.pmtu() == 1200);
  BOOST_TEST((s.search.state() == State::base));
  BOOST_TEST((dropped_at - hole_at).ms() <= 30'000 + 2 * 240 + 5);
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_TEST(s.search.pmtu() == 1380);
  BOOST_TEST((s.now - dropped_at).ms() < 3000);
  BOOST_TEST(s.search.stats().black_holes == 1U);
  BOOST_TEST((s.pmtu_changes() == std::vector<std::uint16_t>{1200, 1500, 1200, 1380}));
}

// A burst of symptoms from the data path brings the re-confirmation forward: the black hole
// is found within two confirmation rounds instead of up to confirm_interval later.
BOOST_AUTO_TEST_CASE(symptoms_bring_the_black_hole_forward) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  s.run_for(seconds(3));  // the next confirmation is 27 s away
  s.path.mtu = 1380;
  const auto hole_at = s.now;
  s.symptoms();
  BOOST_TEST(s.search.stats().symptom_checks == 1U);
  BOOST_REQUIRE(s.run_until(s.now + minutes(1), [&] { return s.search.pmtu() != 1500; }));
  const auto dropped_at = s.now;
  BOOST_TEST(s.search.pmtu() == 1200);
  BOOST_TEST((dropped_at - hole_at).ms() <= 2 * 240 + 5);  // two 240 ms confirm rounds
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_TEST(s.search.pmtu() == 1380);
  BOOST_TEST(s.search.stats().black_holes == 1U);
  BOOST_TEST_MESSAGE("symptoms at the hole: fallback after "
                     << (dropped_at - hole_at).ms() << " ms, 1380 after "
                     << (s.now - hole_at).ms() << " ms");
}

// A false alarm costs one probe of the current size and changes nothing; outside COMPLETE
// (a search already running, a silent target) symptoms do nothing at all.
BOOST_AUTO_TEST_CASE(symptoms_false_alarm_and_other_states) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1440}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::search, seconds(1)));
  const auto probes = s.probes;
  s.symptoms();
  BOOST_TEST(s.probes == probes);
  BOOST_TEST(s.search.stats().symptom_checks == 0U);
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  s.run_for(seconds(1));
  const auto before = s.probes;
  const auto changes = s.pmtu_changes();
  s.symptoms();
  BOOST_TEST(s.probes == before + 1);  // one probe of 1440
  s.symptoms();                        // the round in progress: nothing more
  BOOST_TEST(s.probes == before + 1);
  s.run_for(milliseconds(100));
  BOOST_TEST((s.search.state() == State::complete));
  BOOST_TEST(s.search.pmtu() == 1440);
  BOOST_TEST((s.pmtu_changes() == changes));
  BOOST_TEST(s.search.stats().symptom_checks == 1U);
  BOOST_TEST((s.search.next_deadline() - s.now).ms() > 29'000);  // next confirmation: 30 s on

  ka::sim::PmtuSim silent(ka::PmtuConfig{}, 1500, {.answers = false}, 1);
  silent.start();
  BOOST_REQUIRE(silent.run_until_state(State::error, seconds(20)));
  const auto p2 = silent.probes;
  silent.symptoms();
  BOOST_TEST(silent.probes == p2);
  BOOST_TEST((silent.search.state() == State::error));
}

// Under 20 % loss, hours of confirmations never raise a false black hole.
BOOST_AUTO_TEST_CASE(no_false_black_hole_under_loss) {
  for (std::uint32_t seed : {11U, 12U, 13U}) {
    ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1440, .loss = 0.2}, seed);
    s.start();
    s.run_for(ka::Duration::from_ms(6 * 3'600'000));
    BOOST_TEST_MESSAGE("20 % loss, 6 h, seed " << seed << ": black holes "
                                               << s.search.stats().black_holes << ", probes "
                                               << s.probes << ", pmtu " << s.search.pmtu());
    BOOST_TEST(s.search.stats().black_holes == 0U);
    BOOST_TEST(s.search.pmtu() == 1440);
    BOOST_TEST((s.search.state() == State::complete || s.search.state() == State::search));
  }
}

// Too-big hints narrow the search (fewer rounds, same answer) but never raise it.
BOOST_AUTO_TEST_CASE(ptb_hint_narrows) {
  const Outcome plain = converge(ka::PmtuConfig{}, 1500, {.mtu = 1300});
  const Outcome hinted = converge(ka::PmtuConfig{}, 1500, {.mtu = 1300, .ptb = true});
  BOOST_TEST(plain.pmtu == 1300);
  BOOST_TEST(hinted.pmtu == 1300);
  BOOST_TEST(hinted.rounds < plain.rounds);
  BOOST_TEST(hinted.ms < plain.ms);
  BOOST_TEST_MESSAGE("path 1300: " << plain.rounds << " rounds / " << plain.ms
                                   << " ms without hints, " << hinted.rounds << " rounds / "
                                   << hinted.ms << " ms with");
}

BOOST_AUTO_TEST_CASE(ptb_hint_lying_low_cannot_lower_result) {
  // A forged hint of 1250 while the path carries 1450: the boundary re-check disproves it.
  const Outcome o = converge(ka::PmtuConfig{}, 1500,
                             {.mtu = 1450, .ptb = true, .ptb_lies = true, .ptb_value = 1250});
  BOOST_TEST(o.completed);
  BOOST_TEST(o.pmtu == 1450);
}

BOOST_AUTO_TEST_CASE(ptb_hint_never_raises) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1400}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_REQUIRE_EQUAL(s.search.pmtu(), 1400);
  // A hint above the value, or below the fallback: nothing happens at all.
  BOOST_TEST(s.search.on_ptb_hint(1500, s.now).empty());
  BOOST_TEST(s.search.on_ptb_hint(9000, s.now).empty());
  BOOST_TEST(s.search.on_ptb_hint(600, s.now).empty());
  BOOST_TEST(s.search.pmtu() == 1400);
  // A smaller hint re-confirms at once; the path still carries 1400, so nothing changes.
  const auto a = s.search.on_ptb_hint(1300, s.now);
  const auto* p = find_action<ka::PmtuSearch::SendProbe>(a);
  BOOST_REQUIRE(p != nullptr);
  BOOST_TEST(p->size == 1400);
  s.search.on_probe_reply(p->id, p->size, s.now + milliseconds(1));
  BOOST_TEST(s.search.pmtu() == 1400);
  BOOST_TEST((s.search.state() == State::complete));
  // During a search a hint above the current bound is ignored too.
  ka::PmtuSearch fresh(ka::PmtuConfig{});
  const auto t = ka::Timestamp::from_ms(0);
  fresh.on_interface_mtu(1400, t);
  fresh.on_start(t);
  fresh.on_probe_reply(1, 1200, t);
  BOOST_TEST(fresh.on_ptb_hint(1450, t).empty());
  BOOST_TEST(fresh.stats().ptb_hints_used == 0U);
}

// The raise timer: after the path improves, the next reprobe finds the larger size.
BOOST_AUTO_TEST_CASE(reprobe_raises_after_path_improves) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1400}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  const auto done = s.now;
  s.path.mtu = 1500;
  s.run_until(done + minutes(10) - milliseconds(1), [] { return false; });
  BOOST_TEST(s.search.pmtu() == 1400);  // confirmations alone never raise
  BOOST_REQUIRE(s.run_until(s.now + seconds(5), [&] { return s.search.pmtu() == 1500; }));
  BOOST_TEST((s.search.state() == State::complete));
  BOOST_TEST((s.now - done).ms() < 10 * 60'000 + 3000);
}

BOOST_AUTO_TEST_CASE(reprobe_at_upper_bound_sends_only_confirmations) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  const auto before = s.probes;
  s.run_for(minutes(60));
  BOOST_TEST((s.states().back() == State::complete));
  BOOST_TEST(s.states().size() == 3U);  // base, search, complete: never searched again
  // One 1500-byte probe per 30 s (each next one 30 s after the previous reply, 1 ms later).
  BOOST_TEST(s.probes - before >= 119U);
  BOOST_TEST(s.probes - before <= 120U);
}

// Interface events: gone -> disabled, no deadline; back -> starts over from BASE; a lower
// interface MTU lowers the value at once; a higher one opens a search upward.
BOOST_AUTO_TEST_CASE(interface_changes) {
  ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 9000}, 1);
  s.start();
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_REQUIRE_EQUAL(s.search.pmtu(), 1500);

  auto a = s.search.on_interface_mtu(1400, s.now);
  const auto* c = find_action<ka::PmtuSearch::PmtuChanged>(a);
  BOOST_REQUIRE(c != nullptr);
  BOOST_TEST(c->pmtu == 1400);
  BOOST_TEST((s.search.state() == State::complete));

  a = s.search.on_interface_mtu(1480, s.now);
  BOOST_TEST((s.search.state() == State::search));
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_TEST(s.search.pmtu() == 1480);

  a = s.search.on_interface_mtu(0, s.now);
  BOOST_TEST((s.search.state() == State::disabled));
  BOOST_TEST((s.search.next_deadline() == ka::kNever));
  s.run_for(minutes(5));
  BOOST_TEST((s.search.state() == State::disabled));

  a = s.search.on_interface_mtu(1420, s.now);
  BOOST_TEST((s.search.state() == State::base));
  BOOST_TEST(s.search.pmtu() == 1200);
  BOOST_REQUIRE(s.run_until_state(State::complete, seconds(5)));
  BOOST_TEST(s.search.pmtu() == 1420);
}

// The interface shrinks below the fallback while a base-size check round (after a silent
// search round) is out: the check goes on at the new, smaller base size, and the search
// completes there instead of waiting forever for a round that was never sent.
BOOST_AUTO_TEST_CASE(interface_shrinks_during_check_round) {
  ka::PmtuSearch s(ka::PmtuConfig{});
  auto t = ka::Timestamp::from_ms(5000);
  BOOST_TEST(s.on_start(t).empty());
  auto a = s.on_interface_mtu(1500, t);
  const auto* p = find_action<ka::PmtuSearch::SendProbe>(a);
  BOOST_REQUIRE(p != nullptr);
  a = s.on_probe_reply(p->id, p->size, t + milliseconds(1));
  BOOST_REQUIRE((s.state() == State::search));
  // Nothing answers from here: the search round's tries, then its verdict opens a check round.
  std::uint16_t last_size = 0;
  for (int i = 0; i < 50 && s.next_deadline() != ka::kNever; ++i) {
    t = s.next_deadline();
    a = s.on_tick(t);
    if (const auto* q = find_action<ka::PmtuSearch::SendProbe>(a)) last_size = q->size;
    if (last_size == 1200) break;
  }
  BOOST_REQUIRE_EQUAL(last_size, 1200);  // the base-size check round
  BOOST_REQUIRE((s.state() == State::search));

  a = s.on_interface_mtu(1100, t + milliseconds(2));
  p = find_action<ka::PmtuSearch::SendProbe>(a);
  BOOST_REQUIRE(p != nullptr);
  BOOST_TEST(p->size == 1100);
  BOOST_TEST((s.next_deadline() != ka::kNever));
  a = s.on_probe_reply(p->id, p->size, t + milliseconds(3));
  BOOST_TEST((s.state() == State::complete));
  BOOST_TEST(s.pmtu() == 1100);
}

BOOST_AUTO_TEST_CASE(interface_smaller_than_base) {
  const Outcome o = converge(ka::PmtuConfig{}, 1000, {.mtu = 1500});
  BOOST_TEST(o.completed);
  BOOST_TEST(o.pmtu == 1000);
}

BOOST_AUTO_TEST_CASE(config_floors) {
  ka::PmtuConfig v4;
  v4.base = 100;
  ka::PmtuSearch a(v4);
  a.on_interface_mtu(1500, ka::Timestamp{});
  a.on_start(ka::Timestamp{});
  BOOST_TEST(a.base_size() == 576);
  ka::PmtuConfig v6;
  v6.family = ka::IpFamily::ipv6;
  v6.base = 576;
  ka::PmtuSearch b(v6);
  b.on_interface_mtu(1500, ka::Timestamp{});
  b.on_start(ka::Timestamp{});
  BOOST_TEST(b.base_size() == 1280);
}

// Replies that do not match what was sent change nothing and are counted.
BOOST_AUTO_TEST_CASE(stray_replies_ignored) {
  ka::PmtuSearch s(ka::PmtuConfig{});
  const auto t = ka::Timestamp::from_ms(0);
  s.on_interface_mtu(1500, t);
  s.on_start(t);
  BOOST_TEST(s.on_probe_reply(1, 1300, t).empty());   // wrong size for id 1
  BOOST_TEST(s.on_probe_reply(77, 1200, t).empty());  // never sent
  BOOST_TEST(s.on_probe_reply(0, 1200, t).empty());
  BOOST_TEST(s.stats().stray_replies == 3U);
  BOOST_TEST((s.state() == State::base));
  BOOST_TEST(!s.on_probe_reply(1, 1200, t).empty());
  BOOST_TEST(s.on_probe_reply(1, 1200, t).empty());  // duplicate
  BOOST_TEST(s.stats().stray_replies == 4U);
}

// The probe timeout follows the RTT: max(3 SRTT, RTO) with the floor and the cap.
BOOST_AUTO_TEST_CASE(timeout_from_rtt) {
  for (int rtt : {1, 50, 120, 600, 4000}) {
    ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500, .rtt = milliseconds(rtt)}, 1);
    s.start();
    BOOST_REQUIRE(s.run_until_state(State::complete, seconds(120)));
    const auto t = s.search.probe_timeout().ms();
    const auto expect = std::clamp<std::int64_t>(3 * rtt, 200, 5000);
    BOOST_TEST(t == expect);
    BOOST_TEST(s.search.pmtu() == 1500);
  }
}

// Soak: hours of a path that keeps changing (MTU, loss, silence, interface MTU, interface
// gone). Invariants at every step; after each 25-minute phase of a clean path the value is
// exactly min(path, interface) again; a path below the fallback ends in ERROR.
BOOST_AUTO_TEST_CASE(soak_changing_path) {
  for (std::uint32_t seed = 1; seed <= 12; ++seed) {
    std::mt19937 rng(seed);
    ka::sim::PmtuSim s(ka::PmtuConfig{}, 1500, {.mtu = 1500}, seed);
    s.start();
    std::uint16_t if_mtu = 1500;
    int checked = 0;
    for (int phase = 0; phase < 24; ++phase) {
      // A disturbed stretch: random MTU, loss, maybe silence or a different interface.
      s.path.mtu =
          static_cast<std::uint16_t>(std::uniform_int_distribution<int>(1100, 1600)(rng));
      s.path.loss = std::uniform_int_distribution<int>(0, 3)(rng) * 0.1;
      s.path.answers = std::uniform_int_distribution<int>(0, 9)(rng) != 0;
      const int iface = std::uniform_int_distribution<int>(0, 5)(rng);
      if_mtu = iface == 0 ? 0 : iface < 3 ? 1400 : 1500;
      s.set_interface_mtu(if_mtu);
      s.run_for(minutes(std::uniform_int_distribution<int>(1, 15)(rng)));
      BOOST_REQUIRE(!s.stalled);
      BOOST_REQUIRE(!s.overflowed);
      // Then a clean stretch: no loss, target answers, interface present.
      s.path.loss = 0;
      s.path.answers = true;
      if (if_mtu == 0) {
        if_mtu = 1500;
        s.set_interface_mtu(if_mtu);
      }
      s.run_for(minutes(25));
      BOOST_REQUIRE(!s.stalled);
      if (s.path.mtu >= 1200) {
        BOOST_REQUIRE_MESSAGE(s.search.pmtu() == std::min(s.path.mtu, if_mtu),
                              "seed " << seed << " phase " << phase << " path " << s.path.mtu
                                      << " if " << if_mtu << " got " << s.search.pmtu()
                                      << " state " << ka::to_string(s.search.state()));
        BOOST_REQUIRE((s.search.state() != State::error));
      } else {
        BOOST_REQUIRE((s.search.state() == State::error));
      }
      ++checked;
    }
    BOOST_REQUIRE_EQUAL(checked, 24);
    BOOST_REQUIRE_EQUAL(s.same_deadline_ticks, 0);
    for (auto v : s.pmtu_changes()) BOOST_REQUIRE_GE(v, 1200);
    BOOST_TEST_MESSAGE("soak seed " << seed << ": " << s.probes << " probes, "
                                    << s.search.stats().black_holes << " black holes, "
                                    << s.search.stats().searches_completed << " searches");
  }
}

BOOST_AUTO_TEST_SUITE_END()
