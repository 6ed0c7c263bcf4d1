// The doctor's verdict rules; docs/DOCTOR.md explains each one.
#include "diag/assess.h"

#include <algorithm>
#include <cstdio>

#include "clamp/mtu.h"

namespace tunshim::diag {
namespace {

std::string num(std::uint64_t v) { return std::to_string(v); }

std::string secs(std::int64_t us) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", static_cast<double>(us) / 1e6);
  return b;
}

std::string ms(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f ms", v);
  return b;
}

std::string endpoint(const Address& a, std::uint16_t port) {
  return a.family == 6 ? "[" + to_string(a) + "]:" + num(port) : to_string(a) + ":" + num(port);
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return num(n) + " " + (n == 1 ? one : many);
}

// Smallest MTU an ICMP too-big error in the capture reported (0: none with a number).
std::uint16_t reported_mtu(const IcmpTooBig& t) {
  std::uint16_t m = 0;
  for (std::size_t i = 0; i < t.used; ++i)
    if (t.mtus[i].mtu != 0 && (m == 0 || t.mtus[i].mtu < m)) m = t.mtus[i].mtu;
  return m;
}

std::uint64_t syns_seen(const Findings& f) {
  std::uint64_t n = 0;
  for (const auto& d : f.syn)
    for (const auto& h : d) n += h.total;
  for (const auto& d : f.syn_ack)
    for (const auto& h : d) n += h.total;
  return n;
}

}  // namespace

std::string to_string(const Address& a) {
  char b[64];
  if (a.family == 4) {
    std::snprintf(b, sizeof b, "%u.%u.%u.%u", a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]);
    return b;
  }
  if (a.family != 6) return "?";
  // RFC 5952: lower-case hex, the longest run (two or more) of zero groups as "::".
  unsigned g[8];
  for (std::size_t i = 0; i < 8; ++i)
    g[i] = (unsigned{a.bytes[2 * i]} << 8) | a.bytes[2 * i + 1];
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && g[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(b, sizeof b, "%x", g[i]);
    out += b;
  }
  return out;
}

const char* to_string(Severity s) noexcept {
  switch (s) {
    case Severity::critical:
      return "critical";
    case Severity::high:
      return "high";
    case Severity::medium:
      return "medium";
    case Severity::low:
      break;
  }
  return "low";
}

