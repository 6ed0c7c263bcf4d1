// Fuzzes the NFQUEUE socket's input: a buffer of netlink messages as one recv() returns it,
// walked as NfQueue::drain and the stall watchdog walk it (for_each_netlink_message) and parsed
// by parse_queue_message. Checks, besides "no crash, no out-of-bounds read": a packet has its
// packet header (the only way to get an id), an error message holds a whole nlmsgerr, a
// payload lies inside its own message, and a message that is not a queue packet or an
// error is never taken for one.
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "proxy/nfqueue.h"

namespace {

using tunshim::proxy::QueueMessage;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 0x10000 + 8192) return 0;  // the receive buffer's size
  // A heap copy aligned like the socket's buffer (operator new: 16 bytes), with the 3 bytes
  // of slack the daemon's buffer always has beyond a datagram (libmnl looks at attribute
  // headers up to a message's aligned end, and the kernel's last attribute, the payload, is
  // not padded); ASan sees any read past those.
  std::vector<std::uint8_t> copy(size + 3, 0);
  if (size > 0) std::memcpy(copy.data(), data, size);
  std::uint8_t* buf = copy.data();

  unsigned sum = 0;
  std::size_t off = 0;
  const std::size_t walked =
      tunshim::proxy::for_each_netlink_message(buf, size, [&](const nlmsghdr* m) {
        const auto* begin = reinterpret_cast<const std::uint8_t*>(m);
        require(begin == buf + off, "a message not where the previous one ended");
        require(m->nlmsg_len >= sizeof(nlmsghdr) && off + m->nlmsg_len <= size,
                "a message past the buffer");
        off += NLMSG_ALIGN(std::size_t{m->nlmsg_len});
        const auto* end = begin + m->nlmsg_len;
        const QueueMessage q = tunshim::proxy::parse_queue_message(m);
        switch (q.kind) {
          case QueueMessage::Kind::packet:
            require(m->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET),
                    "a packet from a message of another type");
            require(m->nlmsg_len >=
                        NLMSG_LENGTH(sizeof(nfgenmsg)) + 4 + sizeof(nfqnl_msg_packet_hdr),
                    "a packet without room for its packet header");
            if (!q.payload.empty()) {
              require(q.payload.data() >= begin && q.payload.data() + q.payload.size() <= end,
                      "payload outside its message");
              for (std::uint8_t b : q.payload) sum += b;  // every byte must be readable
            }
            break;
          case QueueMessage::Kind::error:
            require(m->nlmsg_type == NLMSG_ERROR, "an error from a message of another type");
            require(m->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)),
                    "a truncated error message");
            require(q.payload.empty(), "an error with a payload");
            break;
          case QueueMessage::Kind::other:
            require(m->nlmsg_type != NLMSG_ERROR &&
                        m->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET),
                    "a packet or error message ignored as other");
            break;
          case QueueMessage::Kind::malformed:
            require(q.payload.empty() && q.id == 0, "a malformed message with content");
            break;
        }
      });
  require(walked <= size / sizeof(nlmsghdr), "more messages than fit");
  return static_cast<int>(sum & 0);
}
