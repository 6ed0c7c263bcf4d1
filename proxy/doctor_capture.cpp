#include "proxy/doctor_capture.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>

#include "proxy/pcap_io.h"

namespace tunshim::proxy {
namespace {

// Linux cooked headers: the packet type (PACKET_OUTGOING = 4 for what the host sent; 0-3
// for what it received) at offset 0 (SLL, 2 bytes) or 10 (SLL2, 1 byte).
constexpr unsigned kPacketOutgoing = 4;

diag::Direction direction_of(int dlt, const std::uint8_t* data, std::size_t caplen) noexcept {
  unsigned type = 0;
  if (dlt == DLT_LINUX_SLL && caplen >= 2) {
    type = (unsigned{data[0]} << 8) | data[1];
  } else if (dlt == DLT_LINUX_SLL2 && caplen >= 11) {
    type = data[10];
  } else {
    return diag::Direction::unknown;
  }
  return type == kPacketOutgoing ? diag::Direction::out : diag::Direction::in;
}

// A capture's timestamps are input (a pcapng with an odd time resolution gives seconds in
// the trillions): clamped so that microseconds, and the gaps the analyser takes between
// two of them, stay far from overflow. ±10^12 s is ±31,000 years.
std::int64_t micros(const pcap_pkthdr* h) noexcept {
  constexpr std::int64_t kMaxSec = 1'000'000'000'000;
  constexpr std::int64_t kMaxUsec = 1'000'000'000;
  const std::int64_t sec = std::clamp<std::int64_t>(h->ts.tv_sec, -kMaxSec, kMaxSec);
  const std::int64_t usec = std::clamp<std::int64_t>(h->ts.tv_usec, -kMaxUsec, kMaxUsec);
  return sec * 1'000'000 + usec;
}

struct DispatchCtx {
  diag::Analyser* analyser;
  CaptureCounts* counts;
  int dlt;
};

void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* data) {
  auto* ctx = reinterpret_cast<DispatchCtx*>(user);
  feed_record(*ctx->analyser, ctx->dlt, micros(h), data, h->caplen, *ctx->counts);
}

}  // namespace

void feed_record(diag::Analyser& analyser, int dlt, std::int64_t ts_us,
                 const std::uint8_t* data, std::size_t caplen, CaptureCounts& counts) noexcept {
  ++counts.records;
  const clamp::ConstBytes rec(data, caplen);
  const LinkPayload link = find_ip(dlt, rec);
  if (link.status != LinkStatus::ip) {
    if (link.status == LinkStatus::malformed) ++counts.link_malformed;
    analyser.add_not_ip(ts_us);
    return;
  }
  analyser.add(ts_us, direction_of(dlt, data, caplen), rec.subspan(link.offset));
}

bool read_capture(std::FILE* in, diag::Analyser& analyser, CaptureCounts& counts,
                  std::string& error) {
  unsigned char magic[4] = {};
  const std::size_t got = std::fread(magic, 1, sizeof magic, in);
  counts.pcapng =
      got == 4 && magic[0] == 0x0A && magic[1] == 0x0D && magic[2] == 0x0D && magic[3] == 0x0A;
  if (std::fseek(in, 0, SEEK_SET) != 0) {
    error = "cannot seek in it (a pipe?)";
    std::fclose(in);
    return false;
  }
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_fopen_offline(in, errbuf);
  if (p == nullptr) {
    error = std::string("not a capture file libpcap can read (") +
            (errbuf[0] != '\0' ? errbuf : "no reason given") + ")";
    std::fclose(in);
    return false;
  }
  counts.dlt = pcap_datalink(p);
  if (!link_type_supported(counts.dlt)) {
    error = "link type " + std::to_string(counts.dlt) + " (" + link_type_name(counts.dlt) +
            ") is not supported; supported: " + std::string(supported_link_types());
    pcap_close(p);
    return false;
  }
  bool ok = true;
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  for (;;) {
    const int rc = pcap_next_ex(p, &h, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      error = "corrupt or truncated capture after " + std::to_string(counts.records) +
              " records: " + pcap_geterr(p);
      ok = false;
      break;
    }
    feed_record(analyser, counts.dlt, micros(h), data, h->caplen, counts);
  }
  pcap_close(p);  // closes `in`
  return ok;
}

