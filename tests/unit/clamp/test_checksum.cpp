// RFC 1071 sum and RFC 1624 incremental updates, against the reference in packet_builder.h.
#include <boost/test/unit_test.hpp>
#include <random>

#include "clamp/checksum.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;

BOOST_AUTO_TEST_SUITE(checksum)

BOOST_AUTO_TEST_CASE(rfc1071_example) {
  // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (folded), checksum 220d.
  const tt::Buf b{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  BOOST_TEST(tc::csum_fold(tc::csum_add(0, b)) == 0xddf2);
  BOOST_TEST(tc::csum(b) == 0x220d);
  BOOST_TEST(tt::ref_sum(b) == 0xddf2);
}

BOOST_AUTO_TEST_CASE(odd_length_and_odd_start) {
  const tt::Buf b{0x12, 0x34, 0x56};
  BOOST_TEST(tc::csum_fold(tc::csum_add(0, b)) == 0x1234 + 0x5600);
  // Starting at an odd offset: 0x12 is a low byte, then 0x3456 is a whole word.
  BOOST_TEST(tc::csum_fold(tc::csum_add(0, b, true)) == 0x0012 + 0x3456);
  // Splitting a region at an odd boundary and chaining gives the whole region's sum.
  const tt::Buf all{1, 2, 3, 4, 5, 6, 7};
  const std::span<const std::uint8_t> s(all);
  const auto whole = tc::csum_fold(tc::csum_add(0, s));
  const auto split =
      tc::csum_fold(tc::csum_add(tc::csum_add(0, s.first(3)), s.subspan(3), true));
  BOOST_TEST(whole == split);
}

BOOST_AUTO_TEST_CASE(random_regions_match_reference) {
  std::mt19937 rng(12345);
  for (int n = 0; n < 200; ++n) {
    tt::Buf b(static_cast<std::size_t>(rng() % 300));
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    BOOST_TEST(tc::csum_fold(tc::csum_add(0, b)) % 0xffff == tt::ref_sum(b) % 0xffff);
  }
}

BOOST_AUTO_TEST_CASE(replace16_matches_full_recompute) {
  std::mt19937 rng(777);
  for (int n = 0; n < 500; ++n) {
    tt::Buf b(40);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    b[0] = b[1] = 0;
    tt::wr16(b, 0, tc::csum(b));  // field 0 is the checksum
    BOOST_TEST(tc::csum(b) == 0);
    const std::size_t w = 2 + 2 * (rng() % 19);
    const std::uint16_t old_word = tt::rd16(b, w);
    const auto new_word = static_cast<std::uint16_t>(rng());
    tt::wr16(b, w, new_word);
    tt::wr16(b, 0, tc::csum_replace16(tt::rd16(b, 0), old_word, new_word));
    BOOST_TEST(tt::csum_delta(tc::csum_fold(tc::csum_add(0, b)), 0xffff) == 0);
  }
}

BOOST_AUTO_TEST_CASE(replace_bytes_at_odd_offset) {
  std::mt19937 rng(99);
  for (int n = 0; n < 500; ++n) {
    tt::Buf b(41);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    b[0] = b[1] = 0;
    tt::wr16(b, 0, tc::csum(b));
    const std::size_t at = 3 + rng() % 36;  // any parity
    const tt::Buf before{b[at], b[at + 1]};
    b[at] = static_cast<std::uint8_t>(rng());
    b[at + 1] = static_cast<std::uint8_t>(rng());
    const tt::Buf after{b[at], b[at + 1]};
    tt::wr16(b, 0, tc::csum_replace_bytes(tt::rd16(b, 0), before, after, at % 2 == 1));
    BOOST_TEST(tc::csum(b) == 0);
  }
}

BOOST_AUTO_TEST_CASE(bad_checksum_stays_bad_by_same_amount) {
  tt::Buf b{0x45, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x11, 0, 0};
  const std::uint16_t good = tc::csum(b);
  const auto bad = static_cast<std::uint16_t>(good + 7);
  const std::uint16_t old_word = tt::rd16(b, 2);
  tt::wr16(b, 2, 0x0020);
  const std::uint16_t updated = tc::csum_replace16(bad, old_word, 0x0020);
  BOOST_TEST(tt::csum_delta(updated, tc::csum(b)) == tt::csum_delta(bad, good));
  BOOST_TEST(tt::csum_delta(updated, tc::csum(b)) != 0);
}

BOOST_AUTO_TEST_CASE(transport_csum_v4_and_v6) {
  for (int fam : {4, 6}) {
    tt::TcpSpec t;
    t.options = tt::opt::cat({tt::opt::mss(1460), tt::opt::sack_ok(), tt::opt::wscale(7)});
    t.payload = {1, 2, 3};  // odd segment length
    const tt::Packet p = fam == 4 ? tt::tcp4(t) : tt::tcp6(t);
    const std::span<const std::uint8_t> all(p.bytes);
    BOOST_TEST(tc::transport_csum(all, all.subspan(p.l4_off), 6) == 0);
    tt::Buf zeroed = p.bytes;
    zeroed[p.l4_off + 16] = zeroed[p.l4_off + 17] = 0;
    const std::span<const std::uint8_t> z(zeroed);
    BOOST_TEST(tc::transport_csum(z, z.subspan(p.l4_off), 6) ==
               tt::rd16(p.bytes, p.l4_off + 16));
  }
}

BOOST_AUTO_TEST_SUITE_END()
