#include "proxy/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

namespace tunshim::proxy {

bool stderr_is_journal() noexcept {
  const char* js = ::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  std::uintmax_t dev = 0, ino = 0;
  if (std::sscanf(js, "%" SCNuMAX ":%" SCNuMAX, &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

void log_init(spdlog::level::level_enum level) {
  std::shared_ptr<spdlog::logger> logger;
  if (stderr_is_journal()) {
    // The journal stamps time, unit and pid itself; the sink sends PRIORITY= per line.
    logger = spdlog::systemd_logger_mt("tunshim", "tunshim");
    logger->set_pattern("%v");
  } else {
    logger = spdlog::stderr_color_mt("tunshim");
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
