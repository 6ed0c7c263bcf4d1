// Test-only packet construction: IPv4/IPv6 (with options, extension headers, fragments)
// carrying TCP/UDP/ICMP, plus a reference checksum that shares no code with clamp/.
// Header-only; allocation and exceptions are fine here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace tunshim::test {

using Buf = std::vector<std::uint8_t>;

// ---- reference checksum (RFC 1071 by the book: sum 16-bit words, mod 0xffff) ----------

// One's-complement sum of `data` as big-endian words (odd tail padded with zero), folded.
inline std::uint16_t ref_sum(const Buf& data) {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    s += (i % 2 == 0) ? std::uint64_t{data[i]} * 256 : std::uint64_t{data[i]};
  }
  // Mod 0xffff is the one's-complement fold, except that a non-zero multiple of 0xffff
  // must be 0xffff (one's-complement -0), never +0.
  if (s == 0) return 0;
  const std::uint64_t m = s % 0xffff;
  return static_cast<std::uint16_t>(m == 0 ? 0xffff : m);
}

inline std::uint16_t rd16(const Buf& b, std::size_t off) {
  return static_cast<std::uint16_t>(b.at(off) * 256 + b.at(off + 1));
}
inline void wr16(Buf& b, std::size_t off, std::uint16_t v) {
  b.at(off) = static_cast<std::uint8_t>(v / 256);
  b.at(off + 1) = static_cast<std::uint8_t>(v % 256);
}

// Pseudo-header bytes for a transport segment of `seg_len` bytes (RFC 793 / RFC 8200 §8.1).
inline Buf ref_pseudo(const Buf& pkt, int family, std::uint8_t proto, std::size_t seg_len) {
  Buf p;
  if (family == 4) {
    p.assign(pkt.begin() + 12, pkt.begin() + 20);
    p.push_back(0);
    p.push_back(proto);
    p.push_back(static_cast<std::uint8_t>(seg_len / 256));
    p.push_back(static_cast<std::uint8_t>(seg_len % 256));
  } else {
    p.assign(pkt.begin() + 8, pkt.begin() + 40);
    for (int shift = 24; shift >= 0; shift -= 8) {
      p.push_back(static_cast<std::uint8_t>((seg_len >> shift) & 0xff));
    }
    p.insert(p.end(), {0, 0, 0, proto});
  }
  return p;
}

// The value a correct checksum field for segment pkt[l4_off, ip_len) must hold, computed
// from scratch (the stored field is treated as zero).
inline std::uint16_t ref_transport_csum(const Buf& pkt, int family, std::uint8_t proto,
                                        std::size_t l4_off, std::size_t ip_len,
                                        std::size_t check_off) {
  Buf all = ref_pseudo(pkt, family, proto, ip_len - l4_off);
  Buf seg(pkt.begin() + static_cast<std::ptrdiff_t>(l4_off),
          pkt.begin() + static_cast<std::ptrdiff_t>(ip_len));
  seg.at(check_off) = 0;
  seg.at(check_off + 1) = 0;
  // Pseudo-header length is even, so the segment's words stay aligned.
  all.insert(all.end(), seg.begin(), seg.end());
  return static_cast<std::uint16_t>(~ref_sum(all));
}

// The value a correct IPv4 header checksum must hold.
inline std::uint16_t ref_ip4_csum(const Buf& pkt) {
  const std::size_t ihl = std::size_t{pkt.at(0) & 0x0fU} * 4;
  Buf h(pkt.begin(), pkt.begin() + static_cast<std::ptrdiff_t>(ihl));
  h[10] = 0;
  h[11] = 0;
  return static_cast<std::uint16_t>(~ref_sum(h));
}

// One's-complement difference stored - correct (0 when the checksum is right), so a test
// can check that a bad checksum stays bad "by the same amount". Both values are compared
// in one's-complement arithmetic, where 0x0000 and 0xffff are the same number.
inline std::uint16_t csum_delta(std::uint16_t stored, std::uint16_t correct) {
  const std::uint32_t s = std::uint32_t{stored} + static_cast<std::uint16_t>(~correct);
  std::uint32_t f = (s & 0xffff) + (s >> 16);
  f = (f & 0xffff) + (f >> 16);
  return static_cast<std::uint16_t>(f == 0xffff ? 0 : f);
}

// ---- builders ---------------------------------------------------------------------------

namespace tcpf {
inline constexpr std::uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;
}

// TCP options as raw bytes, with helpers for the common ones.
namespace opt {
inline Buf mss(std::uint16_t v) {
  return {2, 4, static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v & 0xff)};
}
inline Buf nop() { return {1}; }
inline Buf eol() { return {0}; }
inline Buf wscale(std::uint8_t s) { return {3, 3, s}; }
inline Buf sack_ok() { return {4, 2}; }
inline Buf timestamps(std::uint32_t val = 0x01020304, std::uint32_t ecr = 0) {
  Buf b{8, 10};
  for (int sh = 24; sh >= 0; sh -= 8) b.push_back(static_cast<std::uint8_t>(val >> sh));
  for (int sh = 24; sh >= 0; sh -= 8) b.push_back(static_cast<std::uint8_t>(ecr >> sh));
  return b;
}
inline Buf cat(std::initializer_list<Buf> parts) {
  Buf b;
  for (const auto& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}
}  // namespace opt

