#include "proxy/probe_io.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "clamp/checksum.h"
#include "clamp/icmp_reply.h"
#include "clamp/packet.h"

namespace tunshim::proxy {
namespace {

using clamp::kIcmp6EchoReply;
using clamp::kIcmp6EchoRequest;
using clamp::kIcmp6PacketTooBig;
using clamp::kIcmpEchoReply;
using clamp::kIcmpEchoRequest;
using clamp::kIcmpFragNeeded;
using clamp::kIcmpHeaderLen;
using clamp::kProtoIcmp;
constexpr std::uint8_t kIcmpUnreach = clamp::kIcmpUnreachable;
constexpr std::size_t kIp6Header = 40;
// Datagrams read per poll wake-up before yielding to the loop (anything left wakes it again).
constexpr int kReadBudget = 256;

std::uint64_t random64() noexcept {
  std::uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
    // getrandom on Linux >= 3.17 does not fail for 8 bytes once the pool is up; should
    // it, a clock-derived value still makes the nonce unpredictable enough for matching.
    v = uv_hrtime() * 0x9e3779b97f4a7c15ULL;
  }
  return v;
}

constexpr sock_filter bpf_stmt(std::uint16_t code, std::uint32_t k) noexcept {
  return sock_filter{code, 0, 0, k};
}
constexpr sock_filter bpf_jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt,
                               std::uint8_t jf) noexcept {
  return sock_filter{code, jt, jf, k};
}
constexpr std::uint16_t op(int bits) noexcept { return static_cast<std::uint16_t>(bits); }

bool attach_filter(int fd, sock_filter* prog, std::size_t len) {
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(len);
  fprog.filter = prog;
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) == 0;
}

// IPv4 raw sockets see the datagram from its IP header. Accept ICMP echo replies carrying
// our identifier and frag-needed errors; everything else (other pings on the host, echo
// requests, other errors) never wakes us.
bool attach_filter4(int fd, std::uint16_t ident) {
  sock_filter prog[] = {
      bpf_stmt(op(BPF_LD | BPF_B | BPF_ABS), 9),                   // 0: IP protocol
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kProtoIcmp, 0, 11),  // 1: not ICMP -> drop
      bpf_stmt(op(BPF_LD | BPF_H | BPF_ABS), 6),                   // 2: flags + offset
      bpf_jump(op(BPF_JMP | BPF_JSET | BPF_K), 0x1fff, 9, 0),      // 3: later fragment -> drop
      bpf_stmt(op(BPF_LDX | BPF_B | BPF_MSH), 0),                  // 4: X = IP header length
      bpf_stmt(op(BPF_LD | BPF_B | BPF_IND), 0),                   // 5: ICMP type
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kIcmpEchoReply, 0, 2),   // 6
      bpf_stmt(op(BPF_LD | BPF_H | BPF_IND), 4),                       // 7: identifier
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), ident, 3, 4),            // 8: ours -> accept
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kIcmpUnreach, 0, 3),     // 9
      bpf_stmt(op(BPF_LD | BPF_B | BPF_IND), 1),                       // 10: ICMP code
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kIcmpFragNeeded, 0, 1),  // 11
      bpf_stmt(op(BPF_RET | BPF_K), 0xffff),                           // 12: accept
      bpf_stmt(op(BPF_RET | BPF_K), 0),                                // 13: drop
  };
  return attach_filter(fd, prog, sizeof prog / sizeof prog[0]);
}

// IPv6 raw sockets see the datagram from its ICMPv6 header. ICMP6_FILTER already limits
// the types; this adds the identifier check so other pings on the host stay out.
bool attach_filter6(int fd, std::uint16_t ident) {
  sock_filter prog[] = {
      bpf_stmt(op(BPF_LD | BPF_B | BPF_ABS), 0),                          // 0: ICMPv6 type
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kIcmp6PacketTooBig, 3, 0),  // 1: -> accept
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), kIcmp6EchoReply, 0, 3),     // 2
      bpf_stmt(op(BPF_LD | BPF_H | BPF_ABS), 4),                          // 3: identifier
      bpf_jump(op(BPF_JMP | BPF_JEQ | BPF_K), ident, 0, 1),               // 4
      bpf_stmt(op(BPF_RET | BPF_K), 0xffff),                              // 5: accept
      bpf_stmt(op(BPF_RET | BPF_K), 0),                                   // 6: drop
  };
  return attach_filter(fd, prog, sizeof prog / sizeof prog[0]);
}

bool set_icmp6_types(int fd) {
  icmp6_filter f{};
  for (auto& w : f.icmp6_filt) w = 0xffffffffU;  // block all, then pass two types
  for (unsigned type : {unsigned{kIcmp6EchoReply}, unsigned{kIcmp6PacketTooBig}}) {
    f.icmp6_filt[type >> 5] &= ~(1U << (type & 31));
  }
  return setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof f) == 0;
}

