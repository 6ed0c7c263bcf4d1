// Interface patterns ("ppp+"): matching as the kernel's xt ifname match does, the static
// overlap check, and how the config reports patterns that overlap.
#include <boost/test/unit_test.hpp>
#include <string>
#include <variant>
#include <vector>

#include "proxy/config.h"
#include "proxy/iface_pattern.h"

namespace {

using namespace tunshim::proxy;

std::vector<std::string> errors_of(const std::string& text) {
  std::vector<std::string> out;
  const ConfigResult r = parse_config(text, "t.conf");
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    for (const ConfigError& e : *errors) out.push_back(e.to_string());
  }
  return out;
}

std::string tunnels(std::initializer_list<const char*> ifaces) {
  std::string out;
  for (const char* i : ifaces) {
    out += "[[tunnel]]\ninterface = \"" + std::string(i) + "\"\nmss = 1360\n";
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(iface_pattern)

BOOST_AUTO_TEST_CASE(what_is_a_pattern) {
  BOOST_TEST(is_iface_pattern("ppp+"));
  BOOST_TEST(is_iface_pattern("a+"));
  BOOST_TEST(!is_iface_pattern("+"));  // refused by the config: it would match lo
  BOOST_TEST(!is_iface_pattern("ppp0"));
  BOOST_TEST(!is_iface_pattern("ppp*"));  // '*' is literal, as in iptables
  BOOST_TEST(iface_prefix("ppp+") == "ppp");
  BOOST_TEST(iface_prefix("ppp0") == "ppp0");
}

// xt's ifname_compare: a pattern compares the bytes before '+', nothing after; the prefix
// itself matches. An exact name matches itself only.
BOOST_AUTO_TEST_CASE(matching) {
  BOOST_TEST(iface_matches("ppp+", "ppp0"));
  BOOST_TEST(iface_matches("ppp+", "ppp999"));
  BOOST_TEST(iface_matches("ppp+", "ppp"));
  BOOST_TEST(iface_matches("ppp+", "pppoe-wan"));
  BOOST_TEST(!iface_matches("ppp+", "pp"));
  BOOST_TEST(!iface_matches("ppp+", "tun0"));
  BOOST_TEST(!iface_matches("ppp+", "Ppp0"));  // bytes, not case-folded
  BOOST_TEST(!iface_matches("ppp+", "xppp0"));
  BOOST_TEST(iface_matches("ppp0", "ppp0"));
  BOOST_TEST(!iface_matches("ppp0", "ppp01"));
  BOOST_TEST(!iface_matches("ppp0", "ppp"));
  BOOST_TEST(!iface_matches("ppp*", "ppp0"));
  BOOST_TEST(iface_matches("ppp*", "ppp*"));
}

// Two patterns overlap exactly when some name matches both: check it against every name
// over a small alphabet up to 4 bytes, so the static rule and the matcher cannot disagree.
BOOST_AUTO_TEST_CASE(overlap_is_exactly_a_shared_name) {
  const std::vector<std::string> pats = {"a+",  "b+",   "aa+",  "ab+",
                                         "ba+", "aab+", "abb+", "aaa+"};
  std::vector<std::string> names = {""};
  for (int len = 0; len < 4; ++len) {
    const std::size_t n = names.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (names[i].size() != static_cast<std::size_t>(len)) continue;
      names.push_back(names[i] + "a");
      names.push_back(names[i] + "b");
    }
  }
  for (const auto& p : pats) {
    for (const auto& q : pats) {
      bool shared = false;
      for (const auto& n : names)
        shared = shared || (iface_matches(p, n) && iface_matches(q, n));
      BOOST_TEST_CONTEXT(p << " vs " << q) {
        BOOST_TEST(iface_patterns_overlap(p, q) == shared);
        if (shared) {
          const std::string both(iface_overlap_longer(p, q));
          BOOST_TEST((iface_matches(p, both) && iface_matches(q, both)));
        }
      }
    }
  }
  BOOST_TEST(iface_patterns_overlap("ppp+", "pp+"));
  BOOST_TEST(iface_patterns_overlap("pp+", "ppp+"));
  BOOST_TEST(iface_patterns_overlap("ppp+", "ppp+"));
  BOOST_TEST(!iface_patterns_overlap("ppp+", "tun+"));
  BOOST_TEST(!iface_patterns_overlap("ppp+", "ppp0"));  // an exact name beats a pattern
  BOOST_TEST(!iface_patterns_overlap("ppp0", "ppp0"));  // a duplicate, reported as one
}

BOOST_AUTO_TEST_CASE(config_accepts_patterns) {
  const ConfigResult r =
      parse_config(tunnels({"ppp+", "tun+", "ppp0", "wg0", "ppp*"}), "t.conf");
  const auto* c = std::get_if<Config>(&r);
  BOOST_REQUIRE(c != nullptr);
  BOOST_TEST(c->tunnels.size() == 5U);
  BOOST_TEST(c->tunnels[0].interface == "ppp+");
  BOOST_TEST(c->tunnels[2].interface == "ppp0");
  // "ppp*" is taken literally, and said so.
  BOOST_REQUIRE(c->warnings.size() == 1U);
  BOOST_TEST(c->warnings[0].to_string() ==
             "t.conf:14:13: interface \"ppp*\" is matched literally ('*' is no wildcard); for "
             "every interface starting with a prefix write \"ppp+\"");
}

BOOST_AUTO_TEST_CASE(config_refuses_overlap_with_position) {
  const auto e = errors_of(tunnels({"ppp+", "tun+", "pp+"}));
  BOOST_REQUIRE(e.size() == 1U);
  BOOST_TEST(
      e[0] ==
      "t.conf:8:13: interface pattern \"pp+\" overlaps \"ppp+\" of the [[tunnel]] at line "
      "1: an interface such as \"ppp\" would match both (make the prefixes part, e.g. "
      "\"ppp+\" and \"tun+\", or name the interface exactly: an exact name beats a "
      "pattern)");
  BOOST_TEST(errors_of(tunnels({"ppp+", "ppp+"})).size() == 1U);
  BOOST_TEST(errors_of(tunnels({"ppp+", "ppp0", "ppp1", "tun+", "tun0"})).empty());
  const auto plus = errors_of(tunnels({"+"}));
  BOOST_REQUIRE(plus.size() == 1U);
  BOOST_TEST(plus[0].find("would match every interface") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(max_concurrent_searches_range) {
  const std::string tunnel = tunnels({"ppp+"});
  auto with = [&](const std::string& v) {
    return "[global]\nmax_concurrent_searches = " + v + "\n" + tunnel;
  };
  for (const char* v : {"1", "1024"}) {
    const ConfigResult r = parse_config(with(v), "t.conf");
    const auto* c = std::get_if<Config>(&r);
    BOOST_REQUIRE(c != nullptr);
    BOOST_TEST(c->global.max_concurrent_searches == std::stoul(v));
  }
  for (const char* v : {"0", "1025"}) {
    const auto e = errors_of(with(v));
    BOOST_REQUIRE(e.size() == 1U);
    BOOST_TEST(e[0].starts_with("t.conf:2:27: max_concurrent_searches must be"), e[0]);
  }
  const ConfigResult r = parse_config(tunnel, "t.conf");
  BOOST_TEST(std::get<Config>(r).global.max_concurrent_searches == 16U);
}

BOOST_AUTO_TEST_SUITE_END()
