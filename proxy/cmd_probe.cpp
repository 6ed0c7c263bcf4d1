// `tunshim probe IFACE`: one path-MTU search through a tunnel, without the daemon. The same
// keepalive::PmtuSearch the daemon uses decides what to send; ProbeIo sends it; a private
// libuv loop with one timer at the machine's next deadline drives it until COMPLETE or
// ERROR (or --timeout).
#include <net/if.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <memory>
#include <string>

#include "clamp/mtu.h"
#include "keepalive/pmtu_search.h"
#include "proxy/commands.h"
#include "proxy/probe_io.h"

namespace tunshim::proxy {
namespace {

using keepalive::PmtuSearch;
using keepalive::Timestamp;

class ProbeRun {
 public:
  ProbeRun(const ProbeOptions& opt, const InterfaceInfo& info, const IpAddress& target)
      : opt_(opt), info_(info), target_(target), search_(config(opt, target)), io_(&loop_) {}

  // Runs the search to its end; returns the exit code.
  int run();

 private:
  static keepalive::PmtuConfig config(const ProbeOptions& opt, const IpAddress& target) {
    keepalive::PmtuConfig c;
    c.family = target.family;
    c.base = opt.min;
    c.probe_max = opt.max;
    return c;
  }
  Timestamp now() const {
    return Timestamp::from_ms(static_cast<std::int64_t>(uv_now(&loop_)));
  }
  double elapsed() const { return static_cast<double>(uv_hrtime() - start_ns_) * 1e-9; }
  void apply(const PmtuSearch::Actions& actions);
  void arm();
  void finish(int code);
  void progress(std::uint16_t size);
  void report_text() const;
  void report_json() const;
  void report_failure() const;

  const ProbeOptions& opt_;
  const InterfaceInfo& info_;
  const IpAddress target_;
  mutable uv_loop_t loop_{};
  uv_timer_t step_{};
  uv_timer_t overall_{};
  PmtuSearch search_;
  ProbeIo io_;
  std::uint64_t start_ns_ = 0;
  double seconds_ = 0;
  bool done_ = false;
  bool timed_out_ = false;
  int exit_code_ = 1;
  bool progress_shown_ = false;
  std::string last_send_error_;
};

void ProbeRun::progress(std::uint16_t size) {
  if (opt_.verbose) {
    std::fprintf(stderr, "%8.3f s  probe %u bytes (state %s, round %llu)\n", elapsed(), size,
                 std::string(keepalive::to_string(search_.state())).c_str(),
                 static_cast<unsigned long long>(search_.stats().rounds));
    return;
  }
  // For a person watching: one line rewritten in place; nothing when not on a terminal.
  if (isatty(STDERR_FILENO) == 0) return;
  std::fprintf(stderr, "\r%s: probing %u bytes, round %llu, %llu probes, %.1f s ",
               opt_.iface.c_str(), size,
               static_cast<unsigned long long>(search_.stats().rounds),
               static_cast<unsigned long long>(search_.stats().probes_sent), elapsed());
  progress_shown_ = true;
}

void ProbeRun::apply(const PmtuSearch::Actions& actions) {
  bool shown = false;  // a try goes out as [size, base-size control]: show the size
  for (const auto& a : actions) {
    if (done_) return;
    if (const auto* p = std::get_if<PmtuSearch::SendProbe>(&a)) {
      std::string err;
      // A refused send (EMSGSIZE above the interface MTU with --max, ENOBUFS) is a lost
      // probe: the search's loss handling already covers it.
      if (!io_.send(p->id, p->size, &err)) {
        last_send_error_ = err;
        if (opt_.verbose)
          std::fprintf(stderr, "          send %u bytes: %s\n", p->size, err.c_str());
      }
      if (!shown || opt_.verbose) progress(p->size);
      shown = true;
    } else if (const auto* s = std::get_if<PmtuSearch::StateChanged>(&a)) {
      if (opt_.verbose) {
        std::fprintf(stderr, "%8.3f s  state %s\n", elapsed(),
                     std::string(keepalive::to_string(s->state)).c_str());
      }
      if (s->state == PmtuSearch::State::complete) finish(0);
      if (s->state == PmtuSearch::State::error) finish(1);
    }
  }
}

void ProbeRun::arm() {
  if (done_) return;
  const Timestamp deadline = search_.next_deadline();
  if (deadline == keepalive::kNever) {
    uv_timer_stop(&step_);
    return;
  }
  const std::int64_t wait = (deadline - now()).ms();
  uv_timer_start(
      &step_,
      [](uv_timer_t* t) {
        auto* self = static_cast<ProbeRun*>(t->data);
        self->apply(self->search_.on_tick(self->now()));
        self->arm();
      },
      wait > 0 ? static_cast<std::uint64_t>(wait) : 0, 0);
}

void ProbeRun::finish(int code) {
  if (done_) return;
  done_ = true;
  exit_code_ = code;
  seconds_ = elapsed();
  // Closing every handle lets uv_run return by itself.
  io_.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&step_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&overall_), nullptr);
}

