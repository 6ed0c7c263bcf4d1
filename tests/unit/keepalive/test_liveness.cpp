// Liveness on simulated time: every short sequence of replies / misses / traffic against a
// reference model, a busy tunnel under loss, idle vs busy, interface absent/present.
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <random>
#include <variant>
#include <vector>

#include "keepalive/liveness.h"
#include "unit/keepalive/sim.h"

namespace ka = tunshim::keepalive;
using ka::milliseconds;
using ka::minutes;
using ka::seconds;
using LState = ka::Liveness::State;
using Reason = ka::Liveness::Reason;

namespace {

// A harness that owns the interface rx counter and answers echoes on request.
struct Harness {
  explicit Harness(ka::LivenessConfig cfg) : live(cfg) {}

  void collect(const ka::Liveness::Actions& a) {
    BOOST_REQUIRE(!a.overflowed());
    for (const auto& x : a) {
      if (const auto* e = std::get_if<ka::Liveness::SendEcho>(&x))
        echoes.push_back({now, e->id});
      if (const auto* c = std::get_if<ka::Liveness::StateChanged>(&x)) {
        // Every transition starts from the state we last saw and goes somewhere else.
        BOOST_REQUIRE((c->from == seen));
        BOOST_REQUIRE((c->from != c->to));
        seen = c->to;
        changes.push_back(*c);
      }
    }
    BOOST_REQUIRE((seen == live.state()));
  }
  // Advances to `t`, ticking at every deadline on the way; the counter is read before
  // every tick, as the daemon does.
  void advance_to(ka::Timestamp t) {
    for (int guard = 0; guard < 10'000'000; ++guard) {
      const ka::Timestamp d = live.next_deadline();
      const ka::Timestamp next = ka::earliest(d, earliest_rx());
      if (next > t) break;
      now = next;
      while (rx_next < rx_times.size() && rx_times[rx_next] <= now) {
        ++rx_packets;
        ++rx_next;
      }
      if (live.next_deadline() <= now) {
        collect(live.on_rx_activity(rx_packets, now));
        collect(live.on_tick(now));
        BOOST_REQUIRE(live.next_deadline() > now);
      }
    }
    now = t;
  }
  ka::Timestamp earliest_rx() const {
    return rx_next < rx_times.size() ? rx_times[rx_next] : ka::kNever;
  }
  // Runs until an echo not yet handed out has been sent (it may have gone out already,
  // in the tick that judged the previous one); returns it and sets `sent_at`.
  std::uint32_t next_echo() {
    while (echoes.size() <= consumed) {
      BOOST_REQUIRE(live.next_deadline() != ka::kNever);
      advance_to(live.next_deadline());
    }
    sent_at = echoes[consumed].first;
    return echoes[consumed++].second;
  }

