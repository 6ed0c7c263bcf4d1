#include "proxy/stream_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <utility>

namespace tunshim::proxy {
namespace {

keepalive::Timestamp stamp(uv_loop_t* loop) {
  return keepalive::Timestamp::from_ms(static_cast<std::int64_t>(uv_now(loop)));
}

// Drop lines: a few at once, then one a second, with the count of those not logged.
constexpr std::uint32_t kLogRate = 1;
constexpr std::uint32_t kLogBurst = 5;

}  // namespace

struct StreamServer::Client {
  enum class Phase : std::uint8_t { reading, dispatched, writing, lingering };

  StreamServer* server = nullptr;
  ClientId id = 0;
  UvHandle<uv_tcp_t> tcp;
  UvHandle<uv_pipe_t> pipe;
  UvTimer timer;
  std::string in;
  Phase phase = Phase::reading;
  std::uint64_t accepted_at = 0;
  std::uint64_t last_byte_at = 0;
  char rx[2048];

  // A write in flight outlives a client closed under it (libuv calls it back with
  // UV_ECANCELED after the close), so it points at the client only while that lives.
  struct Write {
    uv_write_t req{};
    std::string out;
    Client* client = nullptr;
  };
  Write* write = nullptr;

  ~Client() {
    if (write != nullptr) write->client = nullptr;
  }
  uv_stream_t* stream() const noexcept { return tcp ? tcp.stream() : pipe.stream(); }
  uv_handle_t* handle() const noexcept { return tcp ? tcp.handle() : pipe.handle(); }
};

// libuv callbacks; a struct so they can reach StreamServer's private parts as a friend.
struct StreamOps {
  using Client = StreamServer::Client;

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* c = static_cast<Client*>(h->data);
    *buf = uv_buf_init(c->rx, sizeof c->rx);
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Client*>(s->data);
    StreamServer* srv = c->server;
    if (c->phase != Client::Phase::reading) {
      // After the request: input is discarded; its end (or an error) closes the client.
      if (n < 0) srv->close_client(c);
      return;
    }
    if (n < 0) {
      if (n == UV_EOF && !c->in.empty() &&
          srv->framing_(c->in, true) == StreamServer::Frame::complete)
        return srv->dispatch(c);
      return srv->close_client(c);  // hung up without a request: nothing to count
    }
    if (n > 0) srv->received(c, buf->base, static_cast<std::size_t>(n));
  }

  static void on_connection(uv_stream_t* listener, int status) {
    auto* srv = static_cast<StreamServer*>(listener->data);
    if (status < 0) {
      spdlog::debug("{}: accept: {}", srv->name_, uv_strerror(status));
      return;
    }
    srv->accept(listener);
  }

  static void on_written(uv_write_t* req, int status) {
    auto* w = static_cast<Client::Write*>(req->data);
    Client* c = w->client;
    delete w;
    if (c == nullptr) return;  // closed meanwhile
    c->write = nullptr;
    StreamServer* srv = c->server;
    if (status < 0) return srv->close_client(c);
    // Half-close and wait for the client to close its end: closing with unread input
    // would send a RST that can destroy the answer before the client reads it.
    auto* sd = new uv_shutdown_t{};
    if (uv_shutdown(sd, c->stream(), [](uv_shutdown_t* r, int) { delete r; }) != 0) {
      delete sd;
      return srv->close_client(c);
    }
    c->phase = Client::Phase::lingering;
    uv_read_start(c->stream(), on_alloc, on_read);
    c->timer.start(srv->limits_.linger_ms, [srv, c] { srv->close_client(c); });
  }
};

StreamServer::StreamServer(uv_loop_t* loop, std::string name, Limits limits, Framing framing,
                           RequestFn on_request, AcceptFn on_accept)
    : loop_(loop),
      name_(std::move(name)),
      limits_(limits),
      framing_(std::move(framing)),
      on_request_(std::move(on_request)),
      on_accept_(std::move(on_accept)),
      log_limit_(kLogRate, kLogBurst, stamp(loop)) {}

StreamServer::~StreamServer() { stop(); }

int StreamServer::listen(UvHandle<uv_tcp_t> listener, int backlog) {
  listener->data = this;
  const int rc = uv_listen(listener.stream(), backlog, StreamOps::on_connection);
  if (rc == 0) tcp_listener_ = std::move(listener);
  return rc;
}

int StreamServer::listen(UvHandle<uv_pipe_t> listener, int backlog) {
  listener->data = this;
  const int rc = uv_listen(listener.stream(), backlog, StreamOps::on_connection);
  if (rc == 0) pipe_listener_ = std::move(listener);
  return rc;
}

void StreamServer::stop() {
  tcp_listener_.reset();
  pipe_listener_.reset();
  while (!clients_.empty()) close_client(clients_.begin()->second);
}

