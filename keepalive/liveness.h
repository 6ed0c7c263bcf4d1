// Keepalive schedule and tunnel liveness for one tunnel interface, sans-I/O.
//
// States: absent (no such interface) -> up -> suspect (an echo went unanswered; probe every
// suspect_interval) -> down (down_after_misses consecutive unanswered echoes with nothing
// received meanwhile). Any received packet on the interface is proof of life, as is a
// reply to any of our recent echoes, so a busy tunnel under loss is never declared down.
// Every transition carries a reason.
//
// Driving it: call on_rx_activity() with the interface's rx packet counter and then
// on_tick() whenever now >= next_deadline(); pass echo replies to on_echo_reply() and
// interface appear/disappear events to on_interface(). Send an ICMP echo for every
// SendEcho action, mapping its id to the ICMP sequence number (and a nonce).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <variant>

#include "keepalive/action_list.h"
#include "keepalive/rtt.h"
#include "keepalive/time.h"

namespace tunshim::keepalive {

enum class KeepaliveMode : std::uint8_t {
  idle,    // echo only when nothing was received for `interval` (the default)
  always,  // echo every `interval`, traffic or not
  off,     // no echoes at all; liveness then only follows the interface (never suspect)
};

struct LivenessConfig {
  KeepaliveMode mode = KeepaliveMode::idle;
  // keepalive_interval: 10 s is below the shortest common NAT/firewall UDP and ICMP idle
  // timeouts (typically 30 s and up) with room for one lost echo.
  Duration interval = seconds(10);
  // Echo period while suspect or down: probe faster to decide quickly.
  Duration suspect_interval = seconds(1);
  // How long an echo may take to be answered. Clamped to at most suspect_interval, so at
  // most one echo awaits judgment. 1 s is far above the RTT of any tunnel we serve.
  Duration reply_timeout = seconds(1);
  // down_after_misses (default 3): consecutive unanswered echoes, nothing received.
  std::uint32_t down_after_misses = 3;
};

class Liveness {
 public:
  enum class State : std::uint8_t { absent, up, suspect, down };
  enum class Reason : std::uint8_t {
    interface_appeared,  // absent -> up
    interface_gone,      // any -> absent
    echo_unanswered,     // up -> suspect
    misses_exceeded,  // suspect -> down: down_after_misses echoes unanswered, nothing received
    echo_reply,       // suspect/down -> up: an echo was answered
    rx_activity,      // suspect/down -> up: the interface received packets
  };

  // Send one ICMP echo request to the target, with sequence/nonce derived from `id`.
  struct SendEcho {
    std::uint32_t id = 0;
  };
  struct StateChanged {
    State from = State::absent;
    State to = State::absent;
    Reason reason = Reason::interface_appeared;
    std::uint32_t misses = 0;  // consecutive unanswered echoes at the time
    Duration silent_for{};     // time since the last sign of life (0 when not known)
  };
  using Action = std::variant<SendEcho, StateChanged>;
  // One event yields at most one transition and one echo; 4 leaves slack.
  using Actions = ActionList<Action, 4>;

  // Intervals below 1 ms and 0 misses are raised to 1; starts absent.
  explicit Liveness(const LivenessConfig& config) noexcept;

  // New settings (a reload) for the same tunnel: the state, the echoes awaiting judgment,
  // the miss count and the RTT history are kept; the next deadline follows the new
  // intervals. A reload must not make a down tunnel look up, or a suspect one fresh.
  void reconfigure(const LivenessConfig& config) noexcept;
  const LivenessConfig& config() const noexcept { return config_; }

  // Call when the interface appears (present) or disappears. Appearing -> up, with the
  // idle timer starting now; disappearing -> absent, pending echoes forgotten.
  Actions on_interface(bool present, Timestamp now) noexcept;
  // Call with the interface's rx packet counter, at least right before every on_tick().
  // The first reading after the interface appears is the baseline; any later change
  // (including a reset to 0 by a re-created interface) is life.
  Actions on_rx_activity(std::uint64_t rx_packets, Timestamp now) noexcept;
  // Call when an echo reply matching SendEcho{id} arrives (the caller checked identifier,
  // nonce and length). Unknown or too old ids are ignored. Late replies still count as life.
  Actions on_echo_reply(std::uint32_t id, Timestamp now) noexcept;
  // Call whenever now >= next_deadline(): judges an overdue echo, sends the next one.
  Actions on_tick(Timestamp now) noexcept;

  // The next time on_tick() needs to run; kNever when absent or with keepalive off.
  Timestamp next_deadline() const noexcept;

  State state() const noexcept { return state_; }
  std::uint32_t misses() const noexcept { return misses_; }
  const RttEstimator& rtt() const noexcept { return rtt_; }
  const LossWindow& loss() const noexcept { return loss_; }
  std::uint64_t echoes_sent() const noexcept { return echoes_sent_; }
  std::uint64_t replies() const noexcept { return replies_; }

 private:
  struct Sent {
    std::uint32_t id = 0;  // 0: empty slot (ids start at 1)
    Timestamp at{};
  };
  static constexpr std::size_t kRing = 8;  // echoes remembered for late replies and RTT

  void transition(Actions& out, State to, Reason reason, Timestamp now) noexcept;
  void life(Actions& out, Reason reason, Timestamp now) noexcept;
  Timestamp next_echo_at() const noexcept;

  LivenessConfig config_;
  State state_ = State::absent;
  RttEstimator rtt_;
  LossWindow loss_;
  std::array<Sent, kRing> ring_{};
  std::uint32_t next_id_ = 1;
  std::uint32_t pending_id_ = 0;  // echo awaiting judgment, 0 when none
  Timestamp judge_at_ = kNever;
  bool life_since_echo_ = false;  // rx seen since pending_id_ was sent
  Timestamp last_life_{};         // last reply, rx activity or interface appearance
  Timestamp last_echo_{};         // last echo sent (or interface appearance)
  std::uint64_t rx_packets_ = 0;
  bool have_rx_ = false;
  std::uint32_t misses_ = 0;
  std::uint64_t echoes_sent_ = 0;
  std::uint64_t replies_ = 0;
};

std::string_view to_string(Liveness::State s) noexcept;
std::string_view to_string(Liveness::Reason r) noexcept;
std::string_view to_string(KeepaliveMode m) noexcept;

}  // namespace tunshim::keepalive
