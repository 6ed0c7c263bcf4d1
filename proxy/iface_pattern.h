// Interface names and patterns as iptables reads them: "ppp0" is one name, "ppp+" every
// name that starts with "ppp" ("ppp" itself included). tunshim matches with exactly the
// kernel's rule (xt's ifname_compare: the bytes before '+'), so a packet its rules queue
// always finds the tunnel the table made for that interface, and no other.
//
// '*' is not a wildcard: Linux allows it in a name, iptables takes it literally, and so
// does tunshim (check-config says so, since "ppp*" is almost always meant as "ppp+").
#pragma once

#include <string_view>

namespace tunshim::proxy {

// A pattern is a non-empty prefix followed by one '+', the last character.
constexpr bool is_iface_pattern(std::string_view s) noexcept {
  return s.size() >= 2 && s.back() == '+';
}

// The bytes a pattern requires at the start of a name ("ppp" for "ppp+"); the whole of
// an exact name.
constexpr std::string_view iface_prefix(std::string_view s) noexcept {
  return is_iface_pattern(s) ? s.substr(0, s.size() - 1) : s;
}

// Whether the interface `name` is one `config` ("ppp0" or "ppp+") stands for.
constexpr bool iface_matches(std::string_view config, std::string_view name) noexcept {
  if (!is_iface_pattern(config)) return config == name;
  return name.starts_with(iface_prefix(config));
}

// Whether some interface name would match both patterns: then one prefix is a prefix of
// the other ("ppp+" and "pp+": "ppp0"); otherwise they part at some byte and no name can
// start with both ("ppp+" and "tun+"). Exact names never overlap here: a name beats a
// pattern, and two equal names are a duplicate, reported as such.
constexpr bool iface_patterns_overlap(std::string_view a, std::string_view b) noexcept {
  if (!is_iface_pattern(a) || !is_iface_pattern(b)) return false;
  const std::string_view pa = iface_prefix(a);
  const std::string_view pb = iface_prefix(b);
  return pa.starts_with(pb) || pb.starts_with(pa);
}

// A name two overlapping patterns both match, for the error message: the longer prefix.
inline std::string_view iface_overlap_longer(std::string_view a, std::string_view b) noexcept {
  return iface_prefix(a).size() >= iface_prefix(b).size() ? iface_prefix(a) : iface_prefix(b);
}

}  // namespace tunshim::proxy
