// The doctor's passive analysis. Two-phase parsing as in clamp/: the captured header bytes
// are copied into a fixed scratch buffer whose IP length field is lowered to what was
// captured (a headers-only snaplen cuts every large packet), so clamp::parse_ip can walk
// the headers it has; the length the packet really had on the wire is kept aside.
#include "diag/analyser.h"

#include <algorithm>
#include <cstring>

#include "clamp/mtu.h"
#include "clamp/packet.h"

namespace tunshim::diag {
namespace {

using clamp::load16;
using clamp::load32;

// Enough for every header the doctor reads: IPv6 (40) + extension headers + TCP with
// options (60), or an ICMP error quoting IPv6 + 8 bytes.
constexpr std::size_t kScratch = 256;

constexpr std::uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;
constexpr std::uint8_t kTcpOptEol = 0, kTcpOptNop = 1, kTcpOptMss = 2;
constexpr std::uint8_t kIcmpEchoReply = 0, kIcmpUnreach = 3, kIcmpEcho = 8;
constexpr std::uint8_t kIcmpFragNeeded = 4;
constexpr std::uint8_t kIcmp6TooBig = 2, kIcmp6Echo = 128, kIcmp6EchoReply = 129;

Address addr_at(ConstBytes b, std::size_t off, std::uint8_t family) noexcept {
  Address a;
  a.family = family;
  const std::size_t n = family == 4 ? 4 : 16;
  for (std::size_t i = 0; i < n; ++i) a.bytes[i] = b[off + i];
  return a;
}

// The MSS option of a SYN's TCP header `tcp` (options bounded by the data offset and by
// what was captured); 0 when there is none (or it is cut off).
std::uint16_t find_mss(ConstBytes tcp, std::size_t hlen) noexcept {
  const std::size_t end = std::min(hlen, tcp.size());
  std::size_t off = 20;
  while (off < end) {
    const std::uint8_t kind = tcp[off];
    if (kind == kTcpOptEol) break;
    if (kind == kTcpOptNop) {
      ++off;
      continue;
    }
    if (off + 2 > end) break;
    const std::size_t len = tcp[off + 1];
    if (len < 2 || off + len > end) break;
    if (kind == kTcpOptMss && len == 4) return load16(tcp, off + 2);
    off += len;
  }
  return 0;
}

// An ICMP or ICMPv6 echo request or reply whose identifier was captured.
bool is_echo(ConstBytes buf, const clamp::IpInfo& ip) noexcept {
  if (ip.status != clamp::ParseStatus::ok || ip.later_fragment || ip.l4_off + 8 > ip.ip_len)
    return false;
  const std::uint8_t type = buf[ip.l4_off];
  if (ip.proto == clamp::kProtoIcmp) return type == kIcmpEcho || type == kIcmpEchoReply;
  if (ip.proto == clamp::kProtoIcmpv6) return type == kIcmp6Echo || type == kIcmp6EchoReply;
  return false;
}

// Orders endpoints so both directions of a connection hash alike.
int compare(const Address& a, std::uint16_t ap, const Address& b, std::uint16_t bp) noexcept {
  if (a.family != b.family) return a.family < b.family ? -1 : 1;
  const int c = std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size());
  if (c != 0) return c;
  return ap == bp ? 0 : (ap < bp ? -1 : 1);
}

// A 64-bit finalizer (MurmurHash3's): every input bit reaches every output bit.
std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

std::uint64_t word(const Address& a, std::size_t i) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, a.bytes.data() + 8 * i, sizeof v);
  return v;
}

// Eight bytes at a time: the connection lookup runs for every TCP packet of a capture, and
// a byte-wise hash over two 16-byte addresses was the largest item of `doctor --read`.
std::uint64_t hash_endpoints(const Address& lo, std::uint16_t lp, const Address& hi,
                             std::uint16_t hp) noexcept {
  std::uint64_t h = (std::uint64_t{lo.family} << 32) | (std::uint64_t{lp} << 16) | hp;
  h = mix64(h ^ word(lo, 0));
  h = mix64(h ^ word(lo, 1));
  h = mix64(h ^ word(hi, 0));
  return mix64(h ^ word(hi, 1));
}

}  // namespace

const char* to_string(Direction d) noexcept {
  switch (d) {
    case Direction::out:
      return "out";
    case Direction::in:
      return "in";
    case Direction::unknown:
      break;
  }
  return "unknown";
}

