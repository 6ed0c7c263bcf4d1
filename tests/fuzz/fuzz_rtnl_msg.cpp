// Fuzzes the rtnetlink subscription's input: a buffer of netlink messages as one recv()
// returns it, walked and parsed by parse_rtnl_buffer (the code Rtnl's poll callback runs).
// Checks, besides "no crash, no out-of-bounds read": the walk never claims more messages
// than fit, a link event comes only from RTM_NEWLINK/RTM_DELLINK with a NUL-terminated
// name inside its message (present exactly for NEWLINK), an address event only from
// RTM_NEWADDR/RTM_DELADDR.
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "proxy/rtnl.h"

namespace {

using tunshim::proxy::RtnlEvent;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 32768) return 0;                         // the subscription's receive buffer
  std::vector<std::uint8_t> copy(data, data + size);  // exact length: ASan sees overreads
  const std::uint8_t* buf = copy.data();
  std::size_t off = 0;
  const std::size_t walked =
      tunshim::proxy::parse_rtnl_buffer(buf, size, [&](const RtnlEvent& e) {
        nlmsghdr h{};
        require(off + sizeof h <= size, "a message starting past the buffer");
        std::memcpy(&h, buf + off, sizeof h);
        require(h.nlmsg_len >= sizeof h && off + h.nlmsg_len <= size,
                "a message past the buffer");
        switch (e.kind) {
          case RtnlEvent::Kind::link:
            require(h.nlmsg_type == RTM_NEWLINK || h.nlmsg_type == RTM_DELLINK,
                    "a link event from another message type");
            require(!e.link.name.empty() && e.link.name.size() < h.nlmsg_len,
                    "a link name longer than its message");
            require(std::strlen(e.link.name.c_str()) == e.link.name.size(),
                    "a name with a NUL");
            require(e.link.present == (h.nlmsg_type == RTM_NEWLINK), "present from DELLINK");
            break;
          case RtnlEvent::Kind::address:
            require(h.nlmsg_type == RTM_NEWADDR || h.nlmsg_type == RTM_DELADDR,
                    "an address event from another message type");
            require(h.nlmsg_len >= NLMSG_LENGTH(sizeof(ifaddrmsg)), "a truncated ifaddrmsg");
            break;
          case RtnlEvent::Kind::other:
            require(h.nlmsg_type != RTM_NEWLINK && h.nlmsg_type != RTM_DELLINK &&
                        h.nlmsg_type != RTM_NEWADDR && h.nlmsg_type != RTM_DELADDR,
                    "a link or address message ignored");
            break;
          case RtnlEvent::Kind::malformed:
            break;
        }
        off += NLMSG_ALIGN(h.nlmsg_len);
      });
  require(walked <= size / sizeof(nlmsghdr), "more messages than fit");
  return 0;
}