int ProbeRun::run() {
  uv_loop_init(&loop_);
  uv_timer_init(&loop_, &step_);
  uv_timer_init(&loop_, &overall_);
  step_.data = overall_.data = this;
  std::string err;
  const bool opened = io_.open(
      opt_.iface, target_,
      [this](std::uint64_t tag, std::uint16_t size) {
        if (opt_.verbose) std::fprintf(stderr, "%8.3f s  reply %u bytes\n", elapsed(), size);
        // Tags are the search's own 32-bit probe ids.
        apply(search_.on_probe_reply(static_cast<std::uint32_t>(tag), size, now()));
        arm();
      },
      [this](std::uint64_t, std::uint16_t mtu) {
        if (opt_.verbose)
          std::fprintf(stderr, "%8.3f s  too-big hint: MTU %u\n", elapsed(), mtu);
        // An RFC 792 router leaves the MTU field 0: a quote without a number narrows nothing.
        if (mtu != 0) apply(search_.on_ptb_hint(mtu, now()));
        arm();
      },
      err);
  if (!opened) {
    std::fprintf(stderr, "tunshim probe: %s: %s\n", opt_.iface.c_str(), err.c_str());
    done_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&step_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&overall_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return 1;
  }
  start_ns_ = uv_hrtime();
  uv_timer_start(
      &overall_,
      [](uv_timer_t* t) {
        auto* self = static_cast<ProbeRun*>(t->data);
        self->timed_out_ = true;
        self->finish(1);
      },
      static_cast<std::uint64_t>(opt_.timeout * 1000.0), 0);
  apply(search_.on_interface_mtu(info_.mtu, now()));
  apply(search_.on_start(now()));
  arm();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  if (progress_shown_) std::fputs("\r\033[K", stderr);

  if (opt_.json) report_json();
  if (exit_code_ == 0) {
    if (!opt_.json) report_text();
  } else {
    report_failure();
  }
  return exit_code_;
}

std::uint16_t mss_for(const IpAddress& target, std::uint16_t pmtu) {
  return target.family == IpFamily::ipv4 ? clamp::mss_from_mtu4(pmtu)
                                         : clamp::mss_from_mtu6(pmtu);
}

const char* family_name(const IpAddress& a) {
  return a.family == IpFamily::ipv4 ? "IPv4" : "IPv6";
}

void ProbeRun::report_text() const {
  const auto& st = search_.stats();
  std::printf("%s: path MTU %u (MSS %u %s), %llu probe rounds, %llu probes, %.2f s; target %s",
              opt_.iface.c_str(), search_.pmtu(), mss_for(target_, search_.pmtu()),
              family_name(target_), static_cast<unsigned long long>(st.rounds),
              static_cast<unsigned long long>(st.probes_sent), seconds_,
              target_.to_string().c_str());
  if (search_.pmtu() < info_.mtu) std::printf("; interface MTU %u is too large", info_.mtu);
  std::printf("\n");
}

