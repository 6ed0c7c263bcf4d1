#include "proxy/test_knobs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>

namespace tunshim::proxy {
namespace {

constexpr int kMaxDivisor = 1000;

keepalive::Duration divided(keepalive::Duration d, int divisor) {
  return keepalive::milliseconds(std::max<std::int64_t>(1, d.ms() / divisor));
}

int read_divisor() {
  const char* raw = std::getenv(kTestTimersEnv);
  if (raw == nullptr || *raw == '\0') return 1;
  const std::optional<int> n = parse_test_timers(raw);
  if (!n) {
    spdlog::error(
        "{}=\"{}\" ignored: want an integer 2..{} (test-only; unset it in production)",
        kTestTimersEnv, std::string(raw), kMaxDivisor);
    return 1;
  }
  spdlog::warn(
      "{}={}: TEST ONLY: path-MTU re-confirmation, error retry and reprobe_interval, and "
      "the on_down backoff reset, run {} times faster than configured; never set this in "
      "production",
      kTestTimersEnv, *n, *n);
  return *n;
}

}  // namespace

std::optional<int> parse_test_timers(std::string_view value) noexcept {
  int n = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, n);
  if (ec != std::errc{} || ptr != end || n < 2 || n > kMaxDivisor) return std::nullopt;
  return n;
}

int test_timer_divisor() {
  static const int divisor = read_divisor();
  return divisor;
}

void apply_test_timers(keepalive::PmtuConfig& config) {
  const int k = test_timer_divisor();
  if (k == 1) return;
  config.reprobe_interval = divided(config.reprobe_interval, k);
  config.confirm_interval = divided(config.confirm_interval, k);
  config.error_retry_interval = divided(config.error_retry_interval, k);
}

void apply_test_timers(keepalive::BackoffConfig& config) {
  const int k = test_timer_divisor();
  if (k == 1) return;
  config.reset_after = divided(config.reset_after, k);
}

std::optional<Datapath> test_datapath() {
  const char* raw = std::getenv(kTestDatapathEnv);
  if (raw == nullptr || *raw == '\0') return std::nullopt;
  const std::string v(raw);
  std::optional<Datapath> d;
  if (v == "auto") d = Datapath::automatic;
  if (v == "bpf") d = Datapath::bpf;
  if (v == "queue") d = Datapath::queue;
  if (!d) {
    spdlog::error("{}=\"{}\" ignored: want auto, bpf or queue (test-only)", kTestDatapathEnv,
                  v);
  } else {
    spdlog::warn(
        "{}={}: TEST ONLY: the data path the config file does not set; never set "
        "this in production",
        kTestDatapathEnv, v);
  }
  return d;
}

std::optional<int> test_rtnl_rcvbuf() {
  const char* raw = std::getenv(kTestRtnlRcvbufEnv);
  if (raw == nullptr || *raw == '\0') return std::nullopt;
  char* end = nullptr;
  const long v = std::strtol(raw, &end, 10);
  if (*end != '\0' || v < 65536 || v > (4 << 20)) {
    spdlog::error("{}=\"{}\" ignored: want 65536..4194304 bytes (test-only)",
                  kTestRtnlRcvbufEnv, raw);
    return std::nullopt;
  }
  spdlog::warn("{}={}: TEST ONLY: a small rtnetlink buffer; never set this in production",
               kTestRtnlRcvbufEnv, v);
  return static_cast<int>(v);
}

bool test_symptoms_off() {
  static const bool off = [] {
    const char* raw = std::getenv(kTestSymptomsEnv);
    const bool is_off = raw != nullptr && std::string_view(raw) == "off";
    if (is_off) {
      spdlog::warn(
          "{}=off: TEST ONLY: no black-hole symptoms counted; never set this in "
          "production",
          kTestSymptomsEnv);
    }
    return is_off;
  }();
  return off;
}

}  // namespace tunshim::proxy
