// TCP MSS clamping, after net/netfilter/xt_TCPMSS.c (semantics only; see mss.h for the two
// deliberate differences).
#include "clamp/mss.h"

#include <algorithm>
#include <array>

#include "clamp/checksum.h"
#include "clamp/mtu.h"
#include "clamp/packet.h"

namespace tunshim::clamp {
namespace {

constexpr std::uint8_t kTcpSyn = 0x02;
constexpr std::uint8_t kTcpRst = 0x04;
constexpr std::uint8_t kTcpAck = 0x10;
constexpr std::size_t kTcpCheckOff = 16;
constexpr std::size_t kTcpHeaderMax = 60;  // data offset is 4 bits of 32-bit words
constexpr std::uint8_t kOptEol = 0;
constexpr std::uint8_t kOptNop = 1;
constexpr std::uint8_t kOptMss = 2;
constexpr std::uint8_t kOptMssLen = 4;

// Where the MSS option is, if the option list is well-formed.
struct OptionScan {
  bool ok = false;
  std::size_t mss_at = 0;  // offset of the option (kind byte) within the TCP header; 0: none
};

// Walks the options in tcp[20, hlen). Rejects (ok = false) anything the receiver could
// read differently from us: a length byte outside the header, a length < 2, an option
// running past the header, an MSS option whose length is not 4, or a second MSS option.
OptionScan scan_options(ConstBytes tcp, std::size_t hlen) noexcept {
  OptionScan scan;
  std::size_t i = kTcpHeaderMin;
  while (i < hlen) {
    const std::uint8_t kind = tcp[i];
    if (kind == kOptEol) break;  // the rest is padding
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= hlen) return scan;
    const std::size_t len = tcp[i + 1];
    if (len < 2 || i + len > hlen) return scan;
    if (kind == kOptMss) {
      if (len != kOptMssLen || scan.mss_at != 0) return scan;
      scan.mss_at = i;
    }
    i += len;
  }
  scan.ok = true;
  return scan;
}

// Lowers the MSS value at tcp[at + 2] to `target`; the TCP checksum follows incrementally.
// `at` may be odd (options need no alignment), so the update is parity-aware.
void rewrite_mss(Bytes tcp, std::size_t at, std::uint16_t target) noexcept {
  const std::size_t val = at + 2;
  const std::array<std::uint8_t, 2> before{tcp[val], tcp[val + 1]};
  store16(tcp, val, target);
  const std::uint16_t check = csum_replace_bytes(load16(tcp, kTcpCheckOff), before,
                                                 tcp.subspan(val, 2), (val & 1U) != 0);
  store16(tcp, kTcpCheckOff, check);
}

// Inserts MSS `mss` as the first option of the header at buf[l4_off], moving the rest of
// the buffer (options, and any link padding after the IP packet) 4 bytes on, and fixes the
// data offset, the IP length and the checksums. Precondition: len + 4 <= buf.size(), the
// header is < 60 bytes, and the segment has no payload.
void insert_mss(Bytes buf, std::size_t len, const IpInfo& ip, std::uint16_t mss) noexcept {
  const std::size_t opt = ip.l4_off + kTcpHeaderMin;
  std::copy_backward(buf.begin() + static_cast<std::ptrdiff_t>(opt),
                     buf.begin() + static_cast<std::ptrdiff_t>(len),
                     buf.begin() + static_cast<std::ptrdiff_t>(len + kOptMssLen));
  buf[opt] = kOptMss;
  buf[opt + 1] = kOptMssLen;
  store16(buf, opt + 2, mss);

  Bytes tcp = buf.subspan(ip.l4_off);
  std::uint16_t check = load16(tcp, kTcpCheckOff);
  // Data offset shares its word with the flags.
  const std::uint16_t off_word = load16(tcp, 12);
  const auto new_off_word = static_cast<std::uint16_t>(off_word + 0x1000U);
  store16(tcp, 12, new_off_word);
  check = csum_replace16(check, off_word, new_off_word);
  // The new option words were zero before (absent), now they are 0x0204 and mss. The
  // moved options shift by an even amount, so their contribution is unchanged.
  check = csum_replace16(check, 0, static_cast<std::uint16_t>((kOptMss << 8) | kOptMssLen));
  check = csum_replace16(check, 0, mss);
  // The pseudo-header's length grows by 4. A payload-free SYN is < 64 bytes long, so the
  // high word of IPv6's 32-bit length stays 0.
  const auto seg_len = static_cast<std::uint16_t>(ip.ip_len - ip.l4_off);
  check = csum_replace16(check, seg_len, static_cast<std::uint16_t>(seg_len + kOptMssLen));
  store16(tcp, kTcpCheckOff, check);

  if (ip.family == 4) {
    const std::uint16_t total = load16(buf, 2);
    const auto new_total = static_cast<std::uint16_t>(total + kOptMssLen);
    store16(buf, 2, new_total);
    store16(buf, 10, csum_replace16(load16(buf, 10), total, new_total));
  } else {
    store16(buf, 4, static_cast<std::uint16_t>(load16(buf, 4) + kOptMssLen));
  }
}

}  // namespace

