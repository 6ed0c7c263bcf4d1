// `tunshim doctor`: says what is wrong with a tunnel and proves it from the wire.
//   live (root):  DF probes find the path MTU and whether too-big errors come back
//                 (ProbeIo + keepalive::PmtuSearch, as `tunshim probe`), then a
//                 headers-only capture of --seconds with echoes for RTT and loss; the
//                 running daemon, if any, says what it does on the interface.
//   --read FILE:  the passive half over a capture taken elsewhere.
// Read-only: it installs nothing and changes nothing. The analysis is diag/ (pure); this
// file gathers facts and prints them.
#include <fmt/format.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "diag/analyser.h"
#include "diag/assess.h"
#include "keepalive/pmtu_search.h"
#include "proxy/commands.h"
#include "proxy/config.h"
#include "proxy/doctor_capture.h"
#include "proxy/metrics.h"
#include "proxy/pcap_io.h"
#include "proxy/probe_io.h"

namespace tunshim::proxy {
namespace {

using keepalive::PmtuSearch;
using keepalive::Timestamp;

constexpr int kExitHealthy = 0;
constexpr int kExitProblems = 1;
constexpr int kExitCannot = 2;

// The probe search gets this long before the capture starts without its result.
constexpr double kProbeTimeoutSeconds = 20.0;
// Echoes for RTT and loss during the capture: small, a few per second.
constexpr std::uint64_t kEchoIntervalMs = 200;
constexpr std::uint16_t kEchoSize = 64;
constexpr std::uint32_t kEchoTag = 0x80000000U;  // PmtuSearch ids stay below this
constexpr std::size_t kMaxEchoes = 4096;

void say(const std::string& what, const std::string& line) {
  std::fprintf(stderr, "tunshim doctor: %s: %s\n", what.c_str(), line.c_str());
}

// ---- the running daemon, over its control socket --------------------------------------

struct DaemonView {
  bool answered = false;
  bool has_tunnel = false;
  std::string note;                                       // why there is no view
  std::vector<std::pair<std::string, std::string>> rows;  // label, this tunnel's cell
};

// One "stats table" request; the tunnel's column is cut out of the table by the position
// of its name in the header row (cells may contain spaces, names do not).
DaemonView ask_daemon(const std::string& path, const std::string& iface) {
  DaemonView v;
  if (path.size() > kMaxSocketPath) {
    v.note = "control socket path too long";
    return v;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    v.note = std::strerror(errno);
    return v;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    v.note = "no answer on " + path + " (" + std::strerror(errno) + ")";
    ::close(fd);
    return v;
  }
  const std::string req = "stats table\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    v.note = "cannot send to " + path;
    ::close(fd);
    return v;
  }
  std::string answer;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int pr = ::poll(&p, 1, 3000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (answer.rfind("ok\n", 0) != 0) {
    v.note = "unexpected answer from " + path;
    return v;
  }
  v.answered = true;
  std::vector<std::string> lines;
  for (std::size_t pos = 3; pos < answer.size();) {
    const std::size_t nl = answer.find('\n', pos);
    lines.push_back(answer.substr(pos, nl == std::string::npos ? nl : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  std::size_t header = lines.size();
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].rfind("tunnel ", 0) == 0) header = i;
  if (header == lines.size()) {
    v.note = "tunshim runs with no tunnel configured";
    return v;
  }
  const std::string& h = lines[header];
  std::vector<std::size_t> starts;
  for (std::size_t i = 6; i < h.size(); ++i)
    if (h[i] != ' ' && h[i - 1] == ' ') starts.push_back(i);
  for (std::size_t c = 0; c < starts.size(); ++c) {
    const std::size_t end = c + 1 < starts.size() ? starts[c + 1] : std::string::npos;
    std::string name = h.substr(starts[c], end == std::string::npos ? end : end - starts[c]);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name != iface) continue;
    v.has_tunnel = true;
    for (std::size_t i = header + 1; i < lines.size(); ++i) {
      const std::string& l = lines[i];
      std::string label = l.substr(0, std::min(starts[0], l.size()));
      while (!label.empty() && label.back() == ' ') label.pop_back();
      std::string cell =
          starts[c] < l.size()
              ? l.substr(starts[c], end == std::string::npos ? end : end - starts[c])
              : "";
      while (!cell.empty() && cell.back() == ' ') cell.pop_back();
      v.rows.emplace_back(label, cell);
    }
  }
  if (!v.has_tunnel) v.note = "tunshim runs, but not on " + iface;
  return v;
}

std::uint16_t leading_number(const std::string& s) {
  unsigned long v = 0;
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && v < 65536)
    v = v * 10 + static_cast<unsigned long>(s[i++] - '0');
  return i > 0 && v <= 65535 ? static_cast<std::uint16_t>(v) : 0;
}

void apply_daemon(const DaemonView& d, diag::ActiveFacts& a) {
  if (!d.has_tunnel) return;
  a.daemon = true;
  for (const auto& [label, cell] : d.rows) {
    if (label == "path MTU") a.daemon_pmtu = leading_number(cell);
    if (label == "MSS target v4/v6") {
      a.daemon_mss4 = leading_number(cell);
      const std::size_t slash = cell.find("/ ");
      if (slash != std::string::npos) a.daemon_mss6 = leading_number(cell.substr(slash + 2));
    }
  }
}

// ---- the report ---------------------------------------------------------------------------

struct Report {
  std::string source;  // "ppp0 (live, 5.0 s)" or the file name
  diag::ActiveFacts facts;
  const diag::Findings* f = nullptr;
  diag::Assessment verdict;
  CaptureCounts capture;
  DaemonView daemon;
  std::string link;
  std::string iface_line;
  std::string capture_error;
};

std::string addr(const diag::Address& a) { return diag::to_string(a); }
// "192.0.2.1:80", "[2001:db8::1]:80"
std::string ep(const diag::Address& a, std::uint16_t port) {
  return a.family == 6 ? fmt::format("[{}]:{}", addr(a), port)
                       : fmt::format("{}:{}", addr(a), port);
}

std::string hist(const diag::MssHistogram& h) {
  std::string s;
  for (std::size_t i = 0; i < h.used; ++i) {
    if (!s.empty()) s += ", ";
    s += (h.bins[i].mss == 0 ? std::string("none") : std::to_string(h.bins[i].mss)) + " x" +
         std::to_string(h.bins[i].count);
  }
  if (h.other > 0) s += ", others x" + std::to_string(h.other);
  return s;
}

std::string histograms(
    const std::array<std::array<diag::MssHistogram, 2>, diag::kDirections>& a) {
  std::string s;
  for (std::size_t d = 0; d < diag::kDirections; ++d) {
    for (std::size_t fam = 0; fam < 2; ++fam) {
      if (a[d][fam].total == 0) continue;
      if (!s.empty()) s += "; ";
      const auto dir = static_cast<diag::Direction>(d);
      s += (dir == diag::Direction::unknown ? std::string()
                                            : std::string(to_string(dir)) + " ") +
           (fam == 0 ? "IPv4 " : "IPv6 ") + hist(a[d][fam]);
    }
  }
  return s.empty() ? "none seen" : s;
}

double rel_s(const diag::Findings& f, std::int64_t us) {
  return static_cast<double>(us - f.first_us) / 1e6;
}

void print_text(const Report& r) {
  const diag::Findings& f = *r.f;
  const diag::ActiveFacts& a = r.facts;
  auto row = [](const char* label, const std::string& text) {
    std::printf("  %-15s %s\n", label, text.c_str());
  };
  std::printf("tunshim doctor: %s\n\n", r.source.c_str());
  if (a.live) {
    row("interface", r.iface_line);
    if (r.daemon.has_tunnel) {
      std::string s = "runs on " + a.iface;
      for (const auto& [label, cell] : r.daemon.rows) {
        if (label == "path MTU" || label == "MSS target v4/v6" || label == "state" ||
            label == "SYN out clamped/inserted" || label == "SYN in clamped/inserted" ||
            label == "oversize dropped/ICMP")
          s += "; " + label + " " + cell;
      }
      row("tunshim", s);
    } else {
      row("tunshim",
          "not running on " + a.iface + (r.daemon.note.empty() ? "" : ": " + r.daemon.note));
    }
    if (a.probed && a.probe_complete) {
      std::string s = fmt::format("{} measured by DF probes to {} ({} probes, {} answered); ",
                                  a.pmtu, a.target, a.probes_sent, a.probe_replies);
      if (a.iface_mtu != 0 && a.pmtu < a.iface_mtu) {
        s += a.too_big_hints == 0
                 ? "no frag-needed / packet-too-big came back for the larger ones: ICMP errors "
                   "are filtered"
                 : fmt::format("{} too-big errors came back for the larger ones: ICMP works",
                               a.too_big_hints);
      } else {
        s += "the interface's full MTU passes";
      }
      row("path MTU", s);
    } else {
      row("path MTU", "not measured: " + a.probe_error);
    }
    if (a.echoes_sent > 0) {
      row("RTT / loss",
          a.echoes_answered > 0
              ? fmt::format(
                    "{:.2f} / {:.2f} / {:.2f} ms (min/avg/max), {} of {} echoes answered "
                    "({:.0f} % loss)",
                    a.rtt_min_ms, a.rtt_avg_ms, a.rtt_max_ms, a.echoes_answered, a.echoes_sent,
                    100.0 * static_cast<double>(a.echoes_sent - a.echoes_answered) /
                        static_cast<double>(a.echoes_sent))
              : fmt::format("no echo answered ({} sent)", a.echoes_sent));
    }
  } else if (a.pmtu_given) {
    row("path MTU", fmt::format("{} (given with --pmtu)", a.pmtu));
  }
  std::string cap =
      fmt::format("{} packets in {:.1f} s ({} IPv4, {} IPv6, {} TCP connections), link {}",
                  f.counts.records, static_cast<double>(f.last_us - f.first_us) / 1e6,
                  f.counts.ipv4, f.counts.ipv6, f.counts.connections, r.link);
  if (a.live)
    cap += r.capture.dropped > 0
               ? fmt::format("; the capture LOST {} packets", r.capture.dropped)
               : "; nothing lost";
  row("capture", cap);
  std::printf("\nfindings\n");
  row("SYN MSS", histograms(f.syn));
  row("SYN-ACK MSS", histograms(f.syn_ack));
  const std::uint16_t p = r.verdict.path_mtu;
  if (p != 0) {
    std::string s = fmt::format("{} (path MSS {} IPv4 / {} IPv6)", f.mss_above_path,
                                p > 40 ? p - 40 : 0, p > 60 ? p - 60 : 0);
    for (std::size_t i = 0; i < f.mss_examples_used && i < 3; ++i) {
      const auto& e = f.mss_examples[i];
      s += fmt::format("; {} {} > {} MSS {}", e.syn_ack ? "SYN-ACK" : "SYN", ep(e.src, e.sport),
                       ep(e.dst, e.dport), e.mss);
    }
    row("MSS above path", s);
    s = fmt::format("{} packets above {} bytes", f.oversize_df, p);
    for (std::size_t i = 0; i < f.oversize_used && i < 4; ++i)
      s += fmt::format("; {} sent {} (up to {} bytes)", addr(f.oversize[i].src),
                       f.oversize[i].packets, f.oversize[i].max_len);
    if (f.oversize_echo > 0)
      s +=
          fmt::format("; and {} oversize DF echoes (someone probing the path MTU; not counted)",
                      f.oversize_echo);
    row("oversize DF", s);
  } else {
    row("MSS above path", "path MTU unknown (give --pmtu N)");
  }
  {
    const auto& t = f.too_big;
    std::string s =
        fmt::format("{} frag-needed, {} packet-too-big", t.frag_needed, t.packet_too_big);
    for (std::size_t i = 0; i < t.used; ++i)
      s += fmt::format("; MTU {} x{} (from {})", t.mtus[i].mtu, t.mtus[i].count,
                       addr(t.mtus[i].reporter));
    row("ICMP too-big", s);
  }
  {
    std::string s = fmt::format(
        "{} full-size segments on {} connections ({} repeating a retransmission, {} larger "
        "than the path)",
        f.full_retrans, f.retrans_connections, f.full_retrans_repeated,
        f.full_retrans_oversize);
    row("retransmitted", s);
    s = fmt::format("{} connections", f.stalled_connections);
    row("stalled", s);
    for (std::size_t i = 0; i < f.connections_used; ++i) {
      const auto& c = f.connections[i];
      row("",
          fmt::format("{}:{} <> {}:{}: {} / {} bytes, largest segment {} / {}, full-size "
                      "retransmissions {} / {}, MSS {} / {}, last packet at {:.1f} s{}",
                      addr(c.a), c.aport, addr(c.b), c.bport, c.payload[0], c.payload[1],
                      c.max_payload[0], c.max_payload[1], c.full_retrans[0], c.full_retrans[1],
                      c.mss[0], c.mss[1], rel_s(f, c.last_us), c.closed ? ", closed" : ""));
    }
  }
  {
    std::string s;
    for (std::size_t i = 0; i < f.gaps_used; ++i)
      s += fmt::format("{}{:.2f} s at {:.1f} s", i ? "; " : "",
                       static_cast<double>(f.gaps[i].len_us) / 1e6,
                       rel_s(f, f.gaps[i].start_us));
    row("idle gaps", s.empty() ? "none" : s);
  }
  std::printf("\nverdict\n  %s\n", r.verdict.verdict.c_str());
  if (!r.verdict.risks.empty()) {
    std::printf("\nrisks, most severe first\n");
    int i = 1;
    for (const auto& risk : r.verdict.risks) {
      std::printf("  %d. [%s] %s\n     evidence: %s\n", i++, to_string(risk.severity),
                  risk.title.c_str(), risk.evidence.c_str());
    }
  }
  std::printf(
      "\nsuggested config (checked like `tunshim check-config`), for "
      "/etc/tunshim/tunshim.conf:\n\n%s",
      r.verdict.config.c_str());
}

std::string jaddr(const diag::Address& a) { return json_string(addr(a)); }

void print_json(const Report& r) {
  const diag::Findings& f = *r.f;
  const diag::ActiveFacts& a = r.facts;
  std::string o = "{\n";
  o += fmt::format("  \"source\": {},\n", json_string(r.source));
  o += fmt::format("  \"healthy\": {},\n", r.verdict.healthy ? "true" : "false");
  o += fmt::format("  \"verdict\": {},\n", json_string(r.verdict.verdict));
  o += fmt::format("  \"path_mtu\": {},\n", r.verdict.path_mtu);
  if (a.live) {
    o += fmt::format(
        "  \"interface\": {{\"name\": {}, \"up\": {}, \"mtu\": {}, \"target\": {}, \"link\": "
        "{}}},\n",
        json_string(a.iface), a.iface_up ? "true" : "false", a.iface_mtu, json_string(a.target),
        json_string(r.link));
    o += fmt::format(
        "  \"probe\": {{\"complete\": {}, \"pmtu\": {}, \"probes\": {}, \"replies\": {}, "
        "\"too_big_hints\": {}, \"icmp_filtered\": {}, \"error\": {}}},\n",
        a.probe_complete ? "true" : "false", a.probe_complete ? a.pmtu : 0, a.probes_sent,
        a.probe_replies, a.too_big_hints,
        a.probe_complete && a.pmtu < a.iface_mtu && a.too_big_hints == 0 ? "true" : "false",
        json_string(a.probe_error));
    o += fmt::format(
        "  \"echo\": {{\"sent\": {}, \"answered\": {}, \"rtt_min_ms\": {:.3f}, \"rtt_avg_ms\": "
        "{:.3f}, \"rtt_max_ms\": {:.3f}}},\n",
        a.echoes_sent, a.echoes_answered, a.rtt_min_ms, a.rtt_avg_ms, a.rtt_max_ms);
    o += fmt::format(
        "  \"daemon\": {{\"running_on_interface\": {}, \"mss4\": {}, \"mss6\": {}, "
        "\"pmtu\": {}, \"note\": {}}},\n",
        r.daemon.has_tunnel ? "true" : "false", a.daemon_mss4, a.daemon_mss6, a.daemon_pmtu,
        json_string(r.daemon.note));
  }
  o += fmt::format(
      "  \"capture\": {{\"records\": {}, \"seconds\": {:.3f}, \"ipv4\": {}, \"ipv6\": {}, "
      "\"tcp\": {}, \"udp\": {}, \"icmp\": {}, \"malformed\": {}, \"short\": {}, "
      "\"link_malformed\": {}, \"not_ip\": {}, \"connections\": {}, \"untracked\": {}, "
      "\"dropped\": {}, \"link\": {}, \"error\": {}}},\n",
      f.counts.records, static_cast<double>(f.last_us - f.first_us) / 1e6, f.counts.ipv4,
      f.counts.ipv6, f.counts.tcp, f.counts.udp, f.counts.icmp, f.counts.malformed,
      f.counts.short_l4, r.capture.link_malformed, f.counts.not_ip, f.counts.connections,
      f.counts.untracked, r.capture.dropped, json_string(r.link), json_string(r.capture_error));
  auto hists = [&](const char* key, const auto& h) {
    o += fmt::format("  \"{}\": [", key);
    bool first = true;
    for (std::size_t d = 0; d < diag::kDirections; ++d)
      for (std::size_t fam = 0; fam < 2; ++fam)
        for (std::size_t i = 0; i < h[d][fam].used; ++i) {
          o += fmt::format(
              "{}{{\"direction\": \"{}\", \"family\": \"{}\", \"mss\": {}, "
              "\"count\": {}}}",
              first ? "" : ", ", to_string(static_cast<diag::Direction>(d)),
              fam == 0 ? "ipv4" : "ipv6", h[d][fam].bins[i].mss, h[d][fam].bins[i].count);
          first = false;
        }
    o += "],\n";
  };
  hists("syn_mss", f.syn);
  hists("syn_ack_mss", f.syn_ack);
  o += fmt::format("  \"mss_above_path\": {},\n", f.mss_above_path);
  o += fmt::format("  \"oversize_df\": {{\"packets\": {}, \"sources\": [", f.oversize_df);
  for (std::size_t i = 0; i < f.oversize_used; ++i)
    o += fmt::format("{}{{\"source\": {}, \"packets\": {}, \"max_len\": {}}}", i ? ", " : "",
                     jaddr(f.oversize[i].src), f.oversize[i].packets, f.oversize[i].max_len);
  o += fmt::format("], \"echo_probes\": {}}},\n", f.oversize_echo);
  o += fmt::format(
      "  \"icmp_too_big\": {{\"frag_needed\": {}, \"packet_too_big\": {}, \"mtus\": [",
      f.too_big.frag_needed, f.too_big.packet_too_big);
  for (std::size_t i = 0; i < f.too_big.used; ++i)
    o += fmt::format("{}{{\"mtu\": {}, \"count\": {}, \"reporter\": {}}}", i ? ", " : "",
                     f.too_big.mtus[i].mtu, f.too_big.mtus[i].count,
                     jaddr(f.too_big.mtus[i].reporter));
  o += "]},\n";
  o += fmt::format("  \"full_size_retransmissions\": {},\n", f.full_retrans);
  o += fmt::format("  \"full_size_retransmissions_repeated\": {},\n", f.full_retrans_repeated);
  o += fmt::format("  \"full_size_retransmissions_oversize\": {},\n", f.full_retrans_oversize);
  o += fmt::format("  \"retransmitting_connections\": {},\n", f.retrans_connections);
  o += fmt::format("  \"stalled_connections\": {},\n", f.stalled_connections);
  o += "  \"connections\": [";
  for (std::size_t i = 0; i < f.connections_used; ++i) {
    const auto& c = f.connections[i];
    o += fmt::format(
        "{}\n    {{\"a\": {}, \"a_port\": {}, \"b\": {}, \"b_port\": {}, \"payload\": [{}, "
        "{}], "
        "\"max_segment\": [{}, {}], \"full_retrans\": [{}, {}], \"mss\": [{}, {}], "
        "\"closed\": {}, \"silent_s\": {:.3f}}}",
        i ? "," : "", jaddr(c.a), c.aport, jaddr(c.b), c.bport, c.payload[0], c.payload[1],
        c.max_payload[0], c.max_payload[1], c.full_retrans[0], c.full_retrans[1], c.mss[0],
        c.mss[1], c.closed ? "true" : "false",
        static_cast<double>(f.last_us - c.last_us) / 1e6);
  }
  o += "],\n  \"gaps\": [";
  for (std::size_t i = 0; i < f.gaps_used; ++i)
    o += fmt::format("{}{{\"at_s\": {:.3f}, \"seconds\": {:.3f}}}", i ? ", " : "",
                     rel_s(f, f.gaps[i].start_us), static_cast<double>(f.gaps[i].len_us) / 1e6);
  o += "],\n  \"risks\": [";
  for (std::size_t i = 0; i < r.verdict.risks.size(); ++i) {
    const auto& k = r.verdict.risks[i];
    o += fmt::format("{}\n    {{\"severity\": \"{}\", \"title\": {}, \"evidence\": {}}}",
                     i ? "," : "", to_string(k.severity), json_string(k.title),
                     json_string(k.evidence));
  }
  o += fmt::format("],\n  \"config\": {}\n}}\n", json_string(r.verdict.config));
  std::fputs(o.c_str(), stdout);
}

// The suggestion must be a config the daemon accepts: the same loader as check-config.
bool suggestion_loads(const std::string& block, std::string& err) {
  const ConfigResult res = parse_config(block, "doctor suggestion");
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&res)) {
    err = errors->empty() ? "refused" : errors->front().to_string();
    return false;
  }
  if (std::get<Config>(res).tunnels.size() != 1) {
    err = "not exactly one [[tunnel]]";
    return false;
  }
  return true;
}

