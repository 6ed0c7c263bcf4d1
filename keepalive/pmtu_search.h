// Path-MTU search through a tunnel, sans-I/O, after RFC 8899 (DPLPMTUD) in spirit.
//
// Probes are ICMP echo requests of a chosen total IP size with DF set, sent through the
// tunnel to the peer; a reply of the full size proves min(forward, reverse) >= size.
// States: BASE (confirm the fallback size answers) -> SEARCH (binary search between the
// largest confirmed size and the upper bound) -> COMPLETE (re-confirm now and then, search
// upward again after reprobe_interval). ERROR: the target does not answer even base-size
// probes; the value in effect is kept and the fallback is never replaced by a guess.
//
// Loss tolerance: a size is judged too big only after kMaxProbes unanswered probes while a
// small (base-size) control probe sent alongside was answered. Without that control reply
// the round says nothing about size ("path silent"): a round of base-size probes alone
// follows, and only if that one is silent too is the path called silent (ERROR); if it
// is answered, the interrupted round is repeated. The final boundary of a search, and a failed
// re-confirmation, must be judged too big twice (three times on a lossy path) before they
// count, so random loss does not shrink the result.
//
// Driving it: perform every SendProbe (id -> ICMP sequence and a nonce; size = total IP
// length), pass matching replies to on_probe_reply(), ICMP too-big errors that quote a
// probe to on_ptb_hint(), interface MTU changes (0 = interface gone) to
// on_interface_mtu(), and call on_tick() whenever now >= next_deadline().
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <variant>

#include "keepalive/action_list.h"
#include "keepalive/rtt.h"
#include "keepalive/time.h"

namespace tunshim::keepalive {

enum class IpFamily : std::uint8_t { ipv4, ipv6 };

// Specification constants.
// RFC 8899 5.1.2 MAX_PROBES: probes of one size sent before it is judged too big.
inline constexpr int kMaxProbes = 3;
// RFC 8899 5.1.2 BASE_PLPMTU: 1200 is its IPv4 suggestion, 1280 the IPv6 minimum link MTU
// (RFC 8200 5). The fallback may be configured down to the smallest sizes every host must
// accept: 576 for IPv4 (RFC 791) and 1280 for IPv6.
inline constexpr std::uint16_t kDefaultBase4 = 1200;
inline constexpr std::uint16_t kDefaultBase6 = 1280;
inline constexpr std::uint16_t kMinBase4 = 576;
inline constexpr std::uint16_t kMinBase6 = 1280;

// Implementation constants.
// Rounds in a row without any reply (neither the size nor the control probes) before the
// path is called silent (ERROR). After a silent search or confirm round the next rounds
// are base-size probes alone (three each), so calling a live path silent takes a silent
// round and then two silent base rounds: at 19 % round-trip loss 3.6 % x 0.7 % x 0.7 %
// per too-big round, at 30 % 9 % x 2.7 % x 2.7 %. A dead path is called silent after
// three rounds (about 3 s before the first RTT sample).
inline constexpr int kMaxSilentRounds = 3;
// Times a boundary size (or a failed re-confirmation) must be judged too big before the
// search accepts it. A size that fits is misjudged by one round with probability loss^3
// (2.7 % at 30 % loss). Two rounds are the rule; three once the control probes show loss
// of kLossyPermille or more, because then a misjudged earlier size (hi lowered by loss)
// has to survive two more rounds at its boundary (13 % x 0.07 % per search at 30 %).
inline constexpr int kBoundaryStrikes = 2;
inline constexpr int kBoundaryStrikesLossy = 3;
inline constexpr int kLossyPermille = 50;

struct PmtuConfig {
  IpFamily family = IpFamily::ipv4;
  // Fallback size (BASE_PLPMTU) in effect until a search completes. 0: 1200 (IPv4) or
  // 1280 (IPv6); raised to 576 / 1280 if configured lower.
  std::uint16_t base = 0;
  // Upper bound when the operator allows probing above the interface MTU; 0: the
  // interface MTU is the upper bound.
  std::uint16_t probe_max = 0;
  // COMPLETE searches upward again this long after completing (reprobe_interval).
  Duration reprobe_interval = minutes(10);
  // COMPLETE re-confirms the value this often (one probe of the value's size when the
  // path is fine). 30 s bounds how long a new black hole goes unnoticed.
  Duration confirm_interval = seconds(30);
  // In ERROR, a round of base-size probes this often.
  Duration error_retry_interval = seconds(5);
  // Probe timeout: max(3 * SRTT, RTO of RFC 6298, floor), at most max_probe_timeout;
  // `initial_probe_timeout` before the first RTT sample (RFC 6298 2.1: 1 s). The floor of
  // 200 ms (Linux TCP's minimum RTO) absorbs scheduling and VPN-crypto jitter on ~1 ms
  // tunnels and keeps a worst-case lossless search (10 too-big rounds) under 3 s.
  Duration min_probe_timeout = milliseconds(200);
  Duration max_probe_timeout = seconds(5);
  Duration initial_probe_timeout = seconds(1);
  // The kMaxProbes tries of one size go out max(2 * SRTT, this) apart (at most a quarter
  // of the timeout), not a full timeout apart: spacing decorrelates losses, and waiting a
  // full timeout per try would triple the cost of every too-big size.
  Duration min_try_spacing = milliseconds(20);
};

class PmtuSearch {
 public:
  enum class State : std::uint8_t {
    disabled,  // not started, or the interface is gone
    base,      // confirming that base-size probes are answered
    search,    // binary search in progress
    complete,  // pmtu() is confirmed; re-confirming and periodically raising
    error,     // the target answers nothing, not even base-size probes
  };

