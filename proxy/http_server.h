// A minimal HTTP/1.x server on the daemon's libuv loop, for GET /metrics and /stats.json.
// One request per connection (Connection: close), request line + headers at most 8 KiB,
// 5 s to send them, at most 32 clients at once; anything else is answered 400/405/431 or
// dropped. It shares the loop with the packet path, so every limit bounds the work one
// client can cause, and nothing blocks.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "proxy/config.h"

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
  static constexpr std::uint64_t kHeaderTimeoutMs = 5000;
  // After the response: how long a client may take to close its end.
  static constexpr std::uint64_t kLingerMs = 2000;
  static constexpr std::size_t kMaxClients = 32;

  // `handler` is called for GET requests only, with the path.
  using Handler = std::function<HttpResponse(std::string_view path)>;

  HttpServer(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; false with `err` (e.g. the port is taken).
  bool start(const ListenAddress& addr, std::string& err);
  // Closes the listener and every client (asynchronously; the loop finishes the closes).
  void stop();
  bool listening() const noexcept { return listener_ != nullptr; }
  std::size_t clients() const noexcept { return clients_.size(); }
  // Connections refused because kMaxClients were open, and clients dropped for being slow.
  std::uint64_t refused() const noexcept { return refused_; }
  std::uint64_t timed_out() const noexcept { return timed_out_; }

  struct Client;  // one connection (http_server.cpp)

 private:
  static void on_connection(uv_stream_t* server, int status);
  void respond(Client* c, const HttpRequest& req);
  void close_client(Client* c);

  uv_loop_t* loop_;
  Handler handler_;
  uv_tcp_t* listener_ = nullptr;  // heap: freed by its close callback
  std::unordered_set<Client*> clients_;
  std::uint64_t refused_ = 0;
  std::uint64_t timed_out_ = 0;

  friend struct ClientOps;
};

// "200 OK", "404 Not Found", …
std::string_view http_reason(int status);

}  // namespace tunshim::proxy
