// Logging: one process-wide spdlog logger. Under journald (stderr is the journal stream
// named by $JOURNAL_STREAM) lines go through the journal's native protocol with their
// priority, so `journalctl -p warning` finds the warnings; otherwise stderr, one line per
// event, no colours when not on a terminal.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "keepalive/token_bucket.h"

namespace tunshim::proxy {

// Sets up the process-wide logger ("tunshim") at `level`: the journal when stderr is
// connected to it, else stderr.
void log_init(spdlog::level::level_enum level = spdlog::level::info);

// True if stderr is the journal stream $JOURNAL_STREAM names ("device:inode", as
// sd_journal_stream_fd and systemd.exec(5) describe): a redirected stderr of a process
// started by a service (a hook's `tunshim …`) is not.
bool stderr_is_journal() noexcept;

// "trace" | "debug" | "info" | "warn" | "error" | "off", or nullopt.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// A limit on a log line that could otherwise repeat per packet: `per_second` lines with a
// burst of `burst`. Time comes from the caller (the loop's cached uv_now()), so the packet
// path reads no clock. When a line is allowed, `suppressed` says how many were denied since
// the previous allowed one, for the line to mention.
class LogLimiter {
 public:
  explicit LogLimiter(std::uint32_t per_second = 1, std::uint32_t burst = 1) noexcept
      : bucket_(per_second, burst, keepalive::Timestamp{}) {}
  bool allow(std::uint64_t now_ms, std::uint64_t& suppressed) noexcept {
    if (!bucket_.allow(keepalive::Timestamp::from_ms(static_cast<std::int64_t>(now_ms)))) {
      return false;
    }
    suppressed = bucket_.take_suppressed();
    return true;
  }

 private:
  keepalive::TokenBucket bucket_;
};

}  // namespace tunshim::proxy
