// Path-MTU probe I/O for one tunnel interface: a raw ICMP (or ICMPv6) socket bound to the
// interface that sends DF echo requests of a chosen total IP size to one target and hands
// back the replies that are provably answers to them, plus ICMP too-big errors that quote
// them. The search logic lives in keepalive::PmtuSearch; this class only moves packets.
//
// Why raw sockets and not the unprivileged "ping" sockets: the size must be exact (total
// IP length), DF must be set regardless of the route's cached PMTU (IP_PMTUDISC_PROBE), and
// the too-big errors that routers send back must be seen (ping sockets drop them).
//
// Matching: every probe carries our ICMP identifier (random per socket), a sequence number
// from a per-socket counter and an 8-byte random nonce in its payload. A reply counts only
// if it comes from the target and identifier, sequence, nonce and total length all match
// an outstanding probe; each probe is answered at most once. A frag-needed / packet-too-big
// counts as a hint only if it quotes an outstanding probe (identifier, sequence, and the
// nonce when the quote is long enough to hold it).
//
// Lifetime: the uv_poll handle is heap-allocated and freed in its close callback (libuv's
// rule), so a ProbeIo may be destroyed whenever the loop is not inside one of its
// callbacks; close() may be called from a callback. No callback runs after close().
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "clamp/bytes.h"
#include "keepalive/pmtu_search.h"
#include "proxy/uv_handle.h"

namespace tunshim::proxy {

using keepalive::IpFamily;

// An IPv4 or IPv6 address (no port).
struct IpAddress {
  IpFamily family = IpFamily::ipv4;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4

  // Parses dotted IPv4 or textual IPv6; nullopt if it is neither.
  static std::optional<IpAddress> parse(const std::string& text);
  std::string to_string() const;
  bool operator==(const IpAddress&) const = default;
};

// What the probe command and the daemon need to know about a tunnel interface.
struct InterfaceInfo {
  unsigned ifindex = 0;
  std::uint16_t mtu = 0;
  // The point-to-point peer (ppp's "remote" address), per family, when the interface is
  // IFF_POINTOPOINT and has a peer address distinct from its own.
  std::optional<IpAddress> peer4;
  std::optional<IpAddress> peer6;
};

// Looks `iface` up (index, MTU via SIOCGIFMTU, peers via getifaddrs). False with `err` a
// short reason if the interface does not exist or cannot be read.
bool read_interface(const std::string& iface, InterfaceInfo& out, std::string& err);

// The IPv4 point-to-point peer of `iface`'s primary address (SIOCGIFDSTADDR), when it is
// IFF_POINTOPOINT and the peer differs from that address; nullopt otherwise. The same
// answer as read_interface's peer4 for a ppp or tun session, in three ioctls: getifaddrs
// dumps every interface, which a concentrator's daemon cannot afford on each of a thousand
// sessions' events.
std::optional<IpAddress> read_peer4(const std::string& iface);

// Total IP header + ICMP echo header bytes ahead of the probe payload.
constexpr std::uint16_t probe_overhead(IpFamily f) noexcept {
  return f == IpFamily::ipv4 ? 28 : 48;
}
// Payload starts with the nonce; a probe can be no smaller than headers + nonce.
inline constexpr std::uint16_t kNonceLen = 8;
constexpr std::uint16_t min_probe_size(IpFamily f) noexcept {
  return static_cast<std::uint16_t>(probe_overhead(f) + kNonceLen);
}

class ProbeIo {
 public:
  // A matched reply: `tag` as given to send(), `size` its total IP length (== the probe's).
  using ReplyFn = std::function<void(std::uint64_t tag, std::uint16_t size)>;
  // A too-big error quoting the probe sent with `tag`; `mtu` is the MTU it reports
  // (0 when the router left the field empty: an old RFC 792 router).
  using HintFn = std::function<void(std::uint64_t tag, std::uint16_t mtu)>;

  struct Stats {
    std::uint64_t sent = 0;
    std::uint64_t send_errors =
        0;                      // sendto failed (EMSGSIZE above the interface MTU, ENOBUFS…)
    std::uint64_t replies = 0;  // matched, delivered to on_reply
    std::uint64_t hints = 0;    // matched too-big errors, delivered to on_hint
    std::uint64_t ignored = 0;  // read but not ours: other source, unknown seq, bad nonce…
    std::uint64_t wrong_length = 0;  // id/seq/nonce matched but the length did not
  };

