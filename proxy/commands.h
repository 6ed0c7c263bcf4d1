// Entry points of the `tunshim` subcommands. main.cpp only parses the command line and
// calls one of these; each returns the process exit code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tunshim::proxy {

struct ClampOptions {
  std::uint16_t mss4 = 0;  // --mss N, or derived from --mtu N (N - 40)
  std::uint16_t mss6 =
      0;  // --mss6 N, else N - 20 from --mss (same link MTU), or N - 60 from --mtu
  std::string input;
  std::string output;
  bool json = false;
};
int cmd_clamp(const ClampOptions& opt);

struct RunOptions {
  std::string config_path;
};
int cmd_run(const RunOptions& opt);
int cmd_check_config(const RunOptions& opt);

struct ProbeOptions {
  std::string iface;
  std::string target;     // --target ADDR; empty: the interface's point-to-point peer
  std::uint16_t max = 0;  // --max N: upper bound, may exceed the interface MTU; 0: the MTU
  std::uint16_t min = 0;  // --min N: base (fallback) size; 0: 1200 IPv4 / 1280 IPv6
  double timeout = 30.0;  // --timeout seconds for the whole search
  bool json = false;
  bool verbose = false;  // every probe, reply and state change on stderr
};
// `tunshim probe`: one path-MTU search; 0 when it completed, 1 when it could not.
int cmd_probe(const ProbeOptions& opt);

// `tunshim stats [IFACE | --all] [--json | --watch [SECONDS]] [--socket PATH]`: the running
// daemon's numbers, over its control socket: a line per interface pattern and the
// tunnels' table (stats_report.h has the views), or JSON; with --watch the view again every
// SECONDS with rates, until Ctrl-C (0) or the daemon goes away (1). 0 on an answer, 1
// otherwise (an IFACE that is no tunnel included).
struct StatsOptions {
  bool json = false;
  bool all = false;             // every tunnel's column or line
  std::string iface;            // only this tunnel, or a pattern's instances
  std::optional<double> watch;  // refresh interval in seconds
  std::string socket = "/run/tunshim.sock";
};
int cmd_stats(const StatsOptions& opt);

// `tunshim reapply IFACE [--socket PATH]`: re-apply the tunnel's rules (and re-probe).
struct ReapplyOptions {
  std::string iface;
  std::string socket = "/run/tunshim.sock";
};
int cmd_reapply(const ReapplyOptions& opt);

// `tunshim demo [--keep]`: builds a namespace lab with a broken VPN, shows tunshim fixing it,
// tears it down. Replaces the process with the lab's shell; returns only on an error (1).
struct DemoOptions {
  bool keep = false;  // leave the lab up until Ctrl-C
};
int cmd_demo(const DemoOptions& opt);

// `tunshim doctor IFACE` (live, root) or `tunshim doctor --read FILE`: what is wrong with a
// tunnel, from a capture and DF probes, and the [[tunnel]] block that fixes it. Exit code
// 0 when the verdict is healthy, 1 when it found risks, 2 when it could not run.
struct DoctorOptions {
  std::string iface;
  std::string read;        // --read FILE: a capture instead of the live interface
  std::uint16_t pmtu = 0;  // --pmtu N: the path MTU, when known (capture files)
  double seconds = 5.0;    // --seconds N: live capture window
  std::string target;      // --target ADDR: what to probe; default the p-t-p peer
  std::string socket = "/run/tunshim.sock";
  bool json = false;
};
int cmd_doctor(const DoctorOptions& opt);

}  // namespace tunshim::proxy
