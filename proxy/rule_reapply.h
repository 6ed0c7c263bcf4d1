// `tunshim reapply IFACE`, firewall part: make one tunnel's NFQUEUE rules exactly what they
// should be, whatever happened to them (deleted by hand, duplicated, a flushed chain, a
// missing jump), without touching other tunnels' rules. One nft transaction per family:
// delete every copy of the tunnel's rules, add them once (the SYN rules if that family is
// clamped, the guard rule if the tunnel has one now), and
// re-create a missing chain or jump. Atomic, so a SYN never finds the rule missing.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "proxy/firewall.h"

namespace tunshim::proxy {

// The `*-restore --noflush` lines for one family, from that family's
// `*-save -t mangle` output. `rules` are the tunnel's rules as Firewall::queue_rule()
// prints them (without "-A "); `want` says whether they should exist in this family.
// Empty when nothing needs to change.
std::vector<std::string> reapply_lines(const std::string& save_output,
                                       const std::vector<std::string>& rules, bool want);
// The same with one `want` per rule (the SYN rules follow the family's clamp, the guard
// rule its own setting).
std::vector<std::string> reapply_lines(const std::string& save_output,
                                       const std::vector<std::string>& rules,
                                       const std::vector<bool>& want);

// Runs the save / restore pair for both families on `loop`; `done(ok, summary or error)`.
void reapply_rules_async(uv_loop_t* loop, const Firewall& fw, const FirewallTunnel& tunnel,
                         std::function<void(bool, std::string)> done);

}  // namespace tunshim::proxy