int finish_report(Report& r, bool json) {
  r.verdict = diag::assess(*r.f, r.facts);
  std::string err;
  if (!suggestion_loads(r.verdict.config, err)) {
    say("internal error", "the suggested config does not load: " + err);
    return kExitCannot;
  }
  if (r.link.empty()) r.link = link_type_name(r.capture.dlt);
  if (json) {
    print_json(r);
  } else {
    print_text(r);
  }
  std::fflush(stdout);
  return r.verdict.healthy ? kExitHealthy : kExitProblems;
}

// ---- --read FILE ----------------------------------------------------------------------------

int doctor_read(const DoctorOptions& opt) {
  std::FILE* in = std::fopen(opt.read.c_str(), "rb");
  if (in == nullptr) {
    say(opt.read, std::string("cannot open: ") + std::strerror(errno));
    return kExitCannot;
  }
  diag::Options o;
  o.path_mtu = opt.pmtu;
  auto analyser = std::make_unique<diag::Analyser>(o);
  Report r;
  r.source = opt.read;
  r.facts.pmtu = opt.pmtu;
  r.facts.pmtu_given = opt.pmtu != 0;
  std::string err;
  const bool ok = read_capture(in, *analyser, r.capture, err);
  if (!ok) {
    if (r.capture.records == 0) {
      say(opt.read, err);
      return kExitCannot;
    }
    // A capture cut short (tcpdump killed mid-write) still says something: report the
    // records before the damage, and say where it is.
    say(opt.read, err + "; the findings cover the records before it");
    r.capture_error = err;
  }
  r.f = &analyser->finish(analyser->findings().last_us);
  return finish_report(r, opt.json);
}