  // Send an ICMP echo of total IP length `size`, DF set, numbered `id`.
  struct SendProbe {
    std::uint32_t id = 0;
    std::uint16_t size = 0;
  };
  // The value to clamp to (and optionally set as interface MTU) changed.
  struct PmtuChanged {
    std::uint16_t pmtu = 0;
  };
  struct StateChanged {
    State state = State::disabled;
  };
  using Action = std::variant<SendProbe, PmtuChanged, StateChanged>;
  // Most in one event: a black hole (PmtuChanged, StateChanged, SendProbe) or a search
  // that completes at once (two StateChanged, PmtuChanged); two probes per try.
  using Actions = ActionList<Action, 8>;

  struct Stats {
    std::uint64_t probes_sent = 0;
    std::uint64_t replies = 0;        // matched replies (size and control probes)
    std::uint64_t stray_replies = 0;  // unknown id, or a size that does not match the id
    std::uint64_t rounds = 0;         // sizes tried: one round = up to kMaxProbes probes
    std::uint64_t searches_completed = 0;
    std::uint64_t black_holes = 0;
    std::uint64_t ptb_hints_used = 0;
    std::uint64_t symptom_checks = 0;  // re-confirmations brought forward by on_symptoms()
  };

  // Out-of-range settings are raised to their floors (base to 576 / 1280, timers to 1 ms).
  // Starts disabled; nothing happens before on_start() and a non-zero interface MTU.
  explicit PmtuSearch(const PmtuConfig& config) noexcept;

  // Call once when the daemon starts managing the tunnel. Starts in BASE if the
  // interface MTU is known, else waits for on_interface_mtu().
  Actions on_start(Timestamp now) noexcept;
  // Call whenever now >= next_deadline().
  Actions on_tick(Timestamp now) noexcept;
  // Call with a reply that matched a SendProbe's identifier, sequence and nonce; `size`
  // is the total IP length of the reply. A size that differs from what was sent under
  // that id, or an unknown id, is ignored (counted as stray).
  Actions on_probe_reply(std::uint32_t probe_id, std::uint16_t size, Timestamp now) noexcept;
  // Call with the MTU from an ICMP frag-needed / ICMPv6 packet-too-big that quotes one of
  // our probes. Only narrows the search; never raises, never lowers pmtu() by itself
  // (in COMPLETE a smaller hint triggers an immediate re-confirmation).
  Actions on_ptb_hint(std::uint16_t mtu, Timestamp now) noexcept;
  // Call when the data path shows a burst of black-hole symptoms (keepalive::SymptomBurst):
  // in COMPLETE, the re-confirmation due later runs now (one probe of the current size when
  // the path still carries it; when it does not, the black-hole path: the fallback at once
  // and a fresh search). Anywhere else a search is already under way or cannot help:
  // nothing happens. Returns no actions then.
  Actions on_symptoms(Timestamp now) noexcept;
  // Call with the interface MTU when known and on every change; 0 means the interface is
  // gone (state disabled). A new interface after 0 starts over from BASE.
  Actions on_interface_mtu(std::uint16_t mtu, Timestamp now) noexcept;

