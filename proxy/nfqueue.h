// NFQUEUE backend on libmnl + libnetfilter_queue's mnl API: binds one queue, reads packet
// messages without blocking, hands each packet to a PacketHandler and sends verdicts,
// coalescing runs of unmodified ACCEPTs into one NFQNL_MSG_VERDICT_BATCH (as Suricata's
// NFQVerdictCacheAdd/Flush do). Every verdict is ACCEPT: nothing is dropped here.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clamp/bytes.h"
#include "proxy/counters.h"
#include "proxy/log.h"

struct mnl_socket;
struct uv_loop_s;

namespace tunshim::proxy {

class QueueWatchdog;

enum class Hook : std::uint8_t { prerouting, postrouting, other };

// One queued packet, as handed to the handler. `buf` is a scratch buffer owned by the
// queue holding the packet in [0, len) with at least 4 spare bytes (room for an inserted
// MSS option); the handler may rewrite it in place.
struct QueuedPacket {
  std::uint32_t id = 0;
  Hook hook = Hook::other;
  std::uint32_t indev = 0;   // ifindex the packet arrived by (0 if none)
  std::uint32_t outdev = 0;  // ifindex it leaves by (0 if none)
  clamp::Bytes buf;
  std::size_t len = 0;
  bool truncated = false;  // the kernel copied less than the whole packet
};

// One netlink message from the queue's socket, parsed in place (pointers into the message).
struct QueueMessage {
  enum class Kind : std::uint8_t {
    packet,     // NFQNL_MSG_PACKET with its packet header: `id` and the rest are set
    error,      // NLMSG_ERROR: `error` is its (negative errno, or 0 for an ACK) code
    other,      // any other type: ignored
    malformed,  // a packet or error message too short or with invalid attributes
  };
  Kind kind = Kind::malformed;
  std::uint32_t id = 0;
  std::uint8_t hook = 0;      // NF_INET_* as the kernel numbers them
  std::uint32_t indev = 0;    // 0 when absent
  std::uint32_t outdev = 0;   // 0 when absent
  clamp::ConstBytes payload;  // empty when absent
  std::uint32_t cap_len = 0;  // the packet's full length when the copy is shorter, else 0
  int error = 0;
};

// Calls `fn(const nlmsghdr*)` for each whole message in a buffer of `len` bytes as one
// recv() returns it (`buf` 4-byte aligned), and returns how many. Stops at a header whose
// length is below a header's or runs past the buffer. (mnl_nlmsg_ok compares the length as
// an int: a length above 2^31 passes it and the walk jumps out of the buffer.)
template <typename Fn>
std::size_t for_each_netlink_message(const void* buf, std::size_t len, Fn&& fn) {
  const auto* p = static_cast<const std::uint8_t*>(buf);
  std::size_t off = 0, n = 0;
  while (len - off >= sizeof(nlmsghdr)) {
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(p + off);
    if (nlh->nlmsg_len < sizeof(nlmsghdr) || nlh->nlmsg_len > len - off) break;
    fn(nlh);
    ++n;
    const std::size_t step = NLMSG_ALIGN(std::size_t{nlh->nlmsg_len});
    if (step >= len - off) break;
    off += step;
  }
  return n;
}

// Parses one message whose header says it is `nlh->nlmsg_len` bytes long; the caller has
// checked that many bytes are readable (for_each_netlink_message) and that `nlh` is 4-byte
// aligned. Pure: no allocation, no I/O. The queue and its watchdog both read the socket with
// it.
QueueMessage parse_queue_message(const nlmsghdr* nlh) noexcept;

// PacketHandler::on_packet's answer for "drop this packet" (the oversize guard).
inline constexpr std::size_t kDropPacket = static_cast<std::size_t>(-1);

class PacketHandler {
 public:
  virtual ~PacketHandler() = default;
  // Returns the packet's new length if the handler rewrote it, 0 to accept it unchanged,
  // kDropPacket to drop it. Called on the loop thread; must not allocate or block.
  virtual std::size_t on_packet(QueuedPacket& pkt) noexcept = 0;
};

// The kernel's view of the queue, from /proc/net/netfilter/nfnetlink_queue.
struct KernelQueueStats {
  std::uint64_t peer_portid = 0;  // netlink port of the process bound to the queue
  std::uint64_t queue_total = 0;  // packets waiting for a verdict right now
  std::uint64_t queue_dropped = 0;
  std::uint64_t user_dropped = 0;
  std::uint64_t id_sequence = 0;
};

class NfQueue {
 public:
  NfQueue();
  ~NfQueue();
  NfQueue(const NfQueue&) = delete;
  NfQueue& operator=(const NfQueue&) = delete;

