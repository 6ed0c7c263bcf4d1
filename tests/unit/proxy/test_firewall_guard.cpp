// Firewall rule text for the oversize guard: the exact lines (as iptables-nft-save prints
// them, so the diff and reapply recognise installed rules), tunnels with guard rules but no
// SYN rules, the transaction when the guard's N changes, and the counter parsing that must
// keep SYN counts (the daemon's "bypassed" estimate) apart from guard counts.
#include <boost/test/unit_test.hpp>
#include <string>
#include <vector>

#include "proxy/firewall.h"

namespace tp = tunshim::proxy;
using tp::Family;
using Lines = std::vector<std::string>;

namespace {

const std::string kSyn =
    "-p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num 4770 --queue-bypass";
const std::string kGuard4 =
    "TUNSHIM-POST -o ppp0 -m length --length 1373:65535 -m u32 --u32 \"0x4&0x4000=0x4000\" "
    "-j NFQUEUE --queue-num 4770 --queue-bypass";
const std::string kGuard6 =
    "TUNSHIM-POST -o ppp0 -m length --length 1373:65535 -j NFQUEUE --queue-num 4770 "
    "--queue-bypass";

tp::FirewallTunnel ppp0(bool v4, bool v6, std::uint16_t g4, std::uint16_t g6) {
  tp::FirewallTunnel t;
  t.iface = "ppp0";
  t.v4 = v4;
  t.v6 = v6;
  t.guard4 = g4;
  t.guard6 = g6;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(firewall_guard)

BOOST_AUTO_TEST_CASE(guard_rule_text) {
  const tp::Firewall fw(4770);
  BOOST_TEST(fw.guard_rule("ppp0", 1372, Family::v4) == kGuard4);
  BOOST_TEST(fw.guard_rule("ppp0", 1372, Family::v6) == kGuard6);
  BOOST_TEST(
      fw.guard_rule("tun0", 576, Family::v4) ==
      "TUNSHIM-POST -o tun0 -m length --length 577:65535 -m u32 --u32 \"0x4&0x4000=0x4000\" "
      "-j NFQUEUE --queue-num 4770 --queue-bypass");
  BOOST_TEST(fw.guard_rule("ppp0", 65534, Family::v6) ==
             "TUNSHIM-POST -o ppp0 -m length --length 65535:65535 -j NFQUEUE --queue-num 4770 "
             "--queue-bypass");
  // No rule: the guard is off, or nothing can be longer.
  BOOST_TEST(fw.guard_rule("ppp0", 0, Family::v4).empty());
  BOOST_TEST(fw.guard_rule("ppp0", 65535, Family::v6).empty());
  // Another queue number reaches the target.
  BOOST_TEST(tp::Firewall(7).guard_rule("ppp0", 1400, Family::v6) ==
             "TUNSHIM-POST -o ppp0 -m length --length 1401:65535 -j NFQUEUE --queue-num 7 "
             "--queue-bypass");
}

BOOST_AUTO_TEST_CASE(tunnel_rules_and_describe) {
  const tp::Firewall fw(4770);
  // Clamped and guarded: the SYN rules first, then the guard rule.
  BOOST_TEST(
      fw.tunnel_rules(ppp0(true, true, 1372, 1372), Family::v4) ==
          (Lines{"TUNSHIM-PRE -i ppp0 " + kSyn, "TUNSHIM-POST -o ppp0 " + kSyn, kGuard4}),
      boost::test_tools::per_element());
  // Guard without SYN rules (mss off in that family).
  BOOST_TEST(fw.tunnel_rules(ppp0(true, false, 0, 1372), Family::v6) == Lines{kGuard6},
             boost::test_tools::per_element());
  // SYN rules without guard: exactly the rules from before the guard existed.
  BOOST_TEST(fw.tunnel_rules(ppp0(true, false, 0, 1372), Family::v4) ==
                 (Lines{"TUNSHIM-PRE -i ppp0 " + kSyn, "TUNSHIM-POST -o ppp0 " + kSyn}),
             boost::test_tools::per_element());
  BOOST_TEST(fw.tunnel_rules(ppp0(false, false, 0, 0), Family::v4).empty());

  const std::vector<tp::FirewallTunnel> ts = {ppp0(false, true, 0, 1372)};
  BOOST_TEST(fw.describe(ts, Family::v6) ==
                 (Lines{"-A PREROUTING -j TUNSHIM-PRE", "-A POSTROUTING -j TUNSHIM-POST",
                        "-A TUNSHIM-PRE -i ppp0 " + kSyn, "-A TUNSHIM-POST -o ppp0 " + kSyn,
                        "-A " + kGuard6}),
             boost::test_tools::per_element());
  BOOST_TEST(fw.describe(ts, Family::v4) ==
                 (Lines{"-A PREROUTING -j TUNSHIM-PRE", "-A POSTROUTING -j TUNSHIM-POST"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(diff_when_n_changes) {
  const tp::Firewall fw(4770);
  tp::FirewallTunnel tun0;
  tun0.iface = "tun0";
  tun0.v4 = true;
  const std::vector<tp::FirewallTunnel> before = {ppp0(true, true, 1372, 1372), tun0};
  std::vector<tp::FirewallTunnel> after = before;
  after[0].guard4 = 1300;
  // IPv4: the old guard rule goes and the new one comes, in one transaction; the SYN rules
  // and the other tunnel are untouched (their counters survive).
  BOOST_TEST(fw.diff_lines(before, after, Family::v4) ==
                 (Lines{"-D " + kGuard4,
                        "-A TUNSHIM-POST -o ppp0 -m length --length 1301:65535 -m u32 --u32 "
                        "\"0x4&0x4000=0x4000\" -j NFQUEUE --queue-num 4770 --queue-bypass"}),
             boost::test_tools::per_element());
  BOOST_TEST(fw.diff_lines(before, after, Family::v6).empty());
  // The guard goes away in IPv6 (PMTU back to the interface MTU): only a delete.
  after[0].guard6 = 0;
  BOOST_TEST(fw.diff_lines(before, after, Family::v6) == Lines{"-D " + kGuard6},
             boost::test_tools::per_element());
  // ...and comes back: only an add.
  BOOST_TEST(fw.diff_lines(after, before, Family::v6) == Lines{"-A " + kGuard6},
             boost::test_tools::per_element());
  BOOST_TEST(fw.diff_lines(before, before, Family::v4).empty());
}

BOOST_AUTO_TEST_CASE(counts_keep_syn_and_guard_apart) {
  const tp::Firewall fw(4770);
  const std::string save =
      "*mangle\n"
      ":PREROUTING ACCEPT [0:0]\n"
      ":TUNSHIM-POST - [0:0]\n"
      "[9:540] -A PREROUTING -j TUNSHIM-PRE\n"
      "[3:180] -A TUNSHIM-PRE -i ppp0 " +
      kSyn +
      "\n"
      "[5:300] -A TUNSHIM-POST -o ppp0 " +
      kSyn +
      "\n"
      "[7:10500] -A " +
      kGuard4 +
      "\n"
      "[11:16500] -A TUNSHIM-POST -o tun0 -m length --length 1401:65535 -j NFQUEUE --queue-num "
      "4770 --queue-bypass\n"
      // Another program's queue and a rule in another chain: not ours.
      "[13:1] -A TUNSHIM-POST -o ppp0 -m length --length 1401:65535 -j NFQUEUE --queue-num 1 "
      "--queue-bypass\n"
      "[17:1] -A POSTROUTING -o ppp0 -m length --length 1401:65535 -j NFQUEUE --queue-num 4770 "
      "--queue-bypass\n"
      "COMMIT\n";
  const tp::RuleCounts c = tp::Firewall::parse_counts(save, fw.rule_tail());
  BOOST_TEST_REQUIRE(c.count("ppp0") == 1U);
  BOOST_TEST(c.at("ppp0").pre == 3U);
  BOOST_TEST(c.at("ppp0").post == 5U);  // the guard's 7 are not SYNs
  BOOST_TEST(c.at("ppp0").guard == 7U);
  BOOST_TEST_REQUIRE(c.count("tun0") == 1U);  // guard rule only
  BOOST_TEST(c.at("tun0").pre == 0U);
  BOOST_TEST(c.at("tun0").post == 0U);
  BOOST_TEST(c.at("tun0").guard == 11U);
  BOOST_TEST(c.size() == 2U);
}

BOOST_AUTO_TEST_SUITE_END()