// ---- live
// -------------------------------------------------------------------------------------

bool interface_up(const std::string& iface) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  const bool up = ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP) != 0;
  ::close(fd);
  return up;
}

std::int64_t wall_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

class DoctorLive {
 public:
  DoctorLive(const DoctorOptions& opt, const InterfaceInfo& info,
             std::optional<IpAddress> target)
      : opt_(opt), info_(info), target_(target), search_(config(target)), io_(&loop_) {}
  int run();

 private:
  static keepalive::PmtuConfig config(const std::optional<IpAddress>& t) {
    keepalive::PmtuConfig c;
    c.family = t ? t->family : keepalive::IpFamily::ipv4;
    return c;
  }
  Timestamp now() const {
    return Timestamp::from_ms(static_cast<std::int64_t>(uv_now(&loop_)));
  }
  double elapsed() const { return static_cast<double>(uv_hrtime() - start_ns_) * 1e-9; }
  void apply(const PmtuSearch::Actions& actions);
  void arm();
  void probe_done(const std::string& why);
  void start_capture();
  void send_echo();
  void end_capture();
  void progress();
  void close_all();

  const DoctorOptions& opt_;
  const InterfaceInfo& info_;
  std::optional<IpAddress> target_;
  mutable uv_loop_t loop_{};
  uv_timer_t step_{}, probe_limit_{}, window_{}, echo_{}, tick_{};
  uv_poll_t poll_{};
  bool poll_started_ = false;
  PmtuSearch search_;
  ProbeIo io_;
  LiveCapture capture_;
  std::unique_ptr<diag::Analyser> analyser_;
  diag::ActiveFacts facts_;
  std::string capture_error_;
  std::uint64_t start_ns_ = 0;
  double window_start_ = 0;
  bool probing_ = false;
  bool capturing_ = false;
  bool tty_ = false;
  std::uint16_t probe_size_ = 0;
  std::vector<std::uint64_t> echo_sent_ns_;
  double rtt_sum_ms_ = 0;
};

