#include "proxy/firewall.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

namespace tunshim::proxy {

// ---- running programs -------------------------------------------------------------------

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
  for (auto& c : e) {
    if (c == '\n') c = ' ';
  }
  if (!e.empty()) s += ": " + e;
  return s;
}

namespace {

// One running child: the process handle and its three pipes. Freed from the last close
// callback, as libuv requires (a handle's memory must outlive uv_close).
struct Child {
  uv_process_t proc{};
  uv_pipe_t in{}, out{}, err{};
  uv_write_t wreq{};
  std::string input;
  std::vector<char> readbuf = std::vector<char>(65536);
  ProcessResult result;
  ProcessCallback done;
  int open = 0;

  static Child* of(uv_handle_t* h) { return static_cast<Child*>(h->data); }
  void close(uv_handle_t* h) {
    if (uv_is_closing(h) != 0) return;
    uv_close(h, [](uv_handle_t* hh) {
      Child* c = of(hh);
      if (--c->open == 0) {
        ProcessCallback cb = std::move(c->done);
        ProcessResult r = std::move(c->result);
        delete c;
        cb(std::move(r));
      }
    });
  }
};

void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  Child* c = Child::of(h);
  *buf = uv_buf_init(c->readbuf.data(), static_cast<unsigned>(c->readbuf.size()));
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* h = reinterpret_cast<uv_handle_t*>(s);  // libuv's documented handle "inheritance"
  Child* c = Child::of(h);
  if (n > 0) {
    std::string& dst =
        (s == reinterpret_cast<uv_stream_t*>(&c->out)) ? c->result.out : c->result.err;
    dst.append(buf->base, static_cast<std::size_t>(n));
  } else if (n < 0) {
    c->close(h);  // EOF or error: this pipe is done
  }
}

}  // namespace

void run_process_async(uv_loop_t* loop, std::vector<std::string> argv, std::string input,
                       ProcessCallback done) {
  auto* c = new Child;
  c->input = std::move(input);
  c->done = std::move(done);
  uv_pipe_t* pipes[] = {&c->in, &c->out, &c->err};
  for (uv_pipe_t* p : pipes) {
    uv_pipe_init(loop, p, 0);
    p->data = c;
    ++c->open;
  }
  c->proc.data = c;

  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
  stdio[0].data.stream = reinterpret_cast<uv_stream_t*>(&c->in);
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&c->out);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&c->err);
  uv_process_options_t opt{};
  opt.file = args[0];
  opt.args = args.data();
  opt.stdio = stdio;
  opt.stdio_count = 3;
  opt.exit_cb = [](uv_process_t* p, std::int64_t status, int sig) {
    Child* ch = Child::of(reinterpret_cast<uv_handle_t*>(p));
    ch->result.exit_status = static_cast<int>(status);
    ch->result.term_signal = sig;
    ch->close(reinterpret_cast<uv_handle_t*>(p));
  };

  const int rc = uv_spawn(loop, &c->proc, &opt);
  if (rc != 0) {
    c->result.err = std::string(argv.empty() ? "" : argv[0]) + ": " + uv_strerror(rc);
    // uv_spawn initialised the process handle even on failure; close it with the pipes.
    ++c->open;
    c->close(reinterpret_cast<uv_handle_t*>(&c->proc));
    for (uv_pipe_t* p : pipes) c->close(reinterpret_cast<uv_handle_t*>(p));
    return;
  }
  c->result.started = true;
  ++c->open;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->out), on_alloc, on_read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->err), on_alloc, on_read);
  if (c->input.empty()) {
    c->close(reinterpret_cast<uv_handle_t*>(&c->in));
    return;
  }
  c->wreq.data = c;
  uv_buf_t b = uv_buf_init(c->input.data(), static_cast<unsigned>(c->input.size()));
  // Closing our end after the write gives the program EOF on stdin. (SIGPIPE is ignored
  // by the daemon, so a program that exits early makes this write fail, not kill us.)
  uv_write(&c->wreq, reinterpret_cast<uv_stream_t*>(&c->in), &b, 1, [](uv_write_t* w, int) {
    Child* ch = static_cast<Child*>(w->data);
    ch->close(reinterpret_cast<uv_handle_t*>(&ch->in));
  });
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

