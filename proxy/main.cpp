// The `tunshim` command line: parsing and dispatch only, no logic.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "clamp/mtu.h"
#include "proxy/commands.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/tunshim/tunshim.conf";

}  // namespace

int main(int argc, char** argv) {
  using namespace tunshim;
  CLI::App app{"tunshim: keeps a client VPN working (MSS clamping, path-MTU, keepalive)"};
  app.set_version_flag("--version", std::string("tunshim ") + TUNSHIM_VERSION);
  app.require_subcommand(1);

  proxy::RunOptions run_opt{kDefaultConfig};
  auto* run =
      app.add_subcommand("run", "Run the daemon: clamp MSS inline on the configured tunnels");
  run->add_option("-c,--config", run_opt.config_path, "Config file")->capture_default_str();

  auto* check = app.add_subcommand("check-config",
                                   "Validate a config file and print the effective settings");
  check->add_option("-c,--config", run_opt.config_path, "Config file")->capture_default_str();

  proxy::ClampOptions clamp_opt;
  std::optional<std::uint16_t> mss, mtu, mss6;
  auto* clamp = app.add_subcommand(
      "clamp", "Clamp TCP MSS in a pcap file, as the daemon would on the wire");
  auto* o_mss =
      clamp
          ->add_option(
              "--mss", mss,
              "MSS target for IPv4 SYNs (IPv6 gets N-20, the same link MTU, unless --mss6)")
          ->check(CLI::Range(1, 65535));
  auto* o_mtu =
      clamp
          ->add_option("--mtu", mtu, "Path MTU: MSS targets become N-40 (IPv4) and N-60 (IPv6)")
          ->check(CLI::Range(68, 65535));
  o_mss->excludes(o_mtu);
  clamp->add_option("--mss6", mss6, "MSS target for IPv6 SYNs")->check(CLI::Range(1, 65535));
  clamp->add_flag("--json", clamp_opt.json, "Print the summary as JSON");
  clamp->add_option("IN", clamp_opt.input, "Input pcap file")->required();
  clamp->add_option("OUT", clamp_opt.output, "Output pcap file (written atomically)")
      ->required();

  proxy::ProbeOptions probe_opt;
  auto* probe = app.add_subcommand(
      "probe", "Find the path MTU through a tunnel with DF probes (needs no ICMP errors)");
  probe->add_option("IFACE", probe_opt.iface, "Tunnel interface, e.g. ppp0")->required();
  probe->add_option("--target", probe_opt.target,
                    "Address to probe (default: the interface's point-to-point peer)");
  probe->add_option("--max", probe_opt.max, "Largest size to try (default: the interface MTU)")
      ->check(CLI::Range(68, 65535));
  probe
      ->add_option("--min", probe_opt.min,
                   "Base size that must answer (default 1200 IPv4, 1280 IPv6)")
      ->check(CLI::Range(576, 65535));
  probe->add_option("--timeout", probe_opt.timeout, "Give up after this many seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  probe->add_flag("--json", probe_opt.json, "Print the result as JSON");
  probe->add_flag("-v,--verbose", probe_opt.verbose, "Log every probe and reply to stderr");

  proxy::StatsOptions stats_opt;
  std::string watch_text;
  auto* stats = app.add_subcommand(
      "stats", "Show the running daemon's numbers per tunnel (control socket, root only)");
  stats->footer(
      "Without IFACE or --all: a line per interface pattern (ppp+: interfaces now, appeared "
      "and gone, their states and path MTUs, SYNs clamped in total), and a column per "
      "exact-name tunnel and per instance of a pattern with at most 8 instances.");
  auto* o_json = stats->add_flag("--json", stats_opt.json,
                                 "Print them as JSON (every tunnel, unless IFACE is given)");
  auto* o_all = stats->add_flag(
      "--all", stats_opt.all,
      "Every tunnel, each pattern's instances too: a column each up to 8, else a line each");
  stats
      ->add_option("IFACE", stats_opt.iface,
                   "Only this tunnel (e.g. ppp17), or a pattern's instances (e.g. ppp+)")
      ->excludes(o_all);
  auto* o_watch =
      stats
          ->add_option("--watch", watch_text,
                       "Print the view again every SECONDS (default 2) with rates per second, "
                       "in place on a terminal, until Ctrl-C (`--watch ppp17`: a word that is "
                       "not a number is the IFACE)")
          ->type_name("SECONDS")
          ->expected(0, 1)
          ->excludes(o_json);
  stats->add_option("--socket", stats_opt.socket, "Control socket of the daemon")
      ->capture_default_str();

  proxy::ReapplyOptions reapply_opt;
  auto* reapply = app.add_subcommand("reapply",
                                     "Re-apply a tunnel's rules and search its path MTU again "
                                     "in the running daemon (root only)");
  reapply->add_option("IFACE", reapply_opt.iface, "Tunnel interface, e.g. ppp0")->required();
  reapply->add_option("--socket", reapply_opt.socket, "Control socket of the daemon")
      ->capture_default_str();

  proxy::DemoOptions demo_opt;
  auto* demo = app.add_subcommand(
      "demo",
      "Show tunshim fixing a broken VPN, on a throwaway namespace lab (root, about 30 s)");
  demo->footer(
      "Builds three network namespaces (tsdemo-PID-client, tsdemo-PID-router, "
      "tsdemo-PID-server) "
      "joined by a real VPN tunnel (socat TUN over UDP) whose path drops large packets without "
      "an ICMP error and whose NAT forgets idle flows after 5 s. Then: a download stalls; "
      "tunshim starts on the client (mss = \"auto\"); the same download completes; `tunshim "
      "stats` shows what it did; an idle TCP connection outlives the NAT timeout. Everything "
      "is "
      "removed at the end, on an error and on Ctrl-C or SIGTERM. Needs ip (iproute2), iptables "
      "and socat. See /usr/share/doc/tunshim/DEMO.md.");
  demo->add_flag("--keep", demo_opt.keep,
                 "Leave the lab up afterwards, until Ctrl-C, and print how to look at it");

  proxy::DoctorOptions doctor_opt;
  auto* doctor = app.add_subcommand(
      "doctor",
      "Say what is wrong with a tunnel, with the evidence, and the config that fixes it");
  doctor->add_option("IFACE", doctor_opt.iface, "Tunnel interface to examine live (root)");
  doctor->add_option("--read", doctor_opt.read,
                     "Examine a capture file (pcap or pcapng) instead");
  doctor->add_option("--pmtu", doctor_opt.pmtu, "The path MTU, when known (with --read)")
      ->check(CLI::Range(68, 65535));
  doctor->add_option("--seconds", doctor_opt.seconds, "How long to capture")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  doctor->add_option("--target", doctor_opt.target,
                     "Address to probe (default: the interface's point-to-point peer)");
  doctor->add_option("--socket", doctor_opt.socket, "Control socket of a running tunshim")
      ->capture_default_str();
  doctor->add_flag("--json", doctor_opt.json, "Print the report as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*run) return proxy::cmd_run(run_opt);
  if (*check) return proxy::cmd_check_config(run_opt);
  if (*probe) return proxy::cmd_probe(probe_opt);
  if (*stats) {
    if (o_watch->count() > 0) {
      // `--watch ppp0`: CLI11 offers the word after --watch as SECONDS; one that is not a
      // number is the IFACE.
      double seconds = 2;
      if (!watch_text.empty()) {
        char* end = nullptr;
        seconds = std::strtod(watch_text.c_str(), &end);
        if (end == watch_text.c_str() || *end != '\0') {
          if (!stats_opt.iface.empty() || stats_opt.all) {
            std::fprintf(stderr, "tunshim stats: --watch takes SECONDS, not '%s'\n",
                         watch_text.c_str());
            return 2;
          }
          stats_opt.iface = watch_text;
          seconds = 2;
        } else if (!(seconds >= 0.1 && seconds <= 86400.0)) {
          std::fprintf(stderr, "tunshim stats: --watch SECONDS must be from 0.1 to 86400\n");
          return 2;
        }
      }
      stats_opt.watch = seconds;
    }
    return proxy::cmd_stats(stats_opt);
  }
  if (*reapply) return proxy::cmd_reapply(reapply_opt);
  if (*demo) return proxy::cmd_demo(demo_opt);
  if (*doctor) return proxy::cmd_doctor(doctor_opt);
  if (*clamp) {
    if (!mss && !mtu) {
      std::fprintf(stderr,
                   "tunshim clamp: give --mss N or --mtu N (see tunshim clamp --help)\n");
      return 2;
    }
    if (mtu) {
      clamp_opt.mss4 = clamp::mss_from_mtu4(*mtu);
      clamp_opt.mss6 = clamp::mss_from_mtu6(*mtu);
    } else {
      clamp_opt.mss4 = *mss;
      clamp_opt.mss6 = *mss > 20 ? static_cast<std::uint16_t>(*mss - 20) : *mss;
    }
    if (mss6) clamp_opt.mss6 = *mss6;
    return proxy::cmd_clamp(clamp_opt);
  }
  return 2;
}