void DoctorLive::apply(const PmtuSearch::Actions& actions) {
  for (const auto& act : actions) {
    if (!probing_) return;
    if (const auto* p = std::get_if<PmtuSearch::SendProbe>(&act)) {
      io_.send(p->id, p->size);  // a refused send is a lost probe: the search handles it
      probe_size_ = std::max(probe_size_, p->size);
    } else if (const auto* st = std::get_if<PmtuSearch::StateChanged>(&act)) {
      if (st->state == PmtuSearch::State::complete) probe_done("");
      if (st->state == PmtuSearch::State::error)
        probe_done("the target answers no probe, not even of the base size");
    }
  }
}

void DoctorLive::arm() {
  if (!probing_) return;
  const Timestamp deadline = search_.next_deadline();
  if (deadline == keepalive::kNever) {
    uv_timer_stop(&step_);
    return;
  }
  const std::int64_t wait = (deadline - now()).ms();
  uv_timer_start(
      &step_,
      [](uv_timer_t* t) {
        auto* self = static_cast<DoctorLive*>(t->data);
        self->apply(self->search_.on_tick(self->now()));
        self->arm();
      },
      wait > 0 ? static_cast<std::uint64_t>(wait) : 0, 0);
}

void DoctorLive::probe_done(const std::string& why) {
  if (!probing_) return;
  probing_ = false;
  uv_timer_stop(&step_);
  uv_timer_stop(&probe_limit_);
  facts_.probe_complete = why.empty();
  facts_.probe_error = why;
  facts_.pmtu = why.empty() ? search_.pmtu() : 0;
  facts_.probes_sent = search_.stats().probes_sent;
  facts_.probe_replies = io_.stats().replies;
  facts_.too_big_hints = io_.stats().hints;
  start_capture();
}

