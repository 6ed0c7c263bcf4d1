// The client plumbing shared by the HTTP stats server and the control socket: a listener on
// the daemon's loop, and clients that can never hold it.
//
// Every client is bounded in count and in time:
//   - at most max_clients at once; a new connection at the limit evicts the oldest client
//     that has not been answered yet (or an answered one still lingering), so a flood of
//     idle connections cannot lock out a normal client: its own connection is the freshest
//   - its request must be complete within `deadline_ms` of the accept, at most `max_request`
//     bytes, and once it has started, with no pause longer than `idle_ms` (a slow drip)
//   - its answer must be taken within `write_ms`; then it may linger `linger_ms` to close
// Clients dropped for any of these are counted by reason and logged, rate-limited.
//
// The protocol on top decides when a request is complete (`Framing`) and answers it, now or
// later, with reply(id, bytes); the server then half-closes and lets the client close.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "keepalive/token_bucket.h"
#include "proxy/metrics.h"
#include "proxy/uv_handle.h"

namespace tunshim::proxy {

class StreamServer {
 public:
  // The kernel's accept queue: deep enough that a burst of connections (which the loop
  // accepts and evicts quickly) does not make it drop a normal client's SYN, which would
  // cost that client a 1 s retransmission.
  static constexpr int kBacklog = 1024;
  struct Limits {
    std::size_t max_clients = 32;
    std::size_t max_request = 8192;
    std::uint64_t deadline_ms = 5000;
    std::uint64_t idle_ms = 2000;
    std::uint64_t reply_ms = 5000;  // from a complete request to reply() being called
    std::uint64_t write_ms = 5000;
    std::uint64_t linger_ms = 2000;
  };
  using ClientId = std::uint64_t;
  enum class Frame : std::uint8_t { incomplete, complete };
  // Whether `in` (everything received; `eof` once the client half-closed) is a complete
  // request. Past max_request the server dispatches it anyway; the protocol answers that.
  using Framing = std::function<Frame(std::string_view in, bool eof)>;
  // A complete request; answer with reply(id, …), at once or later.
  using RequestFn = std::function<void(ClientId id, std::string_view request)>;
  // Called for each accepted connection with its descriptor; returning a string answers
  // with it and closes (a refusal), counted as refused.
  using AcceptFn = std::function<std::optional<std::string>(ClientId id, int fd)>;

  StreamServer(uv_loop_t* loop, std::string name, Limits limits, Framing framing,
               RequestFn on_request, AcceptFn on_accept = {});
  ~StreamServer();
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  // Takes a bound listener and listens on it; libuv's error code on failure.
  int listen(UvHandle<uv_tcp_t> listener, int backlog);
  int listen(UvHandle<uv_pipe_t> listener, int backlog);
  // Closes the listener and every client (not counted as drops).
  void stop();
  bool listening() const noexcept { return tcp_listener_ || pipe_listener_; }

  // Sends `bytes` to client `id`, then half-closes. Ignored when the client is gone.
  void reply(ClientId id, std::string bytes);
  bool has_client(ClientId id) const noexcept { return clients_.count(id) != 0; }
  std::size_t clients() const noexcept { return clients_.size(); }
  const ClientDrops& drops() const noexcept { return drops_; }
  const Limits& limits() const noexcept { return limits_; }
  const std::string& name() const noexcept { return name_; }

  struct Client;  // stream_server.cpp

 private:
  friend struct StreamOps;
  void accept(uv_stream_t* listener);
  bool make_room();
  void drop(Client* c, std::uint64_t ClientDrops::*reason, const char* why);
  void close_client(Client* c);
  void dispatch(Client* c);
  // Request bytes arrived; true when they completed it (then dispatched).
  bool received(Client* c, const char* data, std::size_t n);
  void arm_read_timer(Client* c);

  uv_loop_t* loop_;
  std::string name_;
  Limits limits_;
  Framing framing_;
  RequestFn on_request_;
  AcceptFn on_accept_;
  UvHandle<uv_tcp_t> tcp_listener_;
  UvHandle<uv_pipe_t> pipe_listener_;
  // By id, and ids grow with accept time: begin() is the oldest.
  std::map<ClientId, Client*> clients_;
  ClientId next_id_ = 1;
  ClientDrops drops_;
  keepalive::TokenBucket log_limit_;
};

}  // namespace tunshim::proxy