  // Opens the netlink socket and binds queue `num` in copy-packet mode (range 0xffff),
  // fail-open, no GSO, no conntrack, queue length `maxlen`, receive buffer sized from it.
  // Blocks briefly for the kernel's acknowledgements. On failure returns false with `err`.
  bool open(std::uint16_t num, std::uint32_t maxlen, std::string& err);
  // Changes the queue length (and resizes the receive buffer) of an open queue without
  // waiting for an acknowledgement; an error, if any, arrives later and is logged.
  void set_maxlen(std::uint32_t maxlen);
  // Unbinds the queue and closes the socket. Safe to call twice.
  void close();

  int fd() const noexcept;
  std::uint16_t num() const noexcept { return num_; }
  bool fail_open() const noexcept { return fail_open_; }
  int rcvbuf() const noexcept { return rcvbuf_; }

  // Reads the messages available, at most kDrainBudget of them, hands each packet to
  // `handler`, sends the verdicts, and flushes the pending batch before returning (at
  // EAGAIN or at the budget). Never blocks. Returns true if it stopped at the budget (more
  // may be waiting: the poll callback runs again on the next loop iteration, after the
  // timers). `now_ms` is the loop's cached time, for the rate limits of its log lines.
  bool drain(PacketHandler& handler, std::uint64_t now_ms) noexcept;
  // Datagrams read per drain: a flood cannot keep the loop in one callback, so timers,
  // signals, the stats server and the watchdog's heartbeat keep running.
  static constexpr int kDrainBudget = 128;

  // Forks the stall watchdog (queue_watchdog.h) sharing this queue's socket, and watches it
  // from `loop`. Call once, after open(), before hooks can run. False with `err` if the
  // process or its shared page cannot be created; the queue works without it.
  bool start_watchdog(uv_loop_s* loop, std::string& err);
  // Packets the watchdog passed unclamped while the loop was stalled (0 without one).
  std::uint64_t watchdog_passed() const noexcept;

  QueueCounters& counters() noexcept { return counters_; }
  const QueueCounters& counters() const noexcept { return counters_; }

  // Reads queue `num`'s line from /proc/net/netfilter/nfnetlink_queue (of the current
  // network namespace). False if the file or the line is missing (nobody has bound it).
  static bool read_kernel_stats(std::uint16_t num, KernelQueueStats& out);

 private:
  bool send_config(nlmsghdr* nlh, bool want_ack, std::string& err);
  void size_rcvbuf(std::uint32_t maxlen);
  void handle_message(const nlmsghdr* nlh, PacketHandler& handler) noexcept;
  void add_to_batch(std::uint32_t id) noexcept;
  void flush_batch() noexcept;
  void send_modified(std::uint32_t id, const std::uint8_t* data, std::size_t len) noexcept;
  void send_drop(std::uint32_t id) noexcept;
  bool send_msg(const nlmsghdr* nlh) noexcept;
  // Verdicts are appended to out_ and sent together, one sendto per drained burst (the
  // kernel's nfnetlink walks every message in a datagram), instead of one per packet.
  nlmsghdr* out_put(std::uint16_t type, std::size_t room) noexcept;
  void out_commit(const nlmsghdr* nlh) noexcept;
  void flush_out() noexcept;

  mnl_socket* nl_ = nullptr;
  std::unique_ptr<QueueWatchdog> watchdog_;
  std::uint64_t now_ms_ = 0;  // from the last drain(), for the log limits
  LogLimiter log_error_;
  LogLimiter log_gap_;
  std::uint64_t gaps_explained_ = 0;  // id gaps accounted for by the watchdog's verdicts
  std::uint16_t num_ = 0;
  std::uint32_t portid_ = 0;
  std::uint32_t seq_ = 0;
  bool bound_ = false;
  bool fail_open_ = false;
  int rcvbuf_ = 0;
  // Pending batch: ids [batch_first_, batch_last_] all accepted unchanged.
  bool batch_open_ = false;
  std::uint32_t batch_first_ = 0;
  std::uint32_t batch_last_ = 0;
  // Highest packet id seen, to notice ids the kernel assigned but could not deliver.
  bool have_last_id_ = false;
  std::uint32_t last_id_ = 0;
  // Buffers allocated once at open(): nothing is allocated per packet.
  std::vector<char> rx_;
  std::vector<char> tx_;
  std::vector<char> out_;
  std::size_t out_used_ = 0;
  std::uint32_t out_msgs_ = 0;
  std::vector<std::uint8_t> scratch_;
  QueueCounters counters_;
};

}  // namespace tunshim::proxy
