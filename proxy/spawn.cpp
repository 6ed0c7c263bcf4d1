#include "proxy/spawn.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>

extern char** environ;

namespace tunshim::proxy {
namespace {

// Children libuv spawned and has not reaped yet: the SIGCHLD watcher must leave them to it.
std::unordered_set<pid_t>& live_children() {
  static std::unordered_set<pid_t> pids;
  return pids;
}

// Reads are bounded at the exit: a descendant that keeps the pipe open and writes on must
// not keep the loop in the exit callback.
constexpr int kExitDrainReads = 16;
constexpr std::size_t kReadBuffer = 65536;

}  // namespace

struct Process::Core {
  uv_loop_t* loop = nullptr;
  std::string argv0;
  bool own_group = false;
  bool attached = true;  // a Process refers to this; it deletes a finished core
  bool exited = false;
  bool finished = false;  // on_exit reported
  pid_t pid = 0;
  UvHandle<uv_process_t> proc;
  UvHandle<uv_pipe_t> in, out, err;
  UvTimer defer;  // reports a failed spawn from the loop
  OutputFn on_output;
  ExitFn on_exit;
  ProcessExit result;
  std::vector<char> buf = std::vector<char>(kReadBuffer);

  // The stdin write: its request outlives the core if the pipe is closed first (libuv then
  // calls back with UV_ECANCELED), so it points at the core only while the core lives.
  struct Write {
    uv_write_t req{};
    std::string data;
    Core* core = nullptr;
  };
  Write* write = nullptr;

  ~Core() {
    if (write != nullptr) write->core = nullptr;
  }

  void output(uv_stream_t* s, const char* data, std::size_t n) {
    if (!on_output) return;
    const int stream = s == err.stream() ? 2 : 1;
    // A copy: the callback may detach (and so clear on_output) while it runs.
    OutputFn fn = on_output;
    fn(stream, std::string_view(data, n));
  }

  // What the child wrote just before exiting may still sit in the pipes.
  void drain(UvHandle<uv_pipe_t>& p) {
    int fd = -1;
    if (!p || uv_fileno(p.handle(), &fd) != 0) return;
    for (int i = 0; i < kExitDrainReads && !finished; ++i) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      output(p.stream(), buf.data(), static_cast<std::size_t>(n));
    }
  }

  void report() {
    finished = true;
    proc.reset();
    in.reset();
    out.reset();
    err.reset();
    defer.reset();
    on_output = nullptr;
    ExitFn fn = std::move(on_exit);
    on_exit = nullptr;
    const ProcessExit r = result;
    if (!attached) delete this;  // released (or detached, and then fn is empty)
    if (fn) fn(r);  // may destroy the Process, and with it this core: nothing after
  }

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* b) {
    auto* c = static_cast<Core*>(h->data);
    *b = uv_buf_init(c->buf.data(), static_cast<unsigned>(c->buf.size()));
  }
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
    auto* c = static_cast<Core*>(s->data);
    if (n > 0) {
      c->output(s, b->base, static_cast<std::size_t>(n));
    } else if (n < 0) {
      uv_read_stop(s);  // EOF or error: the exit callback finishes up
    }
  }
  static void on_exit_cb(uv_process_t* p, std::int64_t status, int sig) {
    auto* c = static_cast<Core*>(p->data);
    live_children().erase(c->pid);
    c->exited = true;
    c->result.exit_status = status;
    c->result.term_signal = sig;
    c->drain(c->out);
    c->drain(c->err);
    c->report();
  }
};

