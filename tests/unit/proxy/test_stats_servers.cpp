// The pure parts of the stats servers: the HTTP request-head parser and the rule lines a
// reapply computes from iptables-save output.
#include <boost/test/unit_test.hpp>
#include <string>
#include <vector>

#include "proxy/http_server.h"
#include "proxy/rule_reapply.h"

namespace {

using namespace tunshim::proxy;
using P = HttpRequest::Parse;

BOOST_AUTO_TEST_CASE(http_head_complete_and_incomplete) {
  HttpRequest r =
      parse_http_request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
  BOOST_TEST((r.parse == P::ok));
  BOOST_TEST(r.method == "GET");
  BOOST_TEST(r.path == "/metrics");
  r = parse_http_request("POST /stats.json HTTP/1.0\n\n");  // bare LF accepted
  BOOST_TEST((r.parse == P::ok));
  BOOST_TEST(r.method == "POST");
  BOOST_TEST((parse_http_request("").parse == P::incomplete));
  BOOST_TEST((parse_http_request("GE").parse == P::incomplete));
  BOOST_TEST((parse_http_request("GET /metr").parse == P::incomplete));
  BOOST_TEST(
      (parse_http_request("GET /metrics HTTP/1.1\r\nHost: a\r\n").parse == P::incomplete));
}

BOOST_AUTO_TEST_CASE(http_head_garbage_is_bad_early) {
  // TLS hello, lower-case method, overlong method: known bad before any newline.
  BOOST_TEST((parse_http_request("\x16\x03\x01").parse == P::bad));
  BOOST_TEST((parse_http_request("get /").parse == P::bad));
  BOOST_TEST((parse_http_request("ABCDEFGHIJKLMNOPQRSTUVWXYZ").parse == P::bad));
  for (const char* head : {
           "GET /metrics\r\n\r\n",            // no version (HTTP/0.9 style)
           "GET metrics HTTP/1.1\r\n\r\n",    // target not a path
           "GET /metrics HTTP/2.0\r\n\r\n",   // unknown version
           "GET  /metrics HTTP/1.1\r\n\r\n",  // empty target
           " GET /metrics HTTP/1.1\r\n\r\n",  // empty method
           "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
           "GET /a\x01 HTTP/1.1\r\n\r\n",  // control character in the target
       }) {
    BOOST_TEST((parse_http_request(head).parse == P::bad), head);
  }
}

const char* const kRulePre =
    "TUNSHIM-PRE -i ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num 7 "
    "--queue-bypass";
const char* const kRulePost =
    "TUNSHIM-POST -o ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num 7 "
    "--queue-bypass";

std::string save(const std::vector<std::string>& rules, bool chains = true, bool jumps = true) {
  std::string s = "*mangle\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
  if (chains) s += ":TUNSHIM-POST - [0:0]\n:TUNSHIM-PRE - [0:0]\n";
  if (jumps) s += "-A PREROUTING -j TUNSHIM-PRE\n-A POSTROUTING -j TUNSHIM-POST\n";
  for (const auto& r : rules) s += "-A " + r + "\n";
  return s + "COMMIT\n";
}

BOOST_AUTO_TEST_CASE(reapply_replaces_every_copy_in_one_transaction) {
  const std::vector<std::string> rules = {kRulePre, kRulePost};
  const std::string other =
      "TUNSHIM-PRE -i tun0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num 7 "
      "--queue-bypass";
  // Intact: delete and re-add once (the transaction is atomic, so no SYN misses the rule).
  BOOST_TEST(reapply_lines(save({kRulePre, other, kRulePost}), rules, true) ==
             (std::vector<std::string>{
                 std::string("-D ") + kRulePre, std::string("-A ") + kRulePre,
                 std::string("-D ") + kRulePost, std::string("-A ") + kRulePost}));
  // Doubled in rule, missing out rule.
  BOOST_TEST(reapply_lines(save({kRulePre, kRulePre}), rules, true) ==
             (std::vector<std::string>{
                 std::string("-D ") + kRulePre, std::string("-D ") + kRulePre,
                 std::string("-A ") + kRulePre, std::string("-A ") + kRulePost}));
  // Chains and jumps gone (someone flushed the table by hand): re-created.
  BOOST_TEST(reapply_lines(save({}, false, false), rules, true) ==
             (std::vector<std::string>{
                 ":TUNSHIM-PRE - [0:0]", ":TUNSHIM-POST - [0:0]", std::string("-A ") + kRulePre,
                 std::string("-A ") + kRulePost, "-I PREROUTING 1 -j TUNSHIM-PRE",
                 "-I POSTROUTING 1 -j TUNSHIM-POST"}));
}

BOOST_AUTO_TEST_CASE(reapply_for_an_unclamped_family_only_removes) {
  const std::vector<std::string> rules = {kRulePre, kRulePost};
  BOOST_TEST(reapply_lines(save({kRulePost}), rules, false) ==
             (std::vector<std::string>{std::string("-D ") + kRulePost}));
  BOOST_TEST(reapply_lines(save({}), rules, false).empty());
}

BOOST_AUTO_TEST_CASE(reapply_restores_the_guard_rule_of_an_unclamped_family) {
  // mss6 = "off" with the guard on: no SYN rules in that family, but the guard rule stays.
  const Firewall fw(7);
  const std::string guard = fw.guard_rule("ppp0", 1372, Family::v6);
  BOOST_TEST_REQUIRE(!guard.empty());
  const std::vector<std::string> rules = {kRulePre, kRulePost, guard};
  const std::vector<bool> wants = {false, false, true};
  // Deleted by hand: added back; a stale SYN rule goes.
  BOOST_TEST(reapply_lines(save({kRulePre}), rules, wants) ==
             (std::vector<std::string>{std::string("-D ") + kRulePre, "-A " + guard}));
  // Doubled: one copy left.
  BOOST_TEST(reapply_lines(save({guard, guard}), rules, wants) ==
             (std::vector<std::string>{"-D " + guard, "-D " + guard, "-A " + guard}));
}

}  // namespace
