// Fuzzes `tunshim clamp`'s file path: the input is a capture file (pcap or pcapng, fed to
// libpcap through fmemopen), clamped into an in-memory output. Checks, besides "no crash":
// a successful run writes a capture libpcap reads back with every record, and clamp_record
// changes a record's bytes only when it reports a clamp or an insertion, for every link
// type it supports (the same input taken as one record).
#include <pcap/pcap.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "proxy/pcap_io.h"

namespace {

using tunshim::clamp::Outcome;
using namespace tunshim::proxy;

constexpr tunshim::clamp::ClampTarget kTarget{1360, 1300};
constexpr int kLinkTypes[] = {
    DLT_RAW,        14,       DLT_IPV4, DLT_IPV6, DLT_EN10MB,     DLT_LINUX_SLL,
    DLT_LINUX_SLL2, DLT_NULL, DLT_LOOP, DLT_PPP,  DLT_PPP_SERIAL, DLT_PPP_ETHER};
constexpr std::size_t kMaxRecordFuzz = 4096;

void check_records(const std::uint8_t* data, std::size_t size) {
  const std::size_t n = size < kMaxRecordFuzz ? size : kMaxRecordFuzz;
  std::vector<std::uint8_t> buf(n + 4);
  for (int dlt : kLinkTypes) {
    if (!link_type_supported(dlt)) std::abort();
    std::memcpy(buf.data(), data, n);
    const RecordResult r = clamp_record(dlt, buf, n, kTarget);
    const bool changed =
        r.status == RecordStatus::clamp &&
        (r.result.outcome == Outcome::clamped || r.result.outcome == Outcome::inserted);
    if (r.caplen !=
        n + (r.status == RecordStatus::clamp && r.result.outcome == Outcome::inserted ? 4 : 0))
      std::abort();
    if (!changed && std::memcmp(buf.data(), data, n) != 0) std::abort();
  }
}

// Reads a capture back and counts its records; -1 when libpcap cannot open it.
long count_records(char* bytes, std::size_t size) {
  std::FILE* f = fmemopen(bytes, size, "rb");
  if (f == nullptr) return -1;
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_fopen_offline(f, errbuf);
  if (p == nullptr) {
    std::fclose(f);
    return -1;
  }
  long n = 0;
  pcap_pkthdr* hdr = nullptr;
  const u_char* pkt = nullptr;
  while (pcap_next_ex(p, &hdr, &pkt) == 1) ++n;
  pcap_close(p);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_records(data, size);
  if (size == 0) return 0;  // fmemopen refuses an empty buffer

  std::FILE* in = fmemopen(const_cast<std::uint8_t*>(data), size, "rb");
  if (in == nullptr) return 0;
  char* out_bytes = nullptr;
  std::size_t out_size = 0;
  std::FILE* out = open_memstream(&out_bytes, &out_size);
  if (out == nullptr) {
    std::fclose(in);
    return 0;
  }
  ClampCounts counts;
  std::string error;
  const PcapStatus status = clamp_pcap(in, out, kTarget, counts, error);  // closes both
  if (status == PcapStatus::ok) {
    if (counts.written != counts.packets) std::abort();
    if (count_records(out_bytes, out_size) != static_cast<long>(counts.written)) std::abort();
  } else if (error.empty()) {
    std::abort();  // every failure must say why
  }
  std::free(out_bytes);
  return 0;
}
