#include "proxy/pcap_io.h"

#include <pcap/pcap.h>

#include <cerrno>
#include <cstring>

namespace tunshim::proxy {
namespace {

using clamp::ConstBytes;
using clamp::load16;
using clamp::load32;

// Link types as pcap_datalink() reports them. LINKTYPE_RAW (101) arrives as DLT_RAW (12);
// 14 is OpenBSD's DLT_RAW, which libpcap on Linux passes through as 14.
constexpr int kDltRawOpenBsd = 14;
constexpr int kDltUser0 = 147;
constexpr int kDltUser15 = 162;

// Ethertypes (IEEE registry).
constexpr std::uint16_t kEthIpv4 = 0x0800;
constexpr std::uint16_t kEthIpv6 = 0x86DD;
constexpr std::uint16_t kEthVlan = 0x8100;     // 802.1Q
constexpr std::uint16_t kEthQinQ = 0x88A8;     // 802.1ad service tag
constexpr std::uint16_t kEthQinQOld = 0x9100;  // pre-standard double tagging
constexpr std::uint16_t kEthPppoeSession = 0x8864;
// More tags than any real network stacks; bounds the walk on crafted frames.
constexpr int kMaxVlanTags = 8;

// PPP protocol numbers (RFC 1332, RFC 5072) and the HDLC address/control (RFC 1662).
constexpr std::uint16_t kPppIpv4 = 0x0021;
constexpr std::uint16_t kPppIpv6 = 0x0057;
constexpr std::uint8_t kPppAddress = 0xFF;
constexpr std::uint8_t kPppControl = 0x03;

// Address families in DLT_NULL/DLT_LOOP headers: AF_INET is 2 everywhere; AF_INET6 is 24
// (NetBSD, OpenBSD), 28 (FreeBSD) or 30 (macOS), whatever system wrote the file.
constexpr std::uint32_t kAfInet = 2;
constexpr bool is_af_inet6(std::uint32_t af) { return af == 24 || af == 28 || af == 30; }

constexpr std::size_t kEthHeader = 14;
constexpr std::size_t kSllHeader = 16;   // protocol at 14
constexpr std::size_t kSll2Header = 20;  // protocol at 0
constexpr std::size_t kPppoeHeader = 6;  // ver/type, code, session, length (RFC 2516)

constexpr LinkPayload not_ip() { return {LinkStatus::not_ip, 0, 0}; }
constexpr LinkPayload malformed() { return {LinkStatus::malformed, 0, 0}; }

// The IP packet at `off` must announce the version the link header promised (0: either).
LinkPayload ip_at(ConstBytes rec, std::size_t off, int version, std::size_t length_field = 0) {
  if (off >= rec.size()) return malformed();
  const int v = rec[off] >> 4;
  if (version != 0 ? v != version : (v != 4 && v != 6)) return malformed();
  return {LinkStatus::ip, off, length_field};
}

int version_of_ethertype(std::uint16_t type) {
  return type == kEthIpv4 ? 4 : type == kEthIpv6 ? 6 : 0;
}

// PPP frame from `off`: optional FF 03, then a 1-byte (compressed, odd) or 2-byte protocol.
LinkPayload ppp_at(ConstBytes rec, std::size_t off, std::size_t length_field = 0) {
  if (off + 2 <= rec.size() && rec[off] == kPppAddress && rec[off + 1] == kPppControl) off += 2;
  if (off >= rec.size()) return malformed();
  std::uint16_t proto = rec[off];
  if ((proto & 1) != 0) {
    off += 1;  // protocol-field compression (RFC 1661 §6.5): the high byte 0 was dropped
  } else {
    if (off + 2 > rec.size()) return malformed();
    proto = load16(rec, off);
    off += 2;
  }
  if (proto == kPppIpv4) return ip_at(rec, off, 4, length_field);
  if (proto == kPppIpv6) return ip_at(rec, off, 6, length_field);
  return not_ip();
}

// PPPoE session header at `off` (RFC 2516 §4): 6 bytes, then the PPP protocol (2 bytes,
// no address/control). Its length field covers the PPP protocol and payload.
LinkPayload pppoe_at(ConstBytes rec, std::size_t off) {
  if (off + kPppoeHeader + 2 > rec.size()) return malformed();
  if (rec[off] != 0x11 || rec[off + 1] != 0x00) return not_ip();  // not a session data frame
  const std::uint16_t proto = load16(rec, off + kPppoeHeader);
  const std::size_t ip = off + kPppoeHeader + 2;
  if (proto == kPppIpv4) return ip_at(rec, ip, 4, off + 4);
  if (proto == kPppIpv6) return ip_at(rec, ip, 6, off + 4);
  return not_ip();
}

// An ethertype at `type_off`, payload at `off`: walks VLAN tags, then IP or PPPoE.
LinkPayload ethertype_at(ConstBytes rec, std::size_t type_off, std::size_t off) {
  if (off > rec.size() || type_off + 2 > rec.size()) return malformed();
  std::uint16_t type = load16(rec, type_off);
  for (int tags = 0; type == kEthVlan || type == kEthQinQ || type == kEthQinQOld; ++tags) {
    if (tags == kMaxVlanTags || off + 4 > rec.size()) return malformed();
    type = load16(rec, off + 2);  // after the 2-byte tag control information
    off += 4;
  }
  if (type == kEthPppoeSession) return pppoe_at(rec, off);
  const int v = version_of_ethertype(type);
  return v != 0 ? ip_at(rec, off, v) : not_ip();
}

LinkPayload af_at(ConstBytes rec, std::uint32_t af) {
  if (af == kAfInet) return ip_at(rec, 4, 4);
  if (is_af_inet6(af)) return ip_at(rec, 4, 6);
  return not_ip();
}

std::uint32_t load32le(ConstBytes b, std::size_t off) {
  return std::uint32_t{b[off]} | (std::uint32_t{b[off + 1]} << 8) |
         (std::uint32_t{b[off + 2]} << 16) | (std::uint32_t{b[off + 3]} << 24);
}

}  // namespace

bool link_type_supported(int dlt) noexcept {
  switch (dlt) {
    case DLT_RAW:
    case kDltRawOpenBsd:
    case DLT_IPV4:
    case DLT_IPV6:
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_NULL:
    case DLT_LOOP:
    case DLT_PPP:
    case DLT_PPP_SERIAL:
    case DLT_PPP_ETHER:
      return true;
    default:
      return false;
  }
}

std::string_view supported_link_types() noexcept {
  return "RAW (12, 14, 101), IPV4, IPV6, EN10MB (with 802.1Q/802.1ad tags, PPPoE), "
         "LINUX_SLL, LINUX_SLL2, NULL, LOOP, PPP, PPP_SERIAL, PPP_ETHER";
}

std::string link_type_name(int dlt) {
  if (dlt == kDltRawOpenBsd) return "RAW";
  if (dlt >= kDltUser0 && dlt <= kDltUser15) return "USER" + std::to_string(dlt - kDltUser0);
  const char* name = pcap_datalink_val_to_name(dlt);
  return name != nullptr ? name : "unknown";
}

LinkPayload find_ip(int dlt, ConstBytes rec) noexcept {
  switch (dlt) {
    case DLT_RAW:
    case kDltRawOpenBsd:
      return ip_at(rec, 0, 0);
    case DLT_IPV4:
      return ip_at(rec, 0, 4);
    case DLT_IPV6:
      return ip_at(rec, 0, 6);
    case DLT_EN10MB:
      return rec.size() < kEthHeader ? malformed() : ethertype_at(rec, 12, kEthHeader);
    case DLT_LINUX_SLL:
      return rec.size() < kSllHeader ? malformed() : ethertype_at(rec, 14, kSllHeader);
    case DLT_LINUX_SLL2:
      return rec.size() < kSll2Header ? malformed() : ethertype_at(rec, 0, kSll2Header);
    case DLT_NULL: {
      // Host byte order of the machine that wrote the file, which need not be ours.
      if (rec.size() < 4) return malformed();
      const LinkPayload le = af_at(rec, load32le(rec, 0));
      return le.status != LinkStatus::not_ip ? le : af_at(rec, load32(rec, 0));
    }
    case DLT_LOOP:
      return rec.size() < 4 ? malformed() : af_at(rec, load32(rec, 0));
    case DLT_PPP:
    case DLT_PPP_SERIAL:
      return ppp_at(rec, 0);
    case DLT_PPP_ETHER:
      return pppoe_at(rec, 0);
    default:
      return not_ip();
  }
}

RecordResult clamp_record(int dlt, clamp::Bytes buf, std::size_t caplen,
                          clamp::ClampTarget target) noexcept {
  RecordResult r;
  r.caplen = caplen;
  if (caplen > buf.size()) {
    r.status = RecordStatus::link_malformed;
    return r;
  }
  const LinkPayload link = find_ip(dlt, ConstBytes(buf.data(), caplen));
  if (link.status != LinkStatus::ip) {
    r.status =
        link.status == LinkStatus::not_ip ? RecordStatus::not_ip : RecordStatus::link_malformed;
    return r;
  }
  r.status = RecordStatus::clamp;
  r.result = clamp::clamp_mss(buf.subspan(link.offset), caplen - link.offset, target);
  if (r.result.outcome == clamp::Outcome::inserted) {
    r.caplen = link.offset + r.result.length;
    if (link.length_field != 0) {
      const auto grown =
          static_cast<std::uint16_t>(load16(buf, link.length_field) + (r.caplen - caplen));
      clamp::store16(buf, link.length_field, grown);
    }
  }
  return r;
}

void ClampCounts::add(const RecordResult& r) noexcept {
  switch (r.status) {
    case RecordStatus::not_ip:
      ++not_ip;
      return;
    case RecordStatus::link_malformed:
      ++outcomes[static_cast<std::size_t>(clamp::Outcome::malformed)];
      return;
    case RecordStatus::clamp:
      break;
  }
  const clamp::Outcome o = r.result.outcome;
  ++outcomes[static_cast<std::size_t>(o)];
  if (o == clamp::Outcome::clamped || o == clamp::Outcome::inserted ||
      o == clamp::Outcome::unchanged || o == clamp::Outcome::no_room) {
    ++syn;
    if (r.result.syn_ack) ++syn_ack;
  }
}

// ---- files ---------------------------------------------------------------------------

namespace {

// The nanosecond pcap magic number (either byte order), and the pcapng section header
// block type.
constexpr std::uint32_t kMagicNano = 0xA1B23C4D;
constexpr std::uint32_t kPcapngShb = 0x0A0D0D0A;

std::uint32_t bswap32(std::uint32_t v) { return __builtin_bswap32(v); }

// A record never exceeds libpcap's largest snaplen for the link types we read (256 KiB);
// the extra bytes are the room for an inserted MSS option.
constexpr std::size_t kMaxRecord = 262144;
constexpr std::size_t kRecordRoom = 64;
// Records between progress callbacks: cheap enough, still several per second.
constexpr std::uint64_t kProgressEvery = 1 << 16;

}  // namespace

CaptureIn::~CaptureIn() {
  if (pcap_ != nullptr) pcap_close(pcap_);  // also closes in_
}

long CaptureIn::position() const noexcept { return in_ != nullptr ? std::ftell(in_) : -1; }

bool CaptureIn::open(std::FILE* in, std::string& error) {
  // The file's own timestamp precision is kept: libpcap would otherwise convert
  // everything to microseconds and lose nanosecond stamps. Peek at the magic number.
  unsigned char magic_bytes[4] = {};
  const std::size_t got = std::fread(magic_bytes, 1, sizeof magic_bytes, in);
  if (std::fseek(in, 0, SEEK_SET) != 0) {
    error = std::string("cannot seek in it (a pipe?): ") + std::strerror(errno);
    std::fclose(in);
    return false;
  }
  std::uint32_t magic = 0;
  std::memcpy(&magic, magic_bytes, sizeof magic);
  pcapng_ = got == 4 && magic == kPcapngShb;  // the SHB type reads the same either way
  // pcapng resolutions vary per interface; nanoseconds lose nothing for the usual ones.
  precision_ = (magic == kMagicNano || bswap32(magic) == kMagicNano || pcapng_)
                   ? PCAP_TSTAMP_PRECISION_NANO
                   : PCAP_TSTAMP_PRECISION_MICRO;

  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_ = pcap_fopen_offline_with_tstamp_precision(in, precision_, errbuf);
  if (pcap_ == nullptr) {
    error = std::string("not a capture file libpcap can read (") +
            (errbuf[0] != '\0' ? errbuf : "no reason given") + ")";
    std::fclose(in);
    return false;
  }
  in_ = in;
  dlt_ = pcap_datalink(pcap_);
  return true;
}

PcapStatus CaptureIn::clamp_to(std::FILE* out, clamp::ClampTarget target, ClampCounts& counts,
                               std::string& error, const ProgressFn& progress) {
  // DLT 14 cannot be written by libpcap on Linux; DLT_RAW is the same encapsulation.
  const int out_dlt = dlt_ == kDltRawOpenBsd ? DLT_RAW : dlt_;
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(out_dlt, pcap_snapshot(pcap_), precision_);
  if (dead == nullptr) {
    error = "cannot set up the output";
    std::fclose(out);
    return PcapStatus::write_failed;
  }
  pcap_dumper_t* dumper = pcap_dump_fopen(dead, out);
  if (dumper == nullptr) {
    error = std::string("cannot write the output: ") + pcap_geterr(dead);
    pcap_close(dead);
    std::fclose(out);
    return PcapStatus::write_failed;
  }
  auto* const user = reinterpret_cast<u_char*>(dumper);
  if (buf_.empty()) buf_.resize(kMaxRecord + kRecordRoom);
  const clamp::Bytes buf(buf_);

  PcapStatus status = PcapStatus::ok;
  pcap_pkthdr* hdr = nullptr;
  const u_char* data = nullptr;
  for (;;) {
    const int rc = pcap_next_ex(pcap_, &hdr, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      error = "corrupt record after " + std::to_string(counts.packets) +
              " packets: " + pcap_geterr(pcap_);
      status = PcapStatus::bad_input;
      break;
    }
    ++counts.packets;
    const std::size_t caplen = hdr->caplen;
    if (caplen < hdr->len) {
      ++counts.truncated;
      pcap_dump(user, hdr, data);
    } else if (caplen > kMaxRecord) {
      ++counts.outcomes[static_cast<std::size_t>(clamp::Outcome::malformed)];
      pcap_dump(user, hdr, data);
    } else {
      std::memcpy(buf.data(), data, caplen);
      const RecordResult r = clamp_record(dlt_, buf, caplen, target);
      counts.add(r);
      if (r.status == RecordStatus::clamp && (r.result.outcome == clamp::Outcome::clamped ||
                                              r.result.outcome == clamp::Outcome::inserted)) {
        pcap_pkthdr changed = *hdr;
        changed.caplen = static_cast<bpf_u_int32>(r.caplen);
        changed.len = static_cast<bpf_u_int32>(hdr->len + (r.caplen - caplen));
        pcap_dump(user, &changed, buf.data());
      } else {
        pcap_dump(user, hdr, data);  // untouched: the original bytes, exactly
      }
    }
    ++counts.written;
    if (progress && counts.packets % kProgressEvery == 0) progress(counts.packets);
  }

  // pcap_dump() has no error return: the stream's error flag and the final flush tell.
  if (pcap_dump_flush(dumper) != 0 || std::ferror(out) != 0) {
    if (status == PcapStatus::ok) {
      error = std::string("write error: ") + std::strerror(errno);
      status = PcapStatus::write_failed;
    }
  }
  pcap_dump_close(dumper);  // closes `out`
  pcap_close(dead);
  return status;
}

PcapStatus clamp_pcap(std::FILE* in, std::FILE* out, clamp::ClampTarget target,
                      ClampCounts& counts, std::string& error) {
  CaptureIn capture;
  if (!capture.open(in, error)) {
    std::fclose(out);
    return PcapStatus::bad_input;
  }
  if (!link_type_supported(capture.link_type())) {
    error = "link type " + std::to_string(capture.link_type()) + " (" +
            link_type_name(capture.link_type()) + ") is not supported";
    std::fclose(out);
    return PcapStatus::unsupported_link;
  }
  return capture.clamp_to(out, target, counts, error);
}

}  // namespace tunshim::proxy