void StreamServer::accept(uv_stream_t* listener) {
  auto c = std::make_unique<Client>();
  c->server = this;
  c->id = next_id_++;
  int rc = 0;
  if (tcp_listener_ && listener == tcp_listener_.stream()) {
    rc = c->tcp.init(loop_, uv_tcp_init);
  } else {
    rc = c->pipe.init(loop_, uv_pipe_init, 0);
  }
  // Always accepted, even to be closed at once: a connection left in the backlog would
  // make libuv stop accepting.
  if (rc != 0 || uv_accept(listener, c->stream()) != 0) return;  // closed by ~Client
  c->handle()->data = c.get();
  if (clients_.size() >= limits_.max_clients && !make_room()) {
    ++drops_.refused;
    if (log_limit_.allow(stamp(loop_))) {
      spdlog::warn("{}: refused a client: {} clients, all busy; {} more not logged", name_,
                   clients_.size(), log_limit_.take_suppressed());
    }
    return;  // closed by ~Client
  }
  c->accepted_at = c->last_byte_at = uv_now(loop_);
  c->timer.init(loop_);
  Client* raw = c.release();
  clients_.emplace(raw->id, raw);
  if (on_accept_) {
    int fd = -1;
    uv_fileno(raw->handle(), &fd);
    if (auto refusal = on_accept_(raw->id, fd)) {
      ++drops_.refused;
      raw->phase = Client::Phase::dispatched;
      return reply(raw->id, std::move(*refusal));
    }
  }
  // What the client sent with its connect is read now: a complete request is answered
  // before later connections in the same burst could evict it.
  int fd = -1;
  if (uv_fileno(raw->handle(), &fd) == 0) {
    const ssize_t n = ::recv(fd, raw->rx, sizeof raw->rx, MSG_DONTWAIT);
    if (n > 0 && received(raw, raw->rx, static_cast<std::size_t>(n))) return;
  }
  arm_read_timer(raw);
  uv_read_start(raw->stream(), StreamOps::on_alloc, StreamOps::on_read);
}

bool StreamServer::received(Client* c, const char* data, std::size_t n) {
  c->in.append(data, n);
  c->last_byte_at = uv_now(loop_);
  if (c->in.size() > limits_.max_request || framing_(c->in, false) == Frame::complete) {
    dispatch(c);
    return true;
  }
  arm_read_timer(c);
  return false;
}

// At the client limit: an answered client still lingering goes first (it costs nothing to
// close), else the oldest one still sending its request (idle connections are the oldest
// under a flood; a normal client's request completes right after its connect). A client
// whose request is being answered is never evicted.
bool StreamServer::make_room() {
  for (auto& [id, c] : clients_) {
    if (c->phase == Client::Phase::lingering) {
      close_client(c);
      return true;
    }
  }
  for (auto& [id, c] : clients_) {
    if (c->phase == Client::Phase::reading) {
      drop(c, &ClientDrops::evicted, "evicted: client limit reached");
      return true;
    }
  }
  return false;
}

void StreamServer::arm_read_timer(Client* c) {
  const std::uint64_t now = uv_now(loop_);
  // The idle bound starts with the first byte: one that sends nothing has the deadline.
  const std::uint64_t idle_at = c->in.empty() ? UINT64_MAX : c->last_byte_at + limits_.idle_ms;
  const std::uint64_t deadline_at = c->accepted_at + limits_.deadline_ms;
  const std::uint64_t at = std::min(idle_at, deadline_at);
  c->timer.start(at > now ? at - now : 0, [this, c, idle_at, deadline_at] {
    if (uv_now(loop_) >= deadline_at || deadline_at <= idle_at) {
      drop(c, &ClientDrops::deadline, "request not complete in time");
    } else {
      drop(c, &ClientDrops::idle, "idle");
    }
  });
}

void StreamServer::drop(Client* c, std::uint64_t ClientDrops::*reason, const char* why) {
  ++(drops_.*reason);
  if (log_limit_.allow(stamp(loop_))) {
    spdlog::warn("{}: dropped a client ({}); {} dropped in all, {} more not logged", name_, why,
                 drops_.total(), log_limit_.take_suppressed());
  }
  close_client(c);
}

void StreamServer::dispatch(Client* c) {
  c->phase = Client::Phase::dispatched;
  uv_read_stop(c->stream());
  // Our own answer may take a while (a reapply runs programs); not the client's fault.
  c->timer.start(limits_.reply_ms, [this, c] {
    spdlog::warn("{}: no answer within {} ms; closing the client", name_, limits_.reply_ms);
    close_client(c);
  });
  const ClientId id = c->id;
  // Past the limit the protocol sees max_request + 1 bytes: enough to tell it is too large.
  const std::string_view req = std::string_view(c->in).substr(0, limits_.max_request + 1);
  on_request_(id, req);  // may reply (and so close) at once
}

void StreamServer::reply(ClientId id, std::string bytes) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;  // gone (timed out, hung up, server stopped)
  Client* c = it->second;
  if (c->phase == Client::Phase::writing || c->phase == Client::Phase::lingering) return;
  c->phase = Client::Phase::writing;
  uv_read_stop(c->stream());
  auto* w = new Client::Write();
  w->out = std::move(bytes);
  w->client = c;
  w->req.data = w;
  c->write = w;
  uv_buf_t b = uv_buf_init(w->out.data(), static_cast<unsigned>(w->out.size()));
  c->timer.start(limits_.write_ms,
                 [this, c] { drop(c, &ClientDrops::unread, "did not read its answer"); });
  if (uv_write(&w->req, c->stream(), &b, 1, StreamOps::on_written) != 0) {
    c->write = nullptr;
    delete w;
    close_client(c);
  }
}

void StreamServer::close_client(Client* c) {
  clients_.erase(c->id);
  delete c;  // its handles close; their memory goes with their close callbacks
}

}  // namespace tunshim::proxy
