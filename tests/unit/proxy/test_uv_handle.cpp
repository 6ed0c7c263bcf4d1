// UvHandle, UvTimer and Fd on a private loop: a handle let go at any time is closed and its
// memory freed by the loop (uv_loop_close succeeds only when every handle is closed), moves
// keep one owner, callbacks stop with the owner.
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <utility>
#include <vector>

#include "proxy/fd.h"
#include "proxy/uv_handle.h"

using tunshim::proxy::Fd;
using tunshim::proxy::UvHandle;
using tunshim::proxy::UvTimer;

namespace {

struct Loop {
  uv_loop_t loop{};
  Loop() { uv_loop_init(&loop); }
  // Runs the loop dry and closes it: 0 only when every handle was closed.
  int close() {
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
  }
};

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

}  // namespace

BOOST_AUTO_TEST_SUITE(uv_handle)

BOOST_AUTO_TEST_CASE(handle_fires_and_closes_with_its_owner) {
  Loop l;
  int fired = 0;
  {
    UvHandle<uv_timer_t> t;
    BOOST_TEST(!t);
    BOOST_TEST(t.init(&l.loop, uv_timer_init) == 0);
    BOOST_TEST(static_cast<bool>(t));
    t->data = &fired;
    uv_timer_start(
        t.get(), [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 1, 0);
    uv_run(&l.loop, UV_RUN_DEFAULT);
    BOOST_TEST(fired == 1);
  }  // destroyed while the loop is not running: closed, freed on the next run
  BOOST_TEST(l.close() == 0);
}

BOOST_AUTO_TEST_CASE(handle_reset_before_it_fires_never_calls_back) {
  Loop l;
  int fired = 0;
  UvHandle<uv_timer_t> t;
  t.init(&l.loop, uv_timer_init);
  t->data = &fired;
  uv_timer_start(
      t.get(), [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 1, 0);
  t.reset();
  t.reset();  // twice is harmless
  BOOST_TEST(!t);
  BOOST_TEST(l.close() == 0);
  BOOST_TEST(fired == 0);
}

BOOST_AUTO_TEST_CASE(handle_move_keeps_one_owner) {
  Loop l;
  std::vector<UvHandle<uv_pipe_t>> pipes;
  for (int i = 0; i < 8; ++i) {  // the vector's growth moves them
    UvHandle<uv_pipe_t> p;
    BOOST_TEST(p.init(&l.loop, uv_pipe_init, 0) == 0);
    pipes.push_back(std::move(p));
    BOOST_TEST(!p);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  }
  UvHandle<uv_pipe_t> a;
  a.init(&l.loop, uv_pipe_init, 0);
  a = std::move(pipes[0]);  // the one `a` held is closed
  BOOST_TEST(uv_is_closing(a.handle()) == 0);
  BOOST_TEST(a.stream() != nullptr);
  pipes.clear();
  a.reset();
  BOOST_TEST(l.close() == 0);
}

BOOST_AUTO_TEST_CASE(failed_init_frees_at_once) {
  Loop l;
  UvHandle<uv_poll_t> p;
  BOOST_TEST(p.init(&l.loop, uv_poll_init, -1) != 0);  // not a descriptor
  BOOST_TEST(!p);
  BOOST_TEST(l.close() == 0);
}

BOOST_AUTO_TEST_CASE(failed_spawn_is_closed) {
  Loop l;
  UvHandle<uv_process_t> p;
  char prog[] = "/nonexistent/tunshim-test-program";
  char* args[] = {prog, nullptr};
  uv_process_options_t o{};
  o.file = prog;
  o.args = args;
  BOOST_TEST(p.spawn(&l.loop, o) != 0);
  BOOST_TEST(static_cast<bool>(p));  // libuv wants it closed even so
  p.reset();
  BOOST_TEST(l.close() == 0);
}

BOOST_AUTO_TEST_CASE(timer_calls_its_function_and_may_reset_itself) {
  Loop l;
  int fired = 0;
  UvTimer t(&l.loop);
  t.start(1, 1, [&] {
    if (++fired == 3) t.reset();  // from inside its own callback
  });
  BOOST_TEST(t.active());
  uv_run(&l.loop, UV_RUN_DEFAULT);
  BOOST_TEST(fired == 3);
  BOOST_TEST(!t);
  BOOST_TEST(l.close() == 0);
}

BOOST_AUTO_TEST_CASE(timer_restart_from_its_callback_and_stop) {
  Loop l;
  int fired = 0;
  UvTimer t(&l.loop);
  std::function<void()> again = [&] {
    if (++fired < 2) t.start(1, again);  // replaces the function that is running
  };
  t.start(1, again);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  BOOST_TEST(fired == 2);
  t.start(1000000, [&] { fired = 100; });
  t.stop();
  BOOST_TEST(!t.active());
  uv_run(&l.loop, UV_RUN_NOWAIT);
  UvTimer moved = std::move(t);
  BOOST_TEST(static_cast<bool>(moved));
  moved.reset();
  BOOST_TEST(l.close() == 0);
  BOOST_TEST(fired == 2);
}

BOOST_AUTO_TEST_CASE(fd_closes_once_and_moves) {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  {
    Fd a(p[0]);
    Fd b(p[1]);
    BOOST_TEST(static_cast<bool>(a));
    Fd c = std::move(a);
    BOOST_TEST(!a);  // NOLINT(bugprone-use-after-move)
    BOOST_TEST(c.get() == p[0]);
    BOOST_TEST(fd_open(p[0]));
    const int raw = b.release();
    BOOST_TEST(!b);
    BOOST_TEST(fd_open(raw));  // released: not closed
    b.reset(raw);
    c = std::move(b);  // c's old descriptor closes, the other is now c's
    BOOST_TEST(!fd_open(p[0]));
    BOOST_TEST(fd_open(p[1]));
  }
  BOOST_TEST(!fd_open(p[1]));
}

BOOST_AUTO_TEST_SUITE_END()
