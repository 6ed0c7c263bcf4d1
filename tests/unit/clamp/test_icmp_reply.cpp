// parse_icmp4 / parse_icmp6 / match_probe: what the path-MTU prober accepts as an answer to
// a probe, on hand-made packets, including truncated ones and ones whose lengths lie.
#include <boost/test/unit_test.hpp>

#include "clamp/icmp_reply.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;
using tc::IcmpKind;
using tc::ProbeMatch;

namespace {

constexpr std::uint16_t kIdent = 0x4242;
constexpr std::uint16_t kSeq = 0x0107;
constexpr std::uint64_t kNonce = 0x0102030405060708ULL;
const std::array<std::uint8_t, 4> kMe4{172, 30, 0, 1};
const std::array<std::uint8_t, 4> kTarget4{172, 30, 0, 2};
const std::array<std::uint8_t, 4> kRouter4{10, 77, 1, 254};
const std::array<std::uint8_t, 16> kMe6{0xfd, 0x77, 0, 0x30, 0, 0, 0, 0,
                                        0,    0,    0, 0,    0, 0, 0, 1};
const std::array<std::uint8_t, 16> kTarget6{0xfd, 0x77, 0, 0x30, 0, 0, 0, 0,
                                            0,    0,    0, 0,    0, 0, 0, 2};

// ICMP echo body after type/code/checksum: identifier, sequence, nonce, `filler` bytes.
tt::Buf echo_body(std::uint16_t ident = kIdent, std::uint16_t seq = kSeq,
                  std::uint64_t nonce = kNonce, std::size_t filler = 32) {
  tt::Buf b(4 + 8 + filler, 0x5a);
  tt::wr16(b, 0, ident);
  tt::wr16(b, 2, seq);
  for (int i = 0; i < 8; ++i) {
    b[4 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(nonce >> (56 - 8 * i));
  }
  return b;
}

tt::Buf probe4(std::size_t filler = 32, std::array<std::uint8_t, 4> dst = kTarget4) {
  return tt::ipv4({.src = kMe4, .dst = dst}, 1,
                  tt::icmp_message({8, 0, echo_body(kIdent, kSeq, kNonce, filler)}))
      .bytes;
}
tt::Buf reply4(const tt::Buf& body = echo_body(), std::array<std::uint8_t, 4> src = kTarget4,
               std::uint8_t code = 0) {
  return tt::ipv4({.src = src, .dst = kMe4}, 1, tt::icmp_message({0, code, body})).bytes;
}
// Frag-needed from the router announcing `mtu`, quoting `quote`.
tt::Buf frag_needed(const tt::Buf& quote, std::uint16_t mtu = 1372) {
  tt::Buf body{0, 0, 0, 0};
  tt::wr16(body, 2, mtu);
  body.insert(body.end(), quote.begin(), quote.end());
  return tt::ipv4({.src = kRouter4, .dst = kMe4}, 1, tt::icmp_message({3, 4, body})).bytes;
}

tc::OutstandingProbe outstanding4(std::uint16_t size = 20 + 8 + 8 + 32) {
  tc::OutstandingProbe p;
  p.family = 4;
  std::copy(kTarget4.begin(), kTarget4.end(), p.target.begin());
  p.ident = kIdent;
  p.seq = kSeq;
  p.nonce = kNonce;
  p.size = size;
  return p;
}
tc::OutstandingProbe outstanding6(std::uint16_t size = 40 + 8 + 8 + 32) {
  tc::OutstandingProbe p;
  p.family = 6;
  p.target = kTarget6;
  p.ident = kIdent;
  p.seq = kSeq;
  p.nonce = kNonce;
  p.size = size;
  return p;
}

tc::ConstBytes src4(const std::array<std::uint8_t, 4>& a = kTarget4) { return {a.data(), 4}; }
tc::ConstBytes src6(const std::array<std::uint8_t, 16>& a = kTarget6) { return {a.data(), 16}; }

ProbeMatch match4(const tt::Buf& pkt, tc::ConstBytes src = src4(),
                  const tc::OutstandingProbe& p = outstanding4()) {
  return tc::match_probe(tc::parse_icmp4(pkt), src, p);
}

// ICMPv6 as the raw socket returns it: from the ICMPv6 header (no checksum needed).
tt::Buf echo6(std::uint8_t type, const tt::Buf& body = echo_body()) {
  return tt::icmp_message({type, 0, body});
}
tt::Buf probe6(std::size_t filler = 32) {
  return tt::ipv6({.src = kMe6, .dst = kTarget6}, 58,
                  echo6(128, echo_body(kIdent, kSeq, kNonce, filler)))
      .bytes;
}
tt::Buf too_big6(const tt::Buf& quote, std::uint32_t mtu = 1280) {
  tt::Buf m{2,
            0,
            0,
            0,
            static_cast<std::uint8_t>(mtu >> 24),
            static_cast<std::uint8_t>(mtu >> 16),
            static_cast<std::uint8_t>(mtu >> 8),
            static_cast<std::uint8_t>(mtu)};
  m.insert(m.end(), quote.begin(), quote.end());
  return m;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(icmp_reply)

BOOST_AUTO_TEST_CASE(v4_echo_reply_fields_and_match) {
  const tt::Buf r = reply4();
  const tc::IcmpMessage m = tc::parse_icmp4(r);
  BOOST_TEST(static_cast<int>(m.kind) == static_cast<int>(IcmpKind::echo_reply));
  BOOST_TEST(m.family == 4);
  BOOST_TEST(m.ident == kIdent);
  BOOST_TEST(m.seq == kSeq);
  BOOST_TEST(m.has_nonce);
  BOOST_TEST(m.nonce == kNonce);
  BOOST_TEST(m.ip_len == r.size());
  BOOST_TEST(m.has_addr);
  BOOST_TEST(std::equal(kTarget4.begin(), kTarget4.end(), m.addr.begin()));
  BOOST_TEST(static_cast<int>(match4(r)) == static_cast<int>(ProbeMatch::reply));
}

BOOST_AUTO_TEST_CASE(v4_echo_reply_of_another_size_is_wrong_length) {
  BOOST_TEST(static_cast<int>(match4(reply4(echo_body(kIdent, kSeq, kNonce, 31)))) ==
             static_cast<int>(ProbeMatch::wrong_length));
}

BOOST_AUTO_TEST_CASE(v4_echo_reply_not_ours) {
  const auto none = static_cast<int>(ProbeMatch::none);
  BOOST_TEST(static_cast<int>(match4(reply4(echo_body(kIdent, kSeq, kNonce + 1)))) == none);
  BOOST_TEST(static_cast<int>(match4(reply4(echo_body(kIdent + 1)))) == none);
  BOOST_TEST(static_cast<int>(match4(reply4(echo_body(kIdent, kSeq + 1)))) == none);
  // From another host, by the socket's account or by the IP header's.
  BOOST_TEST(static_cast<int>(match4(reply4(), src4(kRouter4))) == none);
  BOOST_TEST(static_cast<int>(match4(reply4(echo_body(), kRouter4))) == none);
  // A non-zero code is not an echo reply; too short to hold the nonce is not ours.
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(reply4(echo_body(), kTarget4, 1)).kind) ==
             static_cast<int>(IcmpKind::other));
  tt::Buf shortb = echo_body();
  shortb.resize(4 + 7);
  const tc::IcmpMessage m = tc::parse_icmp4(reply4(shortb));
  BOOST_TEST(!m.has_nonce);
  BOOST_TEST(static_cast<int>(match4(reply4(shortb))) == none);
  // A v4 message never answers a v6 probe, even with equal fields.
  BOOST_TEST(static_cast<int>(
                 tc::match_probe(tc::parse_icmp4(reply4()), src4(), outstanding6())) == none);
}

BOOST_AUTO_TEST_CASE(v4_lying_lengths_are_malformed) {
  const auto malformed = static_cast<int>(IcmpKind::malformed);
  const tt::Buf good = reply4();
  // Every truncation: the IP total length no longer equals what was read.
  for (std::size_t n = 0; n < good.size(); ++n) {
    const tt::Buf cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST(static_cast<int>(tc::parse_icmp4(cut).kind) == malformed, "cut at " << n);
  }
  tt::Buf longer = good;
  tt::wr16(longer, 2, static_cast<std::uint16_t>(good.size() + 1));
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(longer).kind) == malformed);
  tt::Buf shorter = good;
  tt::wr16(shorter, 2, static_cast<std::uint16_t>(good.size() - 1));
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(shorter).kind) == malformed);
  tt::Buf ihl4 = good;
  ihl4[0] = 0x44;  // IHL below 5
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(ihl4).kind) == malformed);
  tt::Buf tiny(good.begin(), good.begin() + 28);
  tt::wr16(tiny, 2, 28);
  tiny[0] = 0x46;  // 24-byte header + 4 bytes: ICMP header cut
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(tiny).kind) == malformed);
  tt::Buf v6 = good;
  v6[0] = 0x65;
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(v6).kind) == malformed);
  tt::Buf udp = good;
  udp[9] = 17;
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(udp).kind) == malformed);
}

