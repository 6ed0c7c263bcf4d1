// The oversize-DF guard (guard = "icmp"): packets leaving a tunnel that are larger than its
// discovered path MTU, with DF set (IPv4) or any IPv6 packet, would vanish in the black
// hole. The firewall queues them by a length match (firewall.h: FirewallTunnel::guard4/6);
// the daemon hands them here; the guard drops them and answers the sender with ICMP
// "fragmentation needed" (type 3 code 4) / ICMPv6 "packet too big" carrying the path MTU,
// rate-limited per source, so UDP, QUIC and TCP connections that predate the clamp learn
// the real size. The packet bytes come from clamp::make_packet_too_big; this class owns
// the sending sockets and the rate limits.
#pragma once

#include <cstdint>
#include <string>

#include "clamp/bytes.h"

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

class OversizeGuard {
 public:
  enum class Verdict : std::uint8_t { accept, drop };

  OversizeGuard() noexcept = default;
  ~OversizeGuard();
  OversizeGuard(const OversizeGuard&) = delete;
  OversizeGuard& operator=(const OversizeGuard&) = delete;

  // Opens the sending sockets (IPv4 and IPv6). Needs CAP_NET_RAW. False with `err` one
  // line saying what failed.
  bool open(std::string& err);
  void close() noexcept;
  bool is_open() const noexcept;

  // One packet queued by a tunnel's guard rule: `pkt` the whole IP packet, `pmtu` the
  // tunnel's path MTU in effect, `now_ms` a monotonic clock in milliseconds. Never
  // allocates or throws.
  Verdict handle(clamp::ConstBytes pkt, std::uint16_t pmtu, std::uint64_t now_ms,
                 GuardCounters& c) noexcept;
};

}  // namespace tunshim::proxy
