#include "proxy/rule_reapply.h"

#include <fmt/format.h>

#include <memory>
#include <sstream>

namespace tunshim::proxy {
std::vector<std::string> reapply_lines(const std::string& save_output,
                                       const std::vector<std::string>& rules, bool want) {
  return reapply_lines(save_output, rules, std::vector<bool>(rules.size(), want));
}

std::vector<std::string> reapply_lines(const std::string& save_output,
                                       const std::vector<std::string>& rules,
                                       const std::vector<bool>& want) {
  const std::string pre = Firewall::kChainPre, post = Firewall::kChainPost;
  bool have_pre = false, have_post = false, jump_pre = false, jump_post = false;
  std::vector<std::size_t> copies(rules.size(), 0);
  std::istringstream is(save_output);
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind(":" + pre + " ", 0) == 0) have_pre = true;
    if (line.rfind(":" + post + " ", 0) == 0) have_post = true;
    if (line == "-A PREROUTING -j " + pre) jump_pre = true;
    if (line == "-A POSTROUTING -j " + post) jump_post = true;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      if (line == "-A " + rules[i]) ++copies[i];
    }
  }
  std::vector<std::string> out;
  bool changed = false;
  // A chain line in --noflush mode creates the chain, or flushes an existing one: only
  // for a chain that is missing.
  if (!have_pre) out.push_back(":" + pre + " - [0:0]");
  if (!have_post) out.push_back(":" + post + " - [0:0]");
  changed = !have_pre || !have_post;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    for (std::size_t n = 0; n < copies[i]; ++n) out.push_back("-D " + rules[i]);
    const bool w = i < want.size() && want[i];
    if (w) out.push_back("-A " + rules[i]);
    // Deleting and re-adding one copy is a change too: it restores the rule's position
    // and counters; only "nothing there and nothing wanted" is a no-op.
    changed = changed || copies[i] > 0 || w;
  }
  if (!jump_pre) out.push_back("-I PREROUTING 1 -j " + pre);
  if (!jump_post) out.push_back("-I POSTROUTING 1 -j " + post);
  changed = changed || !jump_pre || !jump_post;
  if (!changed) out.clear();
  return out;
}

void reapply_rules_async(uv_loop_t* loop, const Firewall& fw, const FirewallTunnel& tunnel,
                         std::function<void(bool, std::string)> done) {
  // Family by family: save, compute, restore; then the next family.
  auto step = std::make_shared<std::function<void(int, std::string)>>();
  *step = [loop, &fw, tunnel, done, step](int i, std::string summary) {
    if (i == 2) {
      done(true, summary);
      *step = nullptr;  // break the self-reference
      return;
    }
    const Family f = i == 0 ? Family::v4 : Family::v6;
    const bool want = f == Family::v4 ? tunnel.v4 : tunnel.v6;
    // The SYN rules are always looked for (stale copies go even in a family not clamped);
    // the guard rule at the tunnel's current length when it has one.
    std::vector<std::string> rules = {fw.queue_rule(Firewall::kChainPre, tunnel.iface),
                                      fw.queue_rule(Firewall::kChainPost, tunnel.iface)};
    std::vector<bool> wants = {want, want};
    std::string guard =
        fw.guard_rule(tunnel.iface, f == Family::v4 ? tunnel.guard4 : tunnel.guard6, f);
    if (!guard.empty()) {
      rules.push_back(std::move(guard));
      wants.push_back(true);
    }
    run_process_async(
        loop, {save_program(f), "-t", "mangle"}, {},
        [loop, rules, wants, want, f, i, summary, done, step](ProcessResult saved) {
          if (!saved.ok()) {
            done(false, fmt::format("{} failed: {}", save_program(f), saved.describe()));
            *step = nullptr;
            return;
          }
          const auto lines = reapply_lines(saved.out, rules, wants);
          const std::string what =
              fmt::format("{}{}: {}", summary.empty() ? "" : "; ", family_name(f),
                          want ? "rules re-applied" : "not clamped, no rules");
          if (lines.empty()) return (*step)(i + 1, summary + what);
          run_process_async(
              loop, {restore_program(f), "--noflush"}, mangle_transaction(lines),
              [f, i, summary, what, done, step](ProcessResult r) {
                if (!r.ok()) {
                  done(false, fmt::format("{} failed: {}", restore_program(f), r.describe()));
                  *step = nullptr;
                  return;
                }
                (*step)(i + 1, summary + what);
              });
        });
  };
  (*step)(0, {});
}

}  // namespace tunshim::proxy
