#include "proxy/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tunshim::proxy {

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

HttpServer::HttpServer(uv_loop_t* loop, Handler handler)
    : loop_(loop),
      handler_(std::move(handler)),
      server_(
          loop, "stats http",
          StreamServer::Limits{kMaxClients, kMaxRequest, kHeaderTimeoutMs, kIdleMs,
                               kHeaderTimeoutMs, kWriteTimeoutMs, kLingerMs},
          [](std::string_view in, bool) {
            return parse_http_request(in).parse == HttpRequest::Parse::incomplete
                       ? StreamServer::Frame::incomplete
                       : StreamServer::Frame::complete;
          },
          [this](StreamServer::ClientId id, std::string_view in) {
            const bool too_large = in.size() > kMaxRequest;
            server_.reply(id, respond(too_large ? HttpRequest{} : parse_http_request(in),
                                      too_large, handler_));
          }) {}

bool HttpServer::start(const ListenAddress& addr, std::string& err) {
  sockaddr_storage sa{};
  int rc = addr.ipv6
               ? uv_ip6_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(&sa))
               : uv_ip4_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(&sa));
  UvHandle<uv_tcp_t> l;
  if (rc == 0) rc = l.init(loop_, uv_tcp_init);
  if (rc == 0)
    rc = uv_tcp_bind(l.get(), reinterpret_cast<const sockaddr*>(&sa),
                     addr.ipv6 ? static_cast<unsigned>(UV_TCP_IPV6ONLY) : 0U);
  if (rc == 0) rc = server_.listen(std::move(l), StreamServer::kBacklog);
  if (rc != 0) {
    err = fmt::format("{}:{}: {}", addr.ipv6 ? "[" + addr.host + "]" : addr.host, addr.port,
                      uv_strerror(rc));
    return false;
  }
  return true;
}

std::string HttpServer::respond(const HttpRequest& req, bool too_large,
                                const Handler& handler) {
  HttpResponse res;
  std::string extra;
  if (too_large) {
    res.status = 431;
    res.body = "request too large\n";
  } else if (req.parse != HttpRequest::Parse::ok) {
    res.status = 400;
    res.body = "bad request\n";
  } else if (req.method != "GET") {
    res.status = 405;
    res.body = "only GET\n";
    extra = "Allow: GET\r\n";
  } else {
    res = handler(req.path);
  }
  if (res.content_type.empty()) res.content_type = "text/plain; charset=utf-8";
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
      res.status, http_reason(res.status), res.content_type, res.body.size(), extra);
  return out + res.body;
}

}  // namespace tunshim::proxy
