// HTTP requests to the stats server: the bytes a client sends, parsed and answered as the
// server would. Invariants: parsing never reads past the input; an `ok` request has a
// method and a path starting with '/'; the handler is called only for GET of an ok request;
// every answer is a complete HTTP/1.1 response whose Content-Length matches its body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/http_server.h"

using tunshim::proxy::HttpRequest;
using tunshim::proxy::HttpResponse;
using tunshim::proxy::HttpServer;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy of exactly `size` bytes: ASan catches any read past the end.
  const std::string in(reinterpret_cast<const char*>(data), size);
  const HttpRequest req = tunshim::proxy::parse_http_request(in);
  if (req.parse == HttpRequest::Parse::ok) {
    if (req.method.empty() || req.path.empty() || req.path[0] != '/') std::abort();
  }
  bool called = false;
  const HttpServer::Handler handler = [&](std::string_view path) {
    called = true;
    if (req.parse != HttpRequest::Parse::ok || req.method != "GET" || path != req.path) {
      std::abort();
    }
    return HttpResponse{200, "text/plain", "ok\n"};
  };
  const bool too_large = size > HttpServer::kMaxRequest;
  if (req.parse == HttpRequest::Parse::incomplete && !too_large) return 0;
  const std::string out = HttpServer::respond(req, too_large, handler);
  if (too_large && called) std::abort();
  if (out.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  const std::size_t head_end = out.find("\r\n\r\n");
  if (head_end == std::string::npos) std::abort();
  const std::size_t cl = out.find("Content-Length: ");
  if (cl == std::string::npos || cl > head_end) std::abort();
  const std::size_t body = out.size() - (head_end + 4);
  if (std::strtoull(out.c_str() + cl + 16, nullptr, 10) != body) std::abort();
  return 0;
}
