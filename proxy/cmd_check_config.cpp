// `tunshim check-config`: validates a config file without touching the system, and shows the
// settings the daemon would run with (stdout, re-parseable TOML) or every error (stderr).
#include <cstdio>
#include <variant>

#include "proxy/commands.h"
#include "proxy/config.h"

namespace tunshim::proxy {

int cmd_check_config(const RunOptions& opt) {
  const ConfigResult result = load_config(opt.config_path);
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&result)) {
    for (const ConfigError& e : *errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  const std::string text = format_config(std::get<Config>(result));
  // A full disk or closed pipe must not pass as a successful check.
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
      std::fflush(stdout) != 0) {
    std::perror("tunshim check-config: writing the effective config");
    return 1;
  }
  return 0;
}

}  // namespace tunshim::proxy
