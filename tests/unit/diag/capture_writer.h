// Test-only: capture files built in memory, record by record, as tcpdump would write them
// (a headers-only snaplen cuts every record; `len` keeps the packet's real length).
#pragma once

#include <cstdint>
#include <cstdio>
#include <vector>

#include "support/packet_builder.h"

namespace tunshim::test {

inline constexpr std::uint32_t kDltRaw = 101;  // LINKTYPE_RAW
inline constexpr std::uint32_t kDltSll2 = 276;

struct PcapWriter {
  Buf bytes;
  std::uint32_t snaplen;

  explicit PcapWriter(std::uint32_t linktype, std::uint32_t snap = 128) : snaplen(snap) {
    put32(0xa1b2c3d4);
    put16(2);
    put16(4);
    put32(0);
    put32(0);
    put32(snap);
    put32(linktype);
  }
  void put16(std::uint16_t v) {
    bytes.push_back(static_cast<std::uint8_t>(v));
    bytes.push_back(static_cast<std::uint8_t>(v >> 8));
  }
  void put32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  // One record at `ts_us` holding `rec` cut to the snaplen.
  void record(std::int64_t ts_us, const Buf& rec) {
    const auto len = static_cast<std::uint32_t>(rec.size());
    const std::uint32_t cap = len < snaplen ? len : snaplen;
    put32(static_cast<std::uint32_t>(ts_us / 1000000));
    put32(static_cast<std::uint32_t>(ts_us % 1000000));
    put32(cap);
    put32(len);
    bytes.insert(bytes.end(), rec.begin(), rec.begin() + cap);
  }
  // SLL2 cooked header (20 bytes) in front of an IP packet; outgoing = PACKET_OUTGOING.
  void cooked(std::int64_t ts_us, const Buf& ip, bool outgoing) {
    Buf rec(20, 0);
    rec[0] = ip[0] >> 4 == 6 ? 0x86 : 0x08;
    rec[1] = ip[0] >> 4 == 6 ? 0xdd : 0x00;
    rec[9] = 0xff;  // ARPHRD_NONE (0xfffe), low byte
    rec[8] = 0xff;
    rec[10] = outgoing ? 4 : 0;
    rec.insert(rec.end(), ip.begin(), ip.end());
    record(ts_us, rec);
  }
  // A FILE* over the bytes (fmemopen): what read_capture() takes.
  std::FILE* file() { return fmemopen(bytes.data(), bytes.size(), "rb"); }
};

}  // namespace tunshim::test
