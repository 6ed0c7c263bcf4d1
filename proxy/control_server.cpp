#include "proxy/control_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tunshim::proxy {

struct ControlServer::Client {
  ControlServer* server = nullptr;
  std::uint64_t id = 0;
  uv_pipe_t pipe{};
  uv_timer_t timer{};
  uv_write_t write_req{};
  std::string in;
  std::string out;
  char rx[512];
  int open_handles = 2;
  bool dispatched = false;
  bool closing = false;
};

struct ControlOps {
  using Client = ControlServer::Client;

  static void on_handle_closed(uv_handle_t* h) {
    auto* c = static_cast<Client*>(h->data);
    if (--c->open_handles == 0) delete c;
  }
  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* c = static_cast<Client*>(h->data);
    *buf = uv_buf_init(c->rx, sizeof c->rx);
  }
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<Client*>(s->data);
    if (c->dispatched) return;
    if (nread < 0) {
      // EOF right after a request without its newline ("stats" via printf) still counts.
      if (nread == UV_EOF && !c->in.empty()) return c->server->dispatch(c);
      return c->server->close_client(c);
    }
    c->in.append(buf->base, static_cast<std::size_t>(nread));
    if (c->in.find('\n') != std::string::npos) return c->server->dispatch(c);
    if (c->in.size() > ControlServer::kMaxLine)
      c->server->answer(c->id, false, "request line too long");
  }
  static void on_timer(uv_timer_t* t) {
    auto* c = static_cast<Client*>(t->data);
    c->server->close_client(c);
  }
  static void on_written(uv_write_t* req, int) {
    auto* c = static_cast<Client*>(req->data);
    c->server->close_client(c);
  }
};

namespace {

// Whether something accepts connections on the unix socket at `path`.
bool socket_alive(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  const int e = errno;
  ::close(fd);
  // EAGAIN: a listener whose backlog is full is alive too.
  return rc == 0 || e == EAGAIN || e == EINPROGRESS;
}

}  // namespace

ControlServer::~ControlServer() { stop(); }

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
  auto* p = new uv_pipe_t{};
  uv_pipe_init(loop_, p, 0);
  p->data = this;
  // 0600 from the moment it exists: connecting needs write permission on the file.
  const mode_t old = ::umask(0177);
  int rc = uv_pipe_bind(p, path.c_str());
  ::umask(old);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(p), 16, on_connection);
  if (rc != 0) {
    err = path + ": " + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(p),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    return false;
  }
  if (::stat(path.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  listener_ = p;
  path_ = path;
  return true;
}

void ControlServer::stop() {
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    // Only our own file: another instance may have replaced it since (after a stale check).
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
      ::unlink(path_.c_str());
  }
  while (!clients_.empty()) close_client(clients_.begin()->second);
}

void ControlServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<ControlServer*>(server->data);
  if (status < 0) return;
  auto* c = new Client{};
  c->server = self;
  c->id = self->next_id_++;
  uv_pipe_init(self->loop_, &c->pipe, 0);
  uv_timer_init(self->loop_, &c->timer);
  c->pipe.data = c;
  c->timer.data = c;
  c->write_req.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0 ||
      self->clients_.size() >= kMaxClients) {
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), ControlOps::on_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), ControlOps::on_handle_closed);
    return;
  }
  self->clients_[c->id] = c;
  uv_timer_start(&c->timer, ControlOps::on_timer, kTimeoutMs, 0);

  uv_os_fd_t fd = -1;
  ucred cred{};
  socklen_t len = sizeof cred;
  const bool have_cred = uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) == 0 &&
                         ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  if (!have_cred || cred.uid != 0) {
    const std::uint64_t now = uv_now(self->loop_);
    if (now - self->last_refusal_log_ >= 10000 ||
        self->last_refusal_log_ == 0) {  // no log flood
      self->last_refusal_log_ = now;
      spdlog::warn("control socket: refused pid {} uid {} (root only)", cred.pid,
                   have_cred ? std::to_string(cred.uid) : "?");
    }
    self->answer(c->id, false,
                 have_cred ? "permission denied: the control socket is for root only (uid " +
                                 std::to_string(cred.uid) + ")"
                           : "permission denied: cannot read peer credentials");
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), ControlOps::on_alloc,
                ControlOps::on_read);
}

void ControlServer::dispatch(Client* c) {
  c->dispatched = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
  std::string line = c->in.substr(0, c->in.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  uv_timer_start(&c->timer, ControlOps::on_timer, kReplyTimeoutMs, 0);
  const std::uint64_t id = c->id;
  std::weak_ptr<int> alive = alive_;
  handler_(line, [this, id, alive](bool ok, std::string body) {
    if (!alive.expired()) answer(id, ok, body);
  });
}

void ControlServer::answer(std::uint64_t id, bool ok, const std::string& body) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;  // gone (timed out, hung up, server stopped)
  Client* c = it->second;
  if (!c->out.empty()) return;  // answered already
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
  c->dispatched = true;
  c->out = ok ? "ok\n" + body : "error " + body + "\n";
  uv_buf_t b = uv_buf_init(c->out.data(), static_cast<unsigned>(c->out.size()));
  uv_timer_start(&c->timer, ControlOps::on_timer, kTimeoutMs, 0);
  if (uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->pipe), &b, 1,
               ControlOps::on_written) != 0) {
    close_client(c);
  }
}

void ControlServer::close_client(Client* c) {
  if (c->closing) return;
  c->closing = true;
  clients_.erase(c->id);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), ControlOps::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), ControlOps::on_handle_closed);
}

}  // namespace tunshim::proxy
