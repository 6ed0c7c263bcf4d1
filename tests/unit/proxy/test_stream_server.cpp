// StreamServer over real loopback TCP on a private loop: a new client at the limit evicts
// the oldest idle one and is answered; silent, dripping and non-reading clients are dropped
// by their bounds and counted by reason.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "proxy/fd.h"
#include "proxy/stream_server.h"

using tunshim::proxy::Fd;
using tunshim::proxy::StreamServer;
using tunshim::proxy::UvHandle;

namespace {

struct Lab {
  uv_loop_t loop{};
  std::uint16_t port = 0;
  std::unique_ptr<StreamServer> server;
  std::string reply_body = "ok\n";

  explicit Lab(StreamServer::Limits limits) {
    uv_loop_init(&loop);
    server = std::make_unique<StreamServer>(
        &loop, "test", limits,
        [](std::string_view in, bool eof) {
          return in.find('\n') != std::string_view::npos || eof
                     ? StreamServer::Frame::complete
                     : StreamServer::Frame::incomplete;
        },
        [this](StreamServer::ClientId id, std::string_view) { server->reply(id, reply_body); });
    UvHandle<uv_tcp_t> l;
    BOOST_REQUIRE(l.init(&loop, uv_tcp_init) == 0);
    sockaddr_in sa{};
    uv_ip4_addr("127.0.0.1", 0, &sa);
    BOOST_REQUIRE(uv_tcp_bind(l.get(), reinterpret_cast<const sockaddr*>(&sa), 0) == 0);
    sockaddr_in bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(l.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.sin_port);
    BOOST_REQUIRE(server->listen(std::move(l), 64) == 0);
  }
  ~Lab() {
    server.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    BOOST_TEST(uv_loop_close(&loop) == 0);
  }
  Fd connect() {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
    ::fcntl(fd.get(), F_SETFL, O_NONBLOCK);
    spin(20);  // let the server accept it
    return fd;
  }
  // Runs the loop for about `ms`.
  void spin(std::uint64_t ms) {
    const std::uint64_t end = uv_hrtime() / 1000000 + ms;
    while (uv_hrtime() / 1000000 < end) {
      uv_run(&loop, UV_RUN_NOWAIT);
      ::usleep(1000);
    }
  }
};

// What the peer sent so far; "EOF" appended once it closed.
std::string drain(const Fd& fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      s.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || (n < 0 && errno == ECONNRESET)) s += "EOF";
    return s;
  }
}

StreamServer::Limits small() {
  StreamServer::Limits l;
  l.max_clients = 4;
  l.max_request = 64;
  l.deadline_ms = 600;
  l.idle_ms = 200;
  l.reply_ms = 600;
  l.write_ms = 300;
  l.linger_ms = 200;
  return l;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stream_server)

BOOST_AUTO_TEST_CASE(new_client_at_the_limit_evicts_the_oldest_idle_one) {
  Lab lab(small());
  std::vector<Fd> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(lab.connect());
  BOOST_TEST(lab.server->clients() == 4u);
  Fd fresh = lab.connect();
  BOOST_TEST(::send(fresh.get(), "stats\n", 6, MSG_NOSIGNAL) == 6);
  lab.spin(50);
  BOOST_TEST(drain(fresh) == "ok\nEOF");  // answered, half-closed
  BOOST_TEST(lab.server->drops().evicted == 1u);
  BOOST_TEST(drain(idle[0]) == "EOF");  // the oldest made room
  BOOST_TEST(drain(idle[1]).empty());   // the others still open
  BOOST_TEST(lab.server->drops().refused == 0u);
}

BOOST_AUTO_TEST_CASE(flood_of_idle_clients_never_locks_a_request_out) {
  Lab lab(small());
  std::vector<Fd> flood;
  for (int i = 0; i < 40; ++i) flood.push_back(lab.connect());
  BOOST_TEST(lab.server->clients() == 4u);
  BOOST_TEST(lab.server->drops().evicted == 36u);
  for (int i = 0; i < 5; ++i) {
    Fd c = lab.connect();
    ::send(c.get(), "x\n", 2, MSG_NOSIGNAL);
    lab.spin(30);
    BOOST_TEST(drain(c) == "ok\nEOF");
  }
}

BOOST_AUTO_TEST_CASE(silent_dripping_and_unread_clients_are_dropped_by_reason) {
  Lab lab(small());
  Fd silent = lab.connect();
  Fd drip = lab.connect();
  ::send(drip.get(), "s", 1, MSG_NOSIGNAL);
  lab.spin(100);
  ::send(drip.get(), "t", 1, MSG_NOSIGNAL);  // within idle_ms: kept
  lab.spin(150);
  BOOST_TEST(drain(drip).empty());
  lab.spin(150);  // now over idle_ms since its last byte
  BOOST_TEST(drain(drip) == "EOF");
  BOOST_TEST(lab.server->drops().idle == 1u);
  BOOST_TEST(drain(silent).empty());  // a client that sends nothing has the deadline
  lab.spin(350);
  BOOST_TEST(drain(silent) == "EOF");
  BOOST_TEST(lab.server->drops().deadline == 1u);

  // An answer larger than the socket buffers, never read.
  lab.reply_body.assign(32u << 20, 'x');
  Fd lazy = lab.connect();
  ::send(lazy.get(), "big\n", 4, MSG_NOSIGNAL);
  lab.spin(500);
  BOOST_TEST(lab.server->drops().unread == 1u);
  BOOST_TEST(lab.server->clients() == 0u);
  BOOST_TEST(lab.server->drops().total() == 3u);
}

BOOST_AUTO_TEST_CASE(oversized_request_is_dispatched_once_bounded) {
  Lab lab(small());
  std::string seen;
  lab.server = std::make_unique<StreamServer>(
      &lab.loop, "test2", small(),
      [](std::string_view, bool) { return StreamServer::Frame::incomplete; },
      [&](StreamServer::ClientId id, std::string_view in) {
        seen = std::string(in);
        lab.server->reply(id, "too large\n");
      });
  // The first server was replaced; listen again on a new port.
  UvHandle<uv_tcp_t> l;
  l.init(&lab.loop, uv_tcp_init);
  sockaddr_in sa{};
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(l.get(), reinterpret_cast<const sockaddr*>(&sa), 0);
  sockaddr_in bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(l.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  lab.port = ntohs(bound.sin_port);
  BOOST_REQUIRE(lab.server->listen(std::move(l), 8) == 0);
  Fd c = lab.connect();
  const std::string junk(1000, 'a');
  ::send(c.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
  lab.spin(50);
  BOOST_TEST(seen.size() == 65u);  // max_request + 1: enough to say it is too large
  BOOST_TEST(drain(c).starts_with("too large\n"));
}

BOOST_AUTO_TEST_SUITE_END()
