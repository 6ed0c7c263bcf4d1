// The oversize-DF guard (guard = "icmp"): packets leaving a tunnel that are larger than its
// discovered path MTU, with DF set (IPv4) or any IPv6 packet, would vanish in the black
// hole. The firewall queues them by a length match (firewall.h: FirewallTunnel::guard4/6);
// the daemon hands them here; the guard drops them and answers the sender with ICMP
// "fragmentation needed" (type 3 code 4) / ICMPv6 "packet too big" carrying the path MTU,
// rate-limited per source, so UDP, QUIC and TCP connections that predate the clamp learn
// the real size. The packet bytes come from clamp::make_packet_too_big; this class owns
// the sending sockets and the rate limits. docs/GUARD.md has the operator's view.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "clamp/bytes.h"
#include "clamp/icmp_error.h"
#include "keepalive/token_bucket.h"

namespace tunshim::proxy {

struct GuardCounters {
  std::uint64_t dropped = 0;       // oversize DF / IPv6 packets dropped
  std::uint64_t ptb_sent = 0;      // ICMP errors sent
  std::uint64_t rate_limited = 0;  // dropped without an error: the source was over its rate
  std::uint64_t not_answered = 0;  // dropped without an error: RFC 1122 / 4443 forbid one
  std::uint64_t send_errors = 0;   // the error could not be sent
  std::uint64_t passed = 0;        // queued, but not oversize DF after all: accepted unchanged
  std::uint64_t malformed = 0;     // not a parseable IP packet: accepted unchanged
};

// The rates of the errors. The kernel never limits "fragmentation needed" / "packet too big"
// per peer (icmpv4_mask_allow / icmpv6_mask_allow exempt them: rate-limiting PMTU discovery
// would break it) and caps all ICMP at icmp_msgs_per_sec = 1000 with a burst of
// icmp_msgs_burst = 50. A sender that honours the first error sends no more oversize
// packets to that destination, so a per-source limit only bites a sender that ignores ICMP
// (or a flood); it keeps one such sender from using up the global budget, which protects the
// errors every other source needs. 10/s with a burst of 10 answers a host opening ten new
// destinations at once; the global 1000/s burst 50 is the kernel's own default.
struct GuardLimits {
  std::uint32_t per_source_rate = 10;  // errors per second to one source address
  std::uint32_t per_source_burst = 10;
  std::uint32_t global_rate = 1000;  // errors per second in all
  std::uint32_t global_burst = 50;
  std::size_t sources = 256;  // source table slots (an office LAN has fewer hosts)
};

// Where an error to `to` (the offender's source, 4 or 16 bytes) should come from: the
// address this host would use to reach it. Writes to.size() bytes to `from`; false if
// there is none (no route), and the guard then uses the offender's destination.
class SourceRoute {
 public:
  virtual ~SourceRoute() = default;
  virtual bool source_for(clamp::ConstBytes to, clamp::Bytes from) noexcept = 0;
};

// True if `pkt` is an ICMP echo request (ICMPv6: 128) with identifier `ident`, e.g. one of
// the daemon's own path-MTU probes (ProbeIo::identifier()). Those must reach the path even
// when larger than the PMTU in effect: that is how a search finds a larger one. The guard
// rule queues them like any oversize packet, so the daemon accepts them before handle().
bool is_echo_request(clamp::ConstBytes pkt, std::uint16_t ident) noexcept;

class OversizeGuard {
 public:
  enum class Verdict : std::uint8_t { accept, drop };

  // What decide() concluded: the verdict and, if error_len > 0, an error of that many bytes
  // built in the caller's buffer, to be sent to `to` (the offender's source address).
  struct Decision {
    Verdict verdict = Verdict::accept;
    std::size_t error_len = 0;
    std::uint8_t family = 0;            // 4 or 6, when error_len > 0
    std::array<std::uint8_t, 16> to{};  // the first 4 bytes for IPv4
  };

  // Bytes an error can take (the IPv6 one is the larger): the size of decide()'s `out`.
  static constexpr std::size_t kErrorMax = clamp::kIcmp6ErrorMax;

  explicit OversizeGuard(GuardLimits limits = {}) noexcept;
  ~OversizeGuard();
  OversizeGuard(const OversizeGuard&) = delete;
  OversizeGuard& operator=(const OversizeGuard&) = delete;

  // Allocates the source table (no OS calls): enough for decide(). open() calls it too.
  void prepare();
  // prepare(), then opens the sending sockets (raw IPv4 and IPv6, both with the IP header
  // ours) and the route-lookup sockets, all non-blocking. Needs CAP_NET_RAW. False with
  // `err` one line saying what failed; then nothing stays open.
  bool open(std::string& err);
  void close() noexcept;
  bool is_open() const noexcept;

  // One packet queued by a tunnel's guard rule: `pkt` the whole IP packet, `pmtu` the
  // tunnel's path MTU in effect, `now_ms` a monotonic clock in milliseconds. Decides with
  // decide(), choosing the error's source with the kernel's routes, and sends the error.
  // Never allocates or throws; its only syscalls are those of an error actually sent.
  Verdict handle(clamp::ConstBytes pkt, std::uint16_t pmtu, std::uint64_t now_ms,
                 GuardCounters& c) noexcept;

  // The pure part of handle(), for handle() and for tests: counts the packet in `c` and
  // says what to do with it. Accepts (passed) a packet not larger than `pmtu` (for IPv6
  // not larger than max(pmtu, 1280), the minimum every IPv6 link carries), an IPv4 packet
  // without DF (the kernel may fragment it), any packet when `pmtu` is 0 (unknown);
  // accepts (malformed) one clamp::parse_ip cannot parse. Drops the rest and, unless
  // make_packet_too_big refuses (not_answered) or the source or the whole guard is over
  // its rate (rate_limited, per source first, so a flooding source cannot use up the
  // global budget), builds the error in `out` (at least kErrorMax bytes), from
  // `route.source_for(sender)` or else the offender's destination. Needs prepare().
  Decision decide(clamp::ConstBytes pkt, std::uint16_t pmtu, std::uint64_t now_ms,
                  GuardCounters& c, SourceRoute& route, clamp::Bytes out) noexcept;

  // Source addresses currently in the table (for tests and the debug log).
  std::size_t tracked_sources() const noexcept { return used_; }

 private:
  struct Source {
    std::array<std::uint8_t, 16> addr{};
    std::uint8_t family = 0;
    std::uint64_t last_used = 0;
    keepalive::TokenBucket bucket{0, 0, keepalive::Timestamp{}};
  };
  // Route lookups through connected UDP sockets (no packet is sent by connect()).
  class KernelRoute final : public SourceRoute {
   public:
    bool source_for(clamp::ConstBytes to, clamp::Bytes from) noexcept override;
    int udp4 = -1;
    int udp6 = -1;
  };

  bool allow(std::uint8_t family, clamp::ConstBytes src, std::uint64_t now_ms) noexcept;
  bool send(const Decision& d, clamp::ConstBytes error) noexcept;

  GuardLimits limits_;
  keepalive::TokenBucket global_;
  std::vector<Source> sources_;  // sized once by prepare(); never grows on the packet path
  std::size_t used_ = 0;
  KernelRoute route_;
  int raw4_ = -1;
  int raw6_ = -1;
  std::array<std::uint8_t, kErrorMax> out_{};
};

}  // namespace tunshim::proxy