struct TcpSpec {
  std::uint16_t sport = 40000;
  std::uint16_t dport = 443;
  std::uint32_t seq = 0x11223344;
  std::uint32_t ack = 0;
  std::uint8_t flags = tcpf::syn;
  std::uint16_t window = 64240;
  Buf options;  // padded with zeros (EOL) to a multiple of 4
  Buf payload;
  std::optional<std::uint8_t> doff;  // override the computed data offset (malformed tests)
};

struct UdpSpec {
  std::uint16_t sport = 5353;
  std::uint16_t dport = 53;
  Buf payload{1, 2, 3, 4, 5};
};

struct IcmpSpec {
  std::uint8_t type = 8;  // echo request (ICMPv6: 128)
  std::uint8_t code = 0;
  Buf body{0, 1, 0, 1, 'p', 'i', 'n', 'g'};  // rest of header + data
};

struct Ip4Spec {
  std::array<std::uint8_t, 4> src{192, 0, 2, 1};
  std::array<std::uint8_t, 4> dst{198, 51, 100, 7};
  std::uint8_t ttl = 64;
  std::uint8_t tos = 0;
  std::uint16_t id = 0x1234;
  bool df = true;
  bool mf = false;
  std::uint16_t frag_off = 0;  // in 8-byte units
  Buf options;                 // IP options, padded with zeros to a multiple of 4
};

struct Ip6Ext {
  std::uint8_t type;  // 0 hop-by-hop, 43 routing, 60 dest opts, 44 fragment, or other
  Buf body;           // bytes after next-header (and hdr-ext-len): padded to (n*8 - 2)
};

