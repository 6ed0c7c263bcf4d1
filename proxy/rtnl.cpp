#include "proxy/rtnl.h"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "proxy/test_knobs.h"

namespace tunshim::proxy {
namespace {

// One link message with IFLA_STATS64 is ~1.5 KiB; 32 KiB holds a burst of them.
constexpr std::size_t kRxBuffer = 32768;
constexpr int kRcvBuffer = 4 << 20;
// A kernel that does not answer a GETLINK within this time is not going to.
constexpr int kQueryTimeoutMs = 500;

struct ParseCtx {
  LinkInfo* out;
};

int link_attr(const nlattr* a, void* data) {
  auto* out = static_cast<ParseCtx*>(data)->out;
  switch (mnl_attr_get_type(a)) {
    case IFLA_IFNAME:
      if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) >= 0) out->name = mnl_attr_get_str(a);
      break;
    case IFLA_MTU:
      if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0) out->mtu = mnl_attr_get_u32(a);
      break;
    case IFLA_STATS64: {
      rtnl_link_stats64 st{};
      if (mnl_attr_get_payload_len(a) >= sizeof st) {
        std::memcpy(&st, mnl_attr_get_payload(a), sizeof st);
        out->have_stats = true;
        out->rx_packets = st.rx_packets;
        out->tx_packets = st.tx_packets;
      }
      break;
    }
    case IFLA_STATS:
      // Older kernels or a truncated dump: 32-bit counters, used only if 64 are missing.
      if (!out->have_stats) {
        rtnl_link_stats st{};
        if (mnl_attr_get_payload_len(a) >= sizeof st) {
          std::memcpy(&st, mnl_attr_get_payload(a), sizeof st);
          out->have_stats = true;
          out->rx_packets = st.rx_packets;
          out->tx_packets = st.tx_packets;
        }
      }
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

}  // namespace

bool parse_link_message(const std::uint8_t* msg, std::size_t len, LinkInfo& out) {
  out = LinkInfo{};
  nlmsghdr hdr{};
  if (len < sizeof hdr) return false;
  std::memcpy(&hdr, msg, sizeof hdr);
  if (hdr.nlmsg_len > len || (hdr.nlmsg_type != RTM_NEWLINK && hdr.nlmsg_type != RTM_DELLINK)) {
    return false;
  }
  ifinfomsg ifi{};
  if (hdr.nlmsg_len < NLMSG_LENGTH(sizeof ifi)) return false;
  std::memcpy(&ifi, msg + NLMSG_HDRLEN, sizeof ifi);
  out.ifindex = static_cast<unsigned>(ifi.ifi_index);
  out.flags = ifi.ifi_flags;
  out.present = hdr.nlmsg_type == RTM_NEWLINK;
  // libmnl walks the attributes in place: give it an aligned private copy.
  std::vector<std::uint32_t> copy((hdr.nlmsg_len + 3) / 4);
  std::memcpy(copy.data(), msg, hdr.nlmsg_len);
  ParseCtx ctx{&out};
  const auto* h = static_cast<const nlmsghdr*>(static_cast<const void*>(copy.data()));
  if (mnl_attr_parse(h, sizeof ifi, link_attr, &ctx) < 0) return false;
  return !out.name.empty();
}

namespace {

// One request on a short-lived socket and the first answer to it: `rx` points at its `len`
// bytes, valid until the next call. False with `err` set when the socket, the send or the
// receive fails.
bool transact(nlmsghdr* req, const std::uint8_t*& rx, std::size_t& len, std::string& err) {
  alignas(nlmsghdr) static thread_local std::array<std::uint8_t, kRxBuffer> buf{};
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (nl == nullptr) {
    err = std::string("netlink socket: ") + std::strerror(errno);
    return false;
  }
  timeval tv{0, kQueryTimeoutMs * 1000};
  setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // The kernel's reason in words with an error, where it has one ("mtu less than device
  // minimum"); older kernels ignore the option.
  int one = 1;
  mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof one);
  bool ok = false;
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    err = std::string("netlink bind: ") + std::strerror(errno);
  } else if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0) {
    err = std::string("netlink send: ") + std::strerror(errno);
  } else {
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) {
      err = std::string("netlink receive: ") + std::strerror(errno);
    } else {
      rx = buf.data();
      len = static_cast<std::size_t>(n);
      ok = true;
    }
  }
  mnl_socket_close(nl);
  return ok;
}

