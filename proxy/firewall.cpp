#include "proxy/firewall.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "proxy/rule_reapply.h"

namespace tunshim::proxy {

// ---- rules --------------------------------------------------------------------------------

const char* restore_program(Family f) {
  // Debian may default `iptables` to the legacy backend; tunshim always speaks nft.
  return f == Family::v4 ? "iptables-nft-restore" : "ip6tables-nft-restore";
}
const char* save_program(Family f) {
  return f == Family::v4 ? "iptables-nft-save" : "ip6tables-nft-save";
}
const char* family_name(Family f) { return f == Family::v4 ? "ipv4" : "ipv6"; }

std::string mangle_transaction(const std::vector<std::string>& lines) {
  std::string s = "*mangle\n";
  for (const auto& l : lines) s += l + "\n";
  s += "COMMIT\n";
  return s;
}

namespace {

ProcessResult restore_sync(Family f, const std::vector<std::string>& lines) {
  return run_process({restore_program(f), "--noflush"}, mangle_transaction(lines));
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
    ProcessResult saved = run_process({save_program(f), "-t", "mangle"});
    if (!saved.ok()) {
      err = std::string(save_program(f)) + " failed: " + saved.describe();
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
      err = std::string(restore_program(f)) + " (removing " + family_name(f) +
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
      err = std::string(restore_program(f)) + " (installing " + family_name(f) +
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
    steps->push_back({f, mangle_transaction(diff), mangle_transaction(full)});
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
        loop, {restore_program(s.f), "--noflush"}, s.diff,
        [loop, steps, run, i, errors](ProcessResult r) mutable {
          if (r.ok()) return (*run)(i + 1, errors);
          const Step& st = (*steps)[i];
          spdlog::warn("firewall: {} rule change failed ({}); rewriting the chains in full",
                       family_name(st.f), r.describe());
          run_process_async(loop, {restore_program(st.f), "--noflush"}, st.full,
                            [steps, run, i, errors](ProcessResult r2) mutable {
                              if (!r2.ok()) {
                                errors += std::string(errors.empty() ? "" : "; ") +
                                          restore_program((*steps)[i].f) + ": " + r2.describe();
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
  run_process_async(loop, {save_program(Family::v4), "-c", "-t", "mangle"}, {},
                    [loop, tail, done](ProcessResult r4) {
                      if (!r4.ok()) return done(false, {});
                      run_process_async(
                          loop, {save_program(Family::v6), "-c", "-t", "mangle"}, {},
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

// ---- the serial queue -----------------------------------------------------------------------

namespace tunshim::proxy {

bool operator==(const FirewallTunnel& a, const FirewallTunnel& b) noexcept {
  return a.iface == b.iface && a.v4 == b.v4 && a.v6 == b.v6 && a.guard4 == b.guard4 &&
         a.guard6 == b.guard6;
}

FirewallSync::Backend FirewallSync::for_firewall(uv_loop_t* loop, Firewall& fw) {
  Backend b;
  b.apply = [loop, &fw](const Rules& from, const Rules& to, Done done) {
    fw.apply_async(loop, from, to, std::move(done));
  };
  b.reapply = [loop, &fw](const FirewallTunnel& t, Done done) {
    reapply_rules_async(loop, fw, t, std::move(done));
  };
  // Blocking, as at exit nothing else is left to run.
  b.remove_all = [&fw](Done done) {
    std::string err;
    const bool ok = fw.remove_all(err);
    done(ok, err);
  };
  return b;
}

void FirewallSync::want(Rules rules, Done done) {
  if (stopping_) {
    if (done) done(false, "tunshim is stopping");
    return;
  }
  wanted_ = std::move(rules);
  if (done) wanted_done_.push_back(std::move(done));
  next();
}

void FirewallSync::reapply(const std::string& iface, Done done) {
  if (stopping_) return done(false, "tunshim is stopping");
  reapplies_.emplace_back(iface, std::move(done));
  next();
}

void FirewallSync::stop(Done done) {
  if (stopping_) return;
  stopping_ = true;
  stop_done_ = std::move(done);
  // What has not started will not: tell whoever waits.
  std::vector<Done> dropped = std::move(wanted_done_);
  wanted_done_.clear();
  wanted_.reset();
  auto reapplies = std::move(reapplies_);
  reapplies_.clear();
  for (auto& d : dropped) d(false, "tunshim is stopping");
  for (auto& [iface, d] : reapplies) d(false, "tunshim is stopping");
  next();
}

void FirewallSync::next() {
  if (running_ || stopped_) return;
  if (stopping_) {
    running_ = true;
    kind_ = Kind::remove;
    ++jobs_;
    backend_.remove_all([this](bool ok, std::string err) { finish(ok, std::move(err)); });
    return;
  }
  if (wanted_) {
    target_ = std::move(*wanted_);
    wanted_.reset();
    running_done_ = std::move(wanted_done_);
    wanted_done_.clear();
    if (target_ == installed_) {  // nothing to change: no program to run
      auto waiting = std::move(running_done_);
      running_done_.clear();
      for (auto& d : waiting) d(true, {});
      return next();
    }
    running_ = true;
    kind_ = Kind::apply;
    ++jobs_;
    // Copies: the backend may finish (and so replace both) before it returns.
    const Rules from = installed_, to = target_;
    backend_.apply(from, to, [this](bool ok, std::string err) { finish(ok, std::move(err)); });
    return;
  }
  if (!reapplies_.empty()) {
    auto [iface, done] = std::move(reapplies_.front());
    reapplies_.pop_front();
    const FirewallTunnel* t = nullptr;
    std::string names;
    for (const auto& ft : installed_) {
      if (ft.iface == iface) t = &ft;
      names += (names.empty() ? "" : ", ") + ft.iface;
    }
    if (t == nullptr) {
      done(false, iface + " is not a configured tunnel (configured: " + names + ")");
      return next();
    }
    running_ = true;
    kind_ = Kind::reapply;
    running_done_.clear();
    running_done_.push_back(std::move(done));
    ++jobs_;
    const FirewallTunnel tunnel = *t;
    backend_.reapply(tunnel, [this](bool ok, std::string err) { finish(ok, std::move(err)); });
  }
}

void FirewallSync::finish(bool ok, std::string error) {
  running_ = false;
  if (kind_ == Kind::remove) {
    stopped_ = true;
    installed_.clear();
    Done d = std::move(stop_done_);
    stop_done_ = nullptr;
    if (d) d(ok, std::move(error));
    return;
  }
  if (kind_ == Kind::apply && ok) installed_ = std::move(target_);
  target_.clear();
  auto waiting = std::move(running_done_);
  running_done_.clear();
  for (auto& d : waiting) d(ok, error);
  next();
}

}  // namespace tunshim::proxy
