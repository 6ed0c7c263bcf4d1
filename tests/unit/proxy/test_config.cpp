// Config parsing: exact messages and positions for bad files, values and defaults for good
// ones, every range edge, and check-config's output re-parsing to the same values.
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "proxy/config.h"

namespace {

using namespace tunshim::proxy;

// A minimal valid tunnel: [[tunnel]] on its line 1, interface value at 2:13, mss value at 3:7.
const std::string kTunnel = "[[tunnel]]\ninterface = \"ppp0\"\nmss = 1360\n";

std::vector<std::string> errors_of(const std::string& text) {
  std::vector<std::string> out;
  const ConfigResult r = parse_config(text, "t.conf");
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    for (const ConfigError& e : *errors) out.push_back(e.to_string());
  }
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Parses text that must be valid; a failure shows every error.
Config good(const std::string& text) {
  const ConfigResult r = parse_config(text, "t.conf");
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    std::vector<std::string> lines;
    for (const ConfigError& e : *errors) lines.push_back(e.to_string());
    BOOST_FAIL("expected a valid config, got:\n" + joined(lines) + "for:\n" + text);
  }
  return std::get<Config>(r);
}

struct BadCase {
  const char* name;
  std::string text;
  std::vector<std::string> expected;
};

void check_bad(const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    BOOST_TEST_CONTEXT(c.name << ":\n" << c.text) {
      BOOST_TEST(errors_of(c.text) == c.expected, boost::test_tools::per_element());
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(config)

BOOST_AUTO_TEST_CASE(error_to_string_forms) {
  BOOST_TEST((ConfigError{"a.conf", 3, 7, "bad"}.to_string()) == "a.conf:3:7: bad");
  BOOST_TEST((ConfigError{"a.conf", 3, 0, "bad"}.to_string()) == "a.conf:3: bad");
  BOOST_TEST((ConfigError{"a.conf", 0, 0, "bad"}.to_string()) == "a.conf: bad");
}

BOOST_AUTO_TEST_CASE(syntax_errors_carry_toml_position) {
  check_bad({
      {"value missing",
       "[global]\nlog_level = \n" + kTunnel,
       {"t.conf:2:13: Error while parsing key-value pair: expected value, saw '\\n'"}},
      {"duplicate key",
       kTunnel + "mss = 1400\n",
       {"t.conf:4:7: Error while parsing key-value pair: cannot redefine existing integer "
        "'mss'"}},
      {"unterminated table header",
       "[[tunnel\ninterface = \"ppp0\"\n",
       {"t.conf:1:9: Error while parsing table header: expected ']', saw '\\n'"}},
  });
}

BOOST_AUTO_TEST_CASE(structure_errors) {
  check_bad({
      {"empty file",
       "",
       {"t.conf: no [[tunnel]] configured: tunshim would have nothing to do"}},
      {"only global",
       "[global]\nlog_level = \"info\"\n",
       {"t.conf: no [[tunnel]] configured: tunshim would have nothing to do"}},
      {"duplicate interface",
       kTunnel + kTunnel,
       {"t.conf:5:13: interface \"ppp0\" is already configured by the [[tunnel]] at line 1"}},
      {"duplicate reported even when the first tunnel is otherwise bad",
       "[[tunnel]]\ninterface = \"tun0\"\nmss = 1\n" +
           std::string("[[tunnel]]\ninterface = \"tun0\"\nmss = 1360\n"),
       {"t.conf:3:7: mss must be between 536 and 65495 (or \"off\"), not 1",
        "t.conf:5:13: interface \"tun0\" is already configured by the [[tunnel]] at line 1"}},
      {"missing interface",
       "[[tunnel]]\nmss = 1360\n",
       {"t.conf:1:1: this [[tunnel]] has no interface: set interface = \"NAME\" (e.g. "
        "\"ppp0\")"}},
      {"missing mss",
       "[[tunnel]]\ninterface = \"ppp0\"\n",
       {"t.conf:1:1: this [[tunnel]] has no mss: set mss to the IPv4 MSS target (e.g. 1360) or "
        "\"off\""}},
      {"[tunnel] instead of [[tunnel]]",
       "[tunnel]\ninterface = \"ppp0\"\nmss = 1360\n",
       {"t.conf:1:1: tunnel must be an array of tables: write [[tunnel]], not [tunnel]"}},
      {"tunnel as integer",
       "tunnel = 5\n",
       {"t.conf:1:10: tunnel must be an array of tables ([[tunnel]]), not an integer"}},
      {"tunnel array of integers",
       "tunnel = [1]\n",
       {"t.conf:1:11: each tunnel must be a table ([[tunnel]]), not an integer"}},
      {"global as integer",
       "global = 1\n" + kTunnel,
       {"t.conf:1:10: global must be a table ([global]), not an integer"}},
      {"both off",
       "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\nmss6 = \"off\"\n",
       {"t.conf:1:1: mss and mss6 are both \"off\": this [[tunnel]] has nothing to do"}},
      {"mss off, mss6 follows",
       "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\n",
       {"t.conf:1:1: mss is \"off\" and mss6 follows it by default: this [[tunnel]] has "
        "nothing "
        "to do (set mss6 to clamp IPv6 only)"}},
  });
}

BOOST_AUTO_TEST_CASE(auto_is_refused) {
  check_bad({
      {"mss auto",
       "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"auto\"\n",
       {"t.conf:3:7: mss = \"auto\" needs path-MTU discovery, which is not implemented in this "
        "version of tunshim yet; give a number (e.g. 1360) or \"off\""}},
      {"mss6 auto",
       kTunnel + "mss6 = \"auto\"\n",
       {"t.conf:4:8: mss6 = \"auto\" needs path-MTU discovery, which is not implemented in "
        "this "
        "version of tunshim yet; give a number (e.g. 1360) or \"off\""}},
  });
}

BOOST_AUTO_TEST_CASE(unsupported_and_unknown_keys) {
  check_bad({
      {"planned tunnel key",
       kTunnel + "keepalive = \"idle\"\n",
       {"t.conf:4:1: keepalive is not supported by this version of tunshim yet"}},
      {"planned global key",
       "[global]\nstats_listen = \"127.0.0.1:9477\"\n" + kTunnel,
       {"t.conf:2:1: stats_listen is not supported by this version of tunshim yet"}},
      {"planned key in the other table",
       "[global]\nkeepalive = \"idle\"\n" + kTunnel,
       {"t.conf:2:1: keepalive is not supported by this version of tunshim yet"}},
      {"typo with suggestion",
       kTunnel + "msss6 = 1300\n",
       {"t.conf:4:1: unknown key 'msss6' in [tunnel]; did you mean 'mss6'?"}},
      {"transposition",
       "[[tunnel]]\ninterfcae = \"ppp0\"\nmss = 1360\n",
       {"t.conf:1:1: this [[tunnel]] has no interface: set interface = \"NAME\" (e.g. "
        "\"ppp0\")",
        "t.conf:2:1: unknown key 'interfcae' in [tunnel]; did you mean 'interface'?"}},
      {"wrong case",
       "[[tunnel]]\ninterface = \"ppp0\"\nMSS = 1360\n",
       {"t.conf:1:1: this [[tunnel]] has no mss: set mss to the IPv4 MSS target (e.g. 1360) or "
        "\"off\"",
        "t.conf:3:1: unknown key 'MSS' in [tunnel]; did you mean 'mss'?"}},
      {"typo of a planned key",
       kTunnel + "keepalve = \"idle\"\n",
       {"t.conf:4:1: unknown key 'keepalve' in [tunnel]; did you mean 'keepalive'?"}},
      {"no suggestion beyond two edits",
       kTunnel + "colour = 1\n",
       {"t.conf:4:1: unknown key 'colour' in [tunnel]"}},
      {"global typo",
       "[global]\nloglevel = \"debug\"\n" + kTunnel,
       {"t.conf:2:1: unknown key 'loglevel' in [global]; did you mean 'log_level'?"}},
      {"top-level typo",
       "tunnels = 1\n" + kTunnel,
       {"t.conf:1:1: unknown key 'tunnels' at the top level; did you mean 'tunnel'?"}},
      {"global key at the top level",
       "log_level = \"info\"\n" + kTunnel,
       {"t.conf:1:1: log_level belongs in [global], not at the top level"}},
      {"tunnel key in [global]",
       "[global]\nmss = 1360\n" + kTunnel,
       {"t.conf:2:1: mss belongs in a [[tunnel]] table, not in [global]"}},
      {"global key in a tunnel",
       kTunnel + "queue_num = 5\n",
       {"t.conf:4:1: queue_num belongs in [global], not in [tunnel]"}},
      {"odd characters in a key are escaped",
       kTunnel + "\"a\\tb\" = 1\n",
       {"t.conf:4:1: unknown key 'a\\u0009b' in [tunnel]"}},
  });
}

BOOST_AUTO_TEST_CASE(type_errors) {
  const std::string head = "[[tunnel]]\ninterface = \"ppp0\"\n";
  check_bad({
      {"mss as string",
       head + "mss = \"1360\"\n",
       {"t.conf:3:7: mss must be an integer or \"off\", not a string (\"1360\")"}},
      {"mss as float",
       head + "mss = 1360.0\n",
       {"t.conf:3:7: mss must be an integer or \"off\", not a floating-point number"}},
      {"mss as boolean",
       head + "mss = true\n",
       {"t.conf:3:7: mss must be an integer or \"off\", not a boolean"}},
      {"mss as date",
       head + "mss = 2026-01-01\n",
       {"t.conf:3:7: mss must be an integer or \"off\", not a date"}},
      {"mss6 as array",
       kTunnel + "mss6 = [1300]\n",
       {"t.conf:4:8: mss6 must be an integer or \"off\", not an array"}},
      {"interface as integer",
       "[[tunnel]]\ninterface = 0\nmss = 1360\n",
       {"t.conf:2:13: interface must be a string, not an integer"}},
      {"queue_num as string",
       "[global]\nqueue_num = \"4770\"\n" + kTunnel,
       {"t.conf:2:13: queue_num must be an integer, not a string (\"4770\")"}},
      {"queue_maxlen as float",
       "[global]\nqueue_maxlen = 1e4\n" + kTunnel,
       {"t.conf:2:16: queue_maxlen must be an integer, not a floating-point number"}},
      {"log_level as integer",
       "[global]\nlog_level = 3\n" + kTunnel,
       {"t.conf:2:13: log_level must be a string (trace, debug, info, warn, error or off), not "
        "an integer"}},
      {"log_level unknown",
       "[global]\nlog_level = \"verbose\"\n" + kTunnel,
       {"t.conf:2:13: log_level must be one of trace, debug, info, warn, error, off; not "
        "\"verbose\""}},
  });
}

BOOST_AUTO_TEST_CASE(interface_names) {
  auto file = [](const std::string& value) {
    return "[[tunnel]]\ninterface = " + value + "\nmss = 1360\n";
  };
  auto bad = [](const std::string& shown, const std::string& problem) {
    return std::vector<std::string>{"t.conf:2:13: interface " + shown +
                                    " is not a valid Linux interface name: " + problem};
  };
  check_bad({
      {"empty", file("\"\""), bad("\"\"", "it is empty")},
      {"16 bytes", file("\"abcdefghijklmnop\""),
       bad("\"abcdefghijklmnop\"", "it is 16 bytes long, and Linux allows at most 15")},
      {"dot", file("\".\""), bad("\".\"", "Linux reserves \".\" and \"..\"")},
      {"dot dot", file("\"..\""), bad("\"..\"", "Linux reserves \".\" and \"..\"")},
      {"slash", file("\"a/b\""), bad("\"a/b\"", "it contains '/'")},
      {"colon", file("\"eth0:1\""), bad("\"eth0:1\"", "it contains ':'")},
      {"space", file("\"ppp 0\""), bad("\"ppp 0\"", "it contains whitespace")},
      {"tab", file("\"ppp\\t0\""), bad("\"ppp\\u00090\"", "it contains whitespace")},
      {"Latin-1 NBSP byte inside UTF-8",
       file("\"\xC3\xA0"
            "0\""),
       bad("\"\xC3\xA0"
           "0\"",
           "it contains whitespace")},
      {"control", file("\"ppp\\u00010\""),
       bad("\"ppp\\u00010\"", "it contains a control character")},
      {"wildcard", file("\"ppp+\""),
       bad("\"ppp+\"", "it contains '+', which iptables would read as a wildcard")},
  });
  // 15 bytes is the limit, and the kernel accepts any other byte (UTF-8 included).
  for (const char* ok : {"abcdefghijklmno", "p", "wg-office_1.2", "t\xC3\xBCn0", "a\"b\\c"}) {
    BOOST_TEST_CONTEXT(ok) {
      const std::string lit =
          std::string(ok) == "a\"b\\c" ? "\"a\\\"b\\\\c\"" : "\"" + std::string(ok) + "\"";
      const Config c = good(file(lit));
      BOOST_TEST(c.tunnels.at(0).interface == ok);
    }
  }
}

BOOST_AUTO_TEST_CASE(range_edges) {
  struct Edge {
    const char* key;
    std::int64_t min, max;
    std::string prefix, suffix;  // text before "KEY = VALUE" and after it
    int line, column;            // where the value sits
    const char* range_tail;      // text after the range in the message
  };
  const std::vector<Edge> edges = {
      {"mss", 536, 65495, "[[tunnel]]\ninterface = \"ppp0\"\n", "", 3, 7, " (or \"off\")"},
      {"mss6", 1220, 65475, kTunnel, "", 4, 8, " (or \"off\")"},
      {"queue_num", 0, 65535, "[global]\n", kTunnel, 2, 13, ""},
      {"queue_maxlen", 64, 1048576, "[global]\n", kTunnel, 2, 16, ""},
  };
  for (const Edge& e : edges) {
    auto text = [&](std::int64_t v) {
      return e.prefix + e.key + " = " + std::to_string(v) + "\n" + e.suffix;
    };
    for (const std::int64_t v : {e.min, e.max}) {
      BOOST_TEST_CONTEXT(e.key << " = " << v) {
        const Config c = good(text(v));
        const std::string k = e.key;
        std::int64_t got = -1;
        if (k == "mss") got = c.tunnels.at(0).mss4;
        if (k == "mss6") got = c.tunnels.at(0).mss6;
        if (k == "queue_num") got = c.global.queue_num;
        if (k == "queue_maxlen") got = c.global.queue_maxlen;
        BOOST_TEST(got == v);
      }
    }
    for (const std::int64_t v : {e.min - 1, e.max + 1}) {
      BOOST_TEST_CONTEXT(e.key << " = " << v) {
        const std::string expected =
            "t.conf:" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.key +
            " must be between " + std::to_string(e.min) + " and " + std::to_string(e.max) +
            e.range_tail + ", not " + std::to_string(v);
        BOOST_TEST(errors_of(text(v)) == std::vector<std::string>{expected},
                   boost::test_tools::per_element());
      }
    }
  }
  // Far outside: no truncation into range on the way to 16 bits.
  BOOST_TEST(errors_of("[[tunnel]]\ninterface = \"ppp0\"\nmss = 66896\n") ==
                 std::vector<std::string>{
                     "t.conf:3:7: mss must be between 536 and 65495 (or \"off\"), not 66896"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(all_errors_reported_in_file_order) {
  // toml++ iterates keys alphabetically; messages must still follow the file.
  const std::string text =
      "[global]\n"
      "queue_num = 70000\n"
      "log_level = \"loud\"\n"
      "[[tunnel]]\n"
      "mss = 1\n"
      "interface = \"a/b\"\n"
      "bogus = 1\n"
      "[[tunnel]]\n"
      "interface = \"tun0\"\n"
      "mss = \"auto\"\n";
  const std::vector<std::string> expected = {
      "t.conf:2:13: queue_num must be between 0 and 65535, not 70000",
      "t.conf:3:13: log_level must be one of trace, debug, info, warn, error, off; not "
      "\"loud\"",
      "t.conf:5:7: mss must be between 536 and 65495 (or \"off\"), not 1",
      "t.conf:6:13: interface \"a/b\" is not a valid Linux interface name: it contains '/'",
      "t.conf:7:1: unknown key 'bogus' in [tunnel]",
      "t.conf:10:7: mss = \"auto\" needs path-MTU discovery, which is not implemented in this "
      "version of tunshim yet; give a number (e.g. 1360) or \"off\"",
  };
  BOOST_TEST(errors_of(text) == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(defaults) {
  const Config c = good(kTunnel);
  BOOST_TEST(c.path == "t.conf");
  BOOST_TEST(c.global.log_level == "info");
  BOOST_TEST(c.global.queue_num == 4770);
  BOOST_TEST(c.global.queue_maxlen == 8192u);
  BOOST_TEST(!c.global.log_level_from_file);
  BOOST_TEST(!c.global.queue_num_from_file);
  BOOST_TEST(!c.global.queue_maxlen_from_file);
  BOOST_TEST_REQUIRE(c.tunnels.size() == 1u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  BOOST_TEST(c.tunnels[0].mss4 == 1360);
  BOOST_TEST(c.tunnels[0].mss6 == 1340);  // same link MTU: IPv6 headers are 20 bytes longer
  BOOST_TEST(!c.tunnels[0].mss6_from_file);
  BOOST_TEST(c.tunnels[0].line == 1);
}

BOOST_AUTO_TEST_CASE(mss6_default_never_below_ipv6_minimum) {
  auto mss6_for = [](const std::string& mss) {
    return good("[[tunnel]]\ninterface = \"ppp0\"\nmss = " + mss + "\n").tunnels.at(0).mss6;
  };
  BOOST_TEST(mss6_for("536") == 1220);
  BOOST_TEST(mss6_for("1240") == 1220);
  BOOST_TEST(mss6_for("1241") == 1221);
  BOOST_TEST(mss6_for("65495") == 65475);
}

BOOST_AUTO_TEST_CASE(explicit_values) {
  const Config c = good(
      "# a comment\n"
      "[global]\n"
      "log_level = \"debug\"\n"
      "queue_num = 17\n"
      "queue_maxlen = 1024\n"
      "\n"
      "[[tunnel]]\n"
      "interface = \"ppp0\"\n"
      "mss = 1360\n"
      "mss6 = 1300\n"
      "\n"
      "[[tunnel]]\n"
      "interface = \"tun0\"\n"
      "mss = \"off\"\n"
      "mss6 = 1400\n"
      "[[tunnel]]\n"
      "interface = \"wg0\"\n"
      "mss = 1380\n"
      "mss6 = \"off\"\n");
  BOOST_TEST(c.global.log_level == "debug");
  BOOST_TEST(c.global.queue_num == 17);
  BOOST_TEST(c.global.queue_maxlen == 1024u);
  BOOST_TEST(c.global.log_level_from_file);
  BOOST_TEST(c.global.queue_num_from_file);
  BOOST_TEST(c.global.queue_maxlen_from_file);
  BOOST_TEST_REQUIRE(c.tunnels.size() == 3u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  BOOST_TEST(c.tunnels[0].mss4 == 1360);
  BOOST_TEST(c.tunnels[0].mss6 == 1300);
  BOOST_TEST(c.tunnels[0].mss6_from_file);
  BOOST_TEST(c.tunnels[0].line == 7);
  BOOST_TEST(c.tunnels[1].interface == "tun0");
  BOOST_TEST(c.tunnels[1].mss4 == 0);
  BOOST_TEST(c.tunnels[1].mss6 == 1400);
  BOOST_TEST(c.tunnels[1].line == 12);
  BOOST_TEST(c.tunnels[2].interface == "wg0");
  BOOST_TEST(c.tunnels[2].mss4 == 1380);
  BOOST_TEST(c.tunnels[2].mss6 == 0);
  BOOST_TEST(c.tunnels[2].line == 16);
}

BOOST_AUTO_TEST_CASE(every_log_level_accepted) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    BOOST_TEST_CONTEXT(level) {
      const Config c = good("[global]\nlog_level = \"" + std::string(level) + "\"\n" + kTunnel);
      BOOST_TEST(c.global.log_level == level);
    }
  }
}

BOOST_AUTO_TEST_CASE(inline_tunnel_array_is_the_same_as_tables) {
  const Config c = good("tunnel = [{ interface = \"tun0\", mss = 1400 }]\n");
  BOOST_TEST_REQUIRE(c.tunnels.size() == 1u);
  BOOST_TEST(c.tunnels[0].interface == "tun0");
  BOOST_TEST(c.tunnels[0].mss4 == 1400);
  BOOST_TEST(c.tunnels[0].mss6 == 1380);
}

BOOST_AUTO_TEST_CASE(format_marks_defaults) {
  const std::string expected =
      "# Effective configuration of \"t.conf\"\n"
      "# (\"default\" marks values the file does not set.)\n"
      "\n"
      "[global]\n"
      "log_level = \"info\"          # default\n"
      "queue_num = 4770            # default\n"
      "queue_maxlen = 8192         # default\n"
      "\n"
      "[[tunnel]]                  # line 1\n"
      "interface = \"ppp0\"\n"
      "mss = 1360\n"
      "mss6 = 1340                 # default: mss - 20 (same link MTU)\n";
  BOOST_TEST(format_config(good(kTunnel)) == expected);

  const std::string raised =
      format_config(good("[global]\nqueue_num = 1\n[[tunnel]]\n"
                         "interface = \"ppp0\"\nmss = 600\n"));
  BOOST_TEST(raised.find("queue_num = 1\n") != std::string::npos);
  BOOST_TEST(raised.find("mss6 = 1220                 # default: mss - 20, raised to the IPv6 "
                         "minimum\n") != std::string::npos);
  const std::string off =
      format_config(good("[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\n"
                         "mss6 = 1300\n"));
  BOOST_TEST(off.find("mss = \"off\"\nmss6 = 1300\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(format_round_trips) {
  const std::vector<std::string> files = {
      kTunnel,
      "[global]\nlog_level = \"trace\"\nqueue_num = 0\nqueue_maxlen = 1048576\n" + kTunnel +
          "[[tunnel]]\ninterface = \"a\\\"b\\\\c\"\nmss = \"off\"\nmss6 = 65475\n"
          "[[tunnel]]\ninterface = \"t\xC3\xBCn0\"\nmss = 536\nmss6 = \"off\"\n",
  };
  for (const std::string& text : files) {
    const Config first = good(text);
    const std::string printed = format_config(first);
    BOOST_TEST_CONTEXT(printed) {
      const Config second = good(printed);
      BOOST_TEST(second.global.log_level == first.global.log_level);
      BOOST_TEST(second.global.queue_num == first.global.queue_num);
      BOOST_TEST(second.global.queue_maxlen == first.global.queue_maxlen);
      BOOST_TEST_REQUIRE(second.tunnels.size() == first.tunnels.size());
      for (std::size_t i = 0; i < first.tunnels.size(); ++i) {
        BOOST_TEST(second.tunnels[i].interface == first.tunnels[i].interface);
        BOOST_TEST(second.tunnels[i].mss4 == first.tunnels[i].mss4);
        BOOST_TEST(second.tunnels[i].mss6 == first.tunnels[i].mss6);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(load_reports_unreadable_files) {
  const ConfigResult missing = load_config("/nonexistent/tunshim-test.conf");
  const auto* errors = std::get_if<std::vector<ConfigError>>(&missing);
  BOOST_TEST_REQUIRE(errors != nullptr);
  BOOST_TEST_REQUIRE(errors->size() == 1u);
  BOOST_TEST(errors->front().to_string() ==
             "/nonexistent/tunshim-test.conf: cannot read: No such file or directory");

  const ConfigResult dir = load_config("/");
  errors = std::get_if<std::vector<ConfigError>>(&dir);
  BOOST_TEST_REQUIRE(errors != nullptr);
  BOOST_TEST_REQUIRE(errors->size() == 1u);
  BOOST_TEST(errors->front().to_string() == "/: cannot read: Is a directory");
}

BOOST_AUTO_TEST_CASE(shipped_example_is_valid) {
  // CMake compiles with absolute paths, so the source tree is found from this file.
  const auto path = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / ".." /
                    "conf" / "tunshim.conf";
  const ConfigResult r = load_config(path.string());
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    std::vector<std::string> lines;
    for (const ConfigError& e : *errors) lines.push_back(e.to_string());
    BOOST_FAIL("conf/tunshim.conf is invalid:\n" + joined(lines));
  }
  const Config& c = std::get<Config>(r);
  BOOST_TEST_REQUIRE(c.tunnels.size() == 1u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  BOOST_TEST(c.tunnels[0].mss4 == 1360);
  BOOST_TEST(c.tunnels[0].mss6 == 1340);
  BOOST_TEST(c.global.queue_num == kDefaultQueueNum);
  BOOST_TEST(c.global.queue_maxlen == kDefaultQueueMaxlen);
  BOOST_TEST(c.global.log_level == "info");
}

BOOST_AUTO_TEST_CASE(mutated_input_never_throws) {
  // Byte flips, truncations and splices of a valid file: parse_config must answer with a
  // Config or errors, never an exception. The seed is printed so a failure can be replayed.
  const std::string base = "[global]\nlog_level = \"info\"\nqueue_num = 4770\n" + kTunnel +
                           "mss6 = 1340\n[[tunnel]]\ninterface = \"tun0\"\nmss = \"off\"\n"
                           "mss6 = 1300\n";
  const std::uint32_t seed = std::random_device{}();
  BOOST_TEST_MESSAGE("mutated_input_never_throws seed " << seed);
  std::mt19937 rng(seed);
  const std::string alphabet =
      std::string("[]{}=\"'.,#\n \\0123456789abcdefmnopstu\xff\xc3") + '\0';
  int errors = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + rng() % 8);
          break;
        default:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
      }
    }
    BOOST_TEST_CONTEXT("seed " << seed << " iteration " << i) {
      ConfigResult r;
      BOOST_CHECK_NO_THROW(r = parse_config(text, "m.conf"));
      if (const auto* errs = std::get_if<std::vector<ConfigError>>(&r)) {
        ++errors;
        BOOST_TEST(!errs->empty());
      }
    }
  }
  // Sanity: the mutations do produce invalid files, so the loop exercised error paths.
  BOOST_TEST(errors > 100);
}

BOOST_AUTO_TEST_SUITE_END()
