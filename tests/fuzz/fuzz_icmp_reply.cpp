// Fuzzes what the path-MTU prober reads on its raw ICMP sockets: parse_icmp4/parse_icmp6
// and match_probe. Input: family (even: 4, odd: 6), perturbation flags, the outstanding
// probe's size (2 bytes, big-endian), then the datagram. The probe is built from what the
// parser found, with the flags changing one field at a time, so matches are reached and
// near-misses are tried. Checks, besides "no crash, no out-of-bounds read": a reported MTU
// is the field's value (ICMPv6: capped at 65535); a reply's length is the datagram's; a
// match implies equal identifier, sequence and target (and nonce where the rules say);
// a changed field never matches.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "clamp/icmp_reply.h"

namespace tc = tunshim::clamp;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

enum : std::uint8_t {
  kFlipIdent = 0x01,
  kFlipSeq = 0x02,
  kFlipNonce = 0x04,
  kFlipTarget = 0x08,
  kSrcIsTarget = 0x10,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4 || size > 70000) return 0;
  const bool v4 = (data[0] & 1) == 0;
  const std::uint8_t flags = data[1];
  const auto probe_size = static_cast<std::uint16_t>((data[2] << 8) | data[3]);
  const std::vector<std::uint8_t> dgram(data + 4, data + size);  // exact length for ASan
  const tc::ConstBytes d(dgram.data(), dgram.size());
  const tc::IcmpMessage m = v4 ? tc::parse_icmp4(d) : tc::parse_icmp6(d);
  require(m.family == (v4 ? 4 : 6), "family");

  if (m.kind == tc::IcmpKind::echo_reply) {
    require(v4 ? m.ip_len == d.size() : m.ip_len == d.size() + 40, "reply length");
  }
  if (m.kind == tc::IcmpKind::too_big) {
    if (v4) {
      const std::size_t ihl = std::size_t{d[0] & 0x0fU} * 4;
      require(ihl + 8 <= d.size(), "ICMP header past the datagram");
      require(m.mtu == ((d[ihl + 6] << 8) | d[ihl + 7]), "IPv4 MTU is not the field");
    } else {
      const std::uint32_t raw = (std::uint32_t{d[4]} << 24) | (std::uint32_t{d[5]} << 16) |
                                (std::uint32_t{d[6]} << 8) | d[7];
      require(m.mtu == (raw > 65535 ? 65535 : raw), "IPv6 MTU not the capped field");
    }
    require(m.has_addr, "a too-big without the quoted destination");
  }

  // The probe this message would answer, then one field changed per flag.
  tc::OutstandingProbe p;
  p.family = v4 ? 4 : 6;
  p.target = m.addr;
  p.ident = m.ident;
  p.seq = m.seq;
  p.nonce = m.nonce;
  p.size = probe_size;
  if (flags & kFlipIdent) p.ident ^= 1;
  if (flags & kFlipSeq) p.seq ^= 0x8000;
  if (flags & kFlipNonce) p.nonce ^= 1ULL << 63;
  if (flags & kFlipTarget) p.target[3] ^= 1;
  // The sender the socket reports: the message's own address (the target as the message
  // sees it, before any flip), or another host.
  std::array<std::uint8_t, 16> src = m.addr;
  if (!(flags & kSrcIsTarget)) src[0] ^= 0x80;
  const std::size_t alen = v4 ? 4 : 16;
  const tc::ProbeMatch r = tc::match_probe(m, tc::ConstBytes(src.data(), alen), p);

  if (r != tc::ProbeMatch::none) {
    require(m.ident == p.ident && m.seq == p.seq, "a match with another ident/seq");
    require(!(flags & (kFlipIdent | kFlipSeq | kFlipTarget)), "a match after a flip");
  }
  if (r == tc::ProbeMatch::reply || r == tc::ProbeMatch::wrong_length) {
    require(m.kind == tc::IcmpKind::echo_reply, "a reply match from a non-reply");
    require(m.has_nonce && m.nonce == p.nonce, "a reply match without the nonce");
    require(flags & kSrcIsTarget, "a reply match from another sender");
    require((r == tc::ProbeMatch::reply) == (m.ip_len == p.size), "reply vs wrong_length");
  }
  if (r == tc::ProbeMatch::too_big) {
    require(m.kind == tc::IcmpKind::too_big, "a hint from a non-error");
    require(!m.has_nonce || m.nonce == p.nonce, "a hint with another nonce");
  }
  // Unchanged fields, the right sender and the right size: every reply or hint matches.
  if (flags == kSrcIsTarget && m.ip_len == p.size && m.kind == tc::IcmpKind::echo_reply &&
      m.has_nonce && (!v4 || m.has_addr)) {
    require(r == tc::ProbeMatch::reply, "our own reply not matched");
  }
  if ((flags & ~kSrcIsTarget) == 0 && m.kind == tc::IcmpKind::too_big) {
    require(r == tc::ProbeMatch::too_big, "a hint quoting our probe not matched");
  }
  return 0;
}
