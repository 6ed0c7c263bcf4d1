#include "proxy/control_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/fd.h"

namespace tunshim::proxy {

namespace {

// Whether something accepts connections on the unix socket at `path`.
bool socket_alive(const std::string& path) {
  const Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  const int e = errno;
  // EAGAIN: a listener whose backlog is full is alive too.
  return rc == 0 || e == EAGAIN || e == EINPROGRESS;
}

}  // namespace

ControlServer::ControlServer(uv_loop_t* loop, Handler handler)
    : loop_(loop),
      handler_(std::move(handler)),
      server_(
          loop, "control socket",
          StreamServer::Limits{kMaxClients, kMaxLine, kTimeoutMs, kIdleMs, kReplyTimeoutMs,
                               kTimeoutMs, kTimeoutMs},
          [](std::string_view in, bool eof) {
            return request_line(in, eof) ? StreamServer::Frame::complete
                                         : StreamServer::Frame::incomplete;
          },
          [this](StreamServer::ClientId id, std::string_view in) { on_request(id, in); },
          [this](StreamServer::ClientId, int fd) { return check_peer(fd); }) {}

ControlServer::~ControlServer() { stop(); }

std::optional<std::string> ControlServer::request_line(std::string_view in, bool eof) {
  const std::size_t nl = in.find('\n');
  if (nl == std::string_view::npos && !eof) return std::nullopt;
  std::string line(in.substr(0, nl));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string ControlServer::format_answer(bool ok, const std::string& body) {
  return ok ? "ok\n" + body : "error " + body + "\n";
}

bool ControlServer::start(const std::string& path, std::string& err) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      err = path + " exists and is not a socket; not replacing it";
      return false;
    }
    if (socket_alive(path)) {
      err = path + " is in use by another process (another tunshim?)";
      return false;
    }
    // A crashed run's socket: nobody listens on it any more.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      err = "cannot remove the stale " + path + ": " + std::strerror(errno);
      return false;
    }
    spdlog::info("control socket: replaced a stale {}", path);
  }
  UvHandle<uv_pipe_t> p;
  int rc = p.init(loop_, uv_pipe_init, 0);
  if (rc == 0) {
    // 0600 from the moment it exists: connecting needs write permission on the file.
    const mode_t old = ::umask(0177);
    rc = uv_pipe_bind(p.get(), path.c_str());
    ::umask(old);
  }
  if (rc == 0) rc = server_.listen(std::move(p), StreamServer::kBacklog);
  if (rc != 0) {
    err = path + ": " + uv_strerror(rc);
    return false;
  }
  if (::stat(path.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  path_ = path;
  return true;
}

void ControlServer::stop() {
  if (server_.listening()) {
    // Only our own file: another instance may have replaced it since (after a stale check).
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
      ::unlink(path_.c_str());
  }
  server_.stop();
}

// SO_PEERCRED: root only, whatever the file mode let through.
std::optional<std::string> ControlServer::check_peer(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  const bool have_cred = fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  if (have_cred && cred.uid == 0) return std::nullopt;
  const std::uint64_t now = uv_now(loop_);
  if (now - last_refusal_log_ >= 10000 || last_refusal_log_ == 0) {  // no log flood
    last_refusal_log_ = now;
    spdlog::warn("control socket: refused pid {} uid {} (root only)", cred.pid,
                 have_cred ? std::to_string(cred.uid) : "?");
  }
  return format_answer(false, have_cred ? "permission denied: the control socket is for root "
                                          "only (uid " +
                                              std::to_string(cred.uid) + ")"
                                        : "permission denied: cannot read peer credentials");
}

void ControlServer::on_request(StreamServer::ClientId id, std::string_view in) {
  // Within the limit, what is there is the request (complete at a newline or at EOF);
  // past it, only a line that ended in time.
  const std::optional<std::string> line = request_line(in, in.size() <= kMaxLine);
  if (!line || line->size() > kMaxLine)
    return server_.reply(id, format_answer(false, "request line too long"));
  std::weak_ptr<int> alive = alive_;
  handler_(*line, [this, id, alive](bool ok, std::string body) {
    if (!alive.expired()) server_.reply(id, format_answer(ok, body));
  });
}

}  // namespace tunshim::proxy
