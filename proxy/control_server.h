// The root-only control socket (`tunshim stats`, `tunshim reapply`): a unix stream socket
// created 0600 (umask around bind, so there is no moment it is open to others), and each
// peer's uid checked with SO_PEERCRED, so a process that got past the file mode (e.g. with
// CAP_DAC_OVERRIDE) is refused anyway.
//
// Protocol: one request line per connection ("stats", "stats table", "reapply IFACE");
// the answer is "ok\n" followed by the body, or "error MESSAGE\n"; then the server closes.
// Clients are bounded as the HTTP server's are (stream_server.h): at most 16, the line
// within 5 s with no pause over 2 s once begun, a new connection at the limit evicting the
// oldest idle one, so a pile of idle connections never locks out `tunshim reapply` from ppp's
// ip-up.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/stream_server.h"

namespace tunshim::proxy {

class ControlServer {
 public:
  static constexpr std::size_t kMaxLine = 1024;
  static constexpr std::uint64_t kTimeoutMs = 5000;        // to send the request line
  static constexpr std::uint64_t kIdleMs = 2000;           // between two of its bytes
  static constexpr std::uint64_t kReplyTimeoutMs = 60000;  // for a slow command's answer
  static constexpr std::size_t kMaxClients = 16;

  // Sends the answer; may be called later (a reapply runs programs), at most once.
  // Dropped silently if the client has gone meanwhile.
  using Reply = std::function<void(bool ok, std::string body)>;
  using Handler = std::function<void(std::string_view line, Reply reply)>;

  ControlServer(uv_loop_t* loop, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Creates the socket at `path`. A stale socket file (nobody listening: a crashed run) is
  // replaced; a live one (another tunshim, e.g. in another network namespace) or a file
  // that is not a socket is left alone and start() fails with `err`.
  bool start(const std::string& path, std::string& err);
  // Closes everything and removes the socket file if it is still the one we created.
  void stop();
  const std::string& path() const noexcept { return path_; }
  bool listening() const noexcept { return server_.listening(); }
  const ClientDrops& drops() const noexcept { return server_.drops(); }

  // The request line of what a client sent (`eof`: it half-closed), if complete: up to the
  // first newline, or all of it at EOF ("stats" sent by printf). Pure; for tests and fuzzing.
  static std::optional<std::string> request_line(std::string_view in, bool eof);
  // The bytes sent back for an answer.
  static std::string format_answer(bool ok, const std::string& body);

 private:
  void on_request(StreamServer::ClientId id, std::string_view in);
  std::optional<std::string> check_peer(int fd);

  uv_loop_t* loop_;
  Handler handler_;
  StreamServer server_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::uint64_t last_refusal_log_ = 0;
  // Replies hold a weak reference: one arriving after this server is gone is dropped.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace tunshim::proxy