void ProbeRun::report_json() const {
  const auto& st = search_.stats();
  const auto& io = io_.stats();
  const bool ok = exit_code_ == 0;
  auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "{\"interface\": \"%s\", \"target\": \"%s\", \"family\": \"%s\", \"result\": \"%s\", "
      "\"pmtu\": %u, \"mss\": %u, \"interface_mtu\": %u, \"base\": %u, \"upper_bound\": %u, "
      "\"rounds\": %llu, \"probes\": %llu, \"replies\": %llu, \"ptb_hints\": %llu, "
      "\"send_errors\": %llu, \"ignored\": %llu, \"seconds\": %.3f, \"srtt_ms\": %.3f}\n",
      opt_.iface.c_str(), target_.to_string().c_str(),
      target_.family == IpFamily::ipv4 ? "ipv4" : "ipv6",
      ok           ? "complete"
      : timed_out_ ? "timeout"
                   : "error",
      ok ? search_.pmtu() : 0, ok ? mss_for(target_, search_.pmtu()) : 0, info_.mtu,
      search_.base_size(), search_.upper_bound(), u(st.rounds), u(st.probes_sent),
      u(io.replies), u(io.hints), u(io.send_errors), u(io.ignored + io.wrong_length), seconds_,
      search_.rtt().has_sample() ? static_cast<double>(search_.rtt().srtt().ms()) : -1.0);
}

void ProbeRun::report_failure() const {
  const auto& st = search_.stats();
  const char* name = opt_.iface.c_str();
  const std::string target = target_.to_string();
  if (if_nametoindex(name) == 0) {
    std::fprintf(stderr,
                 "tunshim probe: %s: the interface went away during the search; "
                 "run it again once the VPN is connected\n",
                 name);
  } else if (timed_out_) {
    std::fprintf(
        stderr,
        "tunshim probe: %s: no result within %.0f s (still in %s after %llu probes to %s); "
        "the path may be very lossy: retry with a larger --timeout\n",
        name, opt_.timeout, std::string(keepalive::to_string(search_.state())).c_str(),
        static_cast<unsigned long long>(st.probes_sent), target.c_str());
  } else if (io_.stats().sent == 0 && !last_send_error_.empty()) {
    std::fprintf(stderr, "tunshim probe: %s: the kernel refused every probe to %s (%s)\n", name,
                 target.c_str(), last_send_error_.c_str());
  } else {
    std::fprintf(stderr,
                 "tunshim probe: %s: target %s did not answer even base-size probes (%u bytes, "
                 "%llu sent); check that the tunnel is up and the target answers ping, or give "
                 "--target ADDR of a host past the tunnel that does (--min N if the path is "
                 "smaller than %u)\n",
                 name, target.c_str(), search_.base_size(),
                 static_cast<unsigned long long>(st.probes_sent), search_.base_size());
  }
}

}  // namespace

int cmd_probe(const ProbeOptions& opt) {
  // The address's syntax first: a usage error needs no interface.
  std::optional<IpAddress> target;
  if (!opt.target.empty()) {
    target = IpAddress::parse(opt.target);
    if (!target) {
      std::fprintf(stderr, "tunshim probe: --target %s is not an IPv4 or IPv6 address\n",
                   opt.target.c_str());
      return 2;
    }
  }
  InterfaceInfo info;
  std::string err;
  if (!read_interface(opt.iface, info, err)) {
    std::fprintf(stderr, "tunshim probe: %s: %s%s\n", opt.iface.c_str(), err.c_str(),
                 info.ifindex == 0 ? " (is the VPN connected? see `ip link`)" : "");
    return 1;
  }
  if (!target) {
    target = info.peer4 ? info.peer4 : info.peer6;
    if (!target) {
      std::fprintf(stderr,
                   "tunshim probe: %s has no point-to-point peer address; give --target ADDR "
                   "(a host past the tunnel that answers ping)\n",
                   opt.iface.c_str());
      return 1;
    }
  }
  if (opt.max != 0 && opt.max < min_probe_size(target->family)) {
    std::fprintf(stderr, "tunshim probe: --max %u is too small to carry a probe\n", opt.max);
    return 2;
  }
  // Holds the loop and handles libuv points into: heap-allocated so it never moves.
  auto run = std::make_unique<ProbeRun>(opt, info, *target);
  return run->run();
}

}  // namespace tunshim::proxy
