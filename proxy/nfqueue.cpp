#include "proxy/nfqueue.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "proxy/queue_watchdog.h"

namespace tunshim::proxy {
namespace {

// Largest packet the kernel copies (copy range 0xffff) plus room for the netlink framing
// (the library's nf-queue.c example adds half of MNL_SOCKET_BUFFER_SIZE, at most 4 KiB).
constexpr std::size_t kNetlinkSlack = 8192;
constexpr std::size_t kRxBufSize = 0xffff + kNetlinkSlack;
constexpr std::size_t kTxBufSize = 0xffff + kNetlinkSlack;
// Outgoing verdicts of one burst: room for hundreds of rewritten SYNs, and always for one
// verdict carrying the largest packet. A netlink datagram must stay below the socket's
// send buffer, which open() raises well above this.
constexpr std::size_t kOutBufSize = 128 * 1024;
constexpr int kSndbuf = 1 << 20;
// Per verdict message: netlink and nfnetlink headers, the verdict and payload attributes.
constexpr std::size_t kVerdictOverhead = 256;
// Room after a packet for the 4-byte MSS option an insertion adds.
constexpr std::size_t kInsertRoom = 4;
constexpr std::size_t kScratchSize = 0xffff + kInsertRoom;
// The receive buffer holds about 1 KiB per queued SYN message (skb truesize), so a full
// queue fits in it and the kernel's queue, not the socket, is what overflows; never below
// 4 MiB. The kernel doubles the value it is given.
constexpr std::uint64_t kRcvbufPerEntry = 1024;
constexpr std::uint64_t kRcvbufMin = 4u << 20;
constexpr std::uint64_t kRcvbufMax = 1u << 30;
constexpr int kSendRetries = 3;

// ", N similar line(s) suppressed" for a rate-limited line, or nothing.
std::string suppressed_note(std::uint64_t n) {
  return n == 0 ? std::string() : fmt::format(" ({} similar suppressed)", n);
}

}  // namespace

QueueMessage parse_queue_message(const nlmsghdr* nlh) noexcept {
  QueueMessage out;
  if (nlh->nlmsg_type == NLMSG_ERROR) {
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return out;
    nlmsgerr e{};
    std::memcpy(&e, mnl_nlmsg_get_payload(nlh), sizeof e);
    out.kind = QueueMessage::Kind::error;
    out.error = e.error;
    return out;
  }
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
    out.kind = QueueMessage::Kind::other;
    return out;
  }
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) return out;
  nlattr* attr[NFQA_MAX + 1] = {};
  if (nfq_nlmsg_parse(nlh, attr) < 0) return out;
  // Past the packet header nothing is fatal: with its id the packet can always be
  // answered (a packet without a usable payload is accepted unchanged). libmnl walks
  // attributes up to the aligned end of the message, so an attribute is used only if it
  // ends within the message's own length and a u32 only if it holds 4 bytes.
  const auto* end = reinterpret_cast<const std::uint8_t*>(nlh) + nlh->nlmsg_len;
  const auto usable = [&](const nlattr* a, std::size_t min_len) {
    if (a == nullptr || mnl_attr_get_payload_len(a) < min_len) return false;
    const auto* p = static_cast<const std::uint8_t*>(mnl_attr_get_payload(a));
    return p + mnl_attr_get_payload_len(a) <= end;
  };
  if (!usable(attr[NFQA_PACKET_HDR], sizeof(nfqnl_msg_packet_hdr))) return out;
  nfqnl_msg_packet_hdr ph{};
  std::memcpy(&ph, mnl_attr_get_payload(attr[NFQA_PACKET_HDR]), sizeof ph);
  out.kind = QueueMessage::Kind::packet;
  out.id = ntohl(ph.packet_id);
  out.hook = ph.hook;
  if (usable(attr[NFQA_IFINDEX_INDEV], 4))
    out.indev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV]));
  if (usable(attr[NFQA_IFINDEX_OUTDEV], 4))
    out.outdev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_OUTDEV]));
  if (usable(attr[NFQA_PAYLOAD], 0)) {
    out.payload = clamp::ConstBytes(
        static_cast<const std::uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
        mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]));
  }
  if (usable(attr[NFQA_CAP_LEN], 4)) out.cap_len = ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]));
  return out;
}

NfQueue::NfQueue() = default;
NfQueue::~NfQueue() { close(); }

int NfQueue::fd() const noexcept { return nl_ != nullptr ? mnl_socket_get_fd(nl_) : -1; }

