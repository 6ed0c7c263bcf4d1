// Control-socket requests: the bytes a client sends (the first input byte says whether it
// half-closed). Invariants: a request line is returned exactly when it is complete (a
// newline, or EOF), and it is the bytes before the first newline without a trailing CR;
// answers for success and failure never look alike, whatever the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/control_server.h"

using tunshim::proxy::ControlServer;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool eof = (data[0] & 1) != 0;
  const std::string in(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto line = ControlServer::request_line(in, eof);
  const std::size_t nl = in.find('\n');
  // Complete exactly when there is a newline or the client half-closed.
  if (line.has_value() != (nl != std::string::npos || eof)) std::abort();
  if (line) {
    // The bytes before the first newline, without one trailing CR: nothing more, nothing else.
    std::string want = in.substr(0, nl);
    if (!want.empty() && want.back() == '\r') want.pop_back();
    if (*line != want || line->find('\n') != std::string::npos) std::abort();
  }
  const std::string a = ControlServer::format_answer(true, in);
  const std::string b = ControlServer::format_answer(false, in);
  if (a.empty() || b.empty() || a == b) std::abort();
  return 0;
}
