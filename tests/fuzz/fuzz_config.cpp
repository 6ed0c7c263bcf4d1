// Config parser fuzz harness: any bytes must yield a Config or errors, never a crash or an
// escaping exception; an accepted config, printed by check-config, must parse back to the
// same tunnels (the printed form is what operators copy into files).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "proxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tunshim::proxy;
  const std::string_view text(static_cast<const char*>(static_cast<const void*>(data)), size);
  const ConfigResult r = parse_config(text, "fuzz.conf");
  const auto* c = std::get_if<Config>(&r);
  if (c == nullptr) return 0;
  const ConfigResult r2 = parse_config(format_config(*c), "printed.conf");
  const auto* c2 = std::get_if<Config>(&r2);
  if (c2 == nullptr || c2->tunnels.size() != c->tunnels.size()) __builtin_trap();
  for (std::size_t i = 0; i < c->tunnels.size(); ++i) {
    const auto& a = c->tunnels[i];
    const auto& b = c2->tunnels[i];
    if (a.interface != b.interface || a.mss4 != b.mss4 || a.mss6 != b.mss6) __builtin_trap();
  }
  if (c2->global.queue_num != c->global.queue_num ||
      c2->global.queue_maxlen != c->global.queue_maxlen ||
      c2->global.log_level != c->global.log_level) {
    __builtin_trap();
  }
  return 0;
}