BOOST_AUTO_TEST_CASE(v4_frag_needed_quoting_the_probe) {
  const tt::Buf err = frag_needed(probe4());
  const tc::IcmpMessage m = tc::parse_icmp4(err);
  BOOST_TEST(static_cast<int>(m.kind) == static_cast<int>(IcmpKind::too_big));
  BOOST_TEST(m.mtu == 1372);
  BOOST_TEST(m.ident == kIdent);
  BOOST_TEST(m.seq == kSeq);
  BOOST_TEST(m.has_nonce);
  BOOST_TEST(std::equal(kTarget4.begin(), kTarget4.end(), m.addr.begin()));
  // The error comes from a router, not the target: the sender does not matter.
  BOOST_TEST(static_cast<int>(match4(err, src4(kRouter4))) ==
             static_cast<int>(ProbeMatch::too_big));
  // An RFC 792 router leaves the MTU 0: still a hint.
  BOOST_TEST(tc::parse_icmp4(frag_needed(probe4(), 0)).mtu == 0);
}

BOOST_AUTO_TEST_CASE(v4_frag_needed_short_and_wrong_quotes) {
  const tt::Buf probe = probe4();
  // RFC 792's minimum: the IP header and 8 bytes. No nonce to check, still ours.
  const tt::Buf minimal(probe.begin(), probe.begin() + 28);
  const tc::IcmpMessage m = tc::parse_icmp4(frag_needed(minimal));
  BOOST_TEST(static_cast<int>(m.kind) == static_cast<int>(IcmpKind::too_big));
  BOOST_TEST(!m.has_nonce);
  BOOST_TEST(static_cast<int>(match4(frag_needed(minimal), src4(kRouter4))) ==
             static_cast<int>(ProbeMatch::too_big));
  // Cut inside the echo header: nothing to match on.
  for (std::size_t n = 0; n < 28; ++n) {
    const tt::Buf q(probe.begin(), probe.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST(static_cast<int>(tc::parse_icmp4(frag_needed(q)).kind) ==
                   static_cast<int>(IcmpKind::other),
               "quote of " << n);
  }
  const auto none = static_cast<int>(ProbeMatch::none);
  // Another destination, another nonce, a quoted TCP segment.
  BOOST_TEST(static_cast<int>(match4(frag_needed(probe4(32, kRouter4)))) == none);
  tt::Buf other_nonce = probe;
  other_nonce[28] ^= 1;
  BOOST_TEST(static_cast<int>(match4(frag_needed(other_nonce))) == none);
  const tt::Buf tcp = tt::tcp4({}, {.src = kMe4, .dst = kTarget4}).bytes;
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(frag_needed(tcp)).kind) ==
             static_cast<int>(IcmpKind::other));
  // A quoted header with options (IHL 6) is walked past.
  const tt::Buf opts = tt::ipv4({.src = kMe4, .dst = kTarget4, .options = {1, 1, 1, 1}}, 1,
                                tt::icmp_message({8, 0, echo_body()}))
                           .bytes;
  BOOST_TEST(static_cast<int>(match4(frag_needed(opts))) ==
             static_cast<int>(ProbeMatch::too_big));
  // Port unreachable quoting the probe is not a size hint.
  tt::Buf body{0, 0, 0, 0};
  body.insert(body.end(), probe.begin(), probe.end());
  const tt::Buf unreach =
      tt::ipv4({.src = kTarget4, .dst = kMe4}, 1, tt::icmp_message({3, 3, body})).bytes;
  BOOST_TEST(static_cast<int>(tc::parse_icmp4(unreach).kind) ==
             static_cast<int>(IcmpKind::other));
}

