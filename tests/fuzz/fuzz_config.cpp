// Config parser fuzz harness: any bytes must yield a Config or errors, never a crash or an
// escaping exception. Errors point inside the input; an accepted config, printed by
// check-config, shows every key the file set and parses back to the same values, and printing
// that again changes nothing (the printed form is what operators copy into files).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "proxy/config.h"

namespace {

using namespace tunshim::proxy;

bool same(const TunnelConfig& a, const TunnelConfig& b) {
  return a.interface == b.interface && a.mss4 == b.mss4 && a.mss6 == b.mss6 &&
         a.mss4_auto == b.mss4_auto && a.mss6_auto == b.mss6_auto && a.guard == b.guard &&
         a.set_interface_mtu == b.set_interface_mtu && a.probe_target == b.probe_target &&
         a.probe_min == b.probe_min && a.probe_max == b.probe_max &&
         a.reprobe_interval == b.reprobe_interval && a.keepalive == b.keepalive &&
         a.keepalive_interval == b.keepalive_interval &&
         a.keepalive_target == b.keepalive_target &&
         a.down_after_misses == b.down_after_misses && a.on_down == b.on_down &&
         a.on_up == b.on_up && a.hook_timeout == b.hook_timeout &&
         a.backoff_max == b.backoff_max;
}

bool same(const GlobalConfig& a, const GlobalConfig& b) {
  return a.log_level == b.log_level && a.queue_num == b.queue_num &&
         a.queue_maxlen == b.queue_maxlen && a.stats_listen == b.stats_listen &&
         a.control_socket == b.control_socket;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(static_cast<const char*>(static_cast<const void*>(data)), size);
  const ConfigResult r = parse_config(text, "fuzz.conf");
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    // Refused means at least one reason, each within the input.
    if (errors->empty()) __builtin_trap();
    const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
    for (const ConfigError& e : *errors) {
      if (e.file != "fuzz.conf" || e.line < 0 || e.line > lines || e.message.empty())
        __builtin_trap();
    }
    return 0;
  }
  const Config& c = std::get<Config>(r);
  if (c.tunnels.empty()) __builtin_trap();
  const std::string printed = format_config(c);
  const ConfigResult r2 = parse_config(printed, "printed.conf");
  const auto* c2 = std::get_if<Config>(&r2);
  if (c2 == nullptr || c2->tunnels.size() != c.tunnels.size()) __builtin_trap();
  for (std::size_t i = 0; i < c.tunnels.size(); ++i) {
    if (!same(c.tunnels[i], c2->tunnels[i])) __builtin_trap();
    // Every key the file set is a schema key, so check-config printed it.
    for (const std::string& k : c.tunnels[i].keys_from_file) {
      if (printed.find('\n' + k + " = ") == std::string::npos) __builtin_trap();
    }
  }
  if (!same(c.global, c2->global)) __builtin_trap();
  for (const std::string& k : c.global.keys_from_file) {
    if (printed.find('\n' + k + " = ") == std::string::npos) __builtin_trap();
  }
  // From then on printing is a fixed point: what the printed file prints is that file again
  // (every key is set in it, so no "default" comment changes).
  const std::string again = format_config(*c2);
  const ConfigResult r3 = parse_config(again, "printed.conf");
  const auto* c3 = std::get_if<Config>(&r3);
  if (c3 == nullptr || format_config(*c3) != again) __builtin_trap();
  return 0;
}