// The answer as an error code: 0 for an ACK, -errno for a refusal, 1 when it is not an
// NLMSG_ERROR at all (a data answer). `why` gets the extended-ACK text if there is one.
int answer_error(const std::uint8_t* rx, std::size_t len, std::string& why) {
  nlmsghdr hdr{};
  if (len < sizeof hdr) return 1;
  std::memcpy(&hdr, rx, sizeof hdr);
  if (hdr.nlmsg_type != NLMSG_ERROR || hdr.nlmsg_len > len ||
      hdr.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
    return 1;
  }
  nlmsgerr e{};
  std::memcpy(&e, rx + NLMSG_HDRLEN, sizeof e);
  if (e.error != 0 && (hdr.nlmsg_flags & NLM_F_ACK_TLVS) != 0) {
    // The TLVs follow the echoed request: only its header when NLM_F_CAPPED is set.
    std::size_t off = NLMSG_HDRLEN + sizeof e;
    if ((hdr.nlmsg_flags & NLM_F_CAPPED) == 0) {
      if (e.msg.nlmsg_len < sizeof(nlmsghdr)) return e.error;
      off += NLMSG_ALIGN(e.msg.nlmsg_len) - sizeof(nlmsghdr);
    }
    while (off + sizeof(nlattr) <= hdr.nlmsg_len) {
      nlattr a{};
      std::memcpy(&a, rx + off, sizeof a);
      if (a.nla_len < sizeof a || off + a.nla_len > hdr.nlmsg_len) break;
      if ((a.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a.nla_len > sizeof a) {
        const auto* text = reinterpret_cast<const char*>(rx + off + sizeof a);
        why.assign(text, strnlen(text, a.nla_len - sizeof a));
      }
      off += NLA_ALIGN(a.nla_len);
    }
  }
  return e.error;
}

// An rtnetlink link request for `ifindex` (0: named by an attribute instead) in `tx`.
nlmsghdr* link_request(std::array<std::uint8_t, 256>& tx, std::uint16_t type,
                       std::uint16_t flags, unsigned ifindex) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(tx.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = 1;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = static_cast<int>(ifindex);
  return nlh;
}

// A refusal from answer_error() in words: "Invalid argument (mtu less than device minimum)".
std::string refusal(int e, const std::string& why) {
  std::string s = std::strerror(-e);
  if (!why.empty()) s += " (" + why + ")";
  return s;
}

}  // namespace

bool query_link(const std::string& name, LinkInfo& out, std::string& err) {
  out = LinkInfo{};
  if (name.empty() || name.size() >= IFNAMSIZ) {
    err = "not a valid interface name";
    return false;
  }
  alignas(nlmsghdr) std::array<std::uint8_t, 256> tx{};
  nlmsghdr* nlh = link_request(tx, RTM_GETLINK, NLM_F_REQUEST, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  // Only the fields we read: no VF or per-protocol blobs in the answer.
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, 0);
  const std::uint8_t* rx = nullptr;
  std::size_t len = 0;
  if (!transact(nlh, rx, len, err)) return false;
  std::string why;
  const int e = answer_error(rx, len, why);
  if (e == -ENODEV) {
    err = "no such interface";
    return false;
  }
  if (e != 1) {
    err = "GETLINK: " + refusal(e, why);
    return false;
  }
  if (!parse_link_message(rx, len, out)) {
    err = "GETLINK: unexpected answer";
    return false;
  }
  return true;
}

bool set_link_mtu(unsigned ifindex, std::uint32_t mtu, std::string& err) {
  alignas(nlmsghdr) std::array<std::uint8_t, 256> tx{};
  // By index, not name: a link renamed or replaced meanwhile is left alone.
  nlmsghdr* nlh = link_request(tx, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ifindex);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  const std::uint8_t* rx = nullptr;
  std::size_t len = 0;
  if (!transact(nlh, rx, len, err)) return false;
  std::string why;
  const int e = answer_error(rx, len, why);
  if (e == 0) return true;
  if (e == 1) {
    err = "NEWLINK: unexpected answer";
  } else {
    err = refusal(e, why);
  }
  return false;
}

Rtnl::~Rtnl() { close(); }