// Writes one control message carrying `data` at `buf` (room for CMSG_SPACE(sizeof data));
// returns its space. memcpy, not CMSG_DATA's casts: `buf` is a plain byte array.
template <class T>
std::size_t put_cmsg(std::uint8_t* buf, int level, int type, const T& data) noexcept {
  cmsghdr c{};
  c.cmsg_level = level;
  c.cmsg_type = type;
  c.cmsg_len = CMSG_LEN(sizeof data);
  std::memcpy(buf, &c, sizeof c);
  std::memcpy(buf + CMSG_LEN(0), &data, sizeof data);
  return CMSG_SPACE(sizeof data);
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

IpAddress from_sockaddr(const sockaddr_storage& ss) {
  IpAddress a;
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 s6{};
    std::memcpy(&s6, &ss, sizeof s6);
    a.family = IpFamily::ipv6;
    std::memcpy(a.bytes.data(), &s6.sin6_addr, 16);
  } else {
    sockaddr_in s4{};
    std::memcpy(&s4, &ss, sizeof s4);
    std::memcpy(a.bytes.data(), &s4.sin_addr, 4);
  }
  return a;
}

}  // namespace

// ---- addresses and interfaces --------------------------------------------------------------

std::optional<IpAddress> IpAddress::parse(const std::string& text) {
  IpAddress a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) return a;
  a.family = IpFamily::ipv6;
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) return a;
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == IpFamily::ipv4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

bool read_interface(const std::string& iface, InterfaceInfo& out, std::string& err) {
  out = InterfaceInfo{};
  if (iface.empty() || iface.size() >= IFNAMSIZ) {
    err = "not a valid interface name";
    return false;
  }
  out.ifindex = if_nametoindex(iface.c_str());
  if (out.ifindex == 0) {
    err = "no such interface";
    return false;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno_text("socket");
    return false;
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, iface.c_str(), iface.size());
  const bool ok = ioctl(fd, SIOCGIFMTU, &ifr) == 0;
  const int e = errno;
  ::close(fd);
  if (!ok || ifr.ifr_mtu <= 0) {
    err = ok ? "unusable MTU" : std::string("reading its MTU: ") + std::strerror(e);
    return false;
  }
  // Loopback's 65536 does not fit an IP length; no probe can be larger than 65535 anyway.
  out.mtu = static_cast<std::uint16_t>(std::min(ifr.ifr_mtu, 65535));

  // The peer: on an IFF_POINTOPOINT interface glibc reports IFA_ADDRESS as ifa_dstaddr.
  // Configured without a peer (`ip addr add A/30`), that is our own address: no peer.
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return true;  // the peer is optional; --target still works
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_name == nullptr || iface != i->ifa_name) continue;
    if ((i->ifa_flags & IFF_POINTOPOINT) == 0 || i->ifa_addr == nullptr ||
        i->ifa_dstaddr == nullptr || i->ifa_addr->sa_family != i->ifa_dstaddr->sa_family) {
      continue;
    }
    sockaddr_storage local{}, peer{};
    const int fam = i->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    const std::size_t len = fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::memcpy(&local, i->ifa_addr, len);
    std::memcpy(&peer, i->ifa_dstaddr, len);
    const IpAddress l = from_sockaddr(local), p = from_sockaddr(peer);
    if (l == p) continue;
    auto& slot = fam == AF_INET ? out.peer4 : out.peer6;
    if (!slot) slot = p;
  }
  freeifaddrs(list);
  return true;
}

std::optional<IpAddress> read_peer4(const std::string& iface) {
  if (iface.empty() || iface.size() >= IFNAMSIZ) return std::nullopt;
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, iface.c_str(), iface.size());
  std::optional<IpAddress> peer;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_POINTOPOINT) != 0) {
    sockaddr_storage local{}, dst{};
    const bool have_local = ioctl(fd, SIOCGIFADDR, &ifr) == 0;
    if (have_local) std::memcpy(&local, &ifr.ifr_addr, sizeof(sockaddr_in));
    if (have_local && ioctl(fd, SIOCGIFDSTADDR, &ifr) == 0) {
      std::memcpy(&dst, &ifr.ifr_dstaddr, sizeof(sockaddr_in));
      if (local.ss_family == AF_INET && dst.ss_family == AF_INET) {
        const IpAddress l = from_sockaddr(local), p = from_sockaddr(dst);
        if (l != p) peer = p;
      }
    }
  }
  ::close(fd);
  return peer;
}

// ---- the socket ---------------------------------------------------------------------------

ProbeIo::~ProbeIo() { close(); }