bool NfQueue::send_config(nlmsghdr* nlh, bool want_ack, std::string& err) {
  nlh->nlmsg_seq = ++seq_;
  if (want_ack) nlh->nlmsg_flags |= NLM_F_ACK;
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
    err = std::string("netlink send: ") + std::strerror(errno);
    return false;
  }
  if (!want_ack) return true;
  // Wait (at startup only, briefly) for the ACK or error that answers this sequence number.
  const std::uint32_t seq = nlh->nlmsg_seq;
  for (int tries = 0; tries < 50; ++tries) {
    pollfd pfd{fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    const ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      err = std::string("netlink recv: ") + std::strerror(errno);
      return false;
    }
    int len = static_cast<int>(n);
    for (auto* m = static_cast<const nlmsghdr*>(static_cast<const void*>(rx_.data()));
         mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_type != NLMSG_ERROR || m->nlmsg_seq != seq) continue;
      const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
      if (e->error == 0) return true;
      err = std::strerror(-e->error);
      errno = -e->error;
      return false;
    }
  }
  err = "no answer from the kernel";
  return false;
}

void NfQueue::size_rcvbuf(std::uint32_t maxlen) {
  const std::uint64_t want = std::clamp<std::uint64_t>(std::uint64_t{maxlen} * kRcvbufPerEntry,
                                                       kRcvbufMin, kRcvbufMax);
  int v = static_cast<int>(want);
  // SO_RCVBUFFORCE ignores net.core.rmem_max (needs CAP_NET_ADMIN, which we have).
  if (::setsockopt(fd(), SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) != 0) {
    spdlog::warn("nfqueue: SO_RCVBUFFORCE {} refused ({}); falling back to SO_RCVBUF", v,
                 std::strerror(errno));
    ::setsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
  }
  socklen_t sl = sizeof rcvbuf_;
  ::getsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf_, &sl);
}

bool NfQueue::open(std::uint16_t num, std::uint32_t maxlen, std::string& err) {
  num_ = num;
  rx_.assign(kRxBufSize, 0);
  tx_.assign(kTxBufSize, 0);
  out_.assign(kOutBufSize, 0);
  out_used_ = 0;
  out_msgs_ = 0;
  scratch_.assign(kScratchSize, 0);
  nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (nl_ == nullptr) {
    err = std::string("cannot open netfilter netlink socket: ") + std::strerror(errno);
    return false;
  }
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    err = std::string("cannot bind netlink socket: ") + std::strerror(errno);
    close();
    return false;
  }
  portid_ = mnl_socket_get_portid(nl_);

  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_CONFIG, num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
  if (!send_config(nlh, true, err)) {
    err = "cannot bind NFQUEUE " + std::to_string(num) + ": " + err +
          (errno == EBUSY ? " (another process holds this queue number)" : "");
    close();
    return false;
  }
  bound_ = true;

  nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_CONFIG, num);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
  if (!send_config(nlh, true, err)) {
    err = "cannot configure NFQUEUE " + std::to_string(num) + ": " + err;
    close();
    return false;
  }

  // Fail-open, and explicitly no GSO (so the kernel finishes checksums before queueing and
  // our incremental updates stay right) and no conntrack info. Sent alone so a kernel that
  // refuses the flag does not also lose the settings above.
  nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_CONFIG, num);
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK,
                   htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO | NFQA_CFG_F_CONNTRACK));
  std::string ferr;
  fail_open_ = send_config(nlh, true, ferr);
  if (!fail_open_) {
    spdlog::warn(
        "nfqueue: the kernel refused NFQA_CFG_F_FAIL_OPEN ({}): a full queue will "
        "drop SYNs instead of passing them unclamped",
        ferr);
  }

  // A full socket must not turn into a recv error that a reader could mistake for a dead
  // socket; overruns are counted from packet-id gaps and the kernel's counters instead.
  int one = 1;
  if (mnl_socket_setsockopt(nl_, NETLINK_NO_ENOBUFS, &one, sizeof one) != 0) {
    spdlog::warn("nfqueue: NETLINK_NO_ENOBUFS refused: {}", std::strerror(errno));
  }
  size_rcvbuf(maxlen);
  if (::setsockopt(fd(), SOL_SOCKET, SO_SNDBUFFORCE, &kSndbuf, sizeof kSndbuf) != 0) {
    ::setsockopt(fd(), SOL_SOCKET, SO_SNDBUF, &kSndbuf, sizeof kSndbuf);
  }
  return true;
}

void NfQueue::set_maxlen(std::uint32_t maxlen) {
  if (nl_ == nullptr) return;
  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_CONFIG, num_);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
  nlh->nlmsg_seq = ++seq_;
  if (!send_msg(nlh))
    spdlog::warn("nfqueue: cannot change queue length: {}", std::strerror(errno));
  size_rcvbuf(maxlen);
}

