#include "proxy/queue_watchdog.h"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/close_range.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <new>

#include "proxy/log.h"
#include "proxy/nfqueue.h"

namespace tunshim::proxy {
namespace {

constexpr std::size_t kRxSize = 0xffff + 8192;
constexpr std::size_t kTxSize = 64 * 1024;
// Room for one verdict message (headers and the verdict attribute).
constexpr std::size_t kVerdictRoom = 64;
// Datagrams read per wake-up while passing, so pings and the beat check stay timely.
constexpr int kReadBudget = 256;

std::uint64_t monotonic_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000;
}

void sleep_ms(int ms) noexcept {
  timespec ts{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Serial-number order of 32-bit packet ids (the kernel's own `after()`).
bool id_after(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) > 0;
}

bool send_to_kernel(int fd, const void* buf, std::size_t len) noexcept {
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  for (int i = 0; i < 3; ++i) {
    if (::sendto(fd, buf, len, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) >= 0) {
      return true;
    }
    if (errno != EINTR && errno != EAGAIN && errno != ENOBUFS) break;
  }
  return false;
}

// Closes every descriptor but stdio and the two kept: the watchdog must hold nothing else
// of the daemon's (the rules' lock, sockets, the loop's epoll).
void close_all_but(int a, int b) noexcept {
  int keep[2] = {std::min(a, b), std::max(a, b)};
  unsigned from = 3;
  for (int k : keep) {
    if (k < 3) continue;
    if (static_cast<unsigned>(k) > from) ::syscall(SYS_close_range, from, k - 1, 0U);
    from = static_cast<unsigned>(k) + 1;
  }
  ::syscall(SYS_close_range, from, ~0U, 0U);
}

}  // namespace

QueueWatchdog::~QueueWatchdog() { stop(); }

bool QueueWatchdog::start(uv_loop_t* loop, int queue_fd, std::uint16_t num, std::string& err) {
  stop();
  loop_ = loop;
  queue_fd_ = queue_fd;
  num_ = num;
  journal_ = stderr_is_journal();
  void* page = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    err = std::string("mmap: ") + std::strerror(errno);
    return false;
  }
  shared_ = new (page) Shared{};
  eventfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (eventfd_ < 0) {
    err = std::string("eventfd: ") + std::strerror(errno);
    stop();
    return false;
  }
  rx_.assign(kRxSize, 0);
  tx_.assign(kTxSize, 0);
  reported_ = 0;
  stalls_reported_ = 0;

  std::fflush(nullptr);  // nothing buffered may be written twice
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    err = std::string("fork: ") + std::strerror(errno);
    stop();
    return false;
  }
  if (pid == 0) child_main(parent);
  pid_ = pid;

  // A pidfd tells the loop if the watchdog dies, without touching SIGCHLD (libuv's).
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (const int rc = ping_poll_.init(loop_, uv_poll_init, eventfd_); rc != 0) {
    err = std::string("uv_poll_init: ") + uv_strerror(rc);
    stop();
    return false;
  }
  ping_poll_->data = this;
  uv_poll_start(ping_poll_.get(), UV_READABLE, [](uv_poll_t* p, int status, int) {
    if (status == 0 && p->data != nullptr) static_cast<QueueWatchdog*>(p->data)->on_ping();
  });
  uv_unref(ping_poll_.handle());
  if (pidfd_ >= 0 && exit_poll_.init(loop_, uv_poll_init, pidfd_) == 0) {
    exit_poll_->data = this;
    uv_poll_start(exit_poll_.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
      if (p->data != nullptr) static_cast<QueueWatchdog*>(p->data)->on_exit();
    });
    uv_unref(exit_poll_.handle());
  }
  return true;
}

void QueueWatchdog::stop() noexcept {
  ping_poll_.reset();
  exit_poll_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  for (int* fd : {&pidfd_, &eventfd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (shared_ != nullptr) {
    report();
    shared_->~Shared();
    ::munmap(shared_, sizeof(Shared));
    shared_ = nullptr;
  }
}

void QueueWatchdog::on_ping() noexcept {
  std::uint64_t v = 0;
  while (::read(eventfd_, &v, sizeof v) < 0 && errno == EINTR) {
  }
  beat();
  report();
}

void QueueWatchdog::report() noexcept {
  const std::uint64_t stalls = this->stalls();
  const std::uint64_t passed = this->passed();
  if (stalls == stalls_reported_ && passed == reported_) return;
  spdlog::warn(
      "nfqueue {}: {} packet(s) passed unclamped while the event loop was stalled (the "
      "watchdog answered them; {} stall(s) since start)",
      num_, passed - reported_, stalls);
  reported_ = passed;
  stalls_reported_ = stalls;
}

void QueueWatchdog::on_exit() noexcept {
  int status = 0;
  if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) != pid_) return;
  spdlog::error(
      "nfqueue {}: the stall watchdog (pid {}) {} {}; a stalled event loop now holds new "
      "connections until it resumes",
      num_, pid_, WIFSIGNALED(status) ? "was killed by signal" : "exited with",
      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  pid_ = -1;
  exit_poll_.reset();
  report();
}

// ---- the watchdog process ------------------------------------------------------------------

void QueueWatchdog::say(const char* text) noexcept {
  // Under journald a "<4>" prefix gives the line warning priority (sd-daemon(3)).
  char line[256];
  const int n = std::snprintf(line, sizeof line, "%stunshim-watchdog[%d]: nfqueue %u: %s\n",
                              journal_ ? "<4>" : "", static_cast<int>(::getpid()),
                              static_cast<unsigned>(num_), text);
  if (n > 0) {
    [[maybe_unused]] const ssize_t w =
        ::write(STDERR_FILENO, line,
                std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
  }
}

void QueueWatchdog::child_main(pid_t parent) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);  // the daemon died before the line above
  ::prctl(PR_SET_NAME, "tunshim-wd");
  // The daemon's handlers (libuv's signal pipe) mean nothing here. Terminal signals and
  // reload/report requests meant for the daemon are ignored; the daemon stops us itself.
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &sa, nullptr);
  sa.sa_handler = SIG_IGN;
  for (int s : {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE})
    ::sigaction(s, &sa, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  close_all_but(queue_fd_, eventfd_);

  for (;;) {
    pollfd p{queue_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p.revents & POLLNVAL) != 0) ::_exit(1);
    // A packet is waiting. A live loop drains it within a few milliseconds; give it
    // kStallMs (this sleep also bounds how often a busy queue wakes us).
    const std::uint64_t b0 = shared_->beats.load(std::memory_order_relaxed);
    sleep_ms(kStallMs);
    if (shared_->beats.load(std::memory_order_relaxed) != b0) continue;
    p.revents = 0;
    if (::poll(&p, 1, 0) <= 0 || (p.revents & POLLIN) == 0) continue;
    pass_until_resumed();
  }
}