void MssHistogram::add(std::uint16_t mss) noexcept {
  ++total;
  for (std::size_t i = 0; i < used; ++i) {
    if (bins[i].mss == mss) {
      ++bins[i].count;
      return;
    }
  }
  if (used == kBins) {
    ++other;
    return;
  }
  bins[used++] = Bin{mss, 1};
}

// One direction of a tracked connection.
struct Half {
  std::uint64_t packets = 0;
  std::uint64_t payload = 0;
  std::uint32_t max_payload = 0;
  std::uint64_t full_retrans = 0;
  std::uint16_t mss = 0;
  std::uint8_t seq_count = 0;
  std::uint8_t seq_next = 0;
  bool sent = false;          // snd_max is valid
  bool acked = false;         // ack_max is valid
  std::uint32_t snd_max = 0;  // highest sequence number sent + 1 (serial arithmetic)
  std::uint32_t ack_max = 0;  // highest acknowledgment this side sent
  std::array<std::uint32_t, Analyser::kSeqRing> seqs{};
  std::array<std::uint8_t, Analyser::kSeqRing> resent{};  // retransmissions of seqs[i]
};

// RFC 1982 serial-number comparison: a is after b.
static bool seq_after(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) > 0;
}

struct Analyser::Conn {
  bool used = false;
  bool closed = false;
  Address a, b;
  std::uint16_t aport = 0, bport = 0;
  std::int64_t first_us = 0, last_us = 0;
  std::uint64_t packets = 0;
  Half half[2];
};

Analyser::Analyser(const Options& options)
    : opt_(options), conns_(std::make_unique<Conn[]>(kConnSlots)) {}

Analyser::~Analyser() = default;

void Analyser::tick(std::int64_t ts) noexcept {
  ++f_.counts.records;
  if (!have_last_) {
    have_last_ = true;
    f_.first_us = last_ts_ = ts;
    f_.last_us = ts;
    return;
  }
  // Capture files are not always in time order (several interfaces merged): a record
  // from the past ends no gap and does not move time back.
  if (ts > last_ts_) {
    add_gap(last_ts_, ts - last_ts_);
    last_ts_ = ts;
    f_.last_us = ts;
  }
}

void Analyser::add_gap(std::int64_t start, std::int64_t len) noexcept {
  auto& g = f_.gaps;
  if (f_.gaps_used == g.size() && len <= g[g.size() - 1].len_us) return;
  std::size_t i = f_.gaps_used < g.size() ? f_.gaps_used++ : g.size() - 1;
  while (i > 0 && g[i - 1].len_us < len) {
    g[i] = g[i - 1];
    --i;
  }
  g[i] = Gap{start, len};
}

void Analyser::add_not_ip(std::int64_t ts_us) noexcept {
  tick(ts_us);
  ++f_.counts.not_ip;
}

