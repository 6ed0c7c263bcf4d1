// Logging: spdlog to stderr, one line per event, no colours when not on a terminal, so
// journald records it as it is.
#pragma once

#include <spdlog/spdlog.h>

#include <optional>
#include <string_view>

namespace tunshim::proxy {

// Sets up the process-wide logger ("tunshim") writing to stderr at `level`.
void log_init(spdlog::level::level_enum level = spdlog::level::info);

// "trace" | "debug" | "info" | "warn" | "error" | "off", or nullopt.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

}  // namespace tunshim::proxy
