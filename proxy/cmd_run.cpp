// `tunshim run`: validate the config before touching the system, then hand over to Daemon.
#include <spdlog/spdlog.h>

#include <csignal>
#include <variant>

#include "proxy/commands.h"
#include "proxy/config.h"
#include "proxy/daemon.h"
#include "proxy/log.h"
#include "proxy/test_knobs.h"

namespace tunshim::proxy {
namespace {
// EX_CONFIG from sysexits.h: the unit's RestartPreventExitStatus names it, so systemd does
// not restart a daemon whose config can only fail again.
constexpr int kExitConfig = 78;
}  // namespace

int cmd_run(const RunOptions& opt) {
  log_init(spdlog::level::info);
  ConfigResult res = load_config(opt.config_path);
  if (auto* errors = std::get_if<std::vector<ConfigError>>(&res)) {
    for (const auto& e : *errors) spdlog::error("{}", e.to_string());
    spdlog::error("{}: {} error(s); not starting", opt.config_path, errors->size());
    return kExitConfig;
  }
  Config config = std::get<Config>(std::move(res));
  if (config.path.empty()) config.path = opt.config_path;
  if (auto lvl = parse_log_level(config.global.log_level)) spdlog::set_level(*lvl);
  test_timer_divisor();  // reads the test-only knob now, so a set one is said at start
  log_config_warnings(config);
  // iptables-restore may exit before reading all of its stdin; a write to that pipe must
  // fail with EPIPE rather than kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
  Daemon daemon(std::move(config));
  return daemon.run();
}

}  // namespace tunshim::proxy