Assessment assess(const Findings& f, const ActiveFacts& a) {
  Assessment out;
  const std::string name = a.iface.empty() ? "the captured tunnel" : a.iface;
  const bool measured = a.probed && a.probe_complete && a.pmtu != 0;
  const std::uint16_t icmp_mtu = reported_mtu(f.too_big);
  std::uint16_t pmtu = 0;
  std::string pmtu_source;
  if (measured) {
    pmtu = a.pmtu;
    pmtu_source = "measured by DF probes";
  } else if (a.pmtu_given && a.pmtu != 0) {
    pmtu = a.pmtu;
    pmtu_source = "given with --pmtu";
  } else if (icmp_mtu != 0) {
    pmtu = icmp_mtu;
    pmtu_source = "reported by ICMP too-big errors in the capture";
  }
  out.path_mtu = pmtu;
  const std::uint16_t mss4 = pmtu != 0 ? clamp::mss_from_mtu4(pmtu) : 0;
  const std::uint16_t mss6 = pmtu != 0 ? clamp::mss_from_mtu6(pmtu) : 0;
  // tunshim already keeps segments within the path: its clamp is at or below the path MSS.
  const bool clamped = a.daemon && pmtu != 0 && a.daemon_mss4 != 0 && a.daemon_mss4 <= mss4 &&
                       (a.daemon_mss6 == 0 || a.daemon_mss6 <= mss6);
  const bool smaller_path = pmtu != 0 && a.iface_mtu != 0 && pmtu < a.iface_mtu;
  const bool icmp_filtered = measured && smaller_path && a.too_big_hints == 0;
  const std::uint64_t too_big_seen = f.too_big.frag_needed + f.too_big.packet_too_big;
  auto add = [&](Severity s, std::string title, std::string evidence) {
    out.risks.push_back(Risk{s, std::move(title), std::move(evidence)});
  };

  if (a.live && !a.iface_up)
    add(Severity::critical, name + " is down", "the interface exists but is not up");

  if (smaller_path) {
    std::string ev = "interface MTU " + num(a.iface_mtu) + ", path MTU " + num(pmtu) + " (" +
                     pmtu_source + ")";
    if (measured)
      ev += "; " + plural(a.probes_sent, "probe", "probes") + ", " +
            plural(a.too_big_hints, "too-big error", "too-big errors") +
            " quoting the ones that did not fit";
    if (clamped) {
      add(Severity::low, "the path carries less than the interface MTU; tunshim clamps for it",
          ev + "; tunshim's MSS target " + num(a.daemon_mss4) + " / " + num(a.daemon_mss6));
    } else if (icmp_filtered) {
      add(Severity::critical,
          "path-MTU black hole: packets above " + num(pmtu) +
              " bytes vanish and the ICMP errors that should say so are filtered",
          ev + "; no frag-needed / packet-too-big came back, so TCP never learns the size");
    } else {
      add(Severity::medium,
          "the interface MTU is larger than the path; it works only while ICMP errors get "
          "through",
          ev);
    }
  }

  if (f.mss_above_path > 0) {
    std::string ev = plural(f.mss_above_path, "handshake packet", "handshake packets") +
                     " above the path's MSS " + num(mss4) + " (IPv4) / " + num(mss6) +
                     " (IPv6)";
    for (std::size_t i = 0; i < f.mss_examples_used && i < 3; ++i) {
      const MssExample& e = f.mss_examples[i];
      ev += std::string("; ") + (e.syn_ack ? "SYN-ACK " : "SYN ") + endpoint(e.src, e.sport) +
            " > " + endpoint(e.dst, e.dport) + " MSS " + num(e.mss);
    }
    if (clamped) {
      add(Severity::low, "handshakes announce an MSS above the path, before tunshim's clamp",
          ev + "; inbound SYN-ACKs are captured before tunshim lowers them");
    } else {
      add(Severity::high,
          "TCP handshakes announce an MSS the path cannot carry: their full-size segments "
          "will not fit",
          ev);
    }
  }

  if (f.oversize_df > 0) {
    std::string ev =
        plural(f.oversize_df, "packet", "packets") + " with DF above " + num(pmtu) + " bytes";
    for (std::size_t i = 0; i < f.oversize_used && i < 4; ++i) {
      const OversizeSource& s = f.oversize[i];
      ev += "; from " + to_string(s.src) + ": " + num(s.packets) + " (up to " + num(s.max_len) +
            " bytes)";
    }
    if (f.oversize_other_sources > 0)
      ev += "; " + num(f.oversize_other_sources) + " from further sources";
    if (too_big_seen == 0) ev += "; no ICMP too-big error seen in reply";
    add(Severity::high, "DF packets larger than the path MTU: the path drops them", ev);
  }

  if (f.full_retrans > 0) {
    std::string ev = plural(f.full_retrans, "retransmission", "retransmissions") +
                     " of full-size segments on " +
                     plural(f.retrans_connections, "connection", "connections");
    for (std::size_t i = 0; i < f.connections_used && i < 3; ++i) {
      const ConnectionReport& c = f.connections[i];
      for (int k = 0; k < 2; ++k) {
        if (c.full_retrans[k] == 0) continue;
        const bool fwd = k == 0;
        ev += "; " + endpoint(fwd ? c.a : c.b, fwd ? c.aport : c.bport) + " > " +
              endpoint(fwd ? c.b : c.a, fwd ? c.bport : c.aport) + ": " +
              num(c.full_retrans[k]) + " x " + num(c.max_payload[k]) + "-byte segments";
      }
    }
    if (f.full_retrans_repeated > 0 || f.full_retrans_oversize > 0) {
      ev += "; " + num(f.full_retrans_repeated) + " of them repeat a retransmission, " +
            num(f.full_retrans_oversize) + " are larger than the path";
      add(Severity::high,
          "full-size TCP segments are retransmitted again and again: the stall symptom", ev);
    } else {
      add(Severity::low,
          "some full-size segments were retransmitted once each: ordinary loss recovery", ev);
    }
  }

  if (f.stalled_connections > 0) {
    std::string ev = plural(f.stalled_connections, "connection", "connections") +
                     " carried data, stayed open and went silent";
    int shown = 0;
    for (std::size_t i = 0; i < f.connections_used && shown < 3; ++i) {
      const ConnectionReport& c = f.connections[i];
      const std::int64_t silent = f.last_us - c.last_us;
      if (c.closed || silent <= 0) continue;
      ev += "; " + endpoint(c.a, c.aport) + " <> " + endpoint(c.b, c.bport) + ": " +
            num(c.payload[0] + c.payload[1]) + " bytes, then silent " + secs(silent);
      if (c.mss[1] != 0) ev += ", peer MSS " + num(c.mss[1]);
      ++shown;
    }
    add(clamped ? Severity::medium : Severity::high, "connections stalled mid-transfer", ev);
  }

  if (a.probed && !a.probe_complete) {
    add(Severity::medium, "the path MTU could not be measured",
        a.probe_error.empty() ? "the probe search did not complete" : a.probe_error);
  }

  if (a.echoes_sent >= 5) {
    const std::uint64_t lost = a.echoes_sent - std::min(a.echoes_sent, a.echoes_answered);
    const std::string ev =
        num(a.echoes_answered) + " of " + num(a.echoes_sent) + " echoes answered" +
        (a.echoes_answered > 0 ? ", RTT " + ms(a.rtt_min_ms) + " / " + ms(a.rtt_avg_ms) +
                                     " / " + ms(a.rtt_max_ms) + " (min/avg/max)"
                               : std::string());
    if (a.echoes_answered == 0) {
      add(Severity::critical, "the target " + a.target + " answers nothing", ev);
    } else if (lost * 20 >= a.echoes_sent) {
      add(Severity::medium,
          "packet loss to " + a.target + ": " + num(lost * 100 / a.echoes_sent) + " %", ev);
    } else if (lost > 0) {
      add(Severity::low, "some packet loss to " + a.target, ev);
    }
  }

  if (f.gaps_used > 0 && f.gaps[0].len_us >= 30'000'000) {
    add(Severity::low,
        "the tunnel sat idle for " + secs(f.gaps[0].len_us) +
            ": a NAT or firewall on the way may forget the session",
        "longest gap without a packet " + secs(f.gaps[0].len_us) +
            "; tunshim's keepalive (on by default) sends an echo after 10 s of silence");
  }

  if (f.counts.malformed > 0) {
    add(Severity::low, "malformed IP packets on the interface",
        plural(f.counts.malformed, "packet", "packets") +
            " whose headers contradict their lengths");
  }

  std::stable_sort(out.risks.begin(), out.risks.end(), [](const Risk& x, const Risk& y) {
    return static_cast<int>(x.severity) < static_cast<int>(y.severity);
  });
  out.healthy = std::none_of(out.risks.begin(), out.risks.end(),
                             [](const Risk& r) { return r.severity != Severity::low; });

  // ---- the verdict in plain words -------------------------------------------------------
  const std::int64_t window = f.last_us - f.first_us;
  if (icmp_filtered && !clamped) {
    out.verdict = name + " is a path-MTU black hole: the interface says " + num(a.iface_mtu) +
                  " bytes but the path carries only " + num(pmtu) +
                  ", and the ICMP errors that should tell senders so are filtered on the "
                  "way. Small packets pass; anything that sends full-size packets (TCP "
                  "downloads and uploads, large requests) stalls until it times out.";
    if (f.full_retrans > 0 || f.stalled_connections > 0)
      out.verdict +=
          " The capture shows it happening: " +
          plural(f.full_retrans, "full-size retransmission", "full-size retransmissions") +
          ", " + plural(f.stalled_connections, "stalled connection", "stalled connections") +
          ".";
    out.verdict += " Fix: let tunshim clamp the TCP MSS to " + num(mss4) + " (IPv4) / " +
                   num(mss6) + " (IPv6) and answer oversize packets itself (config below).";
  } else if (out.healthy) {
    out.verdict = name + " looks healthy";
    if (pmtu != 0) {
      out.verdict += ": the path carries " + num(pmtu) + " bytes";
      if (clamped)
        out.verdict += " and tunshim clamps the MSS to " + num(a.daemon_mss4) + " / " +
                       num(a.daemon_mss6) + ", so no segment is larger than the path";
      else if (!smaller_path && a.iface_mtu != 0)
        out.verdict += ", the interface's full MTU";
    }
    out.verdict += "; in " + secs(window) + " of traffic (" +
                   plural(f.counts.records, "packet", "packets") + ", " +
                   plural(syns_seen(f), "handshake", "handshakes") +
                   ") no segment was retransmitted again and again and no DF packet was "
                   "larger than the path.";
  } else {
    out.verdict = name + " has problems (" + out.risks.front().title + ").";
    if (pmtu != 0 && !clamped)
      out.verdict += " Clamping the TCP MSS to " + num(mss4) + " (IPv4) / " + num(mss6) +
                     " (IPv6) keeps every segment within the path (config below).";
  }

  // ---- the [[tunnel]] block ---------------------------------------------------------------
  std::string cfg = "[[tunnel]]\n";
  if (a.iface.empty()) {
    cfg += "interface = \"ppp0\"  # the tunnel interface the capture was taken on\n";
  } else {
    cfg += "interface = \"" + a.iface + "\"\n";
  }
  const bool can_probe = !a.live || a.has_peer || a.target_given;
  if (can_probe) {
    if (a.target_given) cfg += "probe_target = \"" + a.target + "\"\n";
    cfg += "mss = \"auto\"  # tunshim measures the path MTU itself";
    if (pmtu != 0)
      cfg += " (here: " + num(pmtu) + " -> MSS " + num(mss4) + " / " + num(mss6) + ")";
    cfg += "\n";
    cfg +=
        "guard = \"icmp\"  # oversize DF packets: dropped and answered with a too-big error\n";
  } else if (pmtu != 0) {
    cfg += "mss = " + num(mss4) + "  # path MTU " + num(pmtu) + " - 40\n";
    cfg += "mss6 = " + num(mss6) + "  # path MTU " + num(pmtu) + " - 60\n";
  } else {
    cfg += "mss = 1160  # path MTU unknown: the safe fallback (1200 - 40)\n";
  }
  out.config = cfg;
  return out;
}

}  // namespace tunshim::diag
