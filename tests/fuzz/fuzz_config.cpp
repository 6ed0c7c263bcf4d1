// Config parser fuzz harness: any bytes must yield a Config or errors, never a crash or an
// escaping exception; an accepted config, printed by check-config, must parse back to the
// same values (the printed form is what operators copy into files). Each input runs twice:
// with the daemon's options (where keys not implemented yet must never be accepted) and with
// accept_unimplemented (so the parsing of every key of the design is fuzzed too).
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

void check(std::string_view text, const ParseOptions& options) {
  const ConfigResult r = parse_config(text, "fuzz.conf", options);
  const auto* c = std::get_if<Config>(&r);
  if (c == nullptr) return;
  if (!options.accept_unimplemented) {
    // The daemon's options never let through a key whose feature is not wired.
    for (const auto& k : c->global.keys_from_file) {
      if (!key_implemented(k)) __builtin_trap();
    }
    for (const auto& t : c->tunnels) {
      for (const auto& k : t.keys_from_file) {
        if (!key_implemented(k)) __builtin_trap();
      }
      if ((t.mss4_auto || t.mss6_auto) && !key_implemented("mss=auto")) __builtin_trap();
    }
  }
  const ConfigResult r2 = parse_config(format_config(*c, options), "printed.conf", options);
  const auto* c2 = std::get_if<Config>(&r2);
  if (c2 == nullptr || c2->tunnels.size() != c->tunnels.size()) __builtin_trap();
  for (std::size_t i = 0; i < c->tunnels.size(); ++i) {
    if (!same(c->tunnels[i], c2->tunnels[i])) __builtin_trap();
  }
  if (!same(c->global, c2->global)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(static_cast<const char*>(static_cast<const void*>(data)), size);
  check(text, ParseOptions{});
  check(text, ParseOptions{.accept_unimplemented = true});
  return 0;
}
