// `tunshim stats [--json]` and `tunshim reapply IFACE`: one request over the running
// daemon's control socket (protocol in control_server.h), the answer printed.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "proxy/commands.h"
#include "proxy/config.h"

namespace tunshim::proxy {
namespace {

// A reapply runs iptables-nft programs; a minute covers a loaded machine.
constexpr int kAnswerTimeoutMs = 60000;

// Sends `request` and returns the daemon's exit code for it, printing the answer.
int ask(const std::string& socket_path, const std::string& request) {
  if (socket_path.size() > kMaxSocketPath) {
    std::fprintf(stderr, "tunshim: socket path too long: %s\n", socket_path.c_str());
    return 1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "tunshim: socket: %s\n", std::strerror(errno));
    return 1;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, socket_path.data(), socket_path.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    const char* hint = (e == EACCES || e == EPERM) ? "the control socket is for root only"
                                                   : "is tunshim running?";
    std::fprintf(stderr, "tunshim: cannot connect to %s: %s \xe2\x80\x94 %s\n",
                 socket_path.c_str(), std::strerror(e), hint);
    ::close(fd);
    return 1;
  }
  const std::string line = request + "\n";
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a refusal closes early: its answer is still readable below
    off += static_cast<std::size_t>(n);
  }
  std::string answer;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int pr = ::poll(&p, 1, kAnswerTimeoutMs);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) {
      std::fprintf(stderr, "tunshim: no answer from %s within %d s\n", socket_path.c_str(),
                   kAnswerTimeoutMs / 1000);
      ::close(fd);
      return 1;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (answer.rfind("ok\n", 0) == 0) {
    std::fwrite(answer.data() + 3, 1, answer.size() - 3, stdout);
    return 0;
  }
  if (answer.rfind("error ", 0) == 0) {
    std::fprintf(stderr, "tunshim: %s", answer.c_str() + 6);
    if (answer.back() != '\n') std::fputc('\n', stderr);
    return 1;
  }
  std::fprintf(stderr, "tunshim: unexpected answer from %s (%zu bytes)\n", socket_path.c_str(),
               answer.size());
  return 1;
}

}  // namespace

int cmd_stats(const StatsOptions& opt) {
  return ask(opt.socket, opt.json ? "stats" : "stats table");
}

int cmd_reapply(const ReapplyOptions& opt) { return ask(opt.socket, "reapply " + opt.iface); }

}  // namespace tunshim::proxy
