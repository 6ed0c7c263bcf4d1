#include "proxy/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tunshim::proxy {

struct HttpServer::Client {
  HttpServer* server = nullptr;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_write_t write_req{};
  uv_shutdown_t shutdown_req{};
  std::string in;
  std::string out;
  char rx[2048];
  int open_handles = 2;  // tcp and timer; the client is freed when both have closed
  bool responded = false;
  bool closing = false;
};

// libuv callbacks; a struct so they can reach HttpServer's private parts as a friend.
struct ClientOps {
  using Client = HttpServer::Client;

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
    if (nread < 0) {  // EOF or error: nothing more will come
      c->server->close_client(c);
      return;
    }
    if (c->responded || nread == 0) return;  // after the response, input is discarded
    c->in.append(buf->base, static_cast<std::size_t>(nread));
    HttpRequest req;
    if (c->in.size() > HttpServer::kMaxRequest) {
      // Checked before parsing: a head that completes only past the limit is too large too.
      req.parse = HttpRequest::Parse::bad;
      req.method = "431";  // marker: too large rather than malformed
    } else {
      req = parse_http_request(c->in);
      if (req.parse == HttpRequest::Parse::incomplete) return;
    }
    c->server->respond(c, req);
  }

  static void on_timer(uv_timer_t* t) {
    auto* c = static_cast<Client*>(t->data);
    if (!c->responded) ++c->server->timed_out_;
    c->server->close_client(c);
  }

  static void on_shutdown(uv_shutdown_t* req, int) {
    (void)req;  // the client's own EOF (or the linger timer) closes it
  }

  static void on_written(uv_write_t* req, int status) {
    auto* c = static_cast<Client*>(req->data);
    if (c->closing) return;
    if (status < 0) {
      c->server->close_client(c);
      return;
    }
    // Half-close and wait for the client to close its end: closing with unread input
    // would send a RST that can destroy the response before the client reads it.
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, reinterpret_cast<uv_stream_t*>(&c->tcp), on_shutdown) !=
        0) {
      c->server->close_client(c);
      return;
    }
    uv_timer_start(&c->timer, on_timer, HttpServer::kLingerMs, 0);
  }
};

namespace {

bool is_token_char(char c) { return c >= 'A' && c <= 'Z'; }
constexpr std::size_t kMaxMethod = 16;  // longer than any method a client would send

}  // namespace

HttpRequest parse_http_request(std::string_view data) {
  HttpRequest r;
  const std::size_t eol = data.find('\n');
  if (eol == std::string_view::npos) {
    // Not a line yet; but a method that is not one already makes it garbage.
    const std::string_view method = data.substr(0, data.find(' '));
    bool ok = method.size() <= kMaxMethod;
    for (char c : method) ok = ok && is_token_char(c);
    if (!ok) r.parse = HttpRequest::Parse::bad;
    return r;
  }
  std::string_view line = data.substr(0, eol);
  if (line.ends_with('\r')) line.remove_suffix(1);
  // The head ends at the first empty line (CRLF CRLF, or bare LF LF from a lenient client).
  std::size_t pos = eol + 1;
  bool complete = false;
  while (pos < data.size()) {
    const std::size_t next = data.find('\n', pos);
    if (next == std::string_view::npos) break;
    std::string_view h = data.substr(pos, next - pos);
    if (h.ends_with('\r')) h.remove_suffix(1);
    if (h.empty()) {
      complete = true;
      break;
    }
    if (h.find(':') == std::string_view::npos) {
      r.parse = HttpRequest::Parse::bad;
      return r;
    }
    pos = next + 1;
  }
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0) {
    r.parse = HttpRequest::Parse::bad;
    return r;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  bool ok = version == "HTTP/1.1" || version == "HTTP/1.0";
  for (char c : method) ok = ok && is_token_char(c);
  ok = ok && !target.empty() && target[0] == '/';
  for (char c : target) ok = ok && c > ' ' && c < 0x7f;
  if (!ok) {
    r.parse = HttpRequest::Parse::bad;
    return r;
  }
  if (!complete) return r;
  r.parse = HttpRequest::Parse::ok;
  r.method = method;
  r.path = target.substr(0, target.find('?'));
  return r;
}

std::string_view http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Unknown";
  }
}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::start(const ListenAddress& addr, std::string& err) {
  sockaddr_storage sa{};
  int rc = addr.ipv6
               ? uv_ip6_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(&sa))
               : uv_ip4_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(&sa));
  auto* l = new uv_tcp_t{};
  uv_tcp_init(loop_, l);
  l->data = this;
  if (rc == 0)
    rc = uv_tcp_bind(l, reinterpret_cast<const sockaddr*>(&sa),
                     addr.ipv6 ? static_cast<unsigned>(UV_TCP_IPV6ONLY) : 0U);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(l), 64, on_connection);
  if (rc != 0) {
    err = fmt::format("{}:{}: {}", addr.ipv6 ? "[" + addr.host + "]" : addr.host, addr.port,
                      uv_strerror(rc));
    uv_close(reinterpret_cast<uv_handle_t*>(l),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    return false;
  }
  listener_ = l;
  return true;
}

void HttpServer::stop() {
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  while (!clients_.empty()) close_client(*clients_.begin());
}

void HttpServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<HttpServer*>(server->data);
  if (status < 0) {
    spdlog::debug("stats http: accept: {}", uv_strerror(status));
    return;
  }
  auto* c = new Client{};
  c->server = self;
  uv_tcp_init(self->loop_, &c->tcp);
  uv_timer_init(self->loop_, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->write_req.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0 ||
      self->clients_.size() >= kMaxClients) {
    // Accepted only to be closed: a full house must not leave connections in the backlog.
    if (self->clients_.size() >= kMaxClients) ++self->refused_;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), ClientOps::on_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), ClientOps::on_handle_closed);
    return;
  }
  self->clients_.insert(c);
  uv_timer_start(&c->timer, ClientOps::on_timer, kHeaderTimeoutMs, 0);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), ClientOps::on_alloc,
                ClientOps::on_read);
}

void HttpServer::respond(Client* c, const HttpRequest& req) {
  c->responded = true;
  HttpResponse res;
  std::string extra;
  if (req.parse == HttpRequest::Parse::bad) {
    res.status = req.method == "431" ? 431 : 400;
    res.body = res.status == 431 ? "request too large\n" : "bad request\n";
  } else if (req.method != "GET") {
    res.status = 405;
    res.body = "only GET\n";
    extra = "Allow: GET\r\n";
  } else {
    res = handler_(req.path);
  }
  if (res.content_type.empty()) res.content_type = "text/plain; charset=utf-8";
  c->out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
      res.status, http_reason(res.status), res.content_type, res.body.size(), extra);
  c->out += res.body;
  uv_buf_t b = uv_buf_init(c->out.data(), static_cast<unsigned>(c->out.size()));
  // The head timer now bounds the write: a client that does not read is dropped with it.
  uv_timer_start(&c->timer, ClientOps::on_timer, kHeaderTimeoutMs, 0);
  if (uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1,
               ClientOps::on_written) != 0) {
    close_client(c);
  }
}

void HttpServer::close_client(Client* c) {
  if (c->closing) return;
  c->closing = true;
  clients_.erase(c);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), ClientOps::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), ClientOps::on_handle_closed);
}

}  // namespace tunshim::proxy
