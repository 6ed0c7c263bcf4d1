// `tunshim clamp`: a capture file in, every TCP SYN clamped as the daemon would on the
// wire, a capture file out, and a summary of what was done.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "clamp/mss.h"
#include "proxy/commands.h"
#include "proxy/pcap_io.h"

namespace tunshim::proxy {
namespace {

// Big stdio buffers: libpcap's per-record fread/fwrite then cost a memcpy, and the kernel
// sees 1 MiB calls instead of glibc's default 4 KiB ones (half the system time).
constexpr std::size_t kStdioBuffer = 1 << 20;
// Supplied by us: glibc ignores setvbuf's size when it is to allocate the buffer itself.
// Static, because the streams are closed deep inside libpcap.
char g_in_buffer[kStdioBuffer];
char g_out_buffer[kStdioBuffer];
constexpr double kProgressInterval = 0.5;  // seconds between progress lines on a terminal

// The temporary output, removed if a signal ends the run (async-signal-safe: a fixed
// buffer and unlink only).
char g_temp_path[4096];

extern "C" void remove_temp_and_exit(int sig) {
  if (g_temp_path[0] != '\0') unlink(g_temp_path);
  _exit(128 + sig);
}

void error_line(const std::string& file, const std::string& what) {
  std::fprintf(stderr, "tunshim clamp: %s: %s\n", file.c_str(), what.c_str());
}

double now_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void print_text(const ClampCounts& c, const ClampOptions& opt, const std::string& link) {
  using clamp::Outcome;
  auto row = [](const char* name, std::uint64_t n) {
    std::printf("  %-16s %10llu\n", name, static_cast<unsigned long long>(n));
  };
  std::printf(
      "tunshim clamp: %llu packets read, %llu written (%s; IPv4 MSS target %u, IPv6 %u)\n",
      static_cast<unsigned long long>(c.packets), static_cast<unsigned long long>(c.written),
      link.c_str(), opt.mss4, opt.mss6);
  std::printf("  %-16s %10llu   (SYN-ACK %llu)\n", "SYNs seen",
              static_cast<unsigned long long>(c.syn),
              static_cast<unsigned long long>(c.syn_ack));
  row("clamped", c.count(Outcome::clamped));
  row("inserted", c.count(Outcome::inserted));
  row("unchanged", c.count(Outcome::unchanged));
  row("no room", c.count(Outcome::no_room));
  row("malformed", c.count(Outcome::malformed));
  row("not SYN", c.count(Outcome::not_syn));
  row("not TCP", c.count(Outcome::not_tcp));
  row("fragment", c.count(Outcome::fragment));
  row("not IP", c.not_ip);
  row("truncated", c.truncated);
  if (c.count(Outcome::disabled) != 0) row("clamping off", c.count(Outcome::disabled));
}

void print_json(const ClampCounts& c, const ClampOptions& opt, const std::string& link) {
  using clamp::Outcome;
  auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  std::printf(
      "{\"packets\": %llu, \"written\": %llu, \"syn\": %llu, \"syn_ack\": %llu, "
      "\"clamped\": %llu, \"inserted\": %llu, \"unchanged\": %llu, \"no_room\": %llu, "
      "\"malformed\": %llu, \"not_syn\": %llu, \"not_tcp\": %llu, \"fragment\": %llu, "
      "\"not_ip\": %llu, \"truncated\": %llu, \"disabled\": %llu, \"mss4\": %u, "
      "\"mss6\": %u, \"link_type\": \"%s\"}\n",
      u(c.packets), u(c.written), u(c.syn), u(c.syn_ack), u(c.count(Outcome::clamped)),
      u(c.count(Outcome::inserted)), u(c.count(Outcome::unchanged)),
      u(c.count(Outcome::no_room)), u(c.count(Outcome::malformed)),
      u(c.count(Outcome::not_syn)), u(c.count(Outcome::not_tcp)), u(c.count(Outcome::fragment)),
      u(c.not_ip), u(c.truncated), u(c.count(Outcome::disabled)), opt.mss4, opt.mss6,
      link.c_str());
}

// Creates OUT.tmp.XXXXXX next to OUT (so the final rename stays in one filesystem), with
// the mode a plain fopen(OUT, "w") would have given.
std::FILE* open_temp(const std::string& output, std::string& error) {
  const std::string templ = output + ".tmp.XXXXXX";
  if (templ.size() >= sizeof g_temp_path) {
    error = "path too long";
    return nullptr;
  }
  std::memcpy(g_temp_path, templ.c_str(), templ.size() + 1);
  const int fd = mkstemp(g_temp_path);
  if (fd < 0) {
    error = std::string("cannot create a temporary file next to it: ") + std::strerror(errno);
    g_temp_path[0] = '\0';
    return nullptr;
  }
  const mode_t mask = umask(0);
  umask(mask);
  // Best effort: mkstemp's 0600 is still a usable result.
  static_cast<void>(fchmod(fd, 0666 & ~mask));
  std::FILE* out = fdopen(fd, "wb");
  if (out == nullptr) {
    error = std::string("cannot open the temporary file: ") + std::strerror(errno);
    close(fd);
    unlink(g_temp_path);
    g_temp_path[0] = '\0';
    return nullptr;
  }
  setvbuf(out, g_out_buffer, _IOFBF, sizeof g_out_buffer);
  return out;
}

}  // namespace

int cmd_clamp(const ClampOptions& opt) {
  std::FILE* in = std::fopen(opt.input.c_str(), "rb");
  if (in == nullptr) {
    error_line(opt.input, std::strerror(errno));
    return 1;
  }
  setvbuf(in, g_in_buffer, _IOFBF, sizeof g_in_buffer);
  struct stat st {};
  const long long in_size = fstat(fileno(in), &st) == 0 ? st.st_size : 0;
  if (S_ISDIR(st.st_mode)) {
    std::fclose(in);
    error_line(opt.input, "is a directory");
    return 1;
  }

  CaptureIn capture;
  std::string error;
  if (!capture.open(in, error)) {
    error_line(opt.input, error);
    return 1;
  }
  const int dlt = capture.link_type();
  const std::string link = link_type_name(dlt);
  if (!link_type_supported(dlt)) {
    error_line(opt.input,
               "link type " + std::to_string(dlt) + " (" + link +
                   ") is not supported; supported: " + std::string(supported_link_types()));
    return 1;
  }

  std::FILE* out = open_temp(opt.output, error);
  if (out == nullptr) {
    error_line(opt.output, error);
    return 1;
  }
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) std::signal(sig, remove_temp_and_exit);