  ka::Liveness live;
  ka::Timestamp now = ka::Timestamp::from_ms(50'000);
  LState seen = LState::absent;
  std::uint64_t rx_packets = 1000;
  std::vector<ka::Timestamp> rx_times;  // packets that will arrive (sorted)
  std::size_t rx_next = 0;              // first of rx_times not yet arrived
  std::vector<std::pair<ka::Timestamp, std::uint32_t>> echoes;
  std::vector<ka::Liveness::StateChanged> changes;
  std::size_t consumed = 0;
  ka::Timestamp sent_at;
};

ka::LivenessConfig cfg_always() {
  ka::LivenessConfig c;
  c.mode = ka::KeepaliveMode::always;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(liveness)

// Every sequence of up to 8 echo outcomes over {reply, miss, traffic-but-no-reply}: after
// each judged echo the state equals the reference: trailing misses 0 -> up,
// 1..2 -> suspect, >= 3 -> down. Traffic counts as life; a miss only counts without it.
BOOST_AUTO_TEST_CASE(exhaustive_sequences) {
  enum Ev { reply, miss, rx };
  int sequences = 0;
  for (int len = 1; len <= 8; ++len) {
    int total = 1;
    for (int i = 0; i < len; ++i) total *= 3;
    for (int code = 0; code < total; ++code) {
      Harness h(cfg_always());
      h.collect(h.live.on_interface(true, h.now));
      h.collect(h.live.on_rx_activity(h.rx_packets, h.now));
      int trailing = 0;
      int c = code;
      for (int step = 0; step < len; ++step, c /= 3) {
        const Ev ev = static_cast<Ev>(c % 3);
        const std::uint32_t id = h.next_echo();
        const ka::Timestamp sent = h.sent_at;
        BOOST_REQUIRE((h.now <= sent + milliseconds(30)));
        if (ev == reply) {
          h.advance_to(sent + milliseconds(30));
          h.collect(h.live.on_echo_reply(id, h.now));
          trailing = 0;
        } else if (ev == rx) {
          h.rx_times.push_back(sent + milliseconds(400));
          trailing = 0;
        } else {
          ++trailing;
        }
        h.advance_to(sent + seconds(1));  // the echo is judged at exactly +1 s
        const LState expect = trailing == 0  ? LState::up
                              : trailing < 3 ? LState::suspect
                                             : LState::down;
        BOOST_REQUIRE_MESSAGE((h.live.state() == expect),
                              "len " << len << " code " << code << " step " << step);
        BOOST_REQUIRE_EQUAL(h.live.misses(), static_cast<std::uint32_t>(trailing));
      }
      // Reasons match the transitions.
      for (const auto& ch : h.changes) {
        if (ch.to == LState::suspect) BOOST_REQUIRE((ch.reason == Reason::echo_unanswered));
        if (ch.to == LState::down) {
          BOOST_REQUIRE((ch.reason == Reason::misses_exceeded));
          BOOST_REQUIRE_EQUAL(ch.misses, 3U);
        }
        if (ch.to == LState::up && ch.from != LState::absent)
          BOOST_REQUIRE((ch.reason == Reason::echo_reply || ch.reason == Reason::rx_activity));
      }
      ++sequences;
    }
  }
  BOOST_TEST(sequences == 9840);  // 3 + 9 + ... + 6561
}

// Timing of the first detection: idle 10 s, then echoes 1 s apart, down 3 s after the first.
BOOST_AUTO_TEST_CASE(silent_tunnel_goes_down_on_time) {
  Harness h(ka::LivenessConfig{});
  const auto t0 = h.now;
  h.collect(h.live.on_interface(true, h.now));
  h.collect(h.live.on_rx_activity(h.rx_packets, h.now));
  h.advance_to(t0 + minutes(1));
  BOOST_REQUIRE_EQUAL(h.changes.size(), 3U);
  BOOST_TEST((h.changes[1].to == LState::suspect));
  BOOST_TEST((h.changes[2].to == LState::down));
  BOOST_TEST(h.echoes[0].first.ms() - t0.ms() == 10'000);
  BOOST_TEST(h.echoes[1].first.ms() - t0.ms() == 11'000);
  BOOST_TEST(h.echoes[2].first.ms() - t0.ms() == 12'000);
  BOOST_TEST(h.changes[2].silent_for.ms() == 13'000);
  // While down it keeps probing once a second, and the first reply brings it up.
  BOOST_TEST(h.echoes.size() == 51U);  // t0+10 s .. t0+60 s
  const auto id = h.echoes.back().second;
  h.advance_to(h.now + milliseconds(5));
  h.collect(h.live.on_echo_reply(id, h.now));
  BOOST_TEST((h.live.state() == LState::up));
  BOOST_TEST((h.changes.back().reason == Reason::echo_reply));
}

// Idle mode: no keepalive at all while traffic flows; one echo per interval once it stops.
BOOST_AUTO_TEST_CASE(idle_vs_busy) {
  Harness h(ka::LivenessConfig{});
  h.collect(h.live.on_interface(true, h.now));
  h.collect(h.live.on_rx_activity(h.rx_packets, h.now));
  const auto t0 = h.now;
  for (int i = 1; i <= 36'000; ++i)
    h.rx_times.push_back(t0 + milliseconds(100 * i));  // 1 hour busy
  h.advance_to(t0 + minutes(60));
  BOOST_TEST(h.echoes.empty());
  BOOST_TEST((h.live.state() == LState::up));
  // Idle now, with a peer that answers after 20 ms: one echo per 10 s.
  const auto t1 = h.now;
  while (h.now < t1 + minutes(10)) {
    const auto id = h.next_echo();
    h.advance_to(h.now + milliseconds(20));
    h.collect(h.live.on_echo_reply(id, h.now));
  }
  BOOST_TEST(h.echoes.size() >= 59U);
  BOOST_TEST(h.echoes.size() <= 61U);
  BOOST_TEST((h.live.state() == LState::up));
  BOOST_TEST(h.live.rtt().srtt().ms() == 20);
}

// Always mode sends on every interval even with traffic; off sends nothing.
BOOST_AUTO_TEST_CASE(always_and_off) {
  Harness a(cfg_always());
  a.collect(a.live.on_interface(true, a.now));
  const auto t0 = a.now;
  for (int i = 1; i <= 6000; ++i) a.rx_times.push_back(t0 + milliseconds(100 * i));
  a.advance_to(t0 + minutes(10));
  BOOST_TEST(a.echoes.size() == 60U);
  BOOST_TEST((a.live.state() == LState::up));  // echoes unanswered, but traffic is life

  ka::LivenessConfig off;
  off.mode = ka::KeepaliveMode::off;
  Harness o(off);
  o.collect(o.live.on_interface(true, o.now));
  BOOST_TEST((o.live.next_deadline() == ka::kNever));
  o.advance_to(o.now + minutes(60));
  BOOST_TEST(o.echoes.empty());
  BOOST_TEST((o.live.state() == LState::up));
}

// A busy tunnel under 20 % loss of data is never declared down, in either mode, whether
// 20 % of the echoes are lost too or the peer answers no echo at all (traffic alone must
// then carry the proof of life).
BOOST_AUTO_TEST_CASE(busy_under_loss_never_down) {
  for (auto mode : {ka::KeepaliveMode::idle, ka::KeepaliveMode::always}) {
    for (std::uint32_t seed : {1U, 2U, 3U, 4U}) {
      for (double echo_loss : {0.2, 1.0}) {
        ka::LivenessConfig cfg;
        cfg.mode = mode;
        Harness h(cfg);
        std::mt19937 rng(seed);
        std::bernoulli_distribution lost(0.2);
        h.collect(h.live.on_interface(true, h.now));
        h.collect(h.live.on_rx_activity(h.rx_packets, h.now));
        const auto t0 = h.now;
        // Data every 200 ms for 2 hours, each packet lost with 20 %.
        for (int i = 1; i <= 36'000; ++i)
          if (!lost(rng)) h.rx_times.push_back(t0 + milliseconds(200 * i));
        std::size_t answered = 0;
        while (h.now < t0 + minutes(119)) {
          const auto n = h.echoes.size();
          h.advance_to(std::min(h.live.next_deadline(), t0 + minutes(119)));
          if (h.echoes.size() > n && !std::bernoulli_distribution(echo_loss)(rng)) {
            h.advance_to(h.now + milliseconds(15));
            h.collect(h.live.on_echo_reply(h.echoes.back().second, h.now));
            ++answered;
          }
        }
        for (const auto& c : h.changes) BOOST_REQUIRE((c.to != LState::down));
        // Idle mode: a busy tunnel needs no keepalive. Always: one per 10 s.
        if (mode == ka::KeepaliveMode::idle) BOOST_TEST(h.echoes.empty());
        if (mode == ka::KeepaliveMode::always) BOOST_TEST(h.echoes.size() == 714U);
        if (echo_loss == 1.0) BOOST_TEST(answered == 0U);
        BOOST_TEST_MESSAGE("busy 2 h, 20 % data loss, "
                           << echo_loss * 100 << " % echo loss, mode " << ka::to_string(mode)
                           << ", seed " << seed << ": " << h.echoes.size() << " echoes, "
                           << answered << " answered, never down");
      }
    }
  }
}

// Interface gone: absent, nothing scheduled, replies ignored. Back: up, keepalive resumes.
BOOST_AUTO_TEST_CASE(interface_absent_present) {
  Harness h(ka::LivenessConfig{});
  BOOST_TEST((h.live.next_deadline() == ka::kNever));
  BOOST_TEST(h.live.on_tick(h.now).empty());
  h.collect(h.live.on_interface(true, h.now));
  BOOST_TEST((h.changes.back().reason == Reason::interface_appeared));
  const auto id = h.next_echo();
  h.collect(h.live.on_interface(false, h.now));
  BOOST_TEST((h.live.state() == LState::absent));
  BOOST_TEST((h.changes.back().reason == Reason::interface_gone));
  BOOST_TEST((h.live.next_deadline() == ka::kNever));
  BOOST_TEST(h.live.on_echo_reply(id, h.now).empty());
  h.advance_to(h.now + minutes(10));
  BOOST_TEST(h.echoes.size() == 1U);
  BOOST_TEST(h.live.on_interface(false, h.now).empty());  // repeated: no transition
  // Back (a reconnect; counters restart at 0): up, first echo one interval later.
  h.rx_packets = 0;
  const auto back = h.now;
  h.collect(h.live.on_interface(true, h.now));
  BOOST_TEST((h.live.state() == LState::up));
  h.collect(h.live.on_rx_activity(h.rx_packets, h.now));  // baseline, not life
  h.next_echo();
  BOOST_TEST(h.echoes.back().first.ms() - back.ms() == 10'000);
  // Interface gone while down, then back: up again.
  h.advance_to(h.now + seconds(5));
  BOOST_TEST((h.live.state() == LState::down));
  h.collect(h.live.on_interface(false, h.now));
  h.collect(h.live.on_interface(true, h.now));
  BOOST_TEST((h.live.state() == LState::up));
  BOOST_TEST(h.live.misses() == 0U);
}

// Unknown and duplicate replies change nothing; a late reply still counts as life.
BOOST_AUTO_TEST_CASE(replies_matching) {
  Harness h(cfg_always());
  h.collect(h.live.on_interface(true, h.now));
  const auto id = h.next_echo();
  BOOST_TEST(h.live.on_echo_reply(id + 100, h.now).empty());
  BOOST_TEST(h.live.on_echo_reply(0, h.now).empty());
  h.advance_to(h.now + milliseconds(1500));  // judged: miss -> suspect
  BOOST_TEST((h.live.state() == LState::suspect));
  h.collect(h.live.on_echo_reply(id, h.now));  // late reply
  BOOST_TEST((h.live.state() == LState::up));
  BOOST_TEST(h.live.replies() == 1U);
  BOOST_TEST(h.live.on_echo_reply(id, h.now).empty());  // duplicate
  BOOST_TEST(h.live.replies() == 1U);
  BOOST_TEST(h.live.loss().lost() == 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(liveness_reconfigure)

// A reload with new settings keeps a down tunnel down (it was reported up before).
BOOST_AUTO_TEST_CASE(reload_keeps_down_state) {
  using namespace tunshim::keepalive;
  LivenessConfig c;
  c.interval = seconds(2);
  c.suspect_interval = seconds(1);
  c.reply_timeout = seconds(1);
  c.down_after_misses = 2;
  Liveness l(c);
  Timestamp t = Timestamp::from_ms(0);
  l.on_interface(true, t);
  l.on_rx_activity(5, t);
  for (int i = 0; i < 40 && l.state() != Liveness::State::down; ++i) {
    t = l.next_deadline();
    l.on_tick(t);
  }
  BOOST_REQUIRE((l.state() == Liveness::State::down));
  const auto misses = l.misses();
  c.interval = seconds(5);
  l.reconfigure(c);
  BOOST_TEST((l.state() == Liveness::State::down));
  BOOST_TEST(l.misses() == misses);
  BOOST_TEST(l.config().interval.ms() == 5000);
  // Still probing at the suspect pace, and an answer brings it up as before.
  BOOST_TEST((l.next_deadline() != kNever));
}

BOOST_AUTO_TEST_SUITE_END()
