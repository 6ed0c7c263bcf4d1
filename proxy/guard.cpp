#include "proxy/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "clamp/packet.h"

namespace tunshim::proxy {
namespace {

// Any port: connect() on a UDP socket only looks up the route, it sends nothing.
constexpr std::uint16_t kLookupPort = 9;

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

keepalive::Timestamp at(std::uint64_t now_ms) noexcept {
  return keepalive::Timestamp::from_ms(static_cast<std::int64_t>(now_ms));
}

}  // namespace

bool is_echo_request(clamp::ConstBytes pkt, std::uint16_t ident) noexcept {
  const clamp::IpInfo ip = clamp::parse_ip(pkt);
  if (ip.status != clamp::ParseStatus::ok || ip.later_fragment || ip.l4_off + 8 > ip.ip_len)
    return false;
  const bool v4 = ip.family == 4;
  if (ip.proto != (v4 ? clamp::kProtoIcmp : clamp::kProtoIcmpv6)) return false;
  const std::uint8_t echo_request = v4 ? 8 : 128;  // RFC 792 / RFC 4443 §4.1
  return pkt[ip.l4_off] == echo_request && pkt[ip.l4_off + 1] == 0 &&
         clamp::load16(pkt, ip.l4_off + 4) == ident;
}

OversizeGuard::OversizeGuard(GuardLimits limits) noexcept
    : limits_(limits),
      global_(limits.global_rate, limits.global_burst, keepalive::Timestamp{}) {}

OversizeGuard::~OversizeGuard() { close(); }

void OversizeGuard::prepare() {
  if (sources_.size() == limits_.sources) return;
  sources_.assign(limits_.sources, Source{});
  used_ = 0;
}

bool OversizeGuard::open(std::string& err) {
  close();
  prepare();
  const auto fail = [&](const char* what) {
    err = std::string("oversize guard: ") + what + ": " + std::strerror(errno);
    close();
    return false;
  };
  constexpr int kFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  // IPPROTO_RAW implies IP_HDRINCL: the packet from make_packet_too_big goes out as built
  // (the kernel only fills in a zero ID), with our source address.
  raw4_ = ::socket(AF_INET, SOCK_RAW | kFlags, IPPROTO_RAW);
  if (raw4_ < 0) return fail("raw IPv4 socket");
  route_.udp4 = ::socket(AF_INET, SOCK_DGRAM | kFlags, 0);
  if (route_.udp4 < 0) return fail("UDP IPv4 socket");
  // On Linux an AF_INET6 IPPROTO_RAW socket takes the whole IPv6 header too (the kernel
  // sets hdrincl for it, as for IPv4); the ICMPv6 checksum is ours and already complete.
  // A host booted without IPv6 has no IPv6 packets to guard: go on without these sockets.
  raw6_ = ::socket(AF_INET6, SOCK_RAW | kFlags, IPPROTO_RAW);
  if (raw6_ < 0 && errno != EAFNOSUPPORT) return fail("raw IPv6 socket");
  if (raw6_ >= 0) {
    route_.udp6 = ::socket(AF_INET6, SOCK_DGRAM | kFlags, 0);
    if (route_.udp6 < 0) return fail("UDP IPv6 socket");
  }
  // connect() binds the lookup sockets to a port, and nobody reads them: keep whatever
  // arrives there from piling up.
  for (int fd : {route_.udp4, route_.udp6}) {
    if (fd < 0) continue;
    const int small = 1;  // the kernel rounds this up to its minimum
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  return true;
}

void OversizeGuard::close() noexcept {
  close_fd(raw4_);
  close_fd(raw6_);
  close_fd(route_.udp4);
  close_fd(route_.udp6);
}

bool OversizeGuard::is_open() const noexcept { return raw4_ >= 0; }

// The error's source address. What a receiver accepts and an operator recognises: the
// address this host would itself use to reach the sender, which is what the kernel puts
// on the ICMP errors it generates as a router (icmp_send's route-based source; the
// default icmp_errors_use_inbound_ifaddr = 0). For a LAN host that is this router's LAN
// address, its default gateway; for a local socket it is the socket's own address, so
// the error never claims to come from the far end. The lookup is a connect() on a cached
// UDP socket plus getsockname(), done only for an error that is actually sent (so at most
// the global error rate per second).
bool OversizeGuard::KernelRoute::source_for(clamp::ConstBytes to, clamp::Bytes from) noexcept {
  // A connected UDP socket keeps the source address of its first connect() through later
  // ones; dissolving the association (AF_UNSPEC) after every lookup clears it (and the
  // port), so each lookup is a fresh route decision.
  struct Disconnect {
    int fd;
    ~Disconnect() {
      if (fd < 0) return;
      sockaddr unspec{};
      unspec.sa_family = AF_UNSPEC;
      static_cast<void>(::connect(fd, &unspec, sizeof unspec));  // best effort
    }
  };
  if (to.size() == 4 && from.size() == 4) {
    const Disconnect after{udp4};
    if (udp4 < 0) return false;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(kLookupPort);
    std::memcpy(&sa.sin_addr, to.data(), 4);
    if (::connect(udp4, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return false;
    sockaddr_in me{};
    socklen_t len = sizeof me;
    if (::getsockname(udp4, reinterpret_cast<sockaddr*>(&me), &len) != 0 ||
        me.sin_addr.s_addr == 0) {
      return false;
    }
    std::memcpy(from.data(), &me.sin_addr, 4);
    return true;
  }
  if (to.size() == 16 && from.size() == 16) {
    const Disconnect after{udp6};
    if (udp6 < 0) return false;
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(kLookupPort);
    std::memcpy(&sa.sin6_addr, to.data(), 16);
    // A link-local sender would need its interface as scope; connect() refuses without
    // one and the caller falls back to the offender's destination.
    if (::connect(udp6, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return false;
    sockaddr_in6 me{};
    socklen_t len = sizeof me;
    if (::getsockname(udp6, reinterpret_cast<sockaddr*>(&me), &len) != 0 ||
        IN6_IS_ADDR_UNSPECIFIED(&me.sin6_addr)) {
      return false;
    }
    std::memcpy(from.data(), &me.sin6_addr, 16);
    return true;
  }
  return false;
}

bool OversizeGuard::allow(std::uint8_t family, clamp::ConstBytes src,
                          std::uint64_t now_ms) noexcept {
  const keepalive::Timestamp now = at(now_ms);
  // Per source first: a source over its own rate must not take tokens from the global
  // bucket, or one flooding sender would starve everyone else's errors.
  if (!sources_.empty()) {
    // A linear scan: the table is small, and only dropped packets get here.
    Source* hit = nullptr;
    Source* oldest = nullptr;
    for (std::size_t i = 0; i < used_; ++i) {
      Source& s = sources_[i];
      if (s.family == family && std::equal(src.begin(), src.end(), s.addr.begin())) {
        hit = &s;
        break;
      }
      if (oldest == nullptr || s.last_used < oldest->last_used) oldest = &s;
    }
    if (hit == nullptr) {
      // A new source: a free slot, else the one unused for longest. Evicting forgets that
      // source's debt, which at worst lets it have one more burst.
      hit = used_ < sources_.size() ? &sources_[used_++] : oldest;
      hit->family = family;
      hit->addr.fill(0);
      std::copy(src.begin(), src.end(), hit->addr.begin());
      hit->bucket =
          keepalive::TokenBucket(limits_.per_source_rate, limits_.per_source_burst, now);
    }
    hit->last_used = now_ms;
    if (!hit->bucket.allow(now)) return false;
  }
  return global_.allow(now);
}

OversizeGuard::Decision OversizeGuard::decide(clamp::ConstBytes pkt, std::uint16_t pmtu,
                                              std::uint64_t now_ms, GuardCounters& c,
                                              SourceRoute& route, clamp::Bytes out) noexcept {
  Decision d;
  const clamp::IpInfo ip = clamp::parse_ip(pkt);
  if (ip.status == clamp::ParseStatus::malformed) {
    ++c.malformed;
    return d;
  }
  const bool v4 = ip.family == 4;
  // IPv6: every link carries 1280 (RFC 8200 §5) and a sender never goes below it (Linux
  // raises a smaller announced MTU to 1280), so a smaller PMTU cannot help an IPv6 sender;
  // dropping its 1280-byte packets would only add a black hole of our own.
  const std::uint16_t limit = v4 ? pmtu : std::max<std::uint16_t>(pmtu, clamp::kIcmp6ErrorMax);
  // pmtu 0: not known (the rule and the search briefly disagree): never drop on a guess.
  // IPv4 without DF: the sender allows fragmentation; not ours to refuse.
  if (pmtu == 0 || ip.ip_len <= limit || (v4 && !ip.dont_fragment)) {
    ++c.passed;
    return d;
  }
  d.verdict = Verdict::drop;
  ++c.dropped;

  const std::size_t alen = v4 ? 4 : 16;
  const clamp::ConstBytes src = pkt.subspan(v4 ? 12 : 8, alen);
  const clamp::ConstBytes dst = pkt.subspan(v4 ? 16 : 24, alen);
  // Build once with the destination as source: this answers "may we answer at all"
  // (RFC 1122 3.2.2 / RFC 4443 2.4(e)) before a token or a route lookup is spent on it.
  clamp::IcmpError e = clamp::make_packet_too_big(pkt, dst, limit, out);
  if (e.status != clamp::IcmpErrorStatus::ok) {
    ++c.not_answered;
    return d;
  }
  if (!allow(ip.family, src, now_ms)) {
    ++c.rate_limited;
    return d;
  }
  std::array<std::uint8_t, 16> from{};
  const clamp::Bytes from_b(from.data(), alen);
  if (route.source_for(src, from_b)) {
    e = clamp::make_packet_too_big(pkt, from_b, limit, out);
    if (e.status != clamp::IcmpErrorStatus::ok) {  // cannot happen: only `from` changed
      ++c.not_answered;
      return d;
    }
  }
  d.error_len = e.length;
  d.family = ip.family;
  std::copy(src.begin(), src.end(), d.to.begin());
  return d;
}

bool OversizeGuard::send(const Decision& d, clamp::ConstBytes error) noexcept {
  ssize_t n = -1;
  if (d.family == 4 && raw4_ >= 0) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    std::memcpy(&sa.sin_addr, d.to.data(), 4);
    n = ::sendto(raw4_, error.data(), error.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } else if (d.family == 6 && raw6_ >= 0) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    std::memcpy(&sa.sin6_addr, d.to.data(), 16);
    n = ::sendto(raw6_, error.data(), error.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  return n >= 0 && static_cast<std::size_t>(n) == error.size();
}

OversizeGuard::Verdict OversizeGuard::handle(clamp::ConstBytes pkt, std::uint16_t pmtu,
                                             std::uint64_t now_ms, GuardCounters& c) noexcept {
  const Decision d = decide(pkt, pmtu, now_ms, c, route_, out_);
  if (d.error_len > 0) {
    if (send(d, clamp::ConstBytes(out_.data(), d.error_len))) {
      ++c.ptb_sent;
    } else {
      ++c.send_errors;
    }
  }
  return d.verdict;
}

}  // namespace tunshim::proxy
