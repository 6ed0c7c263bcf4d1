// Capture files for `tunshim clamp`: finding the IP packet inside a link-layer record, and
// the file-level loop (libpcap reads pcap/pcapng, writes pcap) that clamps every record.
// Split so that both halves can be fuzzed: clamp_record() over bytes, clamp_pcap() over
// FILE* (fmemopen works).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "clamp/bytes.h"
#include "clamp/mss.h"

struct pcap;  // libpcap's pcap_t, kept out of this header

namespace tunshim::proxy {

// ---- one record ----------------------------------------------------------------------

enum class LinkStatus : std::uint8_t {
  ip,         // an IPv4/IPv6 packet starts at `offset`
  not_ip,     // well-formed, but carries something else (ARP, LCP, an unknown family …)
  malformed,  // link header cut short, or its IP version disagrees with the packet's
};

struct LinkPayload {
  LinkStatus status = LinkStatus::malformed;
  std::size_t offset = 0;  // where the IP header starts in the record
  // Offset of a 16-bit big-endian length field in the link header that covers the IP
  // packet and must grow with it (PPPoE), or 0 when there is none.
  std::size_t length_field = 0;
};

// True when records of link type `dlt` (a DLT_ value, as pcap_datalink() returns it) can
// be looked into.
bool link_type_supported(int dlt) noexcept;

// The names of the supported link types, comma-separated, for error messages.
std::string_view supported_link_types() noexcept;

// A short name for `dlt` ("EN10MB", "USER0", …), or "unknown" when it has none.
std::string link_type_name(int dlt);

// Locates the IP packet inside one record of link type `dlt`. Only reads `record`.
LinkPayload find_ip(int dlt, clamp::ConstBytes record) noexcept;

enum class RecordStatus : std::uint8_t {
  clamp,           // clamp_mss ran on the IP packet; see `result`
  not_ip,          // no IP packet in the record: left unchanged
  link_malformed,  // the link header is inconsistent: left unchanged
};

struct RecordResult {
  RecordStatus status = RecordStatus::not_ip;
  clamp::ClampResult result;  // meaningful when status == clamp
  std::size_t caplen = 0;     // record length after the call (+4 when an MSS was inserted)
};

// Clamps the IP packet inside the complete (not truncated) record buf[0, caplen) of link
// type `dlt` in place. buf.size() is the capacity: inserting an MSS option needs
// caplen + 4 <= buf.size(). Link-header length fields (PPPoE) follow an insertion. Bytes
// are changed only when result.outcome is clamped or inserted.
RecordResult clamp_record(int dlt, clamp::Bytes buf, std::size_t caplen,
                          clamp::ClampTarget target) noexcept;

// ---- a whole file --------------------------------------------------------------------

struct ClampCounts {
  std::uint64_t packets = 0;    // records read
  std::uint64_t written = 0;    // records written
  std::uint64_t syn = 0;        // SYNs the clamp looked at (clamped+inserted+unchanged+no_room)
  std::uint64_t syn_ack = 0;    // of which SYN-ACKs
  std::uint64_t not_ip = 0;     // records without an IP packet
  std::uint64_t truncated = 0;  // caplen < len: a cut packet cannot be clamped safely
  std::array<std::uint64_t, clamp::kOutcomeCount> outcomes{};

  std::uint64_t count(clamp::Outcome o) const noexcept {
    return outcomes[static_cast<std::size_t>(o)];
  }
  void add(const RecordResult& r) noexcept;
};

enum class PcapStatus : std::uint8_t { ok, bad_input, unsupported_link, write_failed };

// Called now and then during a long run with the records read so far.
using ProgressFn = std::function<void(std::uint64_t packets)>;

// An input capture file, read through libpcap.
class CaptureIn {
 public:
  CaptureIn() = default;
  ~CaptureIn();
  CaptureIn(const CaptureIn&) = delete;
  CaptureIn& operator=(const CaptureIn&) = delete;

  // Reads the file header from `in`, taking ownership of `in` (closed even on failure).
  // `in` must be seekable (its magic number is peeked at). False, with a one-line reason
  // in `error`, when it is not, or when libpcap cannot read it.
  bool open(std::FILE* in, std::string& error);

  int link_type() const noexcept { return dlt_; }
  bool pcapng() const noexcept { return pcapng_; }
  // Byte offset reached in the input (for progress), or -1.
  long position() const noexcept;

  // Clamps every record and writes it to `out` (ownership taken; closed on return) as a
  // pcap file with the input's link type, snaplen and timestamp precision. Needs
  // link_type_supported(link_type()). On a corrupt record (bad_input) or a write error
  // (write_failed), `error` has a one-line reason and `counts` what was done so far.
  PcapStatus clamp_to(std::FILE* out, clamp::ClampTarget target, ClampCounts& counts,
                      std::string& error, const ProgressFn& progress = {});

 private:
  struct pcap* pcap_ = nullptr;
  std::FILE* in_ = nullptr;  // owned by pcap_ once it is open
  int dlt_ = -1;
  unsigned precision_ = 0;  // PCAP_TSTAMP_PRECISION_MICRO or _NANO, as the file has it
  bool pcapng_ = false;
  std::vector<std::uint8_t> buf_;  // one record plus room to insert, reused
};

// Both steps for callers that hold two FILE*s (the fuzz harness): opens `in`, refuses an
// unsupported link type before writing anything, then clamps into `out`. Takes ownership
// of both files.
PcapStatus clamp_pcap(std::FILE* in, std::FILE* out, clamp::ClampTarget target,
                      ClampCounts& counts, std::string& error);

}  // namespace tunshim::proxy