void Analyser::add(std::int64_t ts, Direction dir, ConstBytes pkt) noexcept {
  // Phase 1: the packet's length as its IP header says. A packet captured whole is parsed
  // where it lies; a cut one (headers-only snaplen) is copied and the copy's length field
  // lowered to what was captured, so parse_ip walks the headers it has.
  std::size_t wire_len = 0;
  const int version = pkt.empty() ? 0 : pkt[0] >> 4;
  if (version == 4 && pkt.size() >= 4) {
    wire_len = load16(pkt, 2);
  } else if (version == 6 && pkt.size() >= 40) {
    const std::size_t payload = load16(pkt, 4);
    wire_len = payload == 0 ? 0 : 40 + payload;  // 0: a jumbogram, parse_ip refuses it
  }
  std::array<std::uint8_t, kScratch> scratch;
  ConstBytes buf = pkt;
  const bool cut = wire_len > pkt.size();
  if (cut) {
    const std::size_t have = std::min(pkt.size(), kScratch);
    std::memcpy(scratch.data(), pkt.data(), have);
    const clamp::Bytes w(scratch.data(), have);
    if (version == 4) {
      clamp::store16(w, 2, static_cast<std::uint16_t>(have));
    } else {
      clamp::store16(w, 4, static_cast<std::uint16_t>(have - 40));
    }
    buf = ConstBytes(scratch.data(), have);
  }
  const clamp::IpInfo ip = clamp::parse_ip(buf);

  // Echoes of the doctor's own probes are not the network's traffic: not even a gap end.
  if (opt_.ignore_echo_id >= 0 && is_echo(buf, ip) &&
      load16(buf, ip.l4_off + 4) == opt_.ignore_echo_id) {
    ++f_.counts.own_probes;
    return;
  }

  tick(ts);
  if (ip.status == clamp::ParseStatus::malformed) {
    if (cut) {
      ++f_.counts.short_l4;
    } else {
      ++f_.counts.malformed;
    }
    return;
  }
  if (ip.family == 4) {
    ++f_.counts.ipv4;
  } else {
    ++f_.counts.ipv6;
  }
  f_.counts.wire_bytes += wire_len;

  const Address src = addr_at(buf, ip.family == 4 ? 12 : 8, ip.family);
  if (ip.dont_fragment && opt_.path_mtu != 0 && wire_len > opt_.path_mtu) {
    // An oversize DF echo is someone measuring the path (tunshim's own search, ping -M do,
    // tracepath), not an application whose data is lost: counted apart.
    if (is_echo(buf, ip)) {
      ++f_.oversize_echo;
    } else {
      oversize(ts, src, wire_len);
    }
  }

  if (ip.status != clamp::ParseStatus::ok || ip.later_fragment) {
    ++f_.counts.other_proto;
    return;
  }
  // Phase 2: the transport header, only as far as it was captured.
  const ConstBytes l4(buf.data() + ip.l4_off, ip.ip_len - ip.l4_off);
  switch (ip.proto) {
    case clamp::kProtoTcp: {
      ++f_.counts.tcp;
      if (l4.size() < 20) {
        ++f_.counts.short_l4;
        return;
      }
      const std::size_t hlen = std::size_t{l4[12]} / 16 * 4;
      const std::size_t ip_hdrs = ip.l4_off;
      // Segment length from the wire length: the payload itself was usually not captured.
      const std::size_t seg = wire_len > ip_hdrs ? wire_len - ip_hdrs : 0;
      if (hlen < 20 || seg < hlen) {
        ++f_.counts.malformed;
        return;
      }
      const Address dst = addr_at(buf, ip.family == 4 ? 16 : 24, ip.family);
      tcp(ts, dir, src, dst, l4, seg, wire_len);
      return;
    }
    case clamp::kProtoUdp:
      ++f_.counts.udp;
      return;
    case clamp::kProtoIcmp:
    case clamp::kProtoIcmpv6:
      ++f_.counts.icmp;
      icmp(src, ip.family, l4);
      return;
    default:
      ++f_.counts.other_proto;
      return;
  }
}

void Analyser::oversize(std::int64_t ts, const Address& src, std::size_t len) noexcept {
  ++f_.oversize_df;
  const auto l16 = static_cast<std::uint16_t>(std::min<std::size_t>(len, 65535));
  for (std::size_t i = 0; i < f_.oversize_used; ++i) {
    OversizeSource& s = f_.oversize[i];
    if (s.src == src) {
      ++s.packets;
      s.max_len = std::max(s.max_len, l16);
      return;
    }
  }
  if (f_.oversize_used == f_.oversize.size()) {
    ++f_.oversize_other_sources;
    return;
  }
  f_.oversize[f_.oversize_used++] = OversizeSource{src, 1, l16, ts};
}

void Analyser::icmp(const Address& src, std::uint8_t family, ConstBytes l4) noexcept {
  if (l4.size() < 8) {
    ++f_.counts.short_l4;
    return;
  }
  const std::uint8_t type = l4[0];
  std::uint16_t mtu = 0;
  bool probe = false;
  if (family == 4) {
    if (type != kIcmpUnreach || l4[1] != kIcmpFragNeeded) return;
    ++f_.too_big.frag_needed;
    mtu = load16(l4, 6);
    // The quote: IPv4 header of the packet that did not fit, then 8 bytes of it.
    if (l4.size() >= 8 + 20 && (l4[8] >> 4) == 4) {
      const std::size_t qh = std::size_t{l4[8] & 0x0fU} * 4;
      if (l4[8 + 9] == clamp::kProtoIcmp && l4.size() >= 8 + qh + 8)
        probe = l4[8 + qh] == kIcmpEcho &&
                static_cast<std::int32_t>(load16(l4, 8 + qh + 4)) == opt_.ignore_echo_id;
    }
  } else {
    if (type != kIcmp6TooBig) return;
    ++f_.too_big.packet_too_big;
    const std::uint32_t m = load32(l4, 4);
    mtu = static_cast<std::uint16_t>(std::min<std::uint32_t>(m, 65535));
    if (l4.size() >= 8 + 40 + 8 && l4[8 + 6] == clamp::kProtoIcmpv6)
      probe = l4[8 + 40] == kIcmp6Echo &&
              static_cast<std::int32_t>(load16(l4, 8 + 40 + 4)) == opt_.ignore_echo_id;
  }
  if (probe) ++f_.too_big.quoting_probes;
  IcmpTooBig& t = f_.too_big;
  for (std::size_t i = 0; i < t.used; ++i) {
    if (t.mtus[i].mtu == mtu) {
      ++t.mtus[i].count;
      return;
    }
  }
  if (t.used < t.mtus.size()) t.mtus[t.used++] = IcmpTooBig::Mtu{mtu, 1, src};
}