  // When on_tick() is next needed; kNever when disabled.
  Timestamp next_deadline() const noexcept;

  State state() const noexcept { return state_; }
  // The size in effect: the fallback until a search completes, then the confirmed value.
  // 0 before the first start.
  std::uint16_t pmtu() const noexcept { return pmtu_; }
  std::uint16_t base_size() const noexcept { return base_eff_; }
  std::uint16_t upper_bound() const noexcept { return upper_; }
  // Current probe timeout and the spacing between tries, from the RTT estimate.
  Duration probe_timeout() const noexcept;
  Duration try_spacing() const noexcept;
  const RttEstimator& rtt() const noexcept { return rtt_; }
  // Loss of the base-size control probes (each judged when its round times out).
  const LossWindow& control_loss() const noexcept { return loss_; }
  // Verdicts needed before a boundary or a black hole counts (see kBoundaryStrikes).
  int strikes_needed() const noexcept;
  const Stats& stats() const noexcept { return stats_; }

 private:
  // check: base-size probes sent after a search or confirm round that got nothing back,
  // not even its control probes; answered, the interrupted round is repeated.
  enum class Round : std::uint8_t { none, base, search, confirm, check };
  struct Sent {
    std::uint32_t id = 0;  // 0: empty slot
    std::uint16_t size = 0;
    Timestamp at{};
  };
  static constexpr std::size_t kRing = 16;  // probes remembered for matching and RTT

  void begin(Actions& out, Timestamp now) noexcept;
  void set_state(Actions& out, State s) noexcept;
  void set_pmtu(Actions& out, std::uint16_t v) noexcept;
  void recompute_bounds() noexcept;
  std::uint32_t send(Actions& out, std::uint16_t size, Timestamp now) noexcept;
  void start_round(Actions& out, Round kind, std::uint16_t size, Timestamp now) noexcept;
  void send_try(Actions& out, Timestamp now) noexcept;
  void round_answered(Actions& out, Timestamp now) noexcept;
  void round_unanswered(Actions& out, Timestamp now) noexcept;
  void silent_round(Actions& out, Timestamp now) noexcept;
  void start_search(Actions& out, std::uint16_t from, Timestamp now) noexcept;
  void search_step(Actions& out, Timestamp now) noexcept;
  void complete(Actions& out, Timestamp now) noexcept;
  void enter_error(Actions& out, Timestamp now) noexcept;

  PmtuConfig config_;
  State state_ = State::disabled;
  bool started_ = false;
  std::uint16_t interface_mtu_ = 0;
  std::uint16_t upper_ = 0;
  std::uint16_t base_eff_ = 0;  // min(configured base, upper bound)
  std::uint16_t pmtu_ = 0;

  // Binary search: every size <= lo_ is confirmed; sizes in (lo_, hi_] are untested;
  // min_fail_ (0: none) is the smallest size judged too big, strikes_ times.
  std::uint16_t lo_ = 0;
  std::uint16_t hi_ = 0;
  std::uint16_t min_fail_ = 0;
  int strikes_ = 0;
  int silent_rounds_ = 0;
  Round resume_kind_ = Round::none;  // what a check round interrupted
  int confirm_failures_ = 0;

  // The round in progress.
  Round round_ = Round::none;
  std::uint16_t round_size_ = 0;
  int tries_ = 0;
  std::array<std::uint32_t, kMaxProbes> try_ids_{};
  int controls_sent_ = 0;
  int controls_answered_ = 0;
  std::array<std::uint32_t, kMaxProbes> control_ids_{};
  Timestamp step_at_ = kNever;  // next try, or the verdict after the last try

  Timestamp confirm_at_ = kNever;
  Timestamp reprobe_at_ = kNever;
  Timestamp error_retry_at_ = kNever;

  std::array<Sent, kRing> ring_{};
  std::uint32_t next_id_ = 1;
  RttEstimator rtt_;
  LossWindow loss_;
  Stats stats_;
};

std::string_view to_string(PmtuSearch::State s) noexcept;

}  // namespace tunshim::keepalive