  explicit ProbeIo(uv_loop_t* loop) noexcept : loop_(loop) {}
  ~ProbeIo();
  ProbeIo(const ProbeIo&) = delete;
  ProbeIo& operator=(const ProbeIo&) = delete;

  // Opens the socket for `target`'s family, bound to `iface` (SO_BINDTODEVICE), DF probes
  // (IP_PMTUDISC_PROBE / IPV6_PMTUDISC_PROBE + IPV6_DONTFRAG), kernel filter for our echo
  // replies and too-big errors only, non-blocking, and starts polling it on the loop.
  // Needs CAP_NET_RAW. False with `err` one line saying what failed.
  bool open(const std::string& iface, const IpAddress& target, ReplyFn on_reply, HintFn on_hint,
            std::string& err);
  // The daemon's one socket per family for every tunnel: bound to no interface; each
  // send_to() names its target and the interface it must leave by (IP_PKTINFO /
  // IPV6_PKTINFO), and a reply must come from the target its probe was sent to. `ident`
  // is the ICMP identifier (the same for both families, so the guard knows our probes).
  bool open_shared(IpFamily family, std::uint16_t ident, ReplyFn on_reply, HintFn on_hint,
                   std::string& err);
  // Stops polling and closes the socket; no callback runs afterwards. Safe to repeat.
  void close() noexcept;
  bool is_open() const noexcept { return fd_ >= 0; }

  // Sends one echo request of total IP length `size` (min_probe_size() .. 65535) tagged
  // `tag` (opaque to ProbeIo: PmtuSearch's probe id, or a keepalive's echo id with a
  // distinguishing bit). False if the kernel refused it (counted; errno-based reason in
  // `err` when given): callers treat that as a lost probe.
  bool send(std::uint64_t tag, std::uint16_t size, std::string* err = nullptr) noexcept;
  // Sends to `target` out of interface `ifindex` (0: by the routing table).
  bool send_to(std::uint64_t tag, std::uint16_t size, const IpAddress& target, unsigned ifindex,
               std::string* err = nullptr) noexcept;

  const Stats& stats() const noexcept { return stats_; }
  std::uint16_t identifier() const noexcept { return ident_; }
  const IpAddress& target() const noexcept { return target_; }

 private:
  struct Outstanding {
    bool used = false;
    std::uint16_t seq = 0;
    std::uint16_t size = 0;
    std::uint64_t tag = 0;
    std::uint64_t nonce = 0;
    IpAddress target;
  };
  // Probes remembered for matching, indexed by sequence number: far more than every
  // tunnel sharing the socket keeps in flight (PmtuSearch: 2 per try, 3 tries; Liveness:
  // one echo), with room for late replies.
  static constexpr std::size_t kSlots = 4096;

  bool open_socket(const std::string* iface, std::string& err);
  void on_readable() noexcept;
  Outstanding* find(std::uint16_t seq) noexcept;
  // One datagram as the socket returns it (IPv4: from the IP header; IPv6: from the
  // ICMPv6 header), `src` the sender: parsed and matched by clamp::parse_icmp4/6 and
  // clamp::match_probe (pure, unit-tested and fuzzed).
  void handle_datagram(clamp::ConstBytes pkt, const IpAddress& src) noexcept;

  uv_loop_t* loop_;
  UvHandle<uv_poll_t> poll_;
  int fd_ = -1;
  IpFamily family_ = IpFamily::ipv4;
  IpAddress target_;  // open(): the one target; open_shared(): none
  ReplyFn on_reply_;
  HintFn on_hint_;
  std::uint16_t ident_ = 0;
  std::uint16_t next_seq_ = 0;
  std::vector<Outstanding> slots_;  // kSlots, allocated by open
  std::vector<std::uint8_t> rx_;    // allocated by open(): a 64 KiB datagram each
  std::vector<std::uint8_t> tx_;
  Stats stats_;
};

}  // namespace tunshim::proxy