Process Process::spawn(uv_loop_t* loop, SpawnOptions o, OutputFn on_output, ExitFn on_exit) {
  auto* c = new Core();
  c->loop = loop;
  c->argv0 = o.argv.empty() ? std::string() : o.argv[0];
  c->own_group = o.own_group;
  c->on_output = std::move(on_output);
  c->on_exit = std::move(on_exit);
  Process handle(c);

  auto fail = [c](const std::string& why) {
    c->result.started = false;
    c->result.spawn_error = c->argv0.empty() ? why : c->argv0 + ": " + why;
    c->defer.init(c->loop);
    c->defer.start(0, [c] { c->report(); });
  };
  if (o.argv.empty()) {
    fail("empty command");
    return handle;
  }

  std::vector<std::string> env_store;
  std::vector<char*> envp;
  if (!o.env.empty()) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string_view kv(*e);
      bool replaced = false;
      for (const auto& [k, v] : o.env) {
        replaced =
            replaced || (kv.size() > k.size() && kv.starts_with(k) && kv[k.size()] == '=');
      }
      if (!replaced) env_store.emplace_back(kv);
    }
    for (const auto& [k, v] : o.env) env_store.push_back(k + "=" + v);
    for (auto& s : env_store) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
  std::vector<char*> args;
  for (auto& a : o.argv) args.push_back(a.data());
  args.push_back(nullptr);

  // Pipes made here, close-on-exec on both ends; libuv dup2()s the child's ends onto 0-2,
  // which clears the flag there only.
  std::array<int, 2> in_fds{-1, -1}, out_fds{-1, -1}, err_fds{-1, -1};
  auto close_fds = [](std::array<int, 2>& f) {
    for (int& fd : f) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  };
  int rc = 0;
  if (!o.input.empty()) rc = uv_pipe(in_fds.data(), 0, 0);
  if (rc == 0) rc = uv_pipe(out_fds.data(), 0, 0);
  if (rc == 0 && !o.merge_output) rc = uv_pipe(err_fds.data(), 0, 0);
  if (rc != 0) {
    close_fds(in_fds);
    close_fds(out_fds);
    close_fds(err_fds);
    fail(std::string("pipe: ") + uv_strerror(rc));
    return handle;
  }

  std::array<uv_stdio_container_t, 3> stdio{};
  if (o.input.empty()) {
    stdio[0].flags = UV_IGNORE;  // /dev/null
  } else {
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = in_fds[0];
  }
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = out_fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = o.merge_output ? out_fds[1] : err_fds[1];
  uv_process_options_t po{};
  po.file = args[0];
  po.args = args.data();
  po.env = envp.empty() ? nullptr : envp.data();
  po.stdio_count = static_cast<int>(stdio.size());
  po.stdio = stdio.data();
  po.exit_cb = Core::on_exit_cb;
  // setsid(): its own session and process group, so the group can be signalled as one.
  if (o.own_group) po.flags = UV_PROCESS_DETACHED;

  // Whatever opened a descriptor without O_CLOEXEC (a library, a future change), the child
  // gets stdio only. The daemon is single-threaded, so nothing opens one in between.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  rc = c->proc.spawn(loop, po);
  // The child's ends are its own now (or nobody's).
  if (in_fds[0] >= 0) ::close(in_fds[0]);
  ::close(out_fds[1]);
  if (err_fds[1] >= 0) ::close(err_fds[1]);
  auto adopt = [loop, c](UvHandle<uv_pipe_t>& h, int fd) {
    if (fd < 0) return;
    h.init(loop, uv_pipe_init, 0);
    h->data = c;
    uv_pipe_open(h.get(), fd);
  };
  adopt(c->in, in_fds[1]);
  adopt(c->out, out_fds[0]);
  adopt(c->err, err_fds[0]);
  if (rc != 0) {
    fail(uv_strerror(rc));
    return handle;
  }
  c->proc->data = c;
  c->pid = c->proc->pid;
  c->result.started = true;
  live_children().insert(c->pid);
  uv_read_start(c->out.stream(), Core::on_alloc, Core::on_read);
  if (c->err) uv_read_start(c->err.stream(), Core::on_alloc, Core::on_read);
  if (c->in) {
    auto* w = new Core::Write();
    w->data = std::move(o.input);
    w->core = c;
    w->req.data = w;
    c->write = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    // Closing our end after the write gives the program EOF on stdin. (SIGPIPE is ignored
    // by the daemon, so a program that exits early makes this write fail, not kill us.)
    const int wrc = uv_write(&w->req, c->in.stream(), &b, 1, [](uv_write_t* req, int) {
      auto* wr = static_cast<Core::Write*>(req->data);
      if (wr->core != nullptr) {
        wr->core->write = nullptr;
        wr->core->in.reset();
      }
      delete wr;
    });
    if (wrc != 0) {
      c->write = nullptr;
      delete w;
      c->in.reset();
    }
  }
  return handle;
}