Analyser::Conn* Analyser::lookup(const Address& src, const Address& dst, std::uint16_t sport,
                                 std::uint16_t dport, std::int64_t ts, bool& forward) noexcept {
  const bool src_low = compare(src, sport, dst, dport) <= 0;
  const std::uint64_t h =
      src_low ? hash_endpoints(src, sport, dst, dport) : hash_endpoints(dst, dport, src, sport);
  const std::size_t mask = kConnSlots - 1;
  for (std::size_t i = static_cast<std::size_t>(h) & mask, n = 0; n < kConnSlots;
       i = (i + 1) & mask, ++n) {
    Conn& c = conns_[i];
    if (!c.used) {
      // Three quarters full: new connections are no longer tracked, so probing stays short.
      if (conn_used_ >= kConnSlots / 4 * 3) return nullptr;
      ++conn_used_;
      ++f_.counts.connections;
      c.used = true;
      c.a = src;
      c.b = dst;
      c.aport = sport;
      c.bport = dport;
      c.first_us = ts;
      forward = true;
      return &c;
    }
    if (c.a == src && c.aport == sport && c.b == dst && c.bport == dport) {
      forward = true;
      return &c;
    }
    if (c.a == dst && c.aport == dport && c.b == src && c.bport == sport) {
      forward = false;
      return &c;
    }
  }
  return nullptr;
}

void Analyser::tcp(std::int64_t ts, Direction dir, const Address& src, const Address& dst,
                   ConstBytes l4, std::size_t seg_len, std::size_t wire_len) noexcept {
  const std::uint16_t sport = load16(l4, 0);
  const std::uint16_t dport = load16(l4, 2);
  const std::uint32_t seq = load32(l4, 4);
  const std::size_t hlen = std::size_t{l4[12]} / 16 * 4;
  const std::uint8_t flags = l4[13];
  const auto payload = static_cast<std::uint32_t>(seg_len - hlen);

  const bool syn = (flags & kTcpSyn) != 0;
  const bool syn_ack = syn && (flags & kTcpAck) != 0;
  std::uint16_t mss = 0;
  if (syn) {
    mss = find_mss(l4, hlen);
    const std::size_t fam = src.family == 4 ? 0 : 1;
    const auto d = static_cast<std::size_t>(dir);
    (syn_ack ? f_.syn_ack : f_.syn)[d][fam].add(mss);
    const std::uint16_t path_mss = opt_.path_mtu == 0 ? 0
                                   : src.family == 4  ? clamp::mss_from_mtu4(opt_.path_mtu)
                                                      : clamp::mss_from_mtu6(opt_.path_mtu);
    if (path_mss != 0 && mss > path_mss) {
      ++f_.mss_above_path;
      if (f_.mss_examples_used < f_.mss_examples.size())
        f_.mss_examples[f_.mss_examples_used++] =
            MssExample{src, dst, sport, dport, mss, syn_ack, dir, ts};
    }
  }

  bool forward = true;
  Conn* c = lookup(src, dst, sport, dport, ts, forward);
  if (c == nullptr) {
    ++f_.counts.untracked;
    return;
  }
  // A SYN-ACK arriving first means the SYN was missed: the SYN-ACK's sender is the
  // responder, so swap the connection's sides once, while it has seen nothing else.
  if (syn_ack && forward && c->packets == 0) {
    std::swap(c->a, c->b);
    std::swap(c->aport, c->bport);
    forward = false;
  }
  ++c->packets;
  c->last_us = std::max(c->last_us, ts);
  if ((flags & (kTcpFin | kTcpRst)) != 0) c->closed = true;
  Half& h = c->half[forward ? 0 : 1];
  ++h.packets;
  if (syn) h.mss = mss;
  const std::uint32_t end =
      seq + payload + (syn ? 1U : 0U) + ((flags & kTcpFin) != 0 ? 1U : 0U);
  if (!h.sent || seq_after(end, h.snd_max)) h.snd_max = end;
  h.sent = true;
  if ((flags & kTcpAck) != 0) {
    const std::uint32_t ack = load32(l4, 8);
    if (!h.acked || seq_after(ack, h.ack_max)) h.ack_max = ack;
    h.acked = true;
  }
  if (payload == 0) return;
  h.payload += payload;
  if (payload > h.max_payload) {
    // A larger segment redefines full size: the shorter ones remembered so far were not.
    h.max_payload = payload;
    h.seq_count = 0;
    h.seq_next = 0;
  }
  if (payload < h.max_payload || payload < kMinFullSize) return;
  for (std::size_t i = 0; i < h.seq_count; ++i) {
    if (h.seqs[i] == seq) {
      if (h.full_retrans == 0 && c->half[forward ? 1 : 0].full_retrans == 0)
        ++f_.retrans_connections;
      ++h.full_retrans;
      ++f_.full_retrans;
      if (h.resent[i] > 0) ++f_.full_retrans_repeated;
      if (h.resent[i] < 255) ++h.resent[i];
      if (opt_.path_mtu != 0 && wire_len > opt_.path_mtu) ++f_.full_retrans_oversize;
      return;
    }
  }
  h.resent[h.seq_next] = 0;
  h.seqs[h.seq_next] = seq;
  h.seq_next = static_cast<std::uint8_t>((h.seq_next + 1) % kSeqRing);
  if (h.seq_count < kSeqRing) ++h.seq_count;
}

