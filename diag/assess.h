// From evidence to advice: the doctor's verdict. Combines the passive findings (Analyser)
// with what the active half measured (path MTU by DF probes, whether too-big errors came
// back, RTT and loss) and what a running tunshim does on the interface, into risks ranked
// by how badly they hurt, a one-paragraph verdict, and the [[tunnel]] block that fixes
// them. Pure: the caller gathers every fact; nothing here touches the system.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "diag/analyser.h"

namespace tunshim::diag {

std::string to_string(const Address& a);

// What the live half found out; a --read run leaves most of it unset.
struct ActiveFacts {
  std::string iface;  // "" for a capture file
  bool live = false;
  bool iface_up = false;
  std::uint16_t iface_mtu = 0;  // 0: unknown
  bool has_peer = false;        // a point-to-point peer the prober can use
  std::string target;           // what was probed
  bool target_given = false;    // --target ADDR rather than the peer

  // Path-MTU search by DF probes (keepalive::PmtuSearch via the prober).
  bool probed = false;
  bool probe_complete = false;  // the search completed: pmtu is measured
  std::uint16_t pmtu = 0;       // measured (or --pmtu given: then measured = false)
  bool pmtu_given = false;      // --pmtu N on a capture file
  std::uint64_t probes_sent = 0;
  std::uint64_t probe_replies = 0;
  std::uint64_t too_big_hints = 0;  // too-big errors quoting our probes (ICMP works)
  std::string probe_error;          // why the search did not complete, when it did not

  // RTT and loss from echoes of a small size to the target.
  std::uint64_t echoes_sent = 0;
  std::uint64_t echoes_answered = 0;
  double rtt_min_ms = 0, rtt_avg_ms = 0, rtt_max_ms = 0;

  // A running tunshim on this interface (from its control socket).
  bool daemon = false;
  std::uint16_t daemon_mss4 = 0;  // clamp targets in effect; 0 = off
  std::uint16_t daemon_mss6 = 0;
  std::uint16_t daemon_pmtu = 0;
};

enum class Severity : std::uint8_t { critical, high, medium, low };
const char* to_string(Severity s) noexcept;

struct Risk {
  Severity severity = Severity::low;
  std::string title;     // one line, plain words
  std::string evidence;  // the numbers behind it
};

struct Assessment {
  bool healthy = false;
  std::string verdict;      // a few plain sentences
  std::vector<Risk> risks;  // most severe first
  // The [[tunnel]] block to paste into tunshim.conf (TOML, with comments).
  std::string config;
  std::uint16_t path_mtu = 0;  // the value everything was judged against (0: unknown)
};

Assessment assess(const Findings& f, const ActiveFacts& a);

}  // namespace tunshim::diag
