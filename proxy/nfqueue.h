// NFQUEUE backend on libmnl + libnetfilter_queue's mnl API: binds one queue, reads packet
// messages without blocking, hands each packet to a PacketHandler and sends verdicts,
// coalescing runs of unmodified ACCEPTs into one NFQNL_MSG_VERDICT_BATCH (as Suricata's
// NFQVerdictCacheAdd/Flush do). Every verdict is ACCEPT: nothing is dropped here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clamp/bytes.h"
#include "proxy/counters.h"

struct mnl_socket;
struct nlmsghdr;

namespace tunshim::proxy {

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

  // Reads every message available (until EAGAIN), hands each packet to `handler`, sends
  // the verdicts, and flushes the pending batch before returning. Never blocks.
  void drain(PacketHandler& handler) noexcept;

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