  // Progress only for a person watching: stderr a terminal, and only once a run has
  // lasted long enough to need it, so small files and scripts see nothing.
  ProgressFn progress;
  bool progress_shown = false;
  if (isatty(STDERR_FILENO) != 0) {
    const double start = now_seconds();
    progress = [&capture, &progress_shown, in_size, start,
                next = start + kProgressInterval](std::uint64_t packets) mutable {
      const double t = now_seconds();
      if (t < next) return;
      next = t + kProgressInterval;
      const long pos = capture.position();
      const double pct = in_size > 0 && pos >= 0
                             ? 100.0 * static_cast<double>(pos) / static_cast<double>(in_size)
                             : 0.0;
      std::fprintf(stderr, "\rtunshim clamp: %llu packets, %.0f%%, %.1f s ",
                   static_cast<unsigned long long>(packets), pct, t - start);
      progress_shown = true;
    };
  }

  ClampCounts counts;
  const clamp::ClampTarget target{opt.mss4, opt.mss6};
  const PcapStatus status = capture.clamp_to(out, target, counts, error, progress);
  if (progress_shown) std::fputs("\r\033[K", stderr);

  if (status != PcapStatus::ok) {
    unlink(g_temp_path);
    error_line(status == PcapStatus::write_failed ? opt.output : opt.input, error);
    return 1;
  }
  if (std::rename(g_temp_path, opt.output.c_str()) != 0) {
    const int e = errno;
    unlink(g_temp_path);
    error_line(opt.output, std::string("cannot replace it: ") + std::strerror(e));
    return 1;
  }
  g_temp_path[0] = '\0';

  if (opt.json) {
    print_json(counts, opt, link);
  } else {
    print_text(counts, opt, link);
    if (capture.pcapng()) std::printf("  (pcapng input written as pcap)\n");
  }
  return 0;
}

}  // namespace tunshim::proxy
