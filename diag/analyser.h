// The passive half of `tunshim doctor`: what the packets crossing a tunnel interface say
// about its path. Fed one record at a time (a timestamp and the IP packet, link layer
// already stripped, possibly cut to a headers-only snaplen), it keeps fixed-size tables
// and hands back findings: the MSS announced by SYNs and SYN-ACKs, SYNs announcing more
// than the path carries, DF packets larger than the path MTU per source, ICMP
// frag-needed / packet-too-big seen, full-size segments retransmitted, connections that
// went silent, and the longest idle gaps. Pure code like clamp/: no I/O, no clock (time
// comes from the records), no exceptions; add() allocates nothing (every table is sized
// in the constructor). Definitions of each finding: docs/DOCTOR.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "clamp/bytes.h"

namespace tunshim::diag {

using clamp::ConstBytes;

// Which way a record crossed the interface, when the capture says (Linux cooked captures,
// a live capture); unknown otherwise (a raw capture from elsewhere).
enum class Direction : std::uint8_t { unknown, out, in };
inline constexpr std::size_t kDirections = 3;
const char* to_string(Direction d) noexcept;

struct Address {
  std::uint8_t family = 0;  // 4 or 6; 0: none
  std::array<std::uint8_t, 16> bytes{};
  bool operator==(const Address&) const = default;
};

struct Options {
  // The path MTU (total IP bytes) the path carries, when known (measured by the prober or
  // given with --pmtu); 0: unknown, and the findings that compare against it stay empty.
  std::uint16_t path_mtu = 0;
  // ICMP/ICMPv6 echo identifier of the doctor's own probes: those echoes (deliberately
  // oversized) are left out of every finding. -1: none.
  std::int32_t ignore_echo_id = -1;
  // A connection that carried data, was not closed, and whose last packet is at least this
  // long before the end of the capture, counts as stalled.
  std::int64_t stall_us = 1'000'000;
};

// MSS values seen in SYNs (or SYN-ACKs) of one direction: up to kBins distinct values
// with their counts; further distinct values only count in `other`. mss 0: no MSS option.
struct MssHistogram {
  static constexpr std::size_t kBins = 8;
  struct Bin {
    std::uint16_t mss = 0;
    std::uint64_t count = 0;
  };
  std::array<Bin, kBins> bins{};
  std::size_t used = 0;
  std::uint64_t other = 0;
  std::uint64_t total = 0;
  void add(std::uint16_t mss) noexcept;
};

// One SYN or SYN-ACK whose MSS exceeds the path's (the first few are kept as evidence).
struct MssExample {
  Address src, dst;
  std::uint16_t sport = 0, dport = 0;
  std::uint16_t mss = 0;
  bool syn_ack = false;
  Direction dir = Direction::unknown;
  std::int64_t ts_us = 0;
};

// DF packets larger than the path MTU sent by one source address.
struct OversizeSource {
  Address src;
  std::uint64_t packets = 0;
  std::uint16_t max_len = 0;  // largest total IP length seen from it
  std::int64_t first_us = 0;
};

// ICMP frag-needed (IPv4 type 3 code 4) and ICMPv6 packet-too-big (type 2) seen.
struct IcmpTooBig {
  static constexpr std::size_t kMtus = 8;
  std::uint64_t frag_needed = 0;
  std::uint64_t packet_too_big = 0;
  std::uint64_t quoting_probes = 0;  // quoting one of the doctor's own probes
  struct Mtu {
    std::uint16_t mtu = 0;  // 0: an RFC 792 router that left the field empty
    std::uint64_t count = 0;
    Address reporter;  // the first router that reported it
  };
  std::array<Mtu, kMtus> mtus{};
  std::size_t used = 0;
};

// A connection (both directions) in the tracking table; what findings quote about it.
struct ConnectionReport {
  Address a, b;  // a: the side seen sending first (the SYN's sender if seen)
  std::uint16_t aport = 0, bport = 0;
  std::uint64_t packets = 0;
  std::uint64_t payload[2] = {0, 0};       // TCP payload bytes a->b, b->a
  std::uint32_t max_payload[2] = {0, 0};   // largest segment payload a->b, b->a
  std::uint64_t full_retrans[2] = {0, 0};  // full-size retransmissions a->b, b->a
  std::uint16_t mss[2] = {0, 0};           // MSS announced by a (SYN) and b (SYN-ACK)
  std::int64_t first_us = 0, last_us = 0;
  bool closed = false;  // FIN or RST seen
};

// An idle gap: no packet on the interface from start_us for len_us.
struct Gap {
  std::int64_t start_us = 0;
  std::int64_t len_us = 0;
};

struct Counts {
  std::uint64_t records = 0;
  std::uint64_t ipv4 = 0, ipv6 = 0;
  std::uint64_t not_ip = 0;     // link layer carried something else (counted by the caller)
  std::uint64_t malformed = 0;  // IP header inconsistent
  std::uint64_t short_l4 = 0;   // cut before the transport header fields we read
  std::uint64_t tcp = 0, udp = 0, icmp = 0, other_proto = 0;
  std::uint64_t own_probes = 0;   // the doctor's own echoes, left out
  std::uint64_t connections = 0;  // TCP connections tracked
  std::uint64_t untracked = 0;    // TCP packets of connections past the table's capacity
  std::uint64_t wire_bytes = 0;   // total IP length (as the headers say) of IP records
};

struct Findings {
  static constexpr std::size_t kExamples = 8;
  static constexpr std::size_t kSources = 32;
  static constexpr std::size_t kGaps = 5;
  static constexpr std::size_t kConnections = 8;

