// libpcap for `tunshim doctor`: a live, headers-only capture on a tunnel interface (kernel
// filter, immediate mode, non-blocking for the event loop) and the reading of a capture
// file (pcap or pcapng), both feeding a diag::Analyser record by record. The link layer is
// stripped with pcap_io's find_ip(); Linux cooked captures (SLL, SLL2) also say which way
// each packet went.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "diag/analyser.h"

struct pcap;

namespace tunshim::proxy {

// Bytes kept per packet: a cooked header (20), IPv6 with an extension header or two and a
// TCP header with options, or an ICMP error quoting IPv6 + 8. Never the payload.
inline constexpr int kDoctorSnaplen = 192;

struct CaptureCounts {
  std::uint64_t records = 0;  // records handed to the analyser
  std::uint64_t link_malformed = 0;
  std::uint64_t received = 0;  // live: pcap_stats ps_recv
  std::uint64_t dropped = 0;   // live: ps_drop + ps_ifdrop (packets the capture lost)
  int dlt = -1;
  bool pcapng = false;
};

// Feeds one link-layer record to `analyser`: strips the link header (find_ip), reads the
// direction of a cooked record. Counts records whose link header is inconsistent.
void feed_record(diag::Analyser& analyser, int dlt, std::int64_t ts_us,
                 const std::uint8_t* data, std::size_t caplen, CaptureCounts& counts) noexcept;

// Reads every record of the capture in `in` (ownership taken, closed on return) into
// `analyser`. False with a one-line reason in `error` when the file is not a capture,
// its link type cannot be looked into, or a record is corrupt (the records before it are
// analysed and counted).
bool read_capture(std::FILE* in, diag::Analyser& analyser, CaptureCounts& counts,
                  std::string& error);

class LiveCapture {
 public:
  enum class Failure : std::uint8_t { none, no_interface, permission, other };

  LiveCapture() = default;
  ~LiveCapture();
  LiveCapture(const LiveCapture&) = delete;
  LiveCapture& operator=(const LiveCapture&) = delete;

  // Opens and activates a capture on `iface`: snaplen kDoctorSnaplen, immediate mode,
  // cooked link type when the interface offers it (for directions), kernel filter "ip or
  // ip6", non-blocking. Packets are buffered by the kernel from here on.
  bool open(const std::string& iface, Failure& failure, std::string& error);
  int fd() const noexcept;  // for the event loop; -1 before open()
  int link_type() const noexcept { return counts_.dlt; }
  // Reads whatever is pending into `analyser`. False on a capture error (`error` says).
  bool drain(diag::Analyser& analyser, std::string& error);
  // Fills received/dropped from pcap_stats.
  void update_stats() noexcept;
  const CaptureCounts& counts() const noexcept { return counts_; }

 private:
  struct pcap* pcap_ = nullptr;
  CaptureCounts counts_;
};

}  // namespace tunshim::proxy