void DoctorLive::start_capture() {
  diag::Options o;
  o.path_mtu = facts_.pmtu;
  if (io_.is_open()) o.ignore_echo_id = io_.identifier();
  analyser_ = std::make_unique<diag::Analyser>(o);
  capturing_ = true;
  window_start_ = elapsed();
  // Everything the kernel buffered since the capture opened (also during the probe) is
  // analysed now that the path MTU is known.
  if (!capture_.drain(*analyser_, capture_error_)) {
    end_capture();
    return;
  }
  uv_poll_init(&loop_, &poll_, capture_.fd());
  poll_.data = this;
  poll_started_ = true;
  uv_poll_start(&poll_, UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* self = static_cast<DoctorLive*>(h->data);
    if (status < 0 || !self->capture_.drain(*self->analyser_, self->capture_error_)) {
      if (status < 0) self->capture_error_ = uv_strerror(status);
      self->end_capture();
    }
  });
  uv_timer_start(
      &window_, [](uv_timer_t* t) { static_cast<DoctorLive*>(t->data)->end_capture(); },
      static_cast<std::uint64_t>(opt_.seconds * 1000.0), 0);
  if (io_.is_open()) {
    uv_timer_start(
        &echo_, [](uv_timer_t* t) { static_cast<DoctorLive*>(t->data)->send_echo(); }, 0,
        kEchoIntervalMs);
  }
}