const Findings& Analyser::finish(std::int64_t end_us) noexcept {
  if (have_last_ && end_us > last_ts_) {
    add_gap(last_ts_, end_us - last_ts_);
    last_ts_ = end_us;
    f_.last_us = end_us;  // the capture lasted until then, silent or not
  }
  f_.stalled_connections = 0;
  f_.connections_used = 0;
  // Rank: full-size retransmissions first, then silence at the end of a stalled one.
  // Stalled: carried data, not closed, silent for stall_us at the end, and either data is
  // visibly unacknowledged or the handshake announced an MSS the path cannot carry (from
  // the receiving side of a black hole nothing else shows: the large segments never
  // arrive). An idle connection whose data was all acknowledged is not stalled.
  auto rank = [&](const Conn& c) -> std::pair<std::uint64_t, std::int64_t> {
    const std::uint64_t rt = c.half[0].full_retrans + c.half[1].full_retrans;
    const std::uint16_t path_mss = opt_.path_mtu == 0 ? 0
                                   : c.a.family == 4  ? clamp::mss_from_mtu4(opt_.path_mtu)
                                                      : clamp::mss_from_mtu6(opt_.path_mtu);
    bool unacked = false;
    bool mss_risk = false;
    for (int k = 0; k < 2; ++k) {
      const Half& h = c.half[k];
      const Half& o = c.half[1 - k];
      if (h.payload > 0 && h.sent && (!o.acked || seq_after(h.snd_max, o.ack_max)))
        unacked = true;
      if (path_mss != 0 && h.mss > path_mss) mss_risk = true;
    }
    const bool stalled = !c.closed && (c.half[0].payload + c.half[1].payload) > 0 &&
                         last_ts_ - c.last_us >= opt_.stall_us && (unacked || mss_risk);
    return {rt, stalled ? last_ts_ - c.last_us : -1};
  };
  std::array<std::pair<std::uint64_t, std::int64_t>, Findings::kConnections> ranks{};
  for (std::size_t i = 0; i < kConnSlots; ++i) {
    const Conn& c = conns_[i];
    if (!c.used) continue;
    const auto r = rank(c);
    if (r.second >= 0) ++f_.stalled_connections;
    if (r.first == 0 && r.second < 0) continue;
    auto& list = f_.connections;
    std::size_t pos = f_.connections_used;
    if (pos == list.size()) {
      if (!(ranks[pos - 1] < r)) continue;
      --pos;
    } else {
      ++f_.connections_used;
    }
    while (pos > 0 && ranks[pos - 1] < r) {
      list[pos] = list[pos - 1];
      ranks[pos] = ranks[pos - 1];
      --pos;
    }
    ConnectionReport& rep = list[pos];
    ranks[pos] = r;
    rep = ConnectionReport{};
    rep.a = c.a;
    rep.b = c.b;
    rep.aport = c.aport;
    rep.bport = c.bport;
    rep.packets = c.packets;
    rep.first_us = c.first_us;
    rep.last_us = c.last_us;
    rep.closed = c.closed;
    for (int k = 0; k < 2; ++k) {
      rep.payload[k] = c.half[k].payload;
      rep.max_payload[k] = c.half[k].max_payload;
      rep.full_retrans[k] = c.half[k].full_retrans;
      rep.mss[k] = c.half[k].mss;
    }
  }
  return f_;
}

}  // namespace tunshim::diag