bool NfQueue::start_watchdog(uv_loop_s* loop, std::string& err) {
  if (nl_ == nullptr) {
    err = "queue not open";
    return false;
  }
  auto wd = std::make_unique<QueueWatchdog>();
  if (!wd->start(loop, fd(), num_, err)) return false;
  watchdog_ = std::move(wd);
  return true;
}

std::uint64_t NfQueue::watchdog_passed() const noexcept {
  return watchdog_ ? watchdog_->passed() : 0;
}

void NfQueue::close() {
  // The watchdog first: it must not answer for a queue that is going away.
  if (watchdog_) {
    watchdog_->stop();
    watchdog_.reset();
  }
  if (nl_ == nullptr) return;
  if (bound_) {
    flush_batch();
    flush_out();
    nlmsghdr* nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_CONFIG, num_);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_UNBIND);
    // Closing the socket unbinds too; the explicit message makes the intent visible.
    mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len);
    bound_ = false;
  }
  mnl_socket_close(nl_);
  nl_ = nullptr;
}

bool NfQueue::send_msg(const nlmsghdr* nlh) noexcept {
  for (int i = 0; i < kSendRetries; ++i) {
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) >= 0) return true;
    if (errno != EINTR && errno != EAGAIN && errno != ENOBUFS) break;
  }
  ++counters_.send_errors;
  if (std::uint64_t n = 0; log_error_.allow(now_ms_, n)) {
    spdlog::warn(
        "nfqueue: verdict send failed: {} (the kernel will hold the packet until "
        "the queue is unbound){}",
        std::strerror(errno), suppressed_note(n));
  }
  return false;
}

void NfQueue::add_to_batch(std::uint32_t id) noexcept {
  // A batch verdict accepts every queued id up to its own, so only extend a run of
  // consecutive ids; anything else closes the run first.
  if (batch_open_ && id == batch_last_ + 1) {
    batch_last_ = id;
    return;
  }
  flush_batch();
  batch_open_ = true;
  batch_first_ = batch_last_ = id;
}

void NfQueue::flush_batch() noexcept {
  if (!batch_open_) return;
  batch_open_ = false;
  const bool single = batch_first_ == batch_last_;
  nlmsghdr* nlh =
      out_put(single ? NFQNL_MSG_VERDICT : NFQNL_MSG_VERDICT_BATCH, kVerdictOverhead);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(batch_last_), NF_ACCEPT);
  out_commit(nlh);
  ++(single ? counters_.verdicts : counters_.batches);
}

void NfQueue::send_modified(std::uint32_t id, const std::uint8_t* data,
                            std::size_t len) noexcept {
  flush_batch();  // keep verdicts in id order
  nlmsghdr* nlh = out_put(NFQNL_MSG_VERDICT, len + kVerdictOverhead);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), NF_ACCEPT);
  nfq_nlmsg_verdict_put_pkt(nlh, data, static_cast<std::uint32_t>(len));
  out_commit(nlh);
  ++counters_.verdicts;
  ++counters_.modified;
}

void NfQueue::send_drop(std::uint32_t id) noexcept {
  flush_batch();  // a batch verdict would accept this id too if the run went past it
  nlmsghdr* nlh = out_put(NFQNL_MSG_VERDICT, kVerdictOverhead);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), NF_DROP);
  out_commit(nlh);
  ++counters_.verdicts;
  ++counters_.dropped;
}

nlmsghdr* NfQueue::out_put(std::uint16_t type, std::size_t room) noexcept {
  if (out_used_ + room > out_.size()) flush_out();
  return nfq_nlmsg_put(out_.data() + out_used_, type, num_);
}

void NfQueue::out_commit(const nlmsghdr* nlh) noexcept {
  out_used_ += NLMSG_ALIGN(nlh->nlmsg_len);
  ++out_msgs_;
}

void NfQueue::flush_out() noexcept {
  if (out_used_ == 0) return;
  bool sent = false;
  for (int i = 0; i < kSendRetries && !sent; ++i) {
    sent = mnl_socket_sendto(nl_, out_.data(), out_used_) >= 0;
    if (!sent && errno != EINTR && errno != EAGAIN && errno != ENOBUFS) break;
  }
  if (!sent) {
    counters_.send_errors += out_msgs_;
    if (std::uint64_t n = 0; log_error_.allow(now_ms_, n)) {
      spdlog::warn(
          "nfqueue: sending {} verdict(s) failed: {} (the kernel holds those packets "
          "until the queue is unbound){}",
          out_msgs_, std::strerror(errno), suppressed_note(n));
    }
  }
  out_used_ = 0;
  out_msgs_ = 0;
}