bool ProbeIo::open(const std::string& iface, const IpAddress& target, ReplyFn on_reply,
                   HintFn on_hint, std::string& err) {
  close();
  family_ = target.family;
  target_ = target;
  on_reply_ = std::move(on_reply);
  on_hint_ = std::move(on_hint);
  ident_ = static_cast<std::uint16_t>(random64());
  return open_socket(&iface, err);
}

bool ProbeIo::open_shared(IpFamily family, std::uint16_t ident, ReplyFn on_reply,
                          HintFn on_hint, std::string& err) {
  close();
  family_ = family;
  target_ = IpAddress{};
  target_.family = family;
  on_reply_ = std::move(on_reply);
  on_hint_ = std::move(on_hint);
  ident_ = ident;
  return open_socket(nullptr, err);
}

bool ProbeIo::open_socket(const std::string* iface, std::string& err) {
  const bool v4 = family_ == IpFamily::ipv4;
  const int proto = v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6};
  fd_ = socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd_ < 0) {
    err = errno == EPERM || errno == EACCES
              ? "cannot open a raw ICMP socket: needs root (CAP_NET_RAW)"
              : errno_text("cannot open a raw ICMP socket");
    return false;
  }
  auto fail = [&](const char* what) {
    err = errno_text(what);
    ::close(fd_);
    fd_ = -1;
    return false;
  };
  if (iface != nullptr && setsockopt(fd_, SOL_SOCKET, SO_BINDTODEVICE, iface->c_str(),
                                     static_cast<socklen_t>(iface->size())) != 0) {
    return fail("binding the socket to the interface");
  }
  // PROBE: DF on every probe, sized by us, never capped by the PMTU the kernel cached
  // (a black hole would otherwise make it refuse or fragment exactly the sizes we test).
  if (v4) {
    const int pmtu = IP_PMTUDISC_PROBE;
    if (setsockopt(fd_, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0) {
      return fail("setting IP_MTU_DISCOVER");
    }
  } else {
    const int pmtu = IPV6_PMTUDISC_PROBE, on = 1;
    if (setsockopt(fd_, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0) {
      return fail("setting IPV6_MTU_DISCOVER");
    }
    if (setsockopt(fd_, IPPROTO_IPV6, IPV6_DONTFRAG, &on, sizeof on) != 0) {
      return fail("setting IPV6_DONTFRAG");
    }
    if (!set_icmp6_types(fd_)) return fail("setting ICMP6_FILTER");
  }
  next_seq_ = static_cast<std::uint16_t>(random64());
  if (!(v4 ? attach_filter4(fd_, ident_) : attach_filter6(fd_, ident_))) {
    return fail("attaching the socket filter");
  }
  // Whatever arrived before the filter was attached is not ours to judge: discard it.
  std::uint8_t scratch[64];
  while (recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT | MSG_TRUNC) >= 0) {
  }
  rx_.assign(65536, 0);
  tx_.assign(65536, 0);
  slots_.assign(kSlots, Outstanding{});
  if (const int r = poll_.init(loop_, uv_poll_init, fd_); r != 0) {
    err = std::string("uv_poll_init: ") + uv_strerror(r);
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  poll_->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* self = static_cast<ProbeIo*>(h->data);
    if (self != nullptr && status == 0) self->on_readable();
  });
  return true;
}