std::string_view to_string(Outcome o) noexcept {
  switch (o) {
    case Outcome::clamped:
      return "clamped";
    case Outcome::inserted:
      return "inserted";
    case Outcome::unchanged:
      return "unchanged";
    case Outcome::no_room:
      return "no_room";
    case Outcome::not_syn:
      return "not_syn";
    case Outcome::not_tcp:
      return "not_tcp";
    case Outcome::fragment:
      return "fragment";
    case Outcome::malformed:
      return "malformed";
    case Outcome::disabled:
      return "disabled";
  }
  return "unknown";
}

ClampResult clamp_mss(Bytes buf, std::size_t len, ClampTarget target) noexcept {
  ClampResult r;
  r.length = len;
  if (len > buf.size()) return r;  // malformed: the caller's length lies
  const IpInfo ip = parse_ip(buf.first(len));
  r.family = ip.family;
  if (ip.status == ParseStatus::malformed) return r;
  if (ip.later_fragment) {
    r.outcome = Outcome::fragment;
    return r;
  }
  if (ip.status == ParseStatus::unsupported || ip.proto != kProtoTcp) {
    r.outcome = Outcome::not_tcp;
    return r;
  }
  if (ip.l4_off + kTcpHeaderMin > ip.ip_len) return r;  // malformed
  Bytes tcp = buf.subspan(ip.l4_off, ip.ip_len - ip.l4_off);
  const std::uint8_t flags = tcp[13];
  // Only RST excludes a SYN (the usual `--tcp-flags SYN,RST SYN` rule): SYN+FIN is clamped.
  if ((flags & kTcpSyn) == 0 || (flags & kTcpRst) != 0) {
    r.outcome = Outcome::not_syn;
    return r;
  }
  r.syn_ack = (flags & kTcpAck) != 0;
  const std::uint16_t want = ip.family == 4 ? target.mss4 : target.mss6;
  if (want == 0) {
    r.outcome = Outcome::disabled;
    return r;
  }
  const std::size_t hlen = (std::size_t{tcp[12]} >> 4) * 4;
  if (hlen < kTcpHeaderMin || hlen > tcp.size()) return r;  // malformed
  const OptionScan scan = scan_options(tcp, hlen);
  if (!scan.ok) return r;  // malformed

  if (scan.mss_at != 0) {
    const std::uint16_t mss = load16(tcp, scan.mss_at + 2);
    r.old_mss = mss;
    r.new_mss = mss;
    // Never raise: a host announcing a small MSS may depend on it (xt_TCPMSS.c).
    if (mss <= want) {
      r.outcome = Outcome::unchanged;
      return r;
    }
    rewrite_mss(tcp, scan.mss_at, want);
    r.new_mss = want;
    r.outcome = Outcome::clamped;
    return r;
  }

  // No MSS option: the peer will assume the RFC default, which may exceed the path. Insert
  // one only where the kernel would, and never into a first fragment (the later fragments
  // would then sit 4 bytes off their offsets and reassembly would corrupt the segment).
  r.outcome = Outcome::unchanged;
  if (tcp.size() > hlen || hlen >= kTcpHeaderMax || ip.first_fragment) return r;
  if (len + kOptMssLen > buf.size()) {
    r.outcome = Outcome::no_room;
    return r;
  }
  const std::uint16_t mss = std::min(want, ip.family == 4 ? kDefaultMss4 : kDefaultMss6);
  insert_mss(buf, len, ip, mss);
  r.new_mss = mss;
  r.length = len + kOptMssLen;
  r.outcome = Outcome::inserted;
  return r;
}

}  // namespace tunshim::clamp