void NfQueue::handle_message(const nlmsghdr* nlh, PacketHandler& handler) noexcept {
  const QueueMessage msg = parse_queue_message(nlh);
  if (msg.kind == QueueMessage::Kind::error) {
    if (msg.error != 0) {
      ++counters_.send_errors;
      if (std::uint64_t n = 0; log_error_.allow(now_ms_, n)) {
        spdlog::warn("nfqueue: kernel rejected a message: {}{}{}", std::strerror(-msg.error),
                     msg.error == -ENOENT && watchdog_ && watchdog_->stalls() > 0
                         ? " (a packet the stall watchdog had already accepted)"
                         : "",
                     suppressed_note(n));
      }
    }
    return;
  }
  if (msg.kind == QueueMessage::Kind::other) return;
  if (msg.kind == QueueMessage::Kind::malformed) {
    ++counters_.bad_messages;
    return;  // without an id there is nothing to answer; the kernel times nothing out, but
             // this cannot happen with a well-behaved kernel
  }
  QueuedPacket pkt;
  pkt.id = msg.id;
  ++counters_.packets;

  if (have_last_id_ && pkt.id > last_id_ + 1) {
    std::uint64_t gap = pkt.id - last_id_ - 1;
    // Ids the stall watchdog answered while the loop was stopped are not losses.
    const std::uint64_t by_watchdog = watchdog_passed() - gaps_explained_;
    const std::uint64_t explained = std::min(gap, by_watchdog);
    gaps_explained_ += explained;
    gap -= explained;
    counters_.id_gaps += gap;
    if (std::uint64_t n = 0; gap > 0 && log_gap_.allow(now_ms_, n)) {
      spdlog::warn(
          "nfqueue: {} packet(s) lost on a full socket before id {} (passed unclamped){}", gap,
          pkt.id, suppressed_note(n));
    }
  }
  have_last_id_ = true;
  last_id_ = pkt.id;

  pkt.hook = msg.hook == NF_INET_PRE_ROUTING    ? Hook::prerouting
             : msg.hook == NF_INET_POST_ROUTING ? Hook::postrouting
                                                : Hook::other;
  pkt.indev = msg.indev;
  pkt.outdev = msg.outdev;
  const std::size_t plen = std::min(msg.payload.size(), kScratchSize - kInsertRoom);
  if (plen > 0) std::memcpy(scratch_.data(), msg.payload.data(), plen);
  // NFQA_CAP_LEN carries the full length and is present only when the copy is shorter.
  if (msg.cap_len > plen) pkt.truncated = true;
  pkt.buf = clamp::Bytes(scratch_.data(), scratch_.size());
  pkt.len = plen;

  const std::size_t new_len = handler.on_packet(pkt);
  if (new_len == kDropPacket) return send_drop(pkt.id);
  // Never hand back a truncated packet: the kernel would replace the whole one with it.
  if (new_len != 0 && !pkt.truncated && new_len <= scratch_.size()) {
    send_modified(pkt.id, scratch_.data(), new_len);
  } else {
    add_to_batch(pkt.id);
  }
}

bool NfQueue::drain(PacketHandler& handler, std::uint64_t now_ms) noexcept {
  if (nl_ == nullptr) return false;
  now_ms_ = now_ms;
  if (watchdog_) watchdog_->beat();
  bool more = false;
  for (int reads = 0;; ++reads) {
    if (reads == kDrainBudget) {
      more = true;  // the rest waits for the next loop iteration, after the timers
      break;
    }
    const ssize_t n = ::recv(fd(), rx_.data(), rx_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // only without NETLINK_NO_ENOBUFS; the socket stays usable
        ++counters_.enobufs;
        continue;
      }
      if (std::uint64_t s = 0;
          errno != EAGAIN && errno != EWOULDBLOCK && log_error_.allow(now_ms_, s)) {
        spdlog::warn("nfqueue: recv: {}{}", std::strerror(errno), suppressed_note(s));
      }
      break;  // EAGAIN: drained (also a spurious wakeup)
    }
    for_each_netlink_message(rx_.data(), static_cast<std::size_t>(n),
                             [&](const nlmsghdr* m) { handle_message(m, handler); });
  }
  flush_batch();
  flush_out();
  return more;
}

bool NfQueue::read_kernel_stats(std::uint16_t num, KernelQueueStats& out) {
  std::ifstream f("/proc/net/netfilter/nfnetlink_queue");
  if (!f) return false;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::uint64_t qnum = 0, portid = 0, total = 0, mode = 0, range = 0, qdrop = 0, udrop = 0,
                  idseq = 0;
    if (!(is >> qnum >> portid >> total >> mode >> range >> qdrop >> udrop >> idseq)) continue;
    if (qnum != num) continue;
    out = KernelQueueStats{portid, total, qdrop, udrop, idseq};
    return true;
  }
  return false;
}

}  // namespace tunshim::proxy
