// Fuzzes `tunshim doctor`'s passive half: the input as a capture file (pcap or pcapng,
// through fmemopen) read into the analyser, then as one record of every supported link
// type, then the verdict over whatever was found. Checks, besides "no crash": the findings'
// tables stay within their capacities and every record is counted once.
#include <pcap/pcap.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "diag/analyser.h"
#include "diag/assess.h"
#include "proxy/doctor_capture.h"

namespace {

using namespace tunshim;

constexpr int kLinkTypes[] = {
    DLT_RAW,        14,       DLT_IPV4, DLT_IPV6, DLT_EN10MB,     DLT_LINUX_SLL,
    DLT_LINUX_SLL2, DLT_NULL, DLT_LOOP, DLT_PPP,  DLT_PPP_SERIAL, DLT_PPP_ETHER};

void check(const diag::Findings& f) {
  if (f.gaps_used > f.gaps.size() || f.oversize_used > f.oversize.size() ||
      f.mss_examples_used > f.mss_examples.size() ||
      f.connections_used > f.connections.size() || f.too_big.used > f.too_big.mtus.size())
    std::abort();
  for (std::size_t i = 1; i < f.gaps_used; ++i)
    if (f.gaps[i].len_us > f.gaps[i - 1].len_us) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A path MTU from the first two bytes, so the comparisons against it run too.
  const std::uint16_t pmtu =
      size >= 2 ? static_cast<std::uint16_t>((data[0] << 8) | data[1]) : 1400;
  diag::Options o;
  o.path_mtu = pmtu;
  o.ignore_echo_id = 0x4242;

  {
    diag::Analyser a(o);
    std::vector<std::uint8_t> copy(data, data + size);
    std::FILE* in = fmemopen(copy.data(), copy.size(), "rb");
    if (in != nullptr) {
      proxy::CaptureCounts counts;
      std::string err;
      const bool ok = proxy::read_capture(in, a, counts, err);
      if (!ok && err.empty()) std::abort();
      const diag::Findings& f = a.finish(a.findings().last_us);
      check(f);
      if (f.counts.records + f.counts.own_probes != counts.records) std::abort();
      diag::ActiveFacts facts;
      facts.pmtu = pmtu;
      facts.pmtu_given = true;
      (void)diag::assess(f, facts);
    }
  }
  {
    diag::Analyser a(o);
    proxy::CaptureCounts counts;
    std::int64_t ts = 0;
    for (int dlt : kLinkTypes) proxy::feed_record(a, dlt, ts += 1000, data, size, counts);
    check(a.finish(ts + 2'000'000));
  }
  return 0;
}
