// tunshim's netfilter rules, through iptables-nft / ip6tables-nft (mangle table):
//
//   -A PREROUTING  -j TUNSHIM-PRE     (one jump per hook, inserted first)
//   -A POSTROUTING -j TUNSHIM-POST
//   -A TUNSHIM-PRE  -i IF -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num Q
//   --queue-bypass -A TUNSHIM-POST -o IF -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE
//   --queue-num Q --queue-bypass
//
// and, for a tunnel with the oversize guard (guard4 / guard6 = N, see guard.h), packets
// leaving IF longer than N bytes: IPv4 only with DF set (u32 reads the 4 bytes at offset 4,
// ID and flags/fragment offset; 0x4000 is DF), IPv6 all (routers never fragment IPv6):
//
//   -A TUNSHIM-POST -o IF -m length --length N+1:65535 -m u32 --u32 "0x4&0x4000=0x4000" -j
//   NFQUEUE --queue-num Q --queue-bypass -A TUNSHIM-POST -o IF -m length --length N+1:65535 -j
//   NFQUEUE --queue-num Q --queue-bypass   (ip6tables)
//
// SYN rules come first, so a packet that matches both (a SYN with data) is queued as a SYN.
// Every rule has --queue-bypass: with tunshim dead, SYNs pass unclamped and oversize
// packets pass as they did before tunshim (fail open).
// Rule sets are applied with `*-restore --noflush` so each change is one nft transaction.
// Nothing outside these two chains and the two jump rules is ever touched.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proxy/spawn.h"

namespace tunshim::proxy {

enum class Family : std::uint8_t { v4, v6 };

// iptables-nft-restore / ip6tables-nft-restore, and the -save counterparts.
const char* restore_program(Family f);
const char* save_program(Family f);
const char* family_name(Family f);  // "ipv4" / "ipv6"
// `lines` as one *-restore transaction on the mangle table.
std::string mangle_transaction(const std::vector<std::string>& lines);

// The rules one tunnel needs: queue its SYNs in a family only if that family is clamped,
// and its outbound packets longer than guard4 / guard6 bytes (0: no guard rule in that
// family; 65535 too, as nothing is longer). A family may have a guard rule without SYN rules.
struct FirewallTunnel {
  std::string iface;
  bool v4 = false;
  bool v6 = false;
  std::uint16_t guard4 = 0;
  std::uint16_t guard6 = 0;
};

// Packet counts of one tunnel's NFQUEUE rules, summed over both families.
struct RulePackets {
  std::uint64_t pre = 0;    // TUNSHIM-PRE  -i IF SYN rule (in)
  std::uint64_t post = 0;   // TUNSHIM-POST -o IF SYN rule (out)
  std::uint64_t guard = 0;  // TUNSHIM-POST -o IF length (guard) rule; never in pre/post
};
using RuleCounts = std::map<std::string, RulePackets>;  // by interface name

class Firewall {
 public:
  static constexpr const char* kChainPre = "TUNSHIM-PRE";
  static constexpr const char* kChainPost = "TUNSHIM-POST";

  explicit Firewall(std::uint16_t queue_num) : queue_num_(queue_num) {}

  // Removes every jump to our chains (however many a crashed run left) and the chains
  // themselves, in both families. Blocking. Returns false with `err` if a program failed.
  bool remove_all(std::string& err);
  // Creates the chains with `tunnels`' rules and one jump per hook, in both families, as
  // one transaction per family. Blocking; call after remove_all().
  bool install(const std::vector<FirewallTunnel>& tunnels, std::string& err);
  // Changes the rules from `from` to `to` without a moment where a kept tunnel's SYNs are
  // not queued: one transaction per family deleting the rules that go and adding the ones
  // that come (counters of kept rules survive); if that fails, one transaction flushing
  // both chains and adding `to` in full. Runs on the loop; `done(ok, error text)`.
  void apply_async(uv_loop_t* loop, const std::vector<FirewallTunnel>& from,
                   const std::vector<FirewallTunnel>& to,
                   std::function<void(bool, std::string)> done);
  // The rule lines of apply_async()'s transaction for family `f`: "-D rule" for each rule
  // of `from` not in `to`, then "-A rule" for each of `to` not in `from` (a guard rule whose
  // N changed is one of each, in the same transaction). Empty: nothing to change.
  std::vector<std::string> diff_lines(const std::vector<FirewallTunnel>& from,
                                      const std::vector<FirewallTunnel>& to, Family f) const;
  // Reads the packet counters of our NFQUEUE rules (iptables-save -c), on the loop: SYN
  // rules in pre/post, guard rules apart in guard.
  void read_counts_async(uv_loop_t* loop, std::function<void(bool, RuleCounts)> done);