struct Ip6Spec {
  std::array<std::uint8_t, 16> src{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::array<std::uint8_t, 16> dst{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2};
  std::uint8_t hop_limit = 64;
  std::vector<Ip6Ext> ext;
};

// A built packet and where its transport header is (computed by the builder, independently
// of clamp::parse_ip).
struct Packet {
  Buf bytes;
  int family = 0;
  std::uint8_t proto = 0;
  std::size_t l4_off = 0;
  std::size_t ip_len() const { return bytes.size(); }
};

inline Buf tcp_segment(const TcpSpec& t) {
  Buf opts = t.options;
  while (opts.size() % 4 != 0) opts.push_back(0);
  Buf s(20, 0);
  wr16(s, 0, t.sport);
  wr16(s, 2, t.dport);
  for (int i = 0; i < 4; ++i)
    s[4 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(t.seq >> (24 - 8 * i));
  for (int i = 0; i < 4; ++i)
    s[8 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(t.ack >> (24 - 8 * i));
  const std::size_t doff = t.doff ? *t.doff : (20 + opts.size()) / 4;
  s[12] = static_cast<std::uint8_t>(doff << 4);
  s[13] = t.flags;
  wr16(s, 14, t.window);
  s.insert(s.end(), opts.begin(), opts.end());
  s.insert(s.end(), t.payload.begin(), t.payload.end());
  return s;
}

inline Buf udp_datagram(const UdpSpec& u) {
  Buf s(8, 0);
  wr16(s, 0, u.sport);
  wr16(s, 2, u.dport);
  wr16(s, 4, static_cast<std::uint16_t>(8 + u.payload.size()));
  s.insert(s.end(), u.payload.begin(), u.payload.end());
  return s;
}

inline Buf icmp_message(const IcmpSpec& m) {
  Buf s{m.type, m.code, 0, 0};
  s.insert(s.end(), m.body.begin(), m.body.end());
  return s;
}

// Offset of the checksum field inside a transport header, or none for protocols without.
inline std::optional<std::size_t> check_offset(std::uint8_t proto) {
  if (proto == 6) return 16;
  if (proto == 17) return 6;
  if (proto == 1 || proto == 58) return 2;
  return std::nullopt;
}

// Fills in the transport checksum of a finished packet (IPv4 ICMP has no pseudo-header).
inline void fix_transport_csum(Packet& p) {
  const auto co = check_offset(p.proto);
  if (!co || p.l4_off + *co + 2 > p.bytes.size()) return;
  std::uint16_t c;
  if (p.family == 4 && p.proto == 1) {
    Buf seg(p.bytes.begin() + static_cast<std::ptrdiff_t>(p.l4_off), p.bytes.end());
    seg[*co] = 0;
    seg[*co + 1] = 0;
    c = static_cast<std::uint16_t>(~ref_sum(seg));
  } else {
    c = ref_transport_csum(p.bytes, p.family, p.proto, p.l4_off, p.bytes.size(), *co);
  }
  wr16(p.bytes, p.l4_off + *co, c);
}

inline Packet ipv4(const Ip4Spec& ip, std::uint8_t proto, const Buf& l4,
                   bool transport_csum = true) {
  Buf opts = ip.options;
  while (opts.size() % 4 != 0) opts.push_back(0);
  Packet p;
  p.family = 4;
  p.proto = proto;
  p.l4_off = 20 + opts.size();
  Buf& b = p.bytes;
  b.assign(20, 0);
  b[0] = static_cast<std::uint8_t>(0x40 | (p.l4_off / 4));
  b[1] = ip.tos;
  wr16(b, 2, static_cast<std::uint16_t>(p.l4_off + l4.size()));
  wr16(b, 4, ip.id);
  wr16(b, 6,
       static_cast<std::uint16_t>((ip.df ? 0x4000 : 0) | (ip.mf ? 0x2000 : 0) |
                                  (ip.frag_off & 0x1fff)));
  b[8] = ip.ttl;
  b[9] = proto;
  std::copy(ip.src.begin(), ip.src.end(), b.begin() + 12);
  std::copy(ip.dst.begin(), ip.dst.end(), b.begin() + 16);
  b.insert(b.end(), opts.begin(), opts.end());
  wr16(b, 10, ref_ip4_csum(b));
  b.insert(b.end(), l4.begin(), l4.end());
  if (transport_csum && ip.frag_off == 0) fix_transport_csum(p);
  return p;
}

// Fragment header body (6 bytes after next-header and reserved... see RFC 8200 §4.5):
// reserved, offset(13 bits)|res|M, identification.
inline Ip6Ext frag6(std::uint16_t offset_units, bool more, std::uint32_t ident = 0xabcdef01) {
  Buf body(6, 0);
  wr16(body, 0, static_cast<std::uint16_t>((offset_units << 3) | (more ? 1 : 0)));
  for (int i = 0; i < 4; ++i)
    body[2 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ident >> (24 - 8 * i));
  return {44, body};
}
// A hop-by-hop / destination-options / routing header whose body is `len8` 8-byte units
// long in total (PadN filled, or raw for routing).
inline Ip6Ext opts6(std::uint8_t type, std::size_t len8 = 1) {
  Buf body(len8 * 8 - 2, 0);
  if (type == 0 || type == 60) {  // one PadN covering the whole body
    body[0] = 1;
    body[1] = static_cast<std::uint8_t>(body.size() - 2);
  }
  return {type, body};
}

inline Packet ipv6(const Ip6Spec& ip, std::uint8_t proto, const Buf& l4,
                   bool transport_csum = true) {
  Packet p;
  p.family = 6;
  p.proto = proto;
  Buf& b = p.bytes;
  b.assign(40, 0);
  b[0] = 0x60;
  b[6] = ip.ext.empty() ? proto : ip.ext.front().type;
  b[7] = ip.hop_limit;
  std::copy(ip.src.begin(), ip.src.end(), b.begin() + 8);
  std::copy(ip.dst.begin(), ip.dst.end(), b.begin() + 24);
  bool later_frag = false;
  for (std::size_t i = 0; i < ip.ext.size(); ++i) {
    const Ip6Ext& e = ip.ext[i];
    const std::uint8_t next = i + 1 < ip.ext.size() ? ip.ext[i + 1].type : proto;
    b.push_back(next);
    if (e.type == 44) {
      b.push_back(0);
      later_frag = later_frag || (rd16(e.body, 0) >> 3) != 0;
    } else {
      b.push_back(static_cast<std::uint8_t>((e.body.size() + 2) / 8 - 1));
    }
    b.insert(b.end(), e.body.begin(), e.body.end());
  }
  p.l4_off = b.size();
  b.insert(b.end(), l4.begin(), l4.end());
  wr16(b, 4, static_cast<std::uint16_t>(b.size() - 40));
  if (transport_csum && !later_frag) fix_transport_csum(p);
  return p;
}

inline Packet tcp4(const TcpSpec& t, const Ip4Spec& ip = {}) {
  return ipv4(ip, 6, tcp_segment(t));
}
inline Packet tcp6(const TcpSpec& t, const Ip6Spec& ip = {}) {
  return ipv6(ip, 6, tcp_segment(t));
}

// Reference checks on a packet whose layout the test knows.
inline bool ref_tcp_ok(const Buf& pkt, int family, std::size_t l4_off, std::size_t ip_len) {
  return rd16(pkt, l4_off + 16) == ref_transport_csum(pkt, family, 6, l4_off, ip_len, 16) ||
         csum_delta(rd16(pkt, l4_off + 16),
                    ref_transport_csum(pkt, family, 6, l4_off, ip_len, 16)) == 0;
}
inline bool ref_ip4_ok(const Buf& pkt) {
  return csum_delta(rd16(pkt, 10), ref_ip4_csum(pkt)) == 0;
}

}  // namespace tunshim::test