// ---- rules --------------------------------------------------------------------------------

namespace {

// Debian may default `iptables` to the legacy backend; tunshim always speaks nft.
const char* restore_prog(Family f) {
  return f == Family::v4 ? "iptables-nft-restore" : "ip6tables-nft-restore";
}
const char* save_prog(Family f) {
  return f == Family::v4 ? "iptables-nft-save" : "ip6tables-nft-save";
}
const char* family_name(Family f) { return f == Family::v4 ? "ipv4" : "ipv6"; }

std::string transaction(const std::vector<std::string>& lines) {
  std::string s = "*mangle\n";
  for (const auto& l : lines) s += l + "\n";
  s += "COMMIT\n";
  return s;
}

ProcessResult restore_sync(Family f, const std::vector<std::string>& lines) {
  return run_process({restore_prog(f), "--noflush"}, transaction(lines));
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::string Firewall::rule_tail() const {
  // Exactly as iptables-nft-save prints it, so saved rules can be recognised by text.
  return "-p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num " +
         std::to_string(queue_num_) + " --queue-bypass";
}

std::string Firewall::queue_rule(const char* chain, const std::string& iface) const {
  const bool pre = std::string(chain) == kChainPre;
  return std::string(chain) + (pre ? " -i " : " -o ") + iface + " " + rule_tail();
}

std::string Firewall::guard_rule(const std::string& iface, std::uint16_t n, Family f) const {
  if (n == 0 || n == 65535) return {};
  // The text exactly as iptables-nft-save prints it (quotes included), so the diff in
  // apply_async() and reapply recognise an installed rule by its text.
  std::string r = std::string(kChainPost) + " -o " + iface + " -m length --length " +
                  std::to_string(std::uint32_t{n} + 1) + ":65535";
  // IPv4: only with DF; a packet without DF may be fragmented by the kernel, not ours.
  if (f == Family::v4) r += " -m u32 --u32 \"0x4&0x4000=0x4000\"";
  return r + " -j NFQUEUE --queue-num " + std::to_string(queue_num_) + " --queue-bypass";
}

std::vector<std::string> Firewall::tunnel_rules(const FirewallTunnel& t, Family f) const {
  std::vector<std::string> r;
  if (f == Family::v4 ? t.v4 : t.v6) {
    r.push_back(queue_rule(kChainPre, t.iface));
    r.push_back(queue_rule(kChainPost, t.iface));
  }
  std::string g = guard_rule(t.iface, f == Family::v4 ? t.guard4 : t.guard6, f);
  if (!g.empty()) r.push_back(std::move(g));
  return r;
}

std::vector<std::string> Firewall::rules_for(const std::vector<FirewallTunnel>& tunnels,
                                             Family f) const {
  std::vector<std::string> r;
  for (const auto& t : tunnels) {
    for (auto& rule : tunnel_rules(t, f)) r.push_back(std::move(rule));
  }
  return r;
}

std::vector<std::string> Firewall::describe(const std::vector<FirewallTunnel>& tunnels,
                                            Family f) const {
  std::vector<std::string> r = {std::string("-A PREROUTING -j ") + kChainPre,
                                std::string("-A POSTROUTING -j ") + kChainPost};
  for (const auto& rule : rules_for(tunnels, f)) r.push_back("-A " + rule);
  return r;
}

bool Firewall::remove_all(std::string& err) {
  for (Family f : {Family::v4, Family::v6}) {
    ProcessResult saved = run_process({save_prog(f), "-t", "mangle"});
    if (!saved.ok()) {
      err = std::string(save_prog(f)) + " failed: " + saved.describe();
      return false;
    }
    std::vector<std::string> lines;
    bool have_pre = false, have_post = false;
    std::istringstream is(saved.out);
    std::string line;
    const std::string jpre = std::string(" -j ") + kChainPre,
                      jpost = std::string(" -j ") + kChainPost;
    while (std::getline(is, line)) {
      if (line.rfind(std::string(":") + kChainPre + " ", 0) == 0) have_pre = true;
      if (line.rfind(std::string(":") + kChainPost + " ", 0) == 0) have_post = true;
      // Any rule (in any chain but ours) that jumps to our chains: ours, from this or a
      // crashed run. Deleted by its full spec, once per occurrence.
      if (line.rfind("-A ", 0) == 0 && (ends_with(line, jpre) || ends_with(line, jpost))) {
        const std::string chain = line.substr(3, line.find(' ', 3) - 3);
        if (chain != kChainPre && chain != kChainPost) lines.push_back("-D " + line.substr(3));
      }
    }
    for (auto [have, chain] :
         {std::pair{have_pre, kChainPre}, std::pair{have_post, kChainPost}}) {
      if (!have) continue;
      lines.push_back(std::string("-F ") + chain);
      lines.push_back(std::string("-X ") + chain);
    }
    if (lines.empty()) continue;
    ProcessResult r = restore_sync(f, lines);
    if (!r.ok()) {
      err = std::string(restore_prog(f)) + " (removing " + family_name(f) +
            " rules) failed: " + r.describe();
      return false;
    }
    spdlog::debug("firewall: removed {} {} rule/chain entries", lines.size(), family_name(f));
  }
  return true;
}

bool Firewall::install(const std::vector<FirewallTunnel>& tunnels, std::string& err) {
  for (Family f : {Family::v4, Family::v6}) {
    std::vector<std::string> lines = {std::string(":") + kChainPre + " - [0:0]",
                                      std::string(":") + kChainPost + " - [0:0]"};
    for (const auto& rule : rules_for(tunnels, f)) lines.push_back("-A " + rule);
    // First in the hook, so an earlier ACCEPT in someone else's mangle rules cannot hide
    // SYNs from the clamp.
    lines.push_back(std::string("-I PREROUTING 1 -j ") + kChainPre);
    lines.push_back(std::string("-I POSTROUTING 1 -j ") + kChainPost);
    ProcessResult r = restore_sync(f, lines);
    if (!r.ok()) {
      err = std::string(restore_prog(f)) + " (installing " + family_name(f) +
            " rules) failed: " + r.describe();
      return false;
    }
  }
  return true;
}

std::vector<std::string> Firewall::diff_lines(const std::vector<FirewallTunnel>& from,
                                              const std::vector<FirewallTunnel>& to,
                                              Family f) const {
  const auto old_rules = rules_for(from, f), new_rules = rules_for(to, f);
  const std::set<std::string> olds(old_rules.begin(), old_rules.end()),
      news(new_rules.begin(), new_rules.end());
  std::vector<std::string> diff;
  for (const auto& r : old_rules) {
    if (news.count(r) == 0) diff.push_back("-D " + r);
  }
  for (const auto& r : new_rules) {
    if (olds.count(r) == 0) diff.push_back("-A " + r);
  }
  return diff;
}

void Firewall::apply_async(uv_loop_t* loop, const std::vector<FirewallTunnel>& from,
                           const std::vector<FirewallTunnel>& to,
                           std::function<void(bool, std::string)> done) {
  struct Step {
    Family f;
    std::string diff;  // delete what goes, add what comes
    std::string full;  // fallback: flush both chains and add everything
  };
  auto steps = std::make_shared<std::vector<Step>>();
  for (Family f : {Family::v4, Family::v6}) {
    const std::vector<std::string> diff = diff_lines(from, to, f);
    if (diff.empty()) continue;
    const auto new_rules = rules_for(to, f);
    // A chain line in --noflush mode flushes that chain inside the same transaction.
    std::vector<std::string> full = {std::string(":") + kChainPre + " - [0:0]",
                                     std::string(":") + kChainPost + " - [0:0]"};
    for (const auto& r : new_rules) full.push_back("-A " + r);
    steps->push_back({f, transaction(diff), transaction(full)});
  }

  // Runs step i (diff, then the full fallback if the diff fails), then step i + 1.
  auto run = std::make_shared<std::function<void(std::size_t, std::string)>>();
  *run = [loop, steps, run, done](std::size_t i, std::string errors) {
    if (i == steps->size()) {
      done(errors.empty(), errors);
      *run = nullptr;  // break the self-reference
      return;
    }
    const Step& s = (*steps)[i];
    run_process_async(
        loop, {restore_prog(s.f), "--noflush"}, s.diff,
        [loop, steps, run, i, errors](ProcessResult r) mutable {
          if (r.ok()) return (*run)(i + 1, errors);
          const Step& st = (*steps)[i];
          spdlog::warn("firewall: {} rule change failed ({}); rewriting the chains in full",
                       family_name(st.f), r.describe());
          run_process_async(loop, {restore_prog(st.f), "--noflush"}, st.full,
                            [steps, run, i, errors](ProcessResult r2) mutable {
                              if (!r2.ok()) {
                                errors += std::string(errors.empty() ? "" : "; ") +
                                          restore_prog((*steps)[i].f) + ": " + r2.describe();
                              }
                              (*run)(i + 1, errors);
                            });
        });
  };
  (*run)(0, {});
}

RuleCounts Firewall::parse_counts(const std::string& save_output,
                                  const std::string& rule_tail) {
  RuleCounts counts;
  // The queue target shared by SYN and guard rules: " -j NFQUEUE --queue-num Q --queue-bypass".
  const std::size_t target_at = rule_tail.find("-j NFQUEUE");
  const std::string target =
      target_at == std::string::npos ? rule_tail : " " + rule_tail.substr(target_at);
  std::istringstream is(save_output);
  std::string line;
  while (std::getline(is, line)) {
    // "[pkts:bytes] -A TUNSHIM-PRE -i IF <tail>" (SYN) or
    // "[pkts:bytes] -A TUNSHIM-POST -o IF -m length --length N:65535 … <target>" (guard)
    if (line.empty() || line[0] != '[') continue;
    const bool syn = ends_with(line, " " + rule_tail);
    if (!syn && !ends_with(line, target)) continue;
    std::istringstream ls(line);
    std::string counters, a, chain, dirflag, iface, m, length;
    if (!(ls >> counters >> a >> chain >> dirflag >> iface) || a != "-A") continue;
    const bool pre = chain == Firewall::kChainPre && dirflag == "-i";
    const bool post = chain == Firewall::kChainPost && dirflag == "-o";
    if (!pre && !post) continue;
    const bool guard = !syn && post && (ls >> m >> length) && m == "-m" && length == "length";
    if (!syn && !guard) continue;
    std::uint64_t pkts = 0;
    try {
      pkts = std::stoull(counters.substr(1, counters.find(':') - 1));
    } catch (...) {
      continue;
    }
    RulePackets& rp = counts[iface];
    (guard ? rp.guard : pre ? rp.pre : rp.post) += pkts;
  }
  return counts;
}

void Firewall::read_counts_async(uv_loop_t* loop, std::function<void(bool, RuleCounts)> done) {
  const std::string tail = rule_tail();
  run_process_async(loop, {save_prog(Family::v4), "-c", "-t", "mangle"}, {},
                    [loop, tail, done](ProcessResult r4) {
                      if (!r4.ok()) return done(false, {});
                      run_process_async(
                          loop, {save_prog(Family::v6), "-c", "-t", "mangle"}, {},
                          [tail, done, out4 = std::move(r4.out)](ProcessResult r6) {
                            if (!r6.ok()) return done(false, {});
                            RuleCounts c = parse_counts(out4, tail);
                            for (const auto& [iface, p] : parse_counts(r6.out, tail)) {
                              c[iface].pre += p.pre;
                              c[iface].post += p.post;
                              c[iface].guard += p.guard;
                            }
                            done(true, std::move(c));
                          });
                    });
}

}  // namespace tunshim::proxy