void DoctorLive::send_echo() {
  if (echo_sent_ns_.size() >= kMaxEchoes) return;
  const auto idx = static_cast<std::uint32_t>(echo_sent_ns_.size());
  echo_sent_ns_.push_back(uv_hrtime());
  io_.send(kEchoTag | idx, kEchoSize);
  ++facts_.echoes_sent;
}

void DoctorLive::end_capture() {
  if (!capturing_) return;
  capturing_ = false;
  if (capture_error_.empty()) capture_.drain(*analyser_, capture_error_);
  capture_.update_stats();
  close_all();
}

void DoctorLive::close_all() {
  io_.close();
  for (uv_timer_t* t : {&step_, &probe_limit_, &window_, &echo_, &tick_})
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(t)) == 0)
      uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
  if (poll_started_ && uv_is_closing(reinterpret_cast<uv_handle_t*>(&poll_)) == 0)
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
}

void DoctorLive::progress() {
  if (!tty_) return;
  if (probing_) {
    std::fprintf(stderr,
                 "\r\033[K%s: measuring the path MTU: probing %u bytes, %llu probes, %.1f s",
                 opt_.iface.c_str(), probe_size_,
                 static_cast<unsigned long long>(search_.stats().probes_sent), elapsed());
  } else if (capturing_) {
    std::fprintf(stderr, "\r\033[K%s: capturing %.1f of %.0f s, %llu packets",
                 opt_.iface.c_str(), elapsed() - window_start_, opt_.seconds,
                 static_cast<unsigned long long>(capture_.counts().records));
  }
}