LiveCapture::~LiveCapture() {
  if (pcap_ != nullptr) pcap_close(pcap_);
}

int LiveCapture::fd() const noexcept {
  return pcap_ != nullptr ? pcap_get_selectable_fd(pcap_) : -1;
}

bool LiveCapture::open(const std::string& iface, Failure& failure, std::string& error) {
  failure = Failure::other;
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_ = pcap_create(iface.c_str(), errbuf);
  if (pcap_ == nullptr) {
    error = errbuf;
    return false;
  }
  // Headers only, delivered at once, with room for a burst while the prober runs.
  pcap_set_snaplen(pcap_, kDoctorSnaplen);
  pcap_set_immediate_mode(pcap_, 1);
  pcap_set_buffer_size(pcap_, 4 << 20);
  pcap_set_promisc(pcap_, 0);
  const int rc = pcap_activate(pcap_);
  if (rc < 0) {
    if (rc == PCAP_ERROR_NO_SUCH_DEVICE) {
      failure = Failure::no_interface;
    } else if (rc == PCAP_ERROR_PERM_DENIED) {
      failure = Failure::permission;
    }
    error = pcap_geterr(pcap_);
    if (error.empty()) error = pcap_statustostr(rc);
    pcap_close(pcap_);
    pcap_ = nullptr;
    return false;
  }
  // Cooked headers carry the direction; a tunnel's own link type (RAW) does not.
  int* dlts = nullptr;
  const int n = pcap_list_datalinks(pcap_, &dlts);
  bool sll2 = false, sll = false;
  for (int i = 0; i < n; ++i) {
    sll2 = sll2 || dlts[i] == DLT_LINUX_SLL2;
    sll = sll || dlts[i] == DLT_LINUX_SLL;
  }
  if (n > 0) pcap_free_datalinks(dlts);
  if (sll2) {
    pcap_set_datalink(pcap_, DLT_LINUX_SLL2);
  } else if (sll) {
    pcap_set_datalink(pcap_, DLT_LINUX_SLL);
  }
  counts_.dlt = pcap_datalink(pcap_);
  bpf_program prog{};
  if (pcap_compile(pcap_, &prog, "ip or ip6", 1, PCAP_NETMASK_UNKNOWN) != 0 ||
      pcap_setfilter(pcap_, &prog) != 0) {
    error = std::string("kernel filter: ") + pcap_geterr(pcap_);
    pcap_freecode(&prog);
    return false;
  }
  pcap_freecode(&prog);
  if (pcap_setnonblock(pcap_, 1, errbuf) != 0) {
    error = errbuf;
    return false;
  }
  if (!link_type_supported(counts_.dlt)) {
    error = "link type " + link_type_name(counts_.dlt) + " is not supported";
    return false;
  }
  failure = Failure::none;
  return true;
}

bool LiveCapture::drain(diag::Analyser& analyser, std::string& error) {
  DispatchCtx ctx{&analyser, &counts_, counts_.dlt};
  for (;;) {
    const int n = pcap_dispatch(pcap_, -1, on_packet, reinterpret_cast<u_char*>(&ctx));
    if (n < 0) {
      error = pcap_geterr(pcap_);
      return false;
    }
    if (n == 0) return true;
  }
}

void LiveCapture::update_stats() noexcept {
  pcap_stat st{};
  if (pcap_ == nullptr || pcap_stats(pcap_, &st) != 0) return;
  counts_.received = st.ps_recv;
  counts_.dropped = std::uint64_t{st.ps_drop} + st.ps_ifdrop;
}

}  // namespace tunshim::proxy
