// Entry points of the `tunshim` subcommands. main.cpp only parses the command line and
// calls one of these; each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>

namespace tunshim::proxy {

struct ClampOptions {
  std::uint16_t mss4 = 0;   // --mss N, or derived from --mtu N (N - 40)
  std::uint16_t mss6 = 0;   // --mss6 N, else N - 20 from --mss (same link MTU), or N - 60 from --mtu
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

}  // namespace tunshim::proxy
