// `tunshim demo`: the newcomer's first five minutes. The lab itself is a bash program
// (demo/tunshim-demo.sh, compiled in as kDemoScript): it is a sequence of `ip`, `iptables`
// and `socat` commands, which a shell says most plainly. This file only checks what must
// hold before it can start and then replaces the process with that shell, so the shell's
// traps see Ctrl-C and SIGTERM directly and tear the lab down.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "demo/demo_script.h"
#include "proxy/commands.h"

namespace tunshim::proxy {
namespace {

constexpr const char* kBash = "/bin/bash";

// The executable running now, so the demo's daemon is this very build (also from a build
// tree, and after the file was replaced by a rebuild).
std::string self_path() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string p(buf, static_cast<std::size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (p.ends_with(kDeleted)) p.resize(p.size() - kDeleted.size());
  return p;
}

}  // namespace

int cmd_demo(const DemoOptions& opt) {
  if (::geteuid() != 0) {
    std::fprintf(
        stderr,
        "tunshim demo: needs root (it builds network namespaces): run 'sudo tunshim demo'\n");
    return 1;
  }
  if (::access(kBash, X_OK) != 0) {
    std::fprintf(stderr, "tunshim demo: needs %s (Debian package bash)\n", kBash);
    return 1;
  }
  std::string self = self_path();
  if (self.empty() || ::access(self.c_str(), X_OK) != 0) {
    std::fprintf(
        stderr,
        "tunshim demo: cannot find its own executable (/proc/self/exe): is /proc mounted?\n");
    return 1;
  }
  // A background job of a script starts with SIGINT ignored, and bash cannot trap a signal
  // that was ignored when it started: the demo must always stop (and clean up) on them.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, SIG_DFL);

  std::string arg0 = "bash", dash_c = "-c", script = kDemoScript, name = "tunshim-demo";
  std::string keep = opt.keep ? "1" : "0";
  char* argv[] = {arg0.data(), dash_c.data(), script.data(), name.data(),
                  self.data(), keep.data(),   nullptr};
  std::fflush(nullptr);
  ::execv(kBash, argv);
  std::fprintf(stderr, "tunshim demo: cannot run %s: %s\n", kBash, std::strerror(errno));
  return 1;
}

}  // namespace tunshim::proxy
