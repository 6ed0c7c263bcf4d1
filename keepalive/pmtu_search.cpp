#include "keepalive/pmtu_search.h"

#include <algorithm>

namespace tunshim::keepalive {

PmtuSearch::PmtuSearch(const PmtuConfig& config) noexcept : config_(config) {
  const bool v6 = config_.family == IpFamily::ipv6;
  if (config_.base == 0) config_.base = v6 ? kDefaultBase6 : kDefaultBase4;
  config_.base = std::max(config_.base, v6 ? kMinBase6 : kMinBase4);
  config_.min_try_spacing = std::max(config_.min_try_spacing, milliseconds(1));
  config_.min_probe_timeout = std::max(config_.min_probe_timeout, milliseconds(1));
  config_.max_probe_timeout = std::max(config_.max_probe_timeout, config_.min_probe_timeout);
  config_.confirm_interval = std::max(config_.confirm_interval, milliseconds(1));
  config_.reprobe_interval = std::max(config_.reprobe_interval, milliseconds(1));
  config_.error_retry_interval = std::max(config_.error_retry_interval, milliseconds(1));
}

Duration PmtuSearch::probe_timeout() const noexcept {
  const Duration rto = rtt_.rto(config_.min_probe_timeout, config_.max_probe_timeout,
                                config_.initial_probe_timeout);
  if (!rtt_.has_sample()) return rto;
  // 3 * SRTT on top of the RTO: with a steady RTT, RTTVAR decays towards 0 and the RTO
  // towards SRTT, too tight for a full-size probe that queues behind traffic.
  return std::min(std::max(rto, rtt_.srtt() * 3), config_.max_probe_timeout);
}

Duration PmtuSearch::try_spacing() const noexcept {
  const Duration quarter = probe_timeout() / 4;
  if (!rtt_.has_sample()) return std::max(quarter, config_.min_try_spacing);
  return std::clamp(rtt_.srtt() * 2, config_.min_try_spacing,
                    std::max(quarter, config_.min_try_spacing));
}

void PmtuSearch::set_state(Actions& out, State s) noexcept {
  if (s == state_) return;
  state_ = s;
  out.push(StateChanged{s});
}

void PmtuSearch::set_pmtu(Actions& out, std::uint16_t v) noexcept {
  if (v == pmtu_) return;
  pmtu_ = v;
  out.push(PmtuChanged{v});
}

void PmtuSearch::recompute_bounds() noexcept {
  upper_ = config_.probe_max != 0 ? config_.probe_max : interface_mtu_;
  base_eff_ = std::min(config_.base, upper_);
}

std::uint32_t PmtuSearch::send(Actions& out, std::uint16_t size, Timestamp now) noexcept {
  const std::uint32_t id = next_id_;
  next_id_ = next_id_ == UINT32_MAX ? 1 : next_id_ + 1;
  ring_[id % kRing] = Sent{id, size, now};
  ++stats_.probes_sent;
  out.push(SendProbe{id, size});
  return id;
}

void PmtuSearch::start_round(Actions& out, Round kind, std::uint16_t size,
                             Timestamp now) noexcept {
  round_ = kind;
  round_size_ = size;
  tries_ = 0;
  try_ids_ = {};
  control_ids_ = {};
  controls_sent_ = 0;
  controls_answered_ = 0;
  ++stats_.rounds;
  send_try(out, now);
}

void PmtuSearch::send_try(Actions& out, Timestamp now) noexcept {
  const auto i = static_cast<std::size_t>(tries_);
  try_ids_[i] = send(out, round_size_, now);
  // From the second try on, a base-size control probe goes along: its reply is what
  // tells "too big" apart from "path silent". The first try goes alone, so on a healthy
  // path a size that fits costs exactly one probe.
  if (tries_ >= 1 && round_size_ > base_eff_) {
    control_ids_[i] = send(out, base_eff_, now);
    ++controls_sent_;
  }
  ++tries_;
  step_at_ = now + (tries_ < kMaxProbes ? try_spacing() : probe_timeout());
}

void PmtuSearch::begin(Actions& out, Timestamp now) noexcept {
  recompute_bounds();
  lo_ = hi_ = min_fail_ = 0;
  strikes_ = silent_rounds_ = confirm_failures_ = 0;
  confirm_at_ = reprobe_at_ = error_retry_at_ = kNever;
  set_pmtu(out, base_eff_);
  set_state(out, State::base);
  start_round(out, Round::base, base_eff_, now);
}

PmtuSearch::Actions PmtuSearch::on_start(Timestamp now) noexcept {
  Actions out;
  if (started_) return out;
  started_ = true;
  if (interface_mtu_ != 0) begin(out, now);
  return out;
}

void PmtuSearch::start_search(Actions& out, std::uint16_t from, Timestamp now) noexcept {
  lo_ = std::min(from, upper_);
  hi_ = upper_;
  min_fail_ = 0;
  strikes_ = 0;
  set_state(out, State::search);
  search_step(out, now);
}

void PmtuSearch::search_step(Actions& out, Timestamp now) noexcept {
  if (lo_ < hi_) {
    // Upper middle: lo_ is already confirmed, so the candidate is always above it.
    const auto mid = static_cast<std::uint16_t>(lo_ + (hi_ - lo_ + 1) / 2);
    start_round(out, Round::search, mid, now);
  } else if (min_fail_ != 0 && strikes_ < strikes_needed()) {
    start_round(out, Round::search, min_fail_, now);  // re-check the boundary
  } else {
    complete(out, now);
  }
}

void PmtuSearch::complete(Actions& out, Timestamp now) noexcept {
  round_ = Round::none;
  step_at_ = kNever;
  ++stats_.searches_completed;
  set_state(out, State::complete);
  set_pmtu(out, lo_);
  confirm_failures_ = 0;
  confirm_at_ = now + config_.confirm_interval;
  reprobe_at_ = now + config_.reprobe_interval;
}

void PmtuSearch::enter_error(Actions& out, Timestamp now) noexcept {
  // Silence proves nothing about size: pmtu() stays what it was (the fallback if nothing
  // was ever confirmed). Base-size rounds continue every error_retry_interval.
  round_ = Round::none;
  step_at_ = kNever;
  silent_rounds_ = 0;
  set_state(out, State::error);
  error_retry_at_ = now + config_.error_retry_interval;
}

void PmtuSearch::round_answered(Actions& out, Timestamp now) noexcept {
  const Round kind = round_;
  const std::uint16_t size = round_size_;
  round_ = Round::none;
  step_at_ = kNever;
  silent_rounds_ = 0;
  switch (kind) {
    case Round::none:
      break;
    case Round::base:
      // From BASE or ERROR: the path carries base-size probes; search from there.
      error_retry_at_ = kNever;
      start_search(out, base_eff_, now);
      break;
    case Round::search:
      lo_ = std::max(lo_, size);
      if (min_fail_ != 0 && size >= min_fail_) {
        // The recorded failure was loss, not size: what lies above is unknown again.
        hi_ = upper_;
        min_fail_ = 0;
        strikes_ = 0;
      }
      hi_ = std::max(hi_, lo_);
      search_step(out, now);
      break;
    case Round::confirm:
      confirm_failures_ = 0;
      confirm_at_ = now + config_.confirm_interval;
      break;
    case Round::check:
      // The path carries base-size probes: the silent round was loss; repeat it (from
      // the current bounds, which may have moved meanwhile).
      if (resume_kind_ == Round::search) search_step(out, now);
      if (resume_kind_ == Round::confirm) start_round(out, Round::confirm, pmtu_, now);
      break;
  }
}

void PmtuSearch::silent_round(Actions& out, Timestamp now) noexcept {
  if (state_ == State::error) {
    error_retry_at_ = now + config_.error_retry_interval;
    return;
  }
  if (++silent_rounds_ >= kMaxSilentRounds) {
    enter_error(out, now);
    return;
  }
  if (round_ == Round::search || round_ == Round::confirm) {
    // Neither the size nor its control probes came back. Before concluding anything, ask
    // with base-size probes alone whether the path carries anything (see
    // kMaxSilentRounds), so random loss does not turn a lossy path into a silent one.
    resume_kind_ = round_;
    start_round(out, Round::check, base_eff_, now);
    return;
  }
  // Not yet conclusive: the same size again.
  const Round kind = round_;
  start_round(out, kind, round_size_, now);
}

int PmtuSearch::strikes_needed() const noexcept {
  return loss_.loss_permille() >= kLossyPermille ? kBoundaryStrikesLossy : kBoundaryStrikes;
}

void PmtuSearch::round_unanswered(Actions& out, Timestamp now) noexcept {
  const std::uint16_t size = round_size_;
  // Every control probe of this round has had at least a full timeout.
  for (int i = 0; i < controls_sent_; ++i) loss_.record(i >= controls_answered_);
  if (round_ == Round::base || round_ == Round::check || controls_answered_ == 0) {
    silent_round(out, now);
    if (state_ == State::error) {
      round_ = Round::none;
      step_at_ = kNever;
    }
    return;
  }
  silent_rounds_ = 0;
  if (round_ == Round::search) {
    round_ = Round::none;
    if (min_fail_ != 0 && size == min_fail_) {
      ++strikes_;
    } else if (min_fail_ == 0 || size < min_fail_) {
      min_fail_ = size;
      strikes_ = 1;
    }
    hi_ = std::min<std::uint16_t>(hi_, static_cast<std::uint16_t>(size - 1));
    hi_ = std::max(hi_, lo_);
    search_step(out, now);
    return;
  }
  // Confirmation lost while base-size probes pass.
  if (++confirm_failures_ < strikes_needed()) {
    start_round(out, Round::confirm, pmtu_, now);
    return;
  }
  // A black hole: drop to the fallback at once, then find the new size.
  ++stats_.black_holes;
  round_ = Round::none;
  confirm_failures_ = 0;
  confirm_at_ = reprobe_at_ = kNever;
  set_pmtu(out, base_eff_);
  set_state(out, State::base);
  start_round(out, Round::base, base_eff_, now);
}

PmtuSearch::Actions PmtuSearch::on_tick(Timestamp now) noexcept {
  Actions out;
  if (state_ == State::disabled) return out;
  if (round_ != Round::none) {
    if (now < step_at_) return out;
    if (tries_ < kMaxProbes) {
      send_try(out, now);
    } else {
      round_unanswered(out, now);
    }
    return out;
  }
  if (state_ == State::error) {
    if (now >= error_retry_at_) {
      error_retry_at_ = kNever;
      start_round(out, Round::base, base_eff_, now);
    }
    return out;
  }
  if (state_ == State::complete) {
    if (now >= reprobe_at_) {
      if (pmtu_ < upper_) {
        confirm_at_ = reprobe_at_ = kNever;
        start_search(out, pmtu_, now);
        return out;
      }
      reprobe_at_ = now + config_.reprobe_interval;  // already at the upper bound
    }
    if (now >= confirm_at_) {
      confirm_at_ = kNever;
      start_round(out, Round::confirm, pmtu_, now);
    }
  }
  return out;
}

PmtuSearch::Actions PmtuSearch::on_probe_reply(std::uint32_t probe_id, std::uint16_t size,
                                               Timestamp now) noexcept {
  Actions out;
  Sent& s = ring_[probe_id % kRing];
  if (probe_id == 0 || s.id != probe_id || s.size != size) {
    ++stats_.stray_replies;
    return out;
  }
  rtt_.on_sample(now - s.at);
  s = Sent{};  // a duplicate is stray, not a second sample
  ++stats_.replies;
  if (round_ == Round::none || state_ == State::disabled) return out;  // late: ignored
  const auto is = [probe_id](const auto& ids) {
    return std::find(ids.begin(), ids.end(), probe_id) != ids.end();
  };
  if (is(try_ids_)) {
    round_answered(out, now);
  } else if (is(control_ids_)) {
    ++controls_answered_;
  }
  return out;
}

PmtuSearch::Actions PmtuSearch::on_ptb_hint(std::uint16_t mtu, Timestamp now) noexcept {
  Actions out;
  // Below the fallback a hint is nonsense or hostile: never conclude a tiny MTU.
  if (mtu < base_eff_) return out;
  if (state_ == State::search) {
    if (mtu < lo_ || mtu >= hi_) return out;  // contradicts a confirmed size, or no news
    ++stats_.ptb_hints_used;
    hi_ = mtu;
    if (min_fail_ == 0 || mtu + 1 < min_fail_) {
      min_fail_ = static_cast<std::uint16_t>(mtu + 1);
      strikes_ = 1;  // the hint counts as one verdict; the boundary is still re-checked
    }
    if (round_ == Round::search && round_size_ > hi_) {
      round_ = Round::none;  // no point waiting for a probe the path said is too big
      search_step(out, now);
    }
  } else if (state_ == State::complete && mtu < pmtu_ && round_ == Round::none) {
    ++stats_.ptb_hints_used;
    confirm_at_ = kNever;
    start_round(out, Round::confirm, pmtu_, now);
  }
  return out;
}

PmtuSearch::Actions PmtuSearch::on_symptoms(Timestamp now) noexcept {
  Actions out;
  if (state_ != State::complete || round_ != Round::none) return out;
  ++stats_.symptom_checks;
  confirm_at_ = kNever;
  start_round(out, Round::confirm, pmtu_, now);
  return out;
}

PmtuSearch::Actions PmtuSearch::on_interface_mtu(std::uint16_t mtu, Timestamp now) noexcept {
  Actions out;
  if (mtu == interface_mtu_) return out;
  interface_mtu_ = mtu;
  if (mtu == 0) {
    round_ = Round::none;
    step_at_ = confirm_at_ = reprobe_at_ = error_retry_at_ = kNever;
    set_state(out, State::disabled);
    return out;
  }
  if (!started_) return out;
  if (state_ == State::disabled) {
    begin(out, now);
    return out;
  }
  const std::uint16_t old_upper = upper_;
  const std::uint16_t old_base = base_eff_;
  recompute_bounds();
  if (upper_ == old_upper) return out;
  if (base_eff_ != old_base && (state_ == State::base || state_ == State::error)) {
    begin(out, now);  // the fallback itself moved; confirm it again
    return out;
  }
  if (upper_ < old_upper) {
    // The interface cannot send more than its MTU: lower at once, keep searching below.
    set_pmtu(out, std::min(pmtu_, upper_));
    lo_ = std::min(lo_, upper_);
    hi_ = std::min(hi_, upper_);
    if (min_fail_ > upper_) {
      min_fail_ = 0;
      strikes_ = 0;
    }
    if (round_ != Round::none && round_size_ > upper_) {
      const Round kind = round_;
      round_ = Round::none;
      if (kind == Round::search) search_step(out, now);
      if (kind == Round::confirm) start_round(out, Round::confirm, pmtu_, now);
      if (kind == Round::base) start_round(out, Round::base, base_eff_, now);
      if (kind == Round::check) start_round(out, Round::check, base_eff_, now);
    }
    return out;
  }
  // The bound went up: there may be room above.
  if (state_ == State::search && min_fail_ == 0) {
    hi_ = upper_;
  } else if (state_ == State::complete && round_ == Round::none) {
    confirm_at_ = reprobe_at_ = kNever;
    start_search(out, pmtu_, now);
  } else if (state_ == State::complete) {
    reprobe_at_ = now;  // after the confirmation in progress
  }
  return out;
}

Timestamp PmtuSearch::next_deadline() const noexcept {
  if (state_ == State::disabled) return kNever;
  if (round_ != Round::none) return step_at_;
  if (state_ == State::error) return error_retry_at_;
  if (state_ == State::complete) return earliest(confirm_at_, reprobe_at_);
  return kNever;
}

std::string_view to_string(PmtuSearch::State s) noexcept {
  switch (s) {
    case PmtuSearch::State::disabled:
      return "disabled";
    case PmtuSearch::State::base:
      return "base";
    case PmtuSearch::State::search:
      return "search";
    case PmtuSearch::State::complete:
      return "complete";
    case PmtuSearch::State::error:
      return "error";
  }
  return "?";
}

}  // namespace tunshim::keepalive