void ProbeIo::close() noexcept {
  poll_.reset();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

bool ProbeIo::send(std::uint64_t tag, std::uint16_t size, std::string* err) noexcept {
  return send_to(tag, size, target_, 0, err);
}

bool ProbeIo::send_to(std::uint64_t tag, std::uint16_t size, const IpAddress& target,
                      unsigned ifindex, std::string* err) noexcept {
  const bool v4 = family_ == IpFamily::ipv4;
  if (fd_ < 0 || size < min_probe_size(family_) || target.family != family_) {
    ++stats_.send_errors;
    if (err != nullptr) {
      *err = fd_ < 0                    ? "socket not open"
             : target.family != family_ ? "wrong address family"
                                        : "probe size too small";
    }
    return false;
  }
  const std::size_t icmp_len = size - (v4 ? 20U : kIp6Header);
  const std::uint16_t seq = next_seq_++;
  const std::uint64_t nonce = random64();
  clamp::Bytes m(tx_.data(), icmp_len);
  m[0] = v4 ? kIcmpEchoRequest : kIcmp6EchoRequest;
  m[1] = 0;
  clamp::store16(m, 2, 0);
  clamp::store16(m, 4, ident_);
  clamp::store16(m, 6, seq);
  clamp::store32(m, 8, static_cast<std::uint32_t>(nonce >> 32));
  clamp::store32(m, 12, static_cast<std::uint32_t>(nonce));
  // Filler that is not all zeros, so a compressing VPN cannot shrink the probe.
  for (std::size_t i = kIcmpHeaderLen + kNonceLen; i < icmp_len; ++i) {
    m[i] = static_cast<std::uint8_t>(i * 131U + (nonce & 0xff));
  }
  // ICMPv6 raw sockets always have the kernel fill in the checksum (pseudo-header).
  if (v4) clamp::store16(m, 2, clamp::csum(m));
  sockaddr_storage ss{};
  socklen_t sl = 0;
  // The interface to leave by, as ancillary data (the shared socket is bound to none).
  alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  std::size_t control_len = 0;
  if (v4) {
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    std::memcpy(&s4.sin_addr, target.bytes.data(), 4);
    std::memcpy(&ss, &s4, sizeof s4);
    sl = sizeof s4;
    if (ifindex != 0) {
      in_pktinfo pi{};
      pi.ipi_ifindex = static_cast<int>(ifindex);
      control_len = put_cmsg(control, IPPROTO_IP, IP_PKTINFO, pi);
    }
  } else {
    sockaddr_in6 s6{};
    s6.sin6_family = AF_INET6;
    std::memcpy(&s6.sin6_addr, target.bytes.data(), 16);
    std::memcpy(&ss, &s6, sizeof s6);
    sl = sizeof s6;
    if (ifindex != 0) {
      in6_pktinfo pi{};
      pi.ipi6_ifindex = ifindex;
      control_len = put_cmsg(control, IPPROTO_IPV6, IPV6_PKTINFO, pi);
    }
  }
  // Remember it before sending: on a fast path the reply can be read before sendto returns
  // to the loop (not today, single-threaded, but the order costs nothing).
  Outstanding& slot = slots_[seq % kSlots];
  slot = Outstanding{true, seq, size, tag, nonce, target};
  iovec iov{m.data(), m.size()};
  msghdr mh{};
  mh.msg_name = &ss;
  mh.msg_namelen = sl;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control_len != 0 ? control : nullptr;
  mh.msg_controllen = control_len;
  if (sendmsg(fd_, &mh, 0) < 0) {
    slot.used = false;
    ++stats_.send_errors;
    if (err != nullptr) *err = errno_text("sendto");
    return false;
  }
  ++stats_.sent;
  return true;
}

void ProbeIo::on_readable() noexcept {
  for (int i = 0; i < kReadBudget && fd_ >= 0; ++i) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    const ssize_t n = recvfrom(fd_, rx_.data(), rx_.size(), MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&ss), &sl);
    if (n < 0) return;  // EAGAIN (drained) or a transient error: the next wake-up retries
    handle_datagram(clamp::ConstBytes(rx_.data(), static_cast<std::size_t>(n)),
                    from_sockaddr(ss));
  }
}

ProbeIo::Outstanding* ProbeIo::find(std::uint16_t seq) noexcept {
  if (slots_.empty()) return nullptr;
  Outstanding& s = slots_[seq % kSlots];
  return s.used && s.seq == seq ? &s : nullptr;
}

void ProbeIo::handle_datagram(clamp::ConstBytes pkt, const IpAddress& src) noexcept {
  const bool v4 = family_ == IpFamily::ipv4;
  const clamp::IcmpMessage m = v4 ? clamp::parse_icmp4(pkt) : clamp::parse_icmp6(pkt);
  Outstanding* s =
      (m.kind == clamp::IcmpKind::echo_reply || m.kind == clamp::IcmpKind::too_big) &&
              m.ident == ident_
          ? find(m.seq)
          : nullptr;
  clamp::ProbeMatch match = clamp::ProbeMatch::none;
  if (s != nullptr && src.family == family_ && s->target.family == family_) {
    clamp::OutstandingProbe probe;
    probe.family = v4 ? 4 : 6;
    probe.target = s->target.bytes;
    probe.ident = ident_;
    probe.seq = s->seq;
    probe.nonce = s->nonce;
    probe.size = s->size;
    match = clamp::match_probe(m, clamp::ConstBytes(src.bytes.data(), v4 ? 4U : 16U), probe);
  }
  switch (match) {
    case clamp::ProbeMatch::reply:
      s->used = false;  // one reply per probe: duplicates are ignored
      ++stats_.replies;
      if (on_reply_) on_reply_(s->tag, m.ip_len);
      return;
    case clamp::ProbeMatch::wrong_length:
      ++stats_.wrong_length;
      return;
    case clamp::ProbeMatch::too_big:
      ++stats_.hints;
      if (on_hint_) on_hint_(s->tag, m.mtu);
      return;
    case clamp::ProbeMatch::none:
      ++stats_.ignored;
      return;
  }
}

}  // namespace tunshim::proxy