bool Rtnl::open(LinkFn on_link, AddrFn on_addr, ResyncFn on_resync, std::string& err) {
  close();
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (nl == nullptr) {
    err = std::string("netlink socket: ") + std::strerror(errno);
    return false;
  }
  const unsigned groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
    err = std::string("netlink bind (link and address groups): ") + std::strerror(errno);
    mnl_socket_close(nl);
    return false;
  }
  // We own the fd from here on; mnl_socket's wrapper is not needed for plain recv().
  // dup() would drop close-on-exec, and every hook would inherit the subscription.
  fd_ = fcntl(mnl_socket_get_fd(nl), F_DUPFD_CLOEXEC, 0);
  mnl_socket_close(nl);
  if (fd_ < 0) {
    err = std::string("F_DUPFD_CLOEXEC: ") + std::strerror(errno);
    return false;
  }
  // Room for a burst (a concentrator's sessions coming up together: several messages per
  // interface); past it the kernel drops and we re-read everything. Root may exceed
  // rmem_max (SO_RCVBUFFORCE); otherwise the default stays.
  const int rcvbuf = test_rtnl_rcvbuf().value_or(kRcvBuffer);
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  on_link_ = std::move(on_link);
  on_addr_ = std::move(on_addr);
  on_resync_ = std::move(on_resync);
  poll_ = new uv_poll_t{};
  uv_poll_init(loop_, poll_, fd_);
  poll_->data = this;
  start_poll();
  return true;
}

void Rtnl::start_poll() noexcept {
  uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* self = static_cast<Rtnl*>(p->data);
    if (self == nullptr) return;
    if (status < 0) {
      // An overrun sets the socket's error, which libuv sees as POLLERR: it stops the
      // handle and says EBADF. recv() reports the overrun (ENOBUFS: everyone re-reads);
      // then poll again, or no notification would be read until something else drains.
      self->on_readable();
      if (self->poll_ != nullptr) self->start_poll();
      return;
    }
    self->on_readable();
  });
}

void Rtnl::close() noexcept {
  if (poll_ != nullptr) {
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void Rtnl::on_readable() noexcept {
  alignas(nlmsghdr) static std::array<std::uint8_t, kRxBuffer> rx{};
  for (int i = 0; i < 64 && fd_ >= 0; ++i) {
    const ssize_t n = recv(fd_, rx.data(), rx.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // The kernel dropped notifications: we cannot know which, so everyone re-reads.
        // What is still queued is older than the re-read: applied after it, a stale
        // NEWLINK would hand a name's tunnel the index of an interface already deleted
        // (and its DELLINK would then end that tunnel). So discard the queue first; what
        // arrives after the discard is newer than the state the re-read sees.
        ++overruns_;
        spdlog::warn("rtnetlink: notifications lost (socket overrun); re-reading interfaces");
        for (int d = 0; d < 4096; ++d) {
          if (recv(fd_, rx.data(), rx.size(), MSG_DONTWAIT) < 0 && errno != EINTR &&
              errno != ENOBUFS) {
            break;
          }
        }
        if (on_resync_) on_resync_();
        continue;
      }
      return;  // EAGAIN: drained
    }
    handle_buffer(rx.data(), static_cast<std::size_t>(n));
  }
}

void Rtnl::handle_buffer(const std::uint8_t* data, std::size_t len) {
  messages_ += parse_rtnl_buffer(data, len, [this](const RtnlEvent& e) {
    if (e.kind == RtnlEvent::Kind::link && on_link_) on_link_(e.link);
    if (e.kind == RtnlEvent::Kind::address && on_addr_) on_addr_(e.ifindex);
  });
}

std::size_t rtnl_message_len(const std::uint8_t* data, std::size_t len,
                             std::size_t off) noexcept {
  if (off > len || len - off < sizeof(nlmsghdr)) return 0;
  nlmsghdr hdr{};
  std::memcpy(&hdr, data + off, sizeof hdr);
  if (hdr.nlmsg_len < sizeof hdr || hdr.nlmsg_len > len - off) return 0;
  return hdr.nlmsg_len;
}

RtnlEvent parse_rtnl_message(const std::uint8_t* msg, std::size_t len) {
  RtnlEvent e;
  if (rtnl_message_len(msg, len, 0) != len) return e;
  nlmsghdr hdr{};
  std::memcpy(&hdr, msg, sizeof hdr);
  if (hdr.nlmsg_type == RTM_NEWLINK || hdr.nlmsg_type == RTM_DELLINK) {
    if (parse_link_message(msg, len, e.link)) e.kind = RtnlEvent::Kind::link;
  } else if (hdr.nlmsg_type == RTM_NEWADDR || hdr.nlmsg_type == RTM_DELADDR) {
    ifaddrmsg ifa{};
    if (hdr.nlmsg_len >= NLMSG_LENGTH(sizeof ifa)) {
      std::memcpy(&ifa, msg + NLMSG_HDRLEN, sizeof ifa);
      e.kind = RtnlEvent::Kind::address;
      e.ifindex = ifa.ifa_index;
    }
  } else {
    e.kind = RtnlEvent::Kind::other;
  }
  return e;
}

}  // namespace tunshim::proxy