BOOST_AUTO_TEST_CASE(v6_echo_reply) {
  const tt::Buf r = echo6(129);
  const tc::IcmpMessage m = tc::parse_icmp6(r);
  BOOST_TEST(static_cast<int>(m.kind) == static_cast<int>(IcmpKind::echo_reply));
  BOOST_TEST(m.ip_len == r.size() + 40);
  BOOST_TEST(!m.has_addr);  // the socket says who sent it
  BOOST_TEST(static_cast<int>(tc::match_probe(m, src6(), outstanding6())) ==
             static_cast<int>(ProbeMatch::reply));
  BOOST_TEST(static_cast<int>(tc::match_probe(m, src6(kMe6), outstanding6())) ==
             static_cast<int>(ProbeMatch::none));
  BOOST_TEST(static_cast<int>(tc::match_probe(m, src6(), outstanding6(1280))) ==
             static_cast<int>(ProbeMatch::wrong_length));
  // An echo request (ours, looped back) is not a reply.
  BOOST_TEST(static_cast<int>(tc::parse_icmp6(echo6(128)).kind) ==
             static_cast<int>(IcmpKind::other));
}

BOOST_AUTO_TEST_CASE(v6_packet_too_big) {
  const tc::IcmpMessage m = tc::parse_icmp6(too_big6(probe6()));
  BOOST_TEST(static_cast<int>(m.kind) == static_cast<int>(IcmpKind::too_big));
  BOOST_TEST(m.mtu == 1280);
  BOOST_TEST(static_cast<int>(tc::match_probe(m, src6(kMe6), outstanding6())) ==
             static_cast<int>(ProbeMatch::too_big));
  // A 32-bit MTU above what an IP length can say is capped.
  BOOST_TEST(tc::parse_icmp6(too_big6(probe6(), 0x10000)).mtu == 65535);
  BOOST_TEST(tc::parse_icmp6(too_big6(probe6(), 0xffffffffU)).mtu == 65535);
  const tt::Buf probe = probe6();
  for (std::size_t n = 0; n < 48; ++n) {
    const tt::Buf q(probe.begin(), probe.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST(static_cast<int>(tc::parse_icmp6(too_big6(q)).kind) ==
                   static_cast<int>(IcmpKind::other),
               "quote of " << n);
  }
  tt::Buf udp = probe;
  udp[6] = 17;
  BOOST_TEST(static_cast<int>(tc::parse_icmp6(too_big6(udp)).kind) ==
             static_cast<int>(IcmpKind::other));
  tt::Buf other_nonce = probe;
  other_nonce[48] ^= 0x80;
  BOOST_TEST(static_cast<int>(tc::match_probe(tc::parse_icmp6(too_big6(other_nonce)), src6(),
                                              outstanding6())) ==
             static_cast<int>(ProbeMatch::none));
}

BOOST_AUTO_TEST_CASE(v6_lengths) {
  const tt::Buf r = echo6(129);
  for (std::size_t n = 0; n < 8; ++n) {
    const tt::Buf cut(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST(static_cast<int>(tc::parse_icmp6(cut).kind) ==
               static_cast<int>(IcmpKind::malformed));
  }
  // Longer than any IPv6 packet can carry (65535 with the fixed header).
  tt::Buf huge = echo6(129, echo_body(kIdent, kSeq, kNonce, 65535 - 40 - 16 + 1));
  BOOST_TEST(static_cast<int>(tc::parse_icmp6(huge).kind) ==
             static_cast<int>(IcmpKind::malformed));
  huge.pop_back();
  BOOST_TEST(static_cast<int>(tc::parse_icmp6(huge).kind) ==
             static_cast<int>(IcmpKind::echo_reply));
}

BOOST_AUTO_TEST_SUITE_END()