pid_t Process::pid() const noexcept { return core_ != nullptr ? core_->pid : 0; }

bool Process::running() const noexcept {
  return core_ != nullptr && core_->result.started && !core_->exited;
}

bool Process::signal(int sig) const noexcept {
  if (!running() || core_->pid <= 0) return false;
  return ::kill(core_->own_group ? -core_->pid : core_->pid, sig) == 0;
}

void Process::detach() noexcept {
  if (core_ == nullptr) return;
  Core* c = std::exchange(core_, nullptr);
  c->on_output = nullptr;
  c->on_exit = nullptr;
  c->attached = false;
  if (c->finished) delete c;
}

// ---- collecting runs ------------------------------------------------------------------------

std::string ProcessResult::describe() const {
  std::string s;
  if (!started) {
    s = "could not start";
  } else if (term_signal != 0) {
    s = "killed by signal " + std::to_string(term_signal);
  } else {
    s = "exit " + std::to_string(exit_status);
  }
  std::string e = err;
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  for (auto& ch : e) {
    if (ch == '\n') ch = ' ';
  }
  if (!e.empty()) s += ": " + e;
  return s;
}

void run_process_async(uv_loop_t* loop, std::vector<std::string> argv, std::string input,
                       ProcessCallback done) {
  // Shared by the two callbacks; the Process is detached at once (the core reports anyway).
  auto res = std::make_shared<ProcessResult>();
  SpawnOptions o;
  o.argv = std::move(argv);
  o.input = std::move(input);
  Process p = Process::spawn(
      loop, std::move(o),
      [res](int stream, std::string_view d) { (stream == 2 ? res->err : res->out).append(d); },
      [res, done = std::move(done)](const ProcessExit& e) {
        res->started = e.started;
        res->exit_status = static_cast<int>(e.exit_status);
        res->term_signal = e.term_signal;
        if (!e.started) res->err = e.spawn_error;
        done(std::move(*res));
      });
  p.release();  // the callbacks still run; the core frees itself after reporting
}

ProcessResult run_process(std::vector<std::string> argv, std::string input) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  ProcessResult out;
  run_process_async(&loop, std::move(argv), std::move(input),
                    [&out](ProcessResult r) { out = std::move(r); });
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return out;
}

void Process::release() noexcept {
  if (core_ == nullptr) return;
  Core* c = std::exchange(core_, nullptr);
  c->attached = false;
  if (c->finished) delete c;
}

// ---- descendants ----------------------------------------------------------------------------

