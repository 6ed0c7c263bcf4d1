// Per-tunnel and per-queue counters of the inline clamp. Plain uint64_t fields, bumped on
// the packet path with ordinary adds; a later exporter reads them (Prometheus names in
// DESIGN.md: tunshim_syn_total{direction,action}, tunshim_queue_dropped_total).
#pragma once

#include <cstdint>

namespace tunshim::proxy {

// What happened to the SYNs (and SYN-ACKs) of one tunnel in one direction.
struct DirectionCounters {
  std::uint64_t clamped = 0;    // MSS option lowered
  std::uint64_t inserted = 0;   // MSS option added to a SYN that had none
  std::uint64_t unchanged = 0;  // looked at, nothing to do (MSS already small enough)
  std::uint64_t malformed = 0;  // unparseable: accepted unchanged
  std::uint64_t other = 0;      // not a SYN, not TCP, fragment, no room, family off
  std::uint64_t truncated =
      0;  // the queue delivered less than the whole packet: accepted unchanged
  // SYNs that matched this tunnel's NFQUEUE rules but never reached tunshim: the queue was
  // full (fail-open passed them unclamped) or tunshim was not reading. A lower bound, from
  // the rules' packet counters minus what tunshim received minus what the kernel still held.
  std::uint64_t bypassed = 0;

  std::uint64_t seen() const noexcept {
    return clamped + inserted + unchanged + malformed + other + truncated;
  }
};

struct TunnelCounters {
  DirectionCounters out;  // leaving by the interface (mangle POSTROUTING -o IF)
  DirectionCounters in;   // arriving by it (mangle PREROUTING -i IF)
};

// The queue as a whole (one NFQUEUE serves every tunnel).
struct QueueCounters {
  std::uint64_t packets = 0;   // packet messages received
  std::uint64_t verdicts = 0;  // single verdict messages sent (modified packets, flush of one)
  std::uint64_t batches = 0;   // NFQNL_MSG_VERDICT_BATCH messages sent
  std::uint64_t modified = 0;  // verdicts that carried a rewritten packet
  std::uint64_t dropped = 0;   // drop verdicts (the oversize guard)
  std::uint64_t id_gaps = 0;   // packet ids skipped: messages lost on a full socket
  std::uint64_t enobufs = 0;   // recv() reported ENOBUFS (socket overrun)
  std::uint64_t send_errors = 0;           // verdict sends that failed
  std::uint64_t bad_messages = 0;          // netlink messages we could not parse
  std::uint64_t unknown_iface = 0;         // packets whose interface maps to no tunnel
  std::uint64_t kernel_queue_dropped = 0;  // /proc/net/netfilter/nfnetlink_queue column 6
  std::uint64_t kernel_user_dropped = 0;   // column 7 (both stay 0 while fail-open is on)
};

}  // namespace tunshim::proxy
