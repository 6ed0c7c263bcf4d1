#include "proxy/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

namespace tunshim::proxy {

void log_init(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("tunshim");
  // Under systemd the journal adds its own timestamp and unit name.
  if (::getenv("JOURNAL_STREAM") != nullptr) {
    logger->set_pattern("%^%l%$: %v");
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$: %v");
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "off") return spdlog::level::off;
  return std::nullopt;
}

}  // namespace tunshim::proxy