void QueueWatchdog::pass_until_resumed() noexcept {
  shared_->stalls.fetch_add(1, std::memory_order_relaxed);
  say("event loop stalled: accepting queued packets unclamped until it resumes");
  const std::uint64_t entry = shared_->beats.load(std::memory_order_relaxed);
  std::uint32_t upto = 0;
  const std::uint64_t released = release_all_queued(upto);
  const bool have_upto = released > 0;
  shared_->passed.fetch_add(released, std::memory_order_relaxed);
  const std::uint64_t one = 1;
  std::uint64_t last_ping = 0;
  for (;;) {
    const std::uint64_t now = monotonic_ms();
    if (now - last_ping >= static_cast<std::uint64_t>(kPingMs)) {
      // The loop, once it runs again, beats when it reads this.
      [[maybe_unused]] const ssize_t w = ::write(eventfd_, &one, sizeof one);
      last_ping = now;
    }
    pollfd p{queue_fd_, POLLIN, 0};
    ::poll(&p, 1, kPingMs);
    if (shared_->beats.load(std::memory_order_relaxed) != entry) break;
    shared_->passed.fetch_add(accept_readable(upto, have_upto), std::memory_order_relaxed);
  }
  say("event loop resumed: clamping again");
  [[maybe_unused]] const ssize_t w = ::write(eventfd_, &one, sizeof one);  // final count
}

// Accepts everything the kernel holds for the queue right now, including packets the
// stalled loop read but never answered: one batch verdict up to the last id the kernel
// assigned (/proc/net/netfilter/nfnetlink_queue). Returns how many it released; `upto`
// gets that id.
std::uint64_t QueueWatchdog::release_all_queued(std::uint32_t& upto) noexcept {
  const int fd = ::open("/proc/net/netfilter/nfnetlink_queue", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[8192];
  std::size_t len = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf + len, sizeof buf - 1 - len);
    if (n <= 0) break;
    len += static_cast<std::size_t>(n);
    if (len == sizeof buf - 1) break;
  }
  ::close(fd);
  buf[len] = '\0';
  unsigned q = 0, portid = 0, total = 0, mode = 0, range = 0, qdrop = 0, udrop = 0, idseq = 0;
  bool found = false;
  for (char* line = buf; line != nullptr && *line != '\0';) {
    char* next = std::strchr(line, '\n');
    if (next != nullptr) *next++ = '\0';
    if (std::sscanf(line, "%u %u %u %u %u %u %u %u", &q, &portid, &total, &mode, &range, &qdrop,
                    &udrop, &idseq) == 8 &&
        q == num_) {
      found = true;
      break;
    }
    line = next;
  }
  if (!found || total == 0) return 0;
  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data(), NFQNL_MSG_VERDICT_BATCH, num_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(idseq), NF_ACCEPT);
  if (!send_to_kernel(queue_fd_, nlh, nlh->nlmsg_len)) return 0;
  upto = idseq;
  return total;
}

// Reads what waits on the socket and accepts each packet (newer than `released_upto`,
// which the batch already accepted) with its own verdict, unmodified.
std::uint64_t QueueWatchdog::accept_readable(std::uint32_t released_upto,
                                             bool have_released) noexcept {
  std::uint64_t accepted = 0;
  std::size_t used = 0;
  const auto flush = [&] {
    if (used > 0) send_to_kernel(queue_fd_, tx_.data(), used);
    used = 0;
  };
  for (int i = 0; i < kReadBudget; ++i) {
    const ssize_t n = ::recv(queue_fd_, rx_.data(), rx_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      break;
    }
    for_each_netlink_message(rx_.data(), static_cast<std::size_t>(n), [&](const nlmsghdr* m) {
      const QueueMessage msg = parse_queue_message(m);
      if (msg.kind != QueueMessage::Kind::packet) return;
      if (have_released && !id_after(msg.id, released_upto)) return;
      if (used + kVerdictRoom > tx_.size()) flush();
      nlmsghdr* v = nfq_nlmsg_put(tx_.data() + used, NFQNL_MSG_VERDICT, num_);
      nfq_nlmsg_verdict_put(v, static_cast<int>(msg.id), NF_ACCEPT);
      used += NLMSG_ALIGN(v->nlmsg_len);
      ++accepted;
    });
  }
  flush();
  return accepted;
}

}  // namespace tunshim::proxy
