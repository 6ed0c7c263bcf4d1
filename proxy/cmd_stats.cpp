// `tunshim stats [IFACE | --all] [--json | --watch]` and `tunshim reapply IFACE`: requests
// over the running daemon's control socket (protocol in control_server.h; the stats requests
// in stats_service.cpp), the answer printed.
#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "proxy/commands.h"
#include "proxy/config.h"
#include "proxy/stats_report.h"

namespace tunshim::proxy {
namespace {

// A reapply runs iptables-nft programs; a minute covers a loaded machine.
constexpr int kAnswerTimeoutMs = 60000;

// Set by SIGINT/SIGTERM while `stats --watch` runs.
volatile std::sig_atomic_t g_stop = 0;

// Sends `request` and reads the answer. Returns true with the body of an "ok" answer; false
// with one line (no newline) in `error` otherwise, and `refused` set when that line is the
// daemon's answer (not a failure to reach it). A stop signal (g_stop) ends the wait.
bool request(const std::string& socket_path, const std::string& req, std::string& body,
             std::string& error, bool* refused = nullptr) {
  if (socket_path.size() > kMaxSocketPath) {
    error = "socket path too long: " + socket_path;
    return false;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, socket_path.data(), socket_path.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    const char* hint = (e == EACCES || e == EPERM) ? "the control socket is for root only"
                                                   : "is tunshim running?";
    error = fmt::format("cannot connect to {}: {} \xe2\x80\x94 {}", socket_path,
                        std::strerror(e), hint);
    ::close(fd);
    return false;
  }
  const std::string line = req + "\n";
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
    if (pr < 0 && errno == EINTR) {
      if (g_stop != 0) break;
      continue;
    }
    if (pr == 0) {
      error =
          fmt::format("no answer from {} within {} s", socket_path, kAnswerTimeoutMs / 1000);
      ::close(fd);
      return false;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (answer.rfind("ok\n", 0) == 0) {
    body = answer.substr(3);
    return true;
  }
  if (answer.rfind("error ", 0) == 0) {
    error = answer.substr(6);
    while (!error.empty() && error.back() == '\n') error.pop_back();
    if (refused != nullptr) *refused = true;
    return false;
  }
  // A daemon on its way out may accept and close without a word.
  error = answer.empty()
              ? fmt::format("{} closed the connection without an answer", socket_path)
              : fmt::format("unexpected answer from {} ({} bytes)", socket_path, answer.size());
  return false;
}

// One request, the answer printed: the daemon's exit code for it.
int ask(const std::string& socket_path, const std::string& req) {
  std::string body, error;
  if (!request(socket_path, req, body, error)) {
    std::fprintf(stderr, "tunshim: %s\n", error.c_str());
    return 1;
  }
  std::fwrite(body.data(), 1, body.size(), stdout);
  return 0;
}

void on_stop(int) { g_stop = 1; }

StatsView view_of(const StatsOptions& opt) {
  if (!opt.iface.empty()) return {StatsView::Mode::one, opt.iface};
  return {opt.all ? StatsView::Mode::all : StatsView::Mode::summary, {}};
}

// Sleeps until `deadline` or a stop signal, whichever comes first.
void sleep_until(std::chrono::steady_clock::time_point deadline) {
  while (g_stop == 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<std::time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    ::nanosleep(&ts, nullptr);  // EINTR: the loop looks at g_stop
  }
}

// `stats --watch`: the daemon's JSON every `interval`, shown as the table with rates since
// the previous refresh (the client keeps that snapshot; the daemon keeps nothing per client).
// On a terminal each refresh overwrites the last one in place: cursor home, every line
// followed by erase-to-end-of-line, then erase below, so nothing is blanked between frames
// (no flicker); otherwise plain tables one after another, a blank line between them.
int watch(const StatsOptions& opt) {
  struct sigaction sa {};
  sa.sa_handler = on_stop;  // no SA_RESTART: a sleep or a wait for the daemon ends at once
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const double interval = *opt.watch;
  const auto step = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(interval));
  std::optional<StatsSnapshot> prev;
  auto next = std::chrono::steady_clock::now();
  const StatsView view = view_of(opt);
  // One tunnel: only its row travels (and a tunnel gone is the daemon's refusal).
  const std::string req =
      view.mode == StatsView::Mode::one ? "stats json one " + view.iface : std::string("stats");
  for (unsigned refresh = 0; g_stop == 0; ++refresh) {
    std::string body, error;
    bool refused = false;
    std::optional<StatsSnapshot> s;
    std::string table;
    if (!request(opt.socket, req, body, error, &refused)) {
      if (g_stop != 0) break;
      if (refresh == 0) {
        std::fprintf(stderr, "tunshim: %s\n", error.c_str());
        return 1;
      }
      if (!refused) {
        std::fprintf(stderr, "%stunshim: the daemon went away after %u refresh%s: %s\n",
                     tty ? "\n" : "", refresh, refresh == 1 ? "" : "es", error.c_str());
        return 1;
      }
      // The interface went (a session ended): say so, and keep watching for its return.
      table = fmt::format("every {}s: tunshim stats --watch\n{}\n", interval, error);
    } else {
      s = parse_stats_json(body, error);
      if (!s) {
        std::fprintf(stderr, "tunshim: unreadable answer from %s: %s\n", opt.socket.c_str(),
                     error.c_str());
        return 1;
      }
      // A restarted daemon starts its counters again: rates resume at the next refresh.
      if (prev && prev->start_time != s->start_time) prev.reset();
      const std::string head =
          prev ? fmt::format(
                     "every {}s: tunshim stats --watch; rates per second over the last "
                     "{:.2f} s\n",
                     interval, s->now - prev->now)
               : fmt::format("every {}s: tunshim stats --watch; rates from the next refresh\n",
                             interval);
      table = head + render_table(*s, prev ? &*prev : nullptr, view);
    }
    std::string frame;
    if (tty) {
      frame = refresh == 0 ? "\x1b[H\x1b[2J" : "\x1b[H";
      // Lines cut at the terminal's width: a wrapped line would shift the next frame.
      winsize ws{};
      const std::size_t cols =
          ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 0;
      std::size_t start = 0;
      while (start < table.size()) {
        std::size_t end = table.find('\n', start);
        if (end == std::string::npos) end = table.size();
        std::size_t len = end - start;
        if (cols > 0 && len > cols) len = cols;
        frame.append(table, start, len);
        frame += "\x1b[K\n";
        start = end + 1;
      }
      frame += "\x1b[J";
    } else {
      frame = (refresh == 0 ? "" : "\n") + table;
    }
    std::fwrite(frame.data(), 1, frame.size(), stdout);
    std::fflush(stdout);
    prev = std::move(s);
    // Refreshes keep their cadence; one that took longer than the interval is not caught up.
    next = std::max(next + step, std::chrono::steady_clock::now());
    sleep_until(next);
  }
  return 0;
}

}  // namespace

int cmd_stats(const StatsOptions& opt) {
  if (opt.watch) return watch(opt);
  if (!opt.iface.empty())
    return ask(opt.socket, (opt.json ? "stats json one " : "stats table one ") + opt.iface);
  // JSON carries every tunnel, --all or not, as it always has.
  if (opt.json) return ask(opt.socket, "stats");
  return ask(opt.socket, opt.all ? "stats table all" : "stats table");
}

int cmd_reapply(const ReapplyOptions& opt) { return ask(opt.socket, "reapply " + opt.iface); }

}  // namespace tunshim::proxy
