// rtnetlink for the liveness wiring: a subscription to link and address changes (so the
// daemon learns that ppp0 appeared, went, or got a new address without polling) and a
// one-shot query of one link's MTU, flags and packet counters (the "received anything?"
// signal for keepalive idleness comes from the interface's own rx counter, not from
// capturing traffic).
//
// Lifetime: the uv_poll handle is heap-allocated and freed in its close callback, so an
// Rtnl may be destroyed whenever the loop is not inside one of its callbacks.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace tunshim::proxy {

// One link as rtnetlink describes it.
struct LinkInfo {
  std::string name;
  unsigned ifindex = 0;
  bool present = false;  // false: RTM_DELLINK (the other fields but name/ifindex unset)
  std::uint32_t mtu = 0;
  unsigned flags = 0;  // IFF_*
  bool have_stats = false;
  std::uint64_t rx_packets = 0;
  std::uint64_t tx_packets = 0;
};

// Looks one link up by name (RTM_GETLINK) on a short-lived socket. True with `out` filled
// when it exists; false with out.present == false when the kernel says there is no such
// device, and false with `err` set on any other failure.
bool query_link(const std::string& name, LinkInfo& out, std::string& err);

// Sets link `ifindex`'s MTU (RTM_NEWLINK with IFLA_MTU, acknowledged). False with `err`
// set, the kernel's own words included when it gives them, if it refuses.
bool set_link_mtu(unsigned ifindex, std::uint32_t mtu, std::string& err);

class Rtnl {
 public:
  using LinkFn = std::function<void(const LinkInfo&)>;
  // An address was added to or removed from interface `ifindex`.
  using AddrFn = std::function<void(unsigned ifindex)>;
  // Notifications were lost (the socket overflowed): every listener must re-query.
  using ResyncFn = std::function<void()>;

  explicit Rtnl(uv_loop_t* loop) noexcept : loop_(loop) {}
  ~Rtnl();
  Rtnl(const Rtnl&) = delete;
  Rtnl& operator=(const Rtnl&) = delete;

  // Subscribes to RTMGRP_LINK, RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR and starts polling.
  bool open(LinkFn on_link, AddrFn on_addr, ResyncFn on_resync, std::string& err);
  // Stops polling and closes the socket; no callback runs afterwards. Safe to repeat.
  void close() noexcept;
  bool is_open() const noexcept { return fd_ >= 0; }
  // Reads the notifications waiting now (as the poll callback would), without waiting.
  void drain() noexcept { on_readable(); }

  // Feeds one buffer of netlink messages through the parser (used by the poll callback;
  // public so the parsing can be tested with hand-made messages).
  void handle_buffer(const std::uint8_t* data, std::size_t len);

  std::uint64_t messages() const noexcept { return messages_; }
  std::uint64_t overruns() const noexcept { return overruns_; }

 private:
  void on_readable() noexcept;
  void start_poll() noexcept;

  uv_loop_t* loop_;
  uv_poll_t* poll_ = nullptr;
  int fd_ = -1;
  LinkFn on_link_;
  AddrFn on_addr_;
  ResyncFn on_resync_;
  std::uint64_t messages_ = 0;
  std::uint64_t overruns_ = 0;
};

// Parses one RTM_NEWLINK / RTM_DELLINK message (header included). False if it is not one
// or is malformed. Exposed for tests.
bool parse_link_message(const std::uint8_t* msg, std::size_t len, LinkInfo& out);

// One rtnetlink notification as the subscription reads it.
struct RtnlEvent {
  enum class Kind : std::uint8_t {
    link,       // RTM_NEWLINK / RTM_DELLINK: `link`
    address,    // RTM_NEWADDR / RTM_DELADDR: `ifindex`
    other,      // any other message type: ignored
    malformed,  // a link or address message too short or with bad attributes
  };
  Kind kind = Kind::malformed;
  LinkInfo link;
  unsigned ifindex = 0;
};

// Walks a buffer of netlink messages as one recv() returns it and calls `fn(event)` for
// each message (pure: no I/O; the callback decides). Stops at the first header whose
// length is impossible. Returns the number of messages walked.
template <typename Fn>
std::size_t parse_rtnl_buffer(const std::uint8_t* data, std::size_t len, Fn&& fn);
// The same for one message of `len` bytes (its header's own length checked against it).
RtnlEvent parse_rtnl_message(const std::uint8_t* msg, std::size_t len);

// Where one message of a buffer ends: 0 if no whole message starts at `off`.
std::size_t rtnl_message_len(const std::uint8_t* data, std::size_t len,
                             std::size_t off) noexcept;

template <typename Fn>
std::size_t parse_rtnl_buffer(const std::uint8_t* data, std::size_t len, Fn&& fn) {
  std::size_t off = 0, n = 0;
  while (const std::size_t m = rtnl_message_len(data, len, off)) {
    ++n;
    fn(parse_rtnl_message(data + off, m));
    off += (m + 3) & ~std::size_t{3};  // NLMSG_ALIGN
    if (off >= len) break;
  }
  return n;
}

}  // namespace tunshim::proxy
