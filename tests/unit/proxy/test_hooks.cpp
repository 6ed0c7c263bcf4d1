// HookRun against real child processes on a private loop: exit status, timeout with
// SIGTERM (and SIGKILL for a child that ignores it), spawn errors, order, environment.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/hooks.h"
#include "proxy/spawn.h"

using tunshim::proxy::classify_exit;
using tunshim::proxy::HookCommandResult;
using tunshim::proxy::HookResult;
using tunshim::proxy::HookRun;
using tunshim::proxy::LineSplitter;

namespace {

struct Ran {
  std::vector<HookCommandResult> results;
  bool done = false;
  std::uint64_t elapsed_ms = 0;
};

Ran run(std::vector<std::vector<std::string>> cmds, std::uint64_t timeout_ms,
        std::vector<std::pair<std::string, std::string>> env = {},
        std::uint64_t grace_ms = 300) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Ran out;
  HookRun::Options o;
  o.label = "test";
  o.commands = std::move(cmds);
  o.env = std::move(env);
  o.timeout_ms = timeout_ms;
  o.kill_grace_ms = grace_ms;
  const std::uint64_t t0 = uv_hrtime();
  {
    HookRun r(
        &loop, o, [&](const HookCommandResult& c) { out.results.push_back(c); },
        [&]() { out.done = true; });
    r.start();
    BOOST_TEST(out.results.empty());  // nothing reported from inside start()
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks of the destroyed run
  out.elapsed_ms = (uv_hrtime() - t0) / 1000000;
  BOOST_TEST(uv_loop_close(&loop) == 0);  // every handle closed: every child reaped
  return out;
}

bool running(int pid) {
  // Gone, or a zombie waiting for its parent to reap it: no longer running.
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string stat_line;
  std::getline(st, stat_line);
  const auto close_paren = stat_line.rfind(')');
  return st && close_paren != std::string::npos && stat_line.substr(close_paren + 2, 1) != "Z";
}

int read_pid(const std::string& f) {
  std::ifstream in(f);
  int pid = 0;
  in >> pid;
  return pid;
}

std::string tmpfile(const char* tag) {
  return std::string("/tmp/tunshim-test-hooks-") + tag + "-" + std::to_string(::getpid());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hooks)

BOOST_AUTO_TEST_CASE(classify) {
  BOOST_TEST((classify_exit(0, 0, false) == HookResult::ok));
  BOOST_TEST((classify_exit(3, 0, false) == HookResult::failed));
  BOOST_TEST((classify_exit(0, 9, false) == HookResult::failed));
  BOOST_TEST((classify_exit(0, 15, true) == HookResult::timeout));
}

BOOST_AUTO_TEST_CASE(line_splitter) {
  LineSplitter s(8);
  auto a = s.feed("ab\ncd", 5);
  BOOST_TEST(a.size() == 1u);
  BOOST_TEST(a[0] == "ab");
  auto b = s.feed("e\r\n\n", 4);
  BOOST_TEST(b.size() == 2u);
  BOOST_TEST(b[0] == "cde");
  BOOST_TEST(b[1] == "");
  auto c = s.feed("0123456789", 10);  // cut at 8: memory stays bounded
  BOOST_TEST(c.size() == 1u);
  BOOST_TEST(c[0] == "01234567");
  BOOST_TEST(s.flush() == "89");
  BOOST_TEST(s.flush() == "");
}

BOOST_AUTO_TEST_CASE(order_status_and_environment) {
  const std::string f = tmpfile("env");
  std::remove(f.c_str());
  Ran r = run({{"/bin/sh", "-c", "echo first:$TUNSHIM_EVENT:$TUNSHIM_INTERFACE >>" + f},
               {"/bin/sh", "-c", "exit 3"},
               {"/nonexistent/hook"},
               {"/bin/sh", "-c", "echo last >>" + f}},
              5000, {{"TUNSHIM_EVENT", "down"}, {"TUNSHIM_INTERFACE", "ppp0"}});
  BOOST_TEST(r.done);
  BOOST_REQUIRE(r.results.size() == 4u);  // a failure does not stop the sequence
  BOOST_TEST((r.results[0].result == HookResult::ok));
  BOOST_TEST((r.results[1].result == HookResult::failed));
  BOOST_TEST(r.results[1].exit_status == 3);
  BOOST_TEST((r.results[2].result == HookResult::spawn_error));
  BOOST_TEST((r.results[3].result == HookResult::ok));
  std::ifstream in(f);
  std::stringstream ss;
  ss << in.rdbuf();
  BOOST_TEST(ss.str() == "first:down:ppp0\nlast\n");
  std::remove(f.c_str());
}

BOOST_AUTO_TEST_CASE(timeout_terminates_the_process_group) {
  const std::string f = tmpfile("grp");
  std::remove(f.c_str());
  // The shell's own child (the sleep) must go too: the group is signalled, not just sh.
  Ran r = run({{"/bin/sh", "-c", "sleep 30 & echo $! >" + f + "; wait"}}, 300);
  BOOST_REQUIRE(r.results.size() == 1u);
  BOOST_TEST((r.results[0].result == HookResult::timeout));
  BOOST_TEST(r.elapsed_ms < 3000u);
  std::ifstream in(f);
  int pid = 0;
  in >> pid;
  BOOST_REQUIRE(pid > 0);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    // Gone, or a zombie waiting for its new parent (init) to reap it: no longer running.
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string stat_line;
    std::getline(st, stat_line);
    const auto close_paren = stat_line.rfind(')');
    gone =
        !st || close_paren == std::string::npos || stat_line.substr(close_paren + 2, 1) == "Z";
    if (!gone) ::usleep(20000);
  }
  BOOST_TEST(gone);
  std::remove(f.c_str());
}