namespace {

// The whole of a small /proc file, read with plain read(2): a process can exit between
// the open and the read (ESRCH), and libstdc++'s filebuf reports that by throwing from
// underflow(), which an istreambuf_iterator does not catch (it ended the daemon). Empty
// when the file is gone or unreadable; at most `limit` bytes.
std::string read_proc_file(const std::string& path, std::size_t limit) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  std::array<char, 4096> buf{};
  while (out.size() < limit) {
    const ssize_t n = ::read(fd, buf.data(), std::min(buf.size(), limit - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end, or the process went away: what was read is all there is
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
};

// Every process's parent and state, from /proc/PID/stat ("pid (comm) S ppid …"; comm may
// hold spaces and parentheses, so the fields are read after the last ')').
std::vector<ProcEntry> list_processes() {
  std::vector<ProcEntry> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    const std::string stat = read_proc_file(std::string("/proc/") + e->d_name + "/stat", 4096);
    const std::size_t rp = stat.rfind(')');
    if (rp == std::string::npos || rp + 4 >= stat.size()) continue;
    ProcEntry pe;
    pe.pid = static_cast<pid_t>(pid);
    pe.state = stat[rp + 2];
    pe.ppid = static_cast<pid_t>(std::strtol(stat.c_str() + rp + 4, nullptr, 10));
    out.push_back(pe);
  }
  ::closedir(d);
  return out;
}

std::vector<pid_t> descendants_of(pid_t root, const std::vector<ProcEntry>& all) {
  std::unordered_map<pid_t, std::vector<pid_t>> kids;
  for (const auto& p : all) kids[p.ppid].push_back(p.pid);
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto it = kids.find(p);
    if (it == kids.end()) continue;
    for (pid_t k : it->second) {
      if (out.size() > 100000) return out;  // a cycle cannot happen; a bound anyway
      out.push_back(k);
      todo.push_back(k);
    }
  }
  return out;
}

bool has_env(pid_t pid, const std::string& entry) {
  // An environment is at most ARG_MAX-ish; 1 MiB bounds what one odd process costs us.
  const std::string env = read_proc_file("/proc/" + std::to_string(pid) + "/environ", 1 << 20);
  for (std::size_t at = 0; at < env.size();) {
    std::size_t end = env.find('\0', at);
    if (end == std::string::npos) end = env.size();
    if (std::string_view(env).substr(at, end - at) == entry) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace

std::vector<pid_t> descendants() { return descendants_of(::getpid(), list_processes()); }

int kill_tagged(const std::string& tag, int sig) {
  const std::string entry = std::string(kHookTagVar) + "=" + tag;
  const auto all = list_processes();
  std::unordered_map<pid_t, char> state;
  for (const auto& p : all) state[p.pid] = p.state;
  int n = 0;
  for (pid_t p : descendants_of(::getpid(), all)) {
    if (state[p] != 'Z' && has_env(p, entry) && ::kill(p, sig) == 0) ++n;
  }
  return n;
}

void Subreaper::reap_adopted() {
  const pid_t self = ::getpid();
  for (const ProcEntry& p : list_processes()) {
    // Only exited children libuv did not start: waiting for one of libuv's would steal its
    // exit status.
    if (p.ppid != self || p.state != 'Z' || live_children().count(p.pid) != 0) continue;
    ::waitpid(p.pid, nullptr, WNOHANG);
  }
}

bool Subreaper::start(uv_loop_t* loop, std::string& err) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    err = std::string("PR_SET_CHILD_SUBREAPER: ") + std::strerror(errno);
    return false;
  }
  started_ = true;
  // libuv has its own SIGCHLD watcher for the children it spawned; a second one is allowed.
  if (sigchld_.init(loop, uv_signal_init) == 0) {
    uv_signal_start(
        sigchld_.get(), [](uv_signal_t*, int) { reap_adopted(); }, SIGCHLD);
    uv_unref(sigchld_.handle());  // it must not keep the loop alive by itself
  }
  return true;
}

void Subreaper::stop(std::uint64_t grace_ms) {
  sigchld_.reset();
  if (!started_) return;
  started_ = false;
  auto alive = [] {
    std::vector<pid_t> out;
    const auto all = list_processes();
    for (pid_t p : descendants_of(::getpid(), all)) {
      for (const auto& e : all) {
        if (e.pid == p && e.state != 'Z') out.push_back(p);
      }
    }
    return out;
  };
  std::vector<pid_t> left = alive();
  for (pid_t p : left) ::kill(p, SIGTERM);
  for (std::uint64_t waited = 0; !left.empty() && waited < grace_ms; waited += 10) {
    ::usleep(10000);
    reap_adopted();
    left = alive();
  }
  // Several rounds: a process may fork between the listing and the kill.
  for (int round = 0; round < 5 && !left.empty(); ++round) {
    for (pid_t p : left) ::kill(p, SIGKILL);
    ::usleep(10000);
    reap_adopted();
    left = alive();
  }
  reap_adopted();
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

}  // namespace tunshim::proxy
