// A minimal HTTP/1.x server on the daemon's libuv loop, for GET /metrics and /stats.json.
// One request per connection (Connection: close), request line + headers at most 8 KiB,
// sent within 5 s and with no pause over 2 s once begun, at most 32 clients at once (a new one
// evicts the oldest still sending), 5 s to read the answer (stream_server.h); anything else is
// answered 400/405/431 or dropped. It shares the loop with the packet path, so every limit
// bounds the work one client can cause, and nothing blocks.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "proxy/config.h"
#include "proxy/stream_server.h"

namespace tunshim::proxy {

// What a request's head says, once complete.
struct HttpRequest {
  enum class Parse : std::uint8_t { incomplete, ok, bad };
  Parse parse = Parse::incomplete;
  std::string method;
  std::string path;  // without the query string
};

// Parses the bytes received so far. `ok` once the blank line ending the headers is in
// `data` and the request line is METHOD SP /TARGET SP HTTP/1.0|1.1; `bad` for anything
// else that is complete (or a first line that can already be seen to be wrong).
HttpRequest parse_http_request(std::string_view data);

struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::string body;
};

class HttpServer {
 public:
  static constexpr std::size_t kMaxRequest = 8192;
  static constexpr std::uint64_t kHeaderTimeoutMs = 5000;  // the whole head
  static constexpr std::uint64_t kIdleMs = 2000;           // between two of its bytes
  static constexpr std::uint64_t kWriteTimeoutMs = 5000;   // to read the answer
  // After the response: how long a client may take to close its end.
  static constexpr std::uint64_t kLingerMs = 2000;
  static constexpr std::size_t kMaxClients = 32;

  // `handler` is called for GET requests only, with the path.
  using Handler = std::function<HttpResponse(std::string_view path)>;

  HttpServer(uv_loop_t* loop, Handler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; false with `err` (e.g. the port is taken).
  bool start(const ListenAddress& addr, std::string& err);
  // Closes the listener and every client (asynchronously; the loop finishes the closes).
  void stop() { server_.stop(); }
  bool listening() const noexcept { return server_.listening(); }
  std::size_t clients() const noexcept { return server_.clients(); }
  const ClientDrops& drops() const noexcept { return server_.drops(); }

  // The complete answer to a request head as received (ok or bad: see parse_http_request;
  // `too_large` past kMaxRequest). Pure but for `handler`; exposed for tests and fuzzing.
  static std::string respond(const HttpRequest& req, bool too_large, const Handler& handler);

 private:
  uv_loop_t* loop_;
  Handler handler_;
  StreamServer server_;
};

// "200 OK", "404 Not Found", …
std::string_view http_reason(int status);

}  // namespace tunshim::proxy