  // The rule lines as iptables-save prints them, for the startup log.
  std::vector<std::string> describe(const std::vector<FirewallTunnel>& tunnels, Family f) const;

  // Exposed for tests and for parsing save output.
  std::string queue_rule(const char* chain, const std::string& iface) const;
  // The guard rule (without "-A ") queueing packets leaving `iface` longer than `n` bytes
  // in family `f`; "" when there is none (n 0 or 65535).
  std::string guard_rule(const std::string& iface, std::uint16_t n, Family f) const;
  // All of one tunnel's rules in family `f` (without "-A "), in chain order: what
  // install() adds and what `tunshim reapply` should restore.
  std::vector<std::string> tunnel_rules(const FirewallTunnel& t, Family f) const;
  // `rule_tail` is rule_tail() (the SYN rules' text after the interface); guard rules are
  // recognised by their length match and the same queue target, and counted apart.
  static RuleCounts parse_counts(const std::string& save_output, const std::string& rule_tail);

  std::string rule_tail() const;

 private:
  std::vector<std::string> rules_for(const std::vector<FirewallTunnel>& tunnels,
                                     Family f) const;

  std::uint16_t queue_num_;
};

}  // namespace tunshim::proxy

namespace tunshim::proxy {

bool operator==(const FirewallTunnel& a, const FirewallTunnel& b) noexcept;

// The daemon's rule changes as one serial queue that keeps only the latest desired state.
//
//   want(rules)       "the firewall should hold these": coalesced; while a job runs, a newer
//                     want replaces an older one that has not started, so after a burst of
//                     reloads and path-MTU changes only the latest state is applied
//   reapply(iface)    `tunshim reapply`: one tunnel's rules restored, queued behind the rest
//   stop(done)        after the running job, "remove everything"; queued jobs are dropped
//                     (their callbacks told so) and later requests refused
//
// One job runs at a time. A failed change leaves installed() as it was and is not retried by
// itself (the next want() tries again). Callbacks run from the backend's completion, or from
// inside the call when there is nothing to do; a callback may call want()/reapply()/stop().
class FirewallSync {
 public:
  using Rules = std::vector<FirewallTunnel>;
  using Done = std::function<void(bool ok, std::string error)>;
  // What the jobs do; for_firewall() binds them to a Firewall on a loop.
  struct Backend {
    std::function<void(const Rules& from, const Rules& to, Done done)> apply;
    std::function<void(const FirewallTunnel& tunnel, Done done)> reapply;
    std::function<void(Done done)> remove_all;
  };
  static Backend for_firewall(uv_loop_t* loop, Firewall& fw);

  // `installed`: what the firewall holds now (what Firewall::install() put there).
  FirewallSync(Backend backend, Rules installed)
      : backend_(std::move(backend)), installed_(std::move(installed)) {}
  FirewallSync(const FirewallSync&) = delete;
  FirewallSync& operator=(const FirewallSync&) = delete;

  // Asks for `rules`. `done(ok, error)` is called once, when the job that applies this state
  // or a later one has finished (ok: installed() is now the latest wanted state), or at once
  // when that is installed already and nothing is running; after stop(), with false.
  void want(Rules rules, Done done = {});
  // Restores `iface`'s rules as installed() has them (see rule_reapply.h), after what is
  // queued before it. Fails when iface is not installed (error lists what is).
  void reapply(const std::string& iface, Done done);
  // Removes everything after the running job; `done` with the removal's result. Once.
  void stop(Done done);

  const Rules& installed() const noexcept { return installed_; }
  bool busy() const noexcept { return running_; }
  // Nothing running and no newer state waiting: installed() is the latest wanted state.
  bool settled() const noexcept { return !running_ && !wanted_; }
  bool stopping() const noexcept { return stopping_; }
  std::uint64_t jobs_run() const noexcept { return jobs_; }

 private:
  void next();
  void finish(bool ok, std::string error);

  Backend backend_;
  Rules installed_;
  bool running_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  std::uint64_t jobs_ = 0;
  // The coalesced desired state, if one is waiting, and everyone waiting for it.
  std::optional<Rules> wanted_;
  std::vector<Done> wanted_done_;
  // The job running now: its kind, what it installs on success, whom it tells.
  enum class Kind : std::uint8_t { apply, reapply, remove };
  Kind kind_ = Kind::apply;
  Rules target_;
  std::vector<Done> running_done_;
  std::deque<std::pair<std::string, Done>> reapplies_;
  Done stop_done_;
};

}  // namespace tunshim::proxy
