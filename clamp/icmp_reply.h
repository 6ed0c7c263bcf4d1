// What the path-MTU prober reads on its raw ICMP sockets: echo replies to its probes and
// "too big" errors quoting them (ICMPv4 type 3 code 4, RFC 1191 §4; ICMPv6 type 2, RFC 4443
// §3.2), classified and matched against an outstanding probe. Pure: no allocation, no
// exceptions; every read is bounds-checked before it is made (two-phase, clamp/bytes.h).
//
// A probe is an echo request carrying an identifier, a sequence number and an 8-byte nonce
// as the first payload bytes. A reply matches only if it comes from the probe's target
// and identifier, sequence and nonce all match; a too-big error matches if it quotes an
// echo request to the target with the probe's identifier and sequence, and the nonce when
// the quote is long enough to hold it (routers usually quote far more than RFC 792's 8
// bytes: RFC 1812 4.3.2.3, RFC 4443 §2.4(c)).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "clamp/bytes.h"

namespace tunshim::clamp {

inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpUnreachable = 3;
inline constexpr std::uint8_t kIcmpFragNeeded = 4;  // code of kIcmpUnreachable
inline constexpr std::uint8_t kIcmpEchoRequest = 8;
inline constexpr std::uint8_t kIcmp6PacketTooBig = 2;
inline constexpr std::uint8_t kIcmp6EchoRequest = 128;
inline constexpr std::uint8_t kIcmp6EchoReply = 129;
inline constexpr std::size_t kIcmpHeaderLen = 8;
inline constexpr std::size_t kProbeNonceLen = 8;

enum class IcmpKind : std::uint8_t {
  echo_reply,  // an echo reply (code 0)
  too_big,     // frag-needed / packet-too-big quoting an echo request
  other,       // well-formed, but nothing a prober acts on
  malformed,   // lengths inconsistent, not the family's ICMP
};

struct IcmpMessage {
  IcmpKind kind = IcmpKind::malformed;
  std::uint8_t family = 0;  // 4 or 6
  // The echo's (echo_reply) or the quoted request's (too_big) identifier and sequence.
  std::uint16_t ident = 0;
  std::uint16_t seq = 0;
  bool has_nonce = false;  // the payload (or the quote) holds the 8 nonce bytes
  std::uint64_t nonce = 0;
  // echo_reply: the reply's total IP length (IPv6: 40 + the ICMPv6 message; a probe has no
  // extension headers, and a reply that had some would not be a like-for-like echo).
  std::uint16_t ip_len = 0;
  // too_big: the MTU the error announces. ICMPv4: the 16-bit next-hop MTU field, 0 when an
  // RFC 792 router left it empty; ICMPv6: the 32-bit field, 65535 when larger.
  std::uint16_t mtu = 0;
  // echo_reply over IPv4: the IP source; too_big: the quoted request's destination.
  // IPv6 echo replies: unset (the socket gives the source). First 4 bytes for IPv4.
  bool has_addr = false;
  std::array<std::uint8_t, 16> addr{};
};

// An ICMPv4 datagram as a raw IPv4 socket returns it, from the IP header. The IP header's
// total length must equal the datagram's length, its protocol be ICMP, and the ICMP header
// fit (else malformed).
IcmpMessage parse_icmp4(ConstBytes pkt) noexcept;
// An ICMPv6 message as a raw ICMPv6 socket returns it, from the ICMPv6 header (at least 8
// bytes, at most 65535 - 40, else malformed).
IcmpMessage parse_icmp6(ConstBytes msg) noexcept;

// An echo request the prober sent and still waits for.
struct OutstandingProbe {
  std::uint8_t family = 4;
  std::array<std::uint8_t, 16> target{};  // first 4 bytes for IPv4
  std::uint16_t ident = 0;
  std::uint16_t seq = 0;
  std::uint64_t nonce = 0;
  std::uint16_t size = 0;  // total IP length sent
};

enum class ProbeMatch : std::uint8_t {
  none,          // not an answer to this probe
  reply,         // its echo reply, of the size sent
  wrong_length,  // its echo reply (identifier, sequence, nonce), but of another size
  too_big,       // a too-big error quoting it: `mtu` is the hint
};

// Whether `m` answers `probe`; `src` is the sender the socket reported (4 or 16 bytes).
// reply/wrong_length imply identical family, identifier, sequence and nonce and a sender
// equal to the target; too_big implies identical family, identifier and sequence, a quoted
// destination equal to the target, and the nonce when quoted.
ProbeMatch match_probe(const IcmpMessage& m, ConstBytes src,
                       const OutstandingProbe& probe) noexcept;

}  // namespace tunshim::clamp