  Counts counts;
  std::int64_t first_us = 0, last_us = 0;  // first and last record

  // [direction][0 = IPv4, 1 = IPv6]
  std::array<std::array<MssHistogram, 2>, kDirections> syn{};
  std::array<std::array<MssHistogram, 2>, kDirections> syn_ack{};

  // SYN/SYN-ACK announcing an MSS above path_mtu - 40 (IPv4) / - 60 (IPv6).
  std::uint64_t mss_above_path = 0;
  std::array<MssExample, kExamples> mss_examples{};
  std::size_t mss_examples_used = 0;

  // DF packets (every IPv6 packet) with total length > path_mtu, per source.
  std::uint64_t oversize_df = 0;
  std::array<OversizeSource, kSources> oversize{};
  std::size_t oversize_used = 0;
  std::uint64_t oversize_other_sources = 0;  // packets from sources past the table
  // Oversize DF ICMP echoes (path-MTU probing by someone: ping -M do, a running tunshim):
  // not in oversize_df, they lose no one's data.
  std::uint64_t oversize_echo = 0;

  IcmpTooBig too_big;

  std::uint64_t full_retrans = 0;  // full-size retransmissions, all connections
  // Of those: a segment retransmitted more than once (the sender keeps trying the same
  // bytes: a stall), and segments longer than the path MTU (they can never arrive). A
  // single retransmission of a segment that fits is ordinary loss recovery.
  std::uint64_t full_retrans_repeated = 0;
  std::uint64_t full_retrans_oversize = 0;
  std::uint64_t retrans_connections = 0;
  std::uint64_t stalled_connections = 0;
  // The connections worth quoting: most full-size retransmissions first, then stalled
  // ones by silence at the end (filled by finish()).
  std::array<ConnectionReport, kConnections> connections{};
  std::size_t connections_used = 0;

  std::array<Gap, kGaps> gaps{};  // longest first
  std::size_t gaps_used = 0;
};

class Analyser {
 public:
  // Tables are allocated here, once: kConnSlots connection slots (used up to 3/4).
  static constexpr std::size_t kConnSlots = 8192;
  // Full-size segment sequence numbers remembered per direction of a connection.
  static constexpr std::size_t kSeqRing = 32;
  // Segments shorter than this never count as full-size (interactive traffic, keepalives).
  static constexpr std::uint32_t kMinFullSize = 256;

  explicit Analyser(const Options& options);
  ~Analyser();
  Analyser(const Analyser&) = delete;
  Analyser& operator=(const Analyser&) = delete;

  // One record: `ts_us` its capture time (microseconds, any epoch, as the capture says),
  // `ip` the captured bytes from the IP header on (possibly cut short by the snaplen).
  // Allocates nothing, throws nothing.
  void add(std::int64_t ts_us, Direction dir, ConstBytes ip) noexcept;
  // A record without an IP packet (ARP, LCP …): it still ends an idle gap.
  void add_not_ip(std::int64_t ts_us) noexcept;

  // Ends the capture at `end_us` (>= the last record; a live capture's window end, so a
  // silent tail counts as a gap) and completes the connection findings.
  const Findings& finish(std::int64_t end_us) noexcept;
  const Findings& findings() const noexcept { return f_; }
  const Options& options() const noexcept { return opt_; }

 private:
  struct Conn;
  void tick(std::int64_t ts_us) noexcept;
  void tcp(std::int64_t ts, Direction dir, const Address& src, const Address& dst,
           ConstBytes l4, std::size_t seg_len, std::size_t wire_len) noexcept;
  void icmp(const Address& src, std::uint8_t family, ConstBytes l4) noexcept;
  void oversize(std::int64_t ts, const Address& src, std::size_t len) noexcept;
  Conn* lookup(const Address& src, const Address& dst, std::uint16_t sport, std::uint16_t dport,
               std::int64_t ts, bool& forward) noexcept;
  void add_gap(std::int64_t start, std::int64_t len) noexcept;

  Options opt_;
  Findings f_;
  std::unique_ptr<Conn[]> conns_;
  std::size_t conn_used_ = 0;
  bool have_last_ = false;
  std::int64_t last_ts_ = 0;
};

}  // namespace tunshim::diag
