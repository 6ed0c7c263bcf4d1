// Internet checksum (RFC 1071) and incremental update (RFC 1624).
#include "clamp/checksum.h"

namespace tunshim::clamp {
namespace {

// Reduces a 64-bit one's-complement accumulator to 32 bits without changing its value
// modulo 0xffff, so callers can keep chaining csum_add.
std::uint32_t fold64(std::uint64_t s) noexcept {
  while ((s >> 32) != 0) s = (s & 0xffffffffU) + (s >> 32);
  return static_cast<std::uint32_t>(s);
}

std::uint16_t inv(std::uint16_t v) noexcept { return static_cast<std::uint16_t>(~v); }

}  // namespace

std::uint32_t csum_add(std::uint32_t acc, ConstBytes b, bool odd_start) noexcept {
  std::uint64_t s = acc;
  std::size_t i = 0;
  if (odd_start && !b.empty()) {
    s += b[0];  // low half of a word whose high half lies before this span
    i = 1;
  }
  const std::size_t n = b.size();
  for (; i + 1 < n; i += 2) s += (std::uint32_t{b[i]} << 8) | b[i + 1];
  if (i < n) s += std::uint32_t{b[i]} << 8;  // odd tail: pad with a zero low byte
  return fold64(s);
}

std::uint16_t csum_fold(std::uint32_t acc) noexcept {
  while ((acc >> 16) != 0) acc = (acc & 0xffffU) + (acc >> 16);
  return static_cast<std::uint16_t>(acc);
}

std::uint16_t csum(ConstBytes b) noexcept { return inv(csum_fold(csum_add(0, b))); }

std::uint16_t csum_replace16(std::uint16_t check, std::uint16_t old_word,
                             std::uint16_t new_word) noexcept {
  // RFC 1624 eqn. 3 (not eqn. 2, which yields -0 where the full sum gives +0).
  const std::uint32_t s = std::uint32_t{inv(check)} + inv(old_word) + new_word;
  return inv(csum_fold(s));
}

std::uint16_t csum_replace_bytes(std::uint16_t check, ConstBytes before, ConstBytes after,
                                 bool odd_start) noexcept {
  const std::uint16_t old_sum = csum_fold(csum_add(0, before, odd_start));
  const std::uint16_t new_sum = csum_fold(csum_add(0, after, odd_start));
  return csum_replace16(check, old_sum, new_sum);
}

std::uint16_t transport_csum(ConstBytes ip, ConstBytes segment, std::uint8_t proto) noexcept {
  if (ip.empty()) return 0xffff;
  const auto seg_len = static_cast<std::uint32_t>(segment.size());
  std::uint32_t acc = 0;
  const int version = ip[0] >> 4;
  if (version == 4 && ip.size() >= 20) {
    acc = csum_add(acc, ip.subspan(12, 8));  // source and destination addresses
    acc += proto;
    acc += seg_len & 0xffffU;  // a TCP/UDP segment inside IPv4 is < 64 KiB
  } else if (version == 6 && ip.size() >= 40) {
    // RFC 8200 §8.1. The destination is the one in the fixed header; with a routing
    // header the final destination would differ, which we never need (no checksum is
    // ever computed for a routed packet here).
    acc = csum_add(acc, ip.subspan(8, 32));
    acc += seg_len >> 16;
    acc += seg_len & 0xffffU;
    acc += proto;
  } else {
    return 0xffff;  // precondition violated; never read past `ip`
  }
  acc = csum_add(acc, segment);
  return inv(csum_fold(acc));
}

}  // namespace tunshim::clamp