int DoctorLive::run() {
  tty_ = isatty(STDERR_FILENO) != 0;
  facts_.iface = opt_.iface;
  facts_.live = true;
  facts_.iface_up = interface_up(opt_.iface);
  facts_.iface_mtu = info_.mtu;
  facts_.has_peer = info_.peer4.has_value() || info_.peer6.has_value();
  facts_.target_given = !opt_.target.empty();
  if (target_) facts_.target = target_->to_string();

  LiveCapture::Failure failure = LiveCapture::Failure::none;
  std::string err;
  if (!capture_.open(opt_.iface, failure, err)) {
    if (failure == LiveCapture::Failure::permission) {
      say(opt_.iface, "no permission to capture: run it as root (or with CAP_NET_RAW)");
    } else if (failure == LiveCapture::Failure::no_interface) {
      say(opt_.iface, "no such interface (is the VPN connected? see `ip link`)");
    } else {
      say(opt_.iface, "cannot capture: " + err);
    }
    return kExitCannot;
  }

  uv_loop_init(&loop_);
  for (uv_timer_t* t : {&step_, &probe_limit_, &window_, &echo_, &tick_}) {
    uv_timer_init(&loop_, t);
    t->data = this;
  }
  start_ns_ = uv_hrtime();
  if (target_) {
    const bool opened = io_.open(
        opt_.iface, *target_,
        [this](std::uint32_t tag, std::uint16_t size) {
          if ((tag & kEchoTag) != 0) {
            const std::uint32_t idx = tag & ~kEchoTag;
            if (idx >= echo_sent_ns_.size()) return;
            const double rtt = static_cast<double>(uv_hrtime() - echo_sent_ns_[idx]) / 1e6;
            if (facts_.echoes_answered == 0 || rtt < facts_.rtt_min_ms) facts_.rtt_min_ms = rtt;
            facts_.rtt_max_ms = std::max(facts_.rtt_max_ms, rtt);
            rtt_sum_ms_ += rtt;
            ++facts_.echoes_answered;
            facts_.rtt_avg_ms = rtt_sum_ms_ / static_cast<double>(facts_.echoes_answered);
            return;
          }
          apply(search_.on_probe_reply(tag, size, now()));
          arm();
        },
        [this](std::uint32_t tag, std::uint16_t mtu) {
          if ((tag & kEchoTag) != 0) return;
          if (mtu != 0) apply(search_.on_ptb_hint(mtu, now()));
          arm();
        },
        err);
    if (!opened) {
      if (err.find("ermission") != std::string::npos ||
          err.find("EPERM") != std::string::npos) {
        say(opt_.iface, "no permission to send probes: run it as root (or with CAP_NET_RAW)");
        close_all();
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
        return kExitCannot;
      }
      facts_.probe_error = "cannot send probes: " + err;
    }
  } else {
    facts_.probe_error =
        "the interface has no point-to-point peer; give --target ADDR (a host past the tunnel "
        "that answers ping)";
  }
  uv_timer_start(
      &tick_, [](uv_timer_t* t) { static_cast<DoctorLive*>(t->data)->progress(); }, 0, 200);
  if (io_.is_open() && info_.mtu != 0) {
    facts_.probed = true;
    probing_ = true;
    uv_timer_start(
        &probe_limit_,
        [](uv_timer_t* t) {
          auto* self = static_cast<DoctorLive*>(t->data);
          self->probe_done(fmt::format("no result within {:.0f} s (the path may be very lossy)",
                                       kProbeTimeoutSeconds));
        },
        static_cast<std::uint64_t>(kProbeTimeoutSeconds * 1000), 0);
    apply(search_.on_interface_mtu(info_.mtu, now()));
    apply(search_.on_start(now()));
    arm();
  } else {
    start_capture();
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  if (tty_) std::fputs("\r\033[K", stderr);

  Report r;
  r.facts = facts_;
  r.capture = capture_.counts();
  r.capture_error = capture_error_;
  r.source = fmt::format("{} (live, {:.1f} s of traffic)", opt_.iface, opt_.seconds);
  r.link = link_type_name(r.capture.dlt);
  r.daemon = ask_daemon(opt_.socket, opt_.iface);
  apply_daemon(r.daemon, r.facts);
  r.iface_line = fmt::format(
      "{}: {}, MTU {}, {}", opt_.iface, facts_.iface_up ? "up" : "DOWN", info_.mtu,
      facts_.has_peer
          ? "point-to-point, peer " + (info_.peer4 ? info_.peer4 : info_.peer6)->to_string()
          : std::string("no point-to-point peer"));
  r.iface_line += ", link " + r.link;
  if (!capture_error_.empty()) say(opt_.iface, "the capture failed: " + capture_error_);
  if (r.capture.dropped > 0)
    say(opt_.iface, fmt::format("the capture lost {} of {} packets (the machine could not keep "
                                "up): the counts below are too low",
                                r.capture.dropped, r.capture.received + r.capture.dropped));
  r.f = &analyser_->finish(wall_us());
  return finish_report(r, opt_.json);
}

}  // namespace

int cmd_doctor(const DoctorOptions& opt) {
  if (!opt.read.empty()) return doctor_read(opt);
  if (opt.iface.empty()) {
    std::fprintf(stderr,
                 "tunshim doctor: give an interface (tunshim doctor ppp0) or --read FILE\n");
    return kExitCannot;
  }
  std::optional<IpAddress> target;
  if (!opt.target.empty()) {
    target = IpAddress::parse(opt.target);
    if (!target) {
      say("--target", opt.target + " is not an IPv4 or IPv6 address");
      return kExitCannot;
    }
  }
  InterfaceInfo info;
  std::string err;
  if (!read_interface(opt.iface, info, err)) {
    say(opt.iface,
        info.ifindex == 0 ? "no such interface (is the VPN connected? see `ip link`)" : err);
    return kExitCannot;
  }
  if (!target) target = info.peer4 ? info.peer4 : info.peer6;
  // Holds the loop and handles libuv points into: heap-allocated so it never moves.
  auto run = std::make_unique<DoctorLive>(opt, info, target);
  return run->run();
}

}  // namespace tunshim::proxy