BOOST_AUTO_TEST_CASE(sigterm_ignored_then_killed) {
  Ran r = run({{"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}}, 200, {}, 300);
  BOOST_REQUIRE(r.results.size() == 1u);
  BOOST_TEST((r.results[0].result == HookResult::timeout));
  BOOST_TEST(r.results[0].term_signal == 9);
  BOOST_TEST(r.elapsed_ms >= 450u);  // timeout + grace
  BOOST_TEST(r.elapsed_ms < 3000u);
}

BOOST_AUTO_TEST_CASE(output_is_bounded_and_counted) {
  // 8 MiB without pause, then 10,000 short lines: read to the end (the child never blocks on
  // a full pipe), at most kMaxLoggedBytes / kMaxLoggedLines logged, the rest counted.
  Ran r =
      run({{"/bin/sh", "-c", "head -c 8388608 /dev/zero | tr '\\0' x; echo"},
           {"/bin/sh", "-c", "i=0; while [ $i -lt 10000 ]; do echo line $i; i=$((i+1)); done"}},
          20000);
  BOOST_REQUIRE(r.results.size() == 2u);
  for (const auto& c : r.results) BOOST_TEST((c.result == HookResult::ok));
  BOOST_TEST(r.results[0].output_bytes == 8388609u);
  BOOST_TEST(r.results[0].output_not_logged >= 8388609u - HookRun::kMaxLoggedBytes);
  BOOST_TEST(r.results[1].output_bytes > 10000u * 7u);
  // Lines: the burst and at most the line limit logged; the rest counted.
  BOOST_TEST(r.results[1].output_not_logged > r.results[1].output_bytes / 2);
}

BOOST_AUTO_TEST_CASE(timeout_kills_detached_descendants) {
  // A double fork with setsid leaves the hook's process group and session; as our
  // subreaper child it is re-parented to us and found by its tag.
  uv_loop_t loop;
  uv_loop_init(&loop);
  tunshim::proxy::Subreaper reaper;
  std::string err;
  BOOST_REQUIRE(reaper.start(&loop, err));
  const std::string f = tmpfile("detached");
  std::remove(f.c_str());
  HookRun::Options o;
  o.label = "test";
  o.commands = {{"/bin/sh", "-c", "setsid sh -c 'sleep 1000 & echo $! >" + f + "' & sleep 30"}};
  o.timeout_ms = 300;
  o.kill_grace_ms = 300;
  std::vector<HookCommandResult> results;
  {
    HookRun r(
        &loop, o, [&](const HookCommandResult& c) { results.push_back(c); }, [] {});
    r.start();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  BOOST_REQUIRE(results.size() == 1u);
  BOOST_TEST((results[0].result == HookResult::timeout));
  const int pid = read_pid(f);
  BOOST_REQUIRE(pid > 0);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    gone = !running(pid);
    if (!gone) ::usleep(20000);
  }
  BOOST_TEST(gone);
  tunshim::proxy::Subreaper::reap_adopted();
  reaper.stop(100);
  uv_run(&loop, UV_RUN_DEFAULT);
  BOOST_TEST(uv_loop_close(&loop) == 0);
  BOOST_TEST(tunshim::proxy::descendants().empty());  // reaped too, not left as zombies
  std::remove(f.c_str());
}

BOOST_AUTO_TEST_CASE(subreaper_stop_ends_every_descendant) {
  // A hook that finished normally but left a detached process: the daemon's exit ends it.
  uv_loop_t loop;
  uv_loop_init(&loop);
  tunshim::proxy::Subreaper reaper;
  std::string err;
  BOOST_REQUIRE(reaper.start(&loop, err));
  const std::string f = tmpfile("linger");
  std::remove(f.c_str());
  HookRun::Options o;
  o.label = "test";
  o.commands = {{"/bin/sh", "-c", "setsid sh -c 'sleep 1000 & echo $! >" + f + "' &"}};
  {
    HookRun r(
        &loop, o, [](const HookCommandResult&) {}, [] {});
    r.start();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  int pid = 0;
  for (int i = 0; i < 100 && pid == 0; ++i) {
    pid = read_pid(f);
    if (pid == 0) ::usleep(10000);
  }
  BOOST_REQUIRE(pid > 0);
  BOOST_TEST(running(pid));  // a normal exit leaves it be
  reaper.stop(200);
  BOOST_TEST(!running(pid));
  BOOST_TEST(tunshim::proxy::descendants().empty());
  uv_run(&loop, UV_RUN_DEFAULT);
  BOOST_TEST(uv_loop_close(&loop) == 0);
  std::remove(f.c_str());
}

BOOST_AUTO_TEST_CASE(only_stdio_is_inherited) {
  // A descriptor opened without O_CLOEXEC (as a library might) does not reach the hook.
  const int leak = ::open("/dev/null", O_RDONLY);
  BOOST_REQUIRE(leak > 2);
  const std::string f = tmpfile("fds");
  std::remove(f.c_str());
  Ran r = run({{"/bin/sh", "-c", "exec ls /proc/self/fd >" + f}}, 5000);
  ::close(leak);
  BOOST_REQUIRE(r.results.size() == 1u);
  std::ifstream in(f);
  std::vector<std::string> fds;
  for (std::string l; std::getline(in, l);) fds.push_back(l);
  // 0-2 and the one ls opened to list the directory.
  BOOST_TEST(fds == (std::vector<std::string>{"0", "1", "2", "3"}));
  std::remove(f.c_str());
}

BOOST_AUTO_TEST_SUITE_END()

// The process scans (descendants(), kill_tagged(), the subreaper's reaping) read /proc files
// of processes that may be reaped between the open and the read (ESRCH). That must read as
// "gone", never end the daemon (a stream iterator let libstdc++'s exception through).
BOOST_AUTO_TEST_CASE(process_scans_survive_processes_exiting_mid_read) {
  std::atomic<bool> stop{false};
  std::atomic<int> forks{0};
  std::thread churn([&] {
    while (!stop.load()) {
      const pid_t p = ::fork();
      if (p == 0) ::_exit(0);
      if (p > 0) {
        ::waitpid(p, nullptr, 0);
        ++forks;
      }
    }
  });
  // Enough races to matter: a sanitizer build forks some 50 times a second, a plain one
  // thousands; at least 1.5 s, 300 children and 50 scans, at most 20 s.
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
  int scans = 0;
  while (elapsed() < std::chrono::seconds(20) &&
         (elapsed() < std::chrono::milliseconds(1500) || forks.load() < 300 || scans < 50)) {
    (void)tunshim::proxy::descendants();
    (void)tunshim::proxy::kill_tagged("no-such-run", 0);
    ++scans;
  }
  stop = true;
  churn.join();
  BOOST_TEST_MESSAGE(scans << " scans while " << forks.load() << " children came and went");
  BOOST_TEST(forks.load() > 100);
  BOOST_TEST(scans > 10);
}
