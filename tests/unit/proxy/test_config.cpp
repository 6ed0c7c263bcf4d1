// Config parsing: exact messages and positions for bad files, values and defaults for good
// ones, every range edge, and check-config's output re-parsing to the same values.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <thread>
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
       {"t.conf:3:7: mss must be between 536 and 65495 (or \"off\" or \"auto\"), not 1",
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
      {"both off, keepalive off",
       "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\nmss6 = \"off\"\nkeepalive = \"off\"\n",
       {"t.conf:1:1: mss and mss6 are both \"off\": this [[tunnel]] has nothing to do"}},
      {"mss off, mss6 follows, keepalive off",
       "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\nkeepalive = \"off\"\n",
       {"t.conf:1:1: mss is \"off\" and mss6 follows it by default: this [[tunnel]] has "
        "nothing "
        "to do (set mss6 to clamp IPv6 only)"}},
  });
}

BOOST_AUTO_TEST_CASE(misplaced_and_unknown_keys) {
  check_bad({
      {"feature tunnel key", kTunnel + "keepalive = \"idle\"\n", {}},
      {"feature global key", "[global]\nstats_listen = \"127.0.0.1:9477\"\n" + kTunnel, {}},
      {"feature key in the other table",
       "[global]\nkeepalive = \"idle\"\n" + kTunnel,
       {"t.conf:2:1: keepalive belongs in a [[tunnel]] table, not in [global]"}},
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
      {"typo of a feature key",
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
       {"t.conf:3:7: mss must be an integer, \"off\" or \"auto\", not a string (\"1360\")"}},
      {"mss as float",
       head + "mss = 1360.0\n",
       {"t.conf:3:7: mss must be an integer, \"off\" or \"auto\", not a floating-point "
        "number"}},
      {"mss as boolean",
       head + "mss = true\n",
       {"t.conf:3:7: mss must be an integer, \"off\" or \"auto\", not a boolean"}},
      {"mss as date",
       head + "mss = 2026-01-01\n",
       {"t.conf:3:7: mss must be an integer, \"off\" or \"auto\", not a date"}},
      {"mss6 as array",
       kTunnel + "mss6 = [1300]\n",
       {"t.conf:4:8: mss6 must be an integer, \"off\" or \"auto\", not an array"}},
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
      {"'+' inside", file("\"pp+p\""),
       bad("\"pp+p\"",
           "'+' may only end it (\"ppp+\": every interface whose name starts with ppp)")},
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
      {"mss", 536, 65495, "[[tunnel]]\ninterface = \"ppp0\"\n", "", 3, 7,
       " (or \"off\" or \"auto\")"},
      {"mss6", 1220, 65475, kTunnel, "", 4, 8, " (or \"off\" or \"auto\")"},
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
                 std::vector<std::string>{"t.conf:3:7: mss must be between 536 and 65495 (or "
                                          "\"off\" or \"auto\"), not 66896"},
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
      "t.conf:5:7: mss must be between 536 and 65495 (or \"off\" or \"auto\"), not 1",
      "t.conf:6:13: interface \"a/b\" is not a valid Linux interface name: it contains '/'",
      "t.conf:7:1: unknown key 'bogus' in [tunnel]",
  };
  BOOST_TEST(errors_of(text) == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(defaults) {
  const Config c = good(kTunnel);
  BOOST_TEST(c.path == "t.conf");
  BOOST_TEST(c.global.log_level == "info");
  BOOST_TEST(c.global.queue_num == 4770);
  BOOST_TEST(c.global.queue_maxlen == 8192u);
  BOOST_TEST(!c.global.from_file("log_level"));
  BOOST_TEST(!c.global.from_file("queue_num"));
  BOOST_TEST(!c.global.from_file("queue_maxlen"));
  BOOST_TEST_REQUIRE(c.tunnels.size() == 1u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  BOOST_TEST(c.tunnels[0].mss4 == 1360);
  BOOST_TEST(c.tunnels[0].mss6 == 1340);  // same link MTU: IPv6 headers are 20 bytes longer
  BOOST_TEST(!c.tunnels[0].from_file("mss6"));
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
  BOOST_TEST(c.global.from_file("log_level"));
  BOOST_TEST(c.global.from_file("queue_num"));
  BOOST_TEST(c.global.from_file("queue_maxlen"));
  BOOST_TEST_REQUIRE(c.tunnels.size() == 3u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  BOOST_TEST(c.tunnels[0].mss4 == 1360);
  BOOST_TEST(c.tunnels[0].mss6 == 1300);
  BOOST_TEST(c.tunnels[0].from_file("mss6"));
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
      "datapath = \"auto\"           # default\n"
      "queue_num = 4770            # default\n"
      "queue_maxlen = 8192         # default\n"
      "max_concurrent_searches = 16 # default\n"
      "stats_listen = \"127.0.0.1:9477\" # default\n"
      "control_socket = \"/run/tunshim.sock\" # default\n"
      "\n"
      "[[tunnel]]                  # line 1\n"
      "interface = \"ppp0\"\n"
      "mss = 1360\n"
      "mss6 = 1340                 # default: mss - 20 (same link MTU)\n"
      "guard = \"off\"               # default\n"
      "set_interface_mtu = false   # default\n"
      "probe_target = \"peer\"       # default\n"
      "probe_min = 1200            # default\n"
      "probe_max = \"interface\"     # default\n"
      "reprobe_interval = \"10m\"    # default\n"
      "keepalive = \"idle\"          # default\n"
      "keepalive_interval = \"10s\"  # default\n"
      "keepalive_target = \"peer\"   # default\n"
      "down_after_misses = 3       # default\n"
      "on_down = []                # default\n"
      "on_up = []                  # default\n"
      "hook_timeout = \"30s\"        # default\n"
      "backoff_max = \"5m\"          # default\n";
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
  // The content only: who owns the checkout is not the example's business.
  const ConfigResult r = read_config(path.string());
  if (const auto* errors = std::get_if<std::vector<ConfigError>>(&r)) {
    std::vector<std::string> lines;
    for (const ConfigError& e : *errors) lines.push_back(e.to_string());
    BOOST_FAIL("conf/tunshim.conf is invalid:\n" + joined(lines));
  }
  const Config& c = std::get<Config>(r);
  BOOST_TEST_REQUIRE(c.tunnels.size() == 1u);
  BOOST_TEST(c.tunnels[0].interface == "ppp0");
  // "auto": the fallbacks until the first search completes, the guard on by default.
  BOOST_TEST(c.tunnels[0].mss4_auto);
  BOOST_TEST(c.tunnels[0].mss6_auto);
  BOOST_TEST(c.tunnels[0].mss4 == 1160);
  BOOST_TEST(c.tunnels[0].mss6 == 1220);
  BOOST_TEST((c.tunnels[0].guard == Guard::icmp));
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

// ---- the keys of the features (stats, path MTU, guard, keepalive, hooks)
// ----------------------

namespace {

// The lines of check-config's output without comments: what must survive printing twice.
std::string settings_of(const std::string& printed) {
  std::string out;
  std::size_t at = 0;
  while (at < printed.size()) {
    const std::size_t end = std::min(printed.find('\n', at), printed.size());
    std::string line = printed.substr(at, end - at);
    at = end + 1;
    if (const std::size_t hash = line.find("  # "); hash != std::string::npos)
      line.resize(hash);
    if (const std::size_t hash = line.find(" # "); hash != std::string::npos) line.resize(hash);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty() && line[0] != '#') out += line + '\n';
  }
  return out;
}

// Every key added for the features, with a valid non-default value.
struct NewKey {
  bool global;
  const char* key;
  const char* value;
};
const std::vector<NewKey> kNewKeys = {
    {true, "stats_listen", "\"127.0.0.1:9000\""},
    {true, "control_socket", "\"/run/t.sock\""},
    {false, "guard", "\"icmp\""},
    {false, "set_interface_mtu", "true"},
    {false, "probe_target", "\"10.0.0.1\""},
    {false, "probe_min", "1000"},
    {false, "probe_max", "1500"},
    {false, "reprobe_interval", "\"1h\""},
    {false, "keepalive", "\"always\""},
    {false, "keepalive_interval", "\"5s\""},
    {false, "keepalive_target", "\"10.0.0.2\""},
    {false, "down_after_misses", "5"},
    {false, "on_down", "[[\"/bin/true\"]]"},
    {false, "on_up", "[[\"/bin/true\", \"x\"]]"},
    {false, "hook_timeout", "\"10s\""},
    {false, "backoff_max", "\"1m\""},
};

std::string with_key(const NewKey& k) {
  const std::string line = std::string(k.key) + " = " + k.value + "\n";
  return k.global ? "[global]\n" + line + kTunnel : kTunnel + line;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(config_feature_keys)

BOOST_AUTO_TEST_CASE(feature_keys_accepted_and_printed) {
  for (const NewKey& k : kNewKeys) {
    BOOST_TEST_CONTEXT(k.key) {
      const std::string text = with_key(k);
      BOOST_TEST(errors_of(text).empty());
      BOOST_TEST(format_config(good(text)).find(std::string("\n") + k.key + " = ") !=
                 std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(defaults_of_feature_keys) {
  const Config c = good(kTunnel);
  BOOST_TEST_REQUIRE(c.global.stats_listen.has_value());
  BOOST_TEST(c.global.stats_listen->host == "127.0.0.1");
  BOOST_TEST(c.global.stats_listen->port == 9477);
  BOOST_TEST(!c.global.stats_listen->ipv6);
  BOOST_TEST(c.global.stats_listen->loopback);
  BOOST_TEST(c.global.control_socket == "/run/tunshim.sock");
  BOOST_TEST(c.global.keys_from_file.empty());
  BOOST_TEST(c.warnings.empty());
  const TunnelConfig& t = c.tunnels.at(0);
  BOOST_TEST(!t.mss4_auto);
  BOOST_TEST(!t.mss6_auto);
  BOOST_TEST((t.guard == Guard::off));
  BOOST_TEST(!t.set_interface_mtu);
  BOOST_TEST(t.probe_target.empty());
  BOOST_TEST(t.probe_min == 1200);
  BOOST_TEST(t.probe_max == 0);
  BOOST_TEST(t.reprobe_interval.count() == 600'000);
  BOOST_TEST((t.keepalive == KeepaliveMode::idle));
  BOOST_TEST(t.keepalive_interval.count() == 10'000);
  BOOST_TEST(t.keepalive_target.empty());
  BOOST_TEST(t.down_after_misses == 3);
  BOOST_TEST(t.on_down.empty());
  BOOST_TEST(t.on_up.empty());
  BOOST_TEST(t.hook_timeout.count() == 30'000);
  BOOST_TEST(t.backoff_max.count() == 300'000);
  BOOST_TEST(t.keys_from_file == (std::vector<std::string>{"interface", "mss"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(explicit_feature_values) {
  const Config c = good(
      "[global]\n"
      "stats_listen = \"[::1]:9100\"\n"
      "control_socket = \"off\"\n"
      "[[tunnel]]\n"
      "interface = \"ppp0\"\n"
      "mss = 1360\n"
      "guard = \"icmp\"\n"
      "set_interface_mtu = true\n"
      "probe_target = \"fd00::1\"\n"
      "probe_min = 576\n"
      "probe_max = 9000\n"
      "reprobe_interval = \"1h30m\"\n"
      "keepalive = \"off\"\n"
      "keepalive_interval = \"1s500ms\"\n"
      "keepalive_target = \"192.0.2.7\"\n"
      "down_after_misses = 100\n"
      "on_down = [[\"/usr/sbin/poff\", \"office\"], [\"/usr/sbin/pon\", \"office\"]]\n"
      "on_up = [[\"/usr/bin/systemctl\", \"restart\", \"clinic-client\"]]\n"
      "hook_timeout = \"1h\"\n"
      "backoff_max = \"24h\"\n"
      "[[tunnel]]\n"
      "interface = \"tun0\"\n"
      "mss = \"off\"\n"
      "mss6 = 1300\n"
      "keepalive = \"idle\"\n"
      "probe_max = \"interface\"\n"
      "on_down = []\n");
  BOOST_TEST_REQUIRE(c.global.stats_listen.has_value());
  BOOST_TEST(c.global.stats_listen->host == "::1");
  BOOST_TEST(c.global.stats_listen->port == 9100);
  BOOST_TEST(c.global.stats_listen->ipv6);
  BOOST_TEST(c.global.stats_listen->loopback);
  BOOST_TEST(c.global.control_socket.empty());
  BOOST_TEST(c.global.from_file("stats_listen"));
  BOOST_TEST(c.global.from_file("control_socket"));
  BOOST_TEST(!c.global.from_file("queue_num"));
  BOOST_TEST_REQUIRE(c.tunnels.size() == 2u);
  const TunnelConfig& t = c.tunnels[0];
  BOOST_TEST((t.guard == Guard::icmp));
  BOOST_TEST(t.set_interface_mtu);
  BOOST_TEST(t.probe_target == "fd00::1");
  BOOST_TEST(t.probe_min == 576);
  BOOST_TEST(t.probe_max == 9000);
  BOOST_TEST(t.reprobe_interval.count() == 5'400'000);
  BOOST_TEST((t.keepalive == KeepaliveMode::off));
  BOOST_TEST(t.keepalive_interval.count() == 1500);
  BOOST_TEST(t.keepalive_target == "192.0.2.7");
  BOOST_TEST(t.down_after_misses == 100);
  BOOST_TEST_REQUIRE(t.on_down.size() == 2u);
  BOOST_TEST(t.on_down[0] == (Argv{"/usr/sbin/poff", "office"}),
             boost::test_tools::per_element());
  BOOST_TEST(t.on_down[1] == (Argv{"/usr/sbin/pon", "office"}),
             boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(t.on_up.size() == 1u);
  BOOST_TEST(t.on_up[0] == (Argv{"/usr/bin/systemctl", "restart", "clinic-client"}),
             boost::test_tools::per_element());
  BOOST_TEST(t.hook_timeout.count() == 3'600'000);
  BOOST_TEST(t.backoff_max.count() == 86'400'000);
  BOOST_TEST(t.from_file("on_up"));
  BOOST_TEST(!t.from_file("mss6"));
  const TunnelConfig& u = c.tunnels[1];
  BOOST_TEST((u.keepalive == KeepaliveMode::idle));
  BOOST_TEST(u.probe_max == 0);
  BOOST_TEST(u.from_file("probe_max"));
  BOOST_TEST(u.on_down.empty());
  BOOST_TEST(u.from_file("on_down"));
}

BOOST_AUTO_TEST_CASE(mss_auto) {
  const std::string head = "[[tunnel]]\ninterface = \"ppp0\"\n";
  // Until the first search: the fallback sizes' MSS (1200 - 40, 1280 - 60); the guard is on.
  Config c = good(head + "mss = \"auto\"\n");
  TunnelConfig t = c.tunnels.at(0);
  BOOST_TEST(t.mss4_auto);
  BOOST_TEST(t.mss6_auto);
  BOOST_TEST(t.mss4 == 1160);
  BOOST_TEST(t.mss6 == 1220);
  BOOST_TEST(!t.from_file("mss6"));
  BOOST_TEST((t.guard == Guard::icmp));
  // The IPv4 fallback follows probe_min.
  t = good(head + "mss = \"auto\"\nprobe_min = 576\n").tunnels.at(0);
  BOOST_TEST(t.mss4 == 536);
  BOOST_TEST(t.mss6 == 1220);
  t = good(head + "probe_min = 1500\nmss = \"auto\"\n").tunnels.at(0);
  BOOST_TEST(t.mss4 == 1460);
  // Families set separately.
  t = good(head + "mss = \"auto\"\nmss6 = 1300\n").tunnels.at(0);
  BOOST_TEST(t.mss4_auto);
  BOOST_TEST(!t.mss6_auto);
  BOOST_TEST(t.mss6 == 1300);
  BOOST_TEST((t.guard == Guard::icmp));
  t = good(head + "mss = 1360\nmss6 = \"auto\"\n").tunnels.at(0);
  BOOST_TEST(!t.mss4_auto);
  BOOST_TEST(t.mss4 == 1360);
  BOOST_TEST(t.mss6_auto);
  BOOST_TEST(t.mss6 == 1220);
  BOOST_TEST(t.from_file("mss6"));
  BOOST_TEST((t.guard == Guard::icmp));
  t = good(head + "mss = \"off\"\nmss6 = \"auto\"\n").tunnels.at(0);
  BOOST_TEST(t.mss4 == 0);
  BOOST_TEST(t.mss6_auto);
  t = good(head + "mss = \"auto\"\nmss6 = \"off\"\n").tunnels.at(0);
  BOOST_TEST(t.mss4_auto);
  BOOST_TEST(!t.mss6_auto);
  BOOST_TEST(t.mss6 == 0);
  // An explicit guard wins over the default.
  t = good(head + "mss = \"auto\"\nguard = \"off\"\n").tunnels.at(0);
  BOOST_TEST((t.guard == Guard::off));
  // With "auto" accepted, the messages name it as a choice.
  check_bad({
      {"mss as float",
       head + "mss = 1.5\n",
       {"t.conf:3:7: mss must be an integer, \"off\" or \"auto\", not a floating-point "
        "number"}},
      {"mss too small",
       head + "mss = 100\n",
       {"t.conf:3:7: mss must be between 536 and 65495 (or \"off\" or \"auto\"), not 100"}},
      {"mss6 wrong word",
       head + "mss = 1360\nmss6 = \"Auto\"\n",
       {"t.conf:4:8: mss6 must be an integer, \"off\" or \"auto\", not a string (\"Auto\")"}},
  });
}

BOOST_AUTO_TEST_CASE(keepalive_gives_a_tunnel_work) {
  // Clamping off in both families is a keepalive-only tunnel, unless keepalive is off too.
  const std::string off = "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"off\"\n";
  BOOST_TEST(errors_of(off).empty());
  BOOST_TEST(errors_of(off + "keepalive = \"off\"\n") ==
                 std::vector<std::string>{"t.conf:1:1: mss is \"off\" and mss6 follows it by "
                                          "default: this [[tunnel]] has nothing to do (set "
                                          "mss6 to clamp IPv6 only)"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(feature_key_errors) {
  const std::string g = "[global]\n";
  check_bad({
      // placement
      {"tunnel key in [global]",
       g + "keepalive = \"idle\"\n" + kTunnel,
       {"t.conf:2:1: keepalive belongs in a [[tunnel]] table, not in [global]"}},
      {"global key in a tunnel",
       kTunnel + "stats_listen = \"off\"\n",
       {"t.conf:4:1: stats_listen belongs in [global], not in [tunnel]"}},
      {"a key with '=' in its name",
       kTunnel + "\"mss=auto\" = true\n",
       {"t.conf:4:1: unknown key 'mss=auto' in [tunnel]"}},
      {"typo of a feature key",
       kTunnel + "keepalive_intervall = \"10s\"\n",
       {"t.conf:4:1: unknown key 'keepalive_intervall' in [tunnel]; did you mean "
        "'keepalive_interval'?"}},
      // choices and booleans
      {"guard word",
       kTunnel + "guard = \"drop\"\n",
       {"t.conf:4:9: guard must be \"off\" or \"icmp\", not \"drop\""}},
      {"guard type",
       kTunnel + "guard = false\n",
       {"t.conf:4:9: guard must be \"off\" or \"icmp\", not a boolean"}},
      {"keepalive word",
       kTunnel + "keepalive = \"on\"\n",
       {"t.conf:4:13: keepalive must be \"idle\", \"always\" or \"off\", not \"on\""}},
      {"set_interface_mtu type",
       kTunnel + "set_interface_mtu = \"yes\"\n",
       {"t.conf:4:21: set_interface_mtu must be true or false, not a string (\"yes\")"}},
      // integers
      {"probe_min low",
       kTunnel + "probe_min = 575\n",
       {"t.conf:4:13: probe_min must be between 576 and 9000, not 575"}},
      {"probe_min high",
       kTunnel + "probe_min = 9001\n",
       {"t.conf:4:13: probe_min must be between 576 and 9000, not 9001"}},
      {"probe_max high",
       kTunnel + "probe_max = 65536\n",
       {"t.conf:4:13: probe_max must be between 576 and 65535, not 65536"}},
      {"probe_max below probe_min",
       kTunnel + "probe_max = 1100\n",
       {"t.conf:4:13: probe_max must be \"interface\" or between probe_min (1200) and 65535, "
        "not 1100"}},
      {"probe_max below a set probe_min",
       kTunnel + "probe_max = 1400\nprobe_min = 1401\n",
       {"t.conf:4:13: probe_max must be \"interface\" or between probe_min (1401) and 65535, "
        "not 1400"}},
      {"probe_max word",
       kTunnel + "probe_max = \"mtu\"\n",
       {"t.conf:4:13: probe_max must be \"interface\" or an integer, not a string (\"mtu\")"}},
      {"down_after_misses zero",
       kTunnel + "down_after_misses = 0\n",
       {"t.conf:4:21: down_after_misses must be between 1 and 100, not 0"}},
      {"down_after_misses high",
       kTunnel + "down_after_misses = 101\n",
       {"t.conf:4:21: down_after_misses must be between 1 and 100, not 101"}},
      // durations
      {"duration without unit",
       kTunnel + "keepalive_interval = 10\n",
       {"t.conf:4:22: keepalive_interval must be a duration string with a unit (h, m, s, ms), "
        "between \"1s\" and \"1h\", e.g. \"10s\"; not an integer"}},
      {"duration syntax",
       kTunnel + "hook_timeout = \"30 s\"\n",
       {"t.conf:4:16: hook_timeout must be a duration such as \"500ms\", \"10s\", \"5m\" or "
        "\"1h30m\" (units h, m, s, ms, largest first), not \"30 s\""}},
      {"keepalive_interval below",
       kTunnel + "keepalive_interval = \"999ms\"\n",
       {"t.conf:4:22: keepalive_interval must be between \"1s\" and \"1h\", not \"999ms\""}},
      {"keepalive_interval above",
       kTunnel + "keepalive_interval = \"1h1ms\"\n",
       {"t.conf:4:22: keepalive_interval must be between \"1s\" and \"1h\", not \"1h1ms\""}},
      {"reprobe_interval below",
       kTunnel + "reprobe_interval = \"59s\"\n",
       {"t.conf:4:20: reprobe_interval must be between \"1m\" and \"24h\", not \"59s\""}},
      {"reprobe_interval above",
       kTunnel + "reprobe_interval = \"25h\"\n",
       {"t.conf:4:20: reprobe_interval must be between \"1m\" and \"24h\", not \"25h\""}},
      {"hook_timeout above",
       kTunnel + "hook_timeout = \"61m\"\n",
       {"t.conf:4:16: hook_timeout must be between \"1s\" and \"1h\", not \"61m\""}},
      {"backoff_max below",
       kTunnel + "backoff_max = \"0s\"\n",
       {"t.conf:4:15: backoff_max must be between \"1s\" and \"24h\", not \"0s\""}},
      {"huge duration saturates",
       kTunnel + "backoff_max = \"99999999999999999999h\"\n",
       {"t.conf:4:15: backoff_max must be between \"1s\" and \"24h\", not "
        "\"99999999999999999999h\""}},
      // addresses
      {"probe_target name",
       kTunnel + "probe_target = \"vpn.example.com\"\n",
       {"t.conf:4:16: probe_target must be \"peer\" or a numeric IPv4 or IPv6 unicast "
        "address; \"vpn.example.com\": it is not a numeric IPv4 or IPv6 address"}},
      {"probe_target unspecified",
       kTunnel + "probe_target = \"0.0.0.0\"\n",
       {"t.conf:4:16: probe_target must be \"peer\" or a numeric IPv4 or IPv6 unicast "
        "address; \"0.0.0.0\": it is the unspecified address"}},
      {"keepalive_target multicast",
       kTunnel + "keepalive_target = \"ff02::1\"\n",
       {"t.conf:4:20: keepalive_target must be \"peer\" or a numeric IPv4 or IPv6 unicast "
        "address; \"ff02::1\": it is a multicast address"}},
      {"keepalive_target broadcast",
       kTunnel + "keepalive_target = \"255.255.255.255\"\n",
       {"t.conf:4:20: keepalive_target must be \"peer\" or a numeric IPv4 or IPv6 unicast "
        "address; \"255.255.255.255\": it is a multicast or broadcast address"}},
      {"keepalive_target with zone",
       kTunnel + "keepalive_target = \"fe80::1%ppp0\"\n",
       {"t.conf:4:20: keepalive_target must be \"peer\" or a numeric IPv4 or IPv6 unicast "
        "address; \"fe80::1%ppp0\": it is not a numeric IPv4 or IPv6 address"}},
      {"probe_target type",
       kTunnel + "probe_target = 1\n",
       {"t.conf:4:16: probe_target must be \"peer\" or a numeric IP address, not an integer"}},
      // stats_listen
      {"listen without port",
       g + "stats_listen = \"127.0.0.1\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"127.0.0.1\": the port is missing"}},
      {"listen port 0",
       g + "stats_listen = \"127.0.0.1:0\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"127.0.0.1:0\": the port must be a number between 1 "
        "and 65535"}},
      {"listen port too big",
       g + "stats_listen = \"127.0.0.1:65536\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"127.0.0.1:65536\": the port must be a number between 1 "
        "and 65535"}},
      {"listen port sign",
       g + "stats_listen = \"127.0.0.1:+80\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"127.0.0.1:+80\": the port must be a number between 1 "
        "and 65535"}},
      {"listen host name",
       g + "stats_listen = \"localhost:9477\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"localhost:9477\": \"localhost\" is not a numeric IPv4 "
        "address"}},
      {"listen IPv6 without brackets",
       g + "stats_listen = \"::1:9477\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"::1:9477\": write an IPv6 address in brackets, as in "
        "\"[::1]:9477\""}},
      {"listen IPv4 in brackets",
       g + "stats_listen = \"[127.0.0.1]:9477\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"[127.0.0.1]:9477\": \"127.0.0.1\" is not a numeric IPv6 "
        "address"}},
      {"listen bracket unclosed",
       g + "stats_listen = \"[::1:9477\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"[::1:9477\": an IPv6 address must be followed by "
        "\"]:PORT\""}},
      {"listen multicast",
       g + "stats_listen = \"224.0.0.1:80\"\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\"; \"224.0.0.1:80\": it is a multicast or broadcast "
        "address"}},
      {"listen type",
       g + "stats_listen = 9477\n" + kTunnel,
       {"t.conf:2:16: stats_listen must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9477\", "
        "\"[::1]:9477\") or \"off\", not an integer"}},
      // control_socket
      {"socket relative",
       g + "control_socket = \"tunshim.sock\"\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\"; \"tunshim.sock\": it "
        "is not an absolute path"}},
      {"socket empty",
       g + "control_socket = \"\"\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\"; \"\": it is not an "
        "absolute path"}},
      {"socket directory",
       g + "control_socket = \"/run/\"\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\"; \"/run/\": it names "
        "a directory"}},
      {"socket too long",
       g + "control_socket = \"/" + std::string(107, 'a') + "\"\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\"; \"/" +
        std::string(107, 'a') +
        "\": it is 108 bytes long, and a socket path holds at most 107"}},
      {"socket control character",
       g + "control_socket = \"/run/a\\nb\"\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\"; \"/run/a\\u000Ab\": "
        "it contains a control character"}},
      {"socket type",
       g + "control_socket = false\n" + kTunnel,
       {"t.conf:2:18: control_socket must be an absolute path or \"off\", not a boolean"}},
      // hooks
      {"hook as one argv",
       kTunnel + "on_down = [\"/usr/sbin/pon\", \"office\"]\n",
       {"t.conf:4:11: on_down must be an array of commands, each an array of strings, e.g. "
        "[[\"/usr/sbin/poff\", \"office\"], [\"/usr/sbin/pon\", \"office\"]]; for one command "
        "write [[...]], not [...]"}},
      {"hook as string",
       kTunnel + "on_up = \"/usr/sbin/pon office\"\n",
       {"t.conf:4:9: on_up must be an array of commands, each an array of strings, e.g. "
        "[[\"/usr/sbin/poff\", \"office\"], [\"/usr/sbin/pon\", \"office\"]]; not a string "
        "(\"/usr/sbin/pon office\")"}},
      {"hook empty argv",
       kTunnel + "on_up = [[\"/bin/a\"], []]\n",
       {"t.conf:4:22: a command in on_up is empty: give at least the program's absolute path"}},
      {"hook relative program",
       kTunnel + "on_up = [[\"pon\", \"office\"]]\n",
       {"t.conf:4:11: the program in on_up must be an absolute path (it runs without a shell "
        "or PATH), not \"pon\""}},
      {"hook empty program",
       kTunnel + "on_up = [[\"\"]]\n",
       {"t.conf:4:11: the program in on_up must be an absolute path (it runs without a shell "
        "or PATH), not \"\""}},
      {"hook argument type",
       kTunnel + "on_down = [[\"/bin/a\", 1, \"b\"]]\n",
       {"t.conf:4:23: each argument in on_down must be a string, not an integer"}},
      {"hook command type",
       kTunnel + "on_down = [[\"/bin/a\"], 1]\n",
       {"t.conf:4:24: each command in on_down must be an array of strings, not an integer"}},
      {"hook NUL",
       kTunnel + "on_down = [[\"/bin/a\", \"x\\u0000y\"]]\n",
       {"t.conf:4:23: an argument in on_down contains a NUL character, which no command line "
        "can carry"}},
      {"several hook errors",
       kTunnel + "on_down = [[\"a\"], [], [\"/b\", 2]]\n",
       {"t.conf:4:13: the program in on_down must be an absolute path (it runs without a shell "
        "or PATH), not \"a\"",
        "t.conf:4:19: a command in on_down is empty: give at least the program's absolute path",
        "t.conf:4:30: each argument in on_down must be a string, not an integer"}},
  });
}

BOOST_AUTO_TEST_CASE(duration_forms) {
  const std::vector<std::pair<std::string, std::int64_t>> ok = {
      {"1s", 1000},
      {"500ms", -1},
      {"10s", 10'000},
      {"5m", 300'000},
      {"1h", 3'600'000},
      {"1h30m", 5'400'000},
      {"90s", 90'000},
      {"1m30s", 90'000},
      {"1s500ms", 1500},
      {"0h1s", 1000},
      {"01s", 1000},
      {"1h0m0s0ms", 3'600'000},
      {"3599s1000ms", 3'600'000},
  };
  for (const auto& [text, ms] : ok) {
    BOOST_TEST_CONTEXT(text) {
      const std::string file = kTunnel + "backoff_max = \"" + text + "\"\n";
      if (ms < 0) {  // below backoff_max's minimum: the form is read, the range refuses it
        BOOST_TEST(errors_of(file) ==
                       std::vector<std::string>{"t.conf:4:15: backoff_max must be between "
                                                "\"1s\" and \"24h\", not \"" +
                                                text + "\""},
                   boost::test_tools::per_element());
      } else {
        BOOST_TEST(good(file).tunnels.at(0).backoff_max.count() == ms);
      }
    }
  }
  for (const char* bad : {"", "10", "s", "10 s", " 10s", "10s ", "1m1h", "1s1s", "10sec", "-1s",
                          "1.5s", "10S", "1d", "ms", "1h-5m", "1m1m", "5ms1s"}) {
    BOOST_TEST_CONTEXT("'" << bad << "'") {
      const std::vector<std::string> errors =
          errors_of(kTunnel + "backoff_max = \"" + bad + "\"\n");
      BOOST_TEST_REQUIRE(errors.size() == 1u);
      BOOST_TEST(errors[0].find("must be a duration such as") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(stats_listen_forms_and_warning) {
  struct Case {
    const char* text;
    std::string host;
    int port;
    bool ipv6, loopback;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1:9477", "127.0.0.1", 9477, false, true},
      {"127.1.2.3:1", "127.1.2.3", 1, false, true},
      {"[::1]:65535", "::1", 65535, true, true},
      {"[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80, true, true},
      {"0.0.0.0:9477", "0.0.0.0", 9477, false, false},
      {"[::]:9477", "::", 9477, true, false},
      {"192.0.2.1:09477", "192.0.2.1", 9477, false, false},
  };
  for (const Case& k : cases) {
    BOOST_TEST_CONTEXT(k.text) {
      const std::string file =
          "[global]\nstats_listen = \"" + std::string(k.text) + "\"\n" + kTunnel;
      const Config c = good(file);
      BOOST_TEST_REQUIRE(c.global.stats_listen.has_value());
      BOOST_TEST(c.global.stats_listen->host == k.host);
      BOOST_TEST(c.global.stats_listen->port == k.port);
      BOOST_TEST(c.global.stats_listen->ipv6 == k.ipv6);
      BOOST_TEST(c.global.stats_listen->loopback == k.loopback);
      if (k.loopback) {
        BOOST_TEST(c.warnings.empty());
      } else {
        BOOST_TEST_REQUIRE(c.warnings.size() == 1u);
        const std::string w = "t.conf:2:16: stats_listen \"" + std::string(k.text) +
                              "\" is not a loopback address: anyone who can reach it reads the "
                              "stats (the server has no authentication)";
        BOOST_TEST(c.warnings[0].to_string() == w);
        // check-config prints it as a comment, so the output still parses.
        BOOST_TEST(format_config(c).find("\n# warning: " + w + "\n") != std::string::npos);
      }
    }
  }
  for (const char* off : {"off", ""}) {
    BOOST_TEST_CONTEXT("'" << off << "'") {
      const Config c =
          good("[global]\nstats_listen = \"" + std::string(off) + "\"\n" + kTunnel);
      BOOST_TEST(!c.global.stats_listen.has_value());
      BOOST_TEST(format_config(c).find("\nstats_listen = \"off\"\n") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(format_prints_feature_keys) {
  const std::string expected =
      "# Effective configuration of \"t.conf\"\n"
      "# (\"default\" marks values the file does not set.)\n"
      "\n"
      "[global]\n"
      "log_level = \"info\"          # default\n"
      "datapath = \"auto\"           # default\n"
      "queue_num = 4770            # default\n"
      "queue_maxlen = 8192         # default\n"
      "max_concurrent_searches = 16 # default\n"
      "stats_listen = \"127.0.0.1:9477\" # default\n"
      "control_socket = \"/run/tunshim.sock\" # default\n"
      "\n"
      "[[tunnel]]                  # line 1\n"
      "interface = \"ppp0\"\n"
      "mss = \"auto\"                # until the first search: 1160\n"
      "mss6 = \"auto\"               # default: \"auto\", like mss; until the first search: "
      "1220\n"
      "guard = \"icmp\"              # default with mss \"auto\"\n"
      "set_interface_mtu = false   # default\n"
      "probe_target = \"peer\"       # default\n"
      "probe_min = 1200            # default\n"
      "probe_max = \"interface\"     # default\n"
      "reprobe_interval = \"10m\"    # default\n"
      "keepalive = \"idle\"          # default\n"
      "keepalive_interval = \"10s\"  # default\n"
      "keepalive_target = \"peer\"   # default\n"
      "down_after_misses = 3       # default\n"
      "on_down = []                # default\n"
      "on_up = []                  # default\n"
      "hook_timeout = \"30s\"        # default\n"
      "backoff_max = \"5m\"          # default\n";
  BOOST_TEST(format_config(good("[[tunnel]]\ninterface = \"ppp0\"\nmss = \"auto\"\n")) ==
             expected);
}

BOOST_AUTO_TEST_CASE(format_round_trips_feature_keys) {
  const std::vector<std::string> files = {
      kTunnel,
      "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"auto\"\n",
      "[global]\nstats_listen = \"[fd00::5]:80\"\ncontrol_socket = \"off\"\n"
      "[[tunnel]]\ninterface = \"ppp0\"\nmss = \"auto\"\nmss6 = 1300\nguard = \"off\"\n"
      "set_interface_mtu = true\nprobe_target = \"10.1.2.3\"\nprobe_min = 576\n"
      "probe_max = 65535\nreprobe_interval = \"86399999ms\"\nkeepalive = \"always\"\n"
      "keepalive_interval = \"3599s\"\n",
      "[global]\nstats_listen = \"off\"\ncontrol_socket = \"/run/a \\\"b\\\".sock\"\n"
      "[[tunnel]]\ninterface = \"tun0\"\nmss = \"off\"\nmss6 = \"auto\"\n"
      "keepalive = \"off\"\nkeepalive_target = \"2001:db8::1\"\ndown_after_misses = 1\n"
      "on_down = [[\"/usr/sbin/poff\", \"office\"], [\"/usr/sbin/pon\", \"a\\\"b\", \"\"]]\n"
      "on_up = [[\"/x\", \"t\xC3\xBCn\", \"tab\\there\"]]\nhook_timeout = \"1h\"\n"
      "backoff_max = \"1h30m15s7ms\"\n",
  };
  for (const std::string& text : files) {
    const Config first = good(text);
    const std::string printed = format_config(first);
    BOOST_TEST_CONTEXT(printed) {
      const Config second = good(printed);
      BOOST_TEST((second.global.stats_listen == first.global.stats_listen));
      BOOST_TEST(second.global.control_socket == first.global.control_socket);
      BOOST_TEST_REQUIRE(second.tunnels.size() == first.tunnels.size());
      for (std::size_t i = 0; i < first.tunnels.size(); ++i) {
        const TunnelConfig& a = first.tunnels[i];
        const TunnelConfig& b = second.tunnels[i];
        BOOST_TEST(b.mss4 == a.mss4);
        BOOST_TEST(b.mss6 == a.mss6);
        BOOST_TEST(b.mss4_auto == a.mss4_auto);
        BOOST_TEST(b.mss6_auto == a.mss6_auto);
        BOOST_TEST((b.guard == a.guard));
        BOOST_TEST(b.set_interface_mtu == a.set_interface_mtu);
        BOOST_TEST(b.probe_target == a.probe_target);
        BOOST_TEST(b.probe_min == a.probe_min);
        BOOST_TEST(b.probe_max == a.probe_max);
        BOOST_TEST(b.reprobe_interval.count() == a.reprobe_interval.count());
        BOOST_TEST((b.keepalive == a.keepalive));
        BOOST_TEST(b.keepalive_interval.count() == a.keepalive_interval.count());
        BOOST_TEST(b.keepalive_target == a.keepalive_target);
        BOOST_TEST(b.down_after_misses == a.down_after_misses);
        BOOST_TEST((b.on_down == a.on_down));
        BOOST_TEST((b.on_up == a.on_up));
        BOOST_TEST(b.hook_timeout.count() == a.hook_timeout.count());
        BOOST_TEST(b.backoff_max.count() == a.backoff_max.count());
      }
      // Printing again gives the same settings (comments differ: line numbers, defaults).
      BOOST_TEST(settings_of(format_config(second)) == settings_of(printed));
    }
  }
}

BOOST_AUTO_TEST_CASE(mutated_feature_input_never_throws) {
  const std::string base =
      "[global]\nstats_listen = \"[::1]:9477\"\ncontrol_socket = \"/run/t.sock\"\n" + kTunnel +
      "mss6 = \"auto\"\nguard = \"icmp\"\nprobe_target = \"10.0.0.1\"\nprobe_max = 1500\n"
      "reprobe_interval = \"1h30m\"\nkeepalive_interval = \"1s500ms\"\n"
      "on_down = [[\"/a\", \"b\"], [\"/c\"]]\nbackoff_max = \"5m\"\n";
  BOOST_TEST_REQUIRE(errors_of(base).empty());
  const std::uint32_t seed = std::random_device{}();
  BOOST_TEST_MESSAGE("mutated_feature_input_never_throws seed " << seed);
  std::mt19937 rng(seed);
  const std::string alphabet =
      std::string("[]{}=\"'.,:#\n \\0123456789abcdefhmnopstu/\xff") + '\0';
  int valid = 0;
  int invalid = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
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
      if (const auto* c = std::get_if<Config>(&r)) {
        ++valid;
        // Whatever was accepted prints to something that is accepted again.
        const ConfigResult again = parse_config(format_config(*c), "p.conf");
        BOOST_TEST(std::holds_alternative<Config>(again));
      } else {
        ++invalid;
      }
    }
  }
  // Both paths ran: errors reported, and accepted mutants printed and re-parsed.
  BOOST_TEST(valid > 30);
  BOOST_TEST(invalid > 100);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_example_docs)

// conf/tunshim.conf shows each feature key as a commented-out line: uncommented, those lines
// must form a valid config whose values are the documented defaults (the hook examples
// aside), and every feature key must be shown.
BOOST_AUTO_TEST_CASE(commented_settings_are_valid_and_defaults) {
  const auto path = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / ".." /
                    "conf" / "tunshim.conf";
  std::ifstream in(path);
  BOOST_TEST_REQUIRE(in.good());
  std::string text;
  std::vector<std::string> shown;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# ", 0) == 0) {
      const std::string rest = line.substr(2);
      const std::size_t eq = rest.find(" = ");
      const std::string key = rest.substr(0, eq);
      if (eq != std::string::npos && !key.empty() &&
          key.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789") == std::string::npos) {
        shown.push_back(key);
        line = rest;
      }
    }
    text += line + '\n';
  }
  for (const NewKey& k : kNewKeys) {
    BOOST_TEST_CONTEXT(k.key) {
      BOOST_TEST((std::find(shown.begin(), shown.end(), k.key) != shown.end()));
    }
  }
  const Config c = good(text);
  // The example uses mss = "auto", which changes the guard's default.
  const Config d = good("[[tunnel]]\ninterface = \"ppp0\"\nmss = \"auto\"\n");
  BOOST_TEST((c.global.stats_listen == d.global.stats_listen));
  BOOST_TEST(c.global.control_socket == d.global.control_socket);
  const TunnelConfig& t = c.tunnels.at(0);
  const TunnelConfig& u = d.tunnels.at(0);
  BOOST_TEST((t.guard == u.guard));
  BOOST_TEST(t.set_interface_mtu == u.set_interface_mtu);
  BOOST_TEST(t.probe_target == u.probe_target);
  BOOST_TEST(t.probe_min == u.probe_min);
  BOOST_TEST(t.probe_max == u.probe_max);
  BOOST_TEST(t.reprobe_interval.count() == u.reprobe_interval.count());
  BOOST_TEST((t.keepalive == u.keepalive));
  BOOST_TEST(t.keepalive_interval.count() == u.keepalive_interval.count());
  BOOST_TEST(t.keepalive_target == u.keepalive_target);
  BOOST_TEST(t.down_after_misses == u.down_after_misses);
  BOOST_TEST(t.hook_timeout.count() == u.hook_timeout.count());
  BOOST_TEST(t.backoff_max.count() == u.backoff_max.count());
  BOOST_TEST(t.on_down.size() == 2u);
  BOOST_TEST(t.on_up.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- whom a config and its hooks are trusted from (tunshim.conf(5), FILE PERMISSIONS)
// --------

namespace {

namespace fs = std::filesystem;

// A fresh directory, root-owned and 0755 when run as root, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tunshim-trust.XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
    ::chmod(path.c_str(), 0755);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  // A file with `text` and `mode` (chmod: the umask does not apply).
  std::string file(const std::string& name, mode_t mode, const std::string& text = "") const {
    const fs::path p = path / name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p.string();
  }
  std::string dir(const std::string& name, mode_t mode) const {
    const fs::path p = path / name;
    fs::create_directory(p);
    ::chmod(p.c_str(), mode);
    return p.string();
  }
};

constexpr uid_t kNobody = 65534;
bool root() { return ::geteuid() == 0; }

std::vector<std::string> strings(const std::vector<ConfigError>& errors) {
  std::vector<std::string> out;
  for (const ConfigError& e : errors) out.push_back(e.to_string());
  return out;
}

std::vector<std::string> load_errors(const std::string& path) {
  const ConfigResult r = load_config(path);
  const auto* errors = std::get_if<std::vector<ConfigError>>(&r);
  return errors != nullptr ? strings(*errors) : std::vector<std::string>{};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(config_trust)

BOOST_AUTO_TEST_CASE(file_modes_and_owner) {
  const TempDir d;
  const std::string f = d.file("t.conf", 0644);
  if (!root()) {
    // check-config by a user on a file of their own still says what is wrong: here, that
    // the user owns the directory and the file.
    const std::string uid = std::to_string(::geteuid());
    const std::string dir = d.path.string();
    BOOST_TEST(
        trust_problems(f) ==
            (std::vector<std::string>{
                "directory " + dir + " is owned by uid " + uid +
                    ", not root, so that user can replace what is in it; fix: chown root " +
                    dir,
                f + " is owned by uid " + uid +
                    ", not root, so that user can change it; fix: chown root " + f}),
        boost::test_tools::per_element());
    return;
  }
  BOOST_TEST(trust_problems(f).empty());
  BOOST_TEST(trust_problems(d.file("ro.conf", 0400)).empty());
  const auto writable = [](const std::string& p, const char* who, const char* mode) {
    return std::vector<std::string>{
        p + " is writable by " + who + " (mode " + mode +
        "), so users other than root can change it; fix: chmod go-w " + p};
  };
  BOOST_TEST(trust_problems(d.file("a.conf", 0666)) ==
                 writable(d.path / "a.conf", "group and others", "0666"),
             boost::test_tools::per_element());
  BOOST_TEST(
      trust_problems(d.file("g.conf", 0664)) == writable(d.path / "g.conf", "group", "0664"),
      boost::test_tools::per_element());
  BOOST_TEST(
      trust_problems(d.file("o.conf", 0602)) == writable(d.path / "o.conf", "others", "0602"),
      boost::test_tools::per_element());
  const std::string n = d.file("n.conf", 0644);
  BOOST_TEST_REQUIRE(::chown(n.c_str(), kNobody, kNobody) == 0);
  BOOST_TEST(trust_problems(n) ==
                 std::vector<std::string>{n +
                                          " is owned by uid 65534, not root, so that user can "
                                          "change it; fix: chown root " +
                                          n},
             boost::test_tools::per_element());
  // Both at once: both reported.
  BOOST_TEST_REQUIRE(::chmod(n.c_str(), 0666) == 0);
  BOOST_TEST(trust_problems(n).size() == 1u);  // the owner problem already says who can write
  BOOST_TEST(trust_problems((d.path / "missing.conf").string()) ==
                 std::vector<std::string>{"cannot check " + (d.path / "missing.conf").string() +
                                          ": No such file or directory"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(directories_on_the_path) {
  if (!root()) return;  // needs chown; the non-root case is in file_modes_and_owner
  const TempDir d;
  const std::string g = d.dir("g", 0775);
  BOOST_TEST(
      trust_problems(d.file("g/t.conf", 0644)) ==
          std::vector<std::string>{"directory " + g +
                                   " is writable by group (mode 0775), so users other "
                                   "than root can replace what is in it; fix: chmod go-w " +
                                   g},
      boost::test_tools::per_element());
  const std::string u = d.dir("u", 0755);
  BOOST_TEST_REQUIRE(::chown(u.c_str(), kNobody, kNobody) == 0);
  BOOST_TEST(trust_problems(d.file("u/t.conf", 0644)) ==
                 std::vector<std::string>{"directory " + u +
                                          " is owned by uid 65534, not root, so that user can "
                                          "replace what is in it; fix: chown root " +
                                          u},
             boost::test_tools::per_element());
  // Deeper: every level is checked, not only the file's own directory.
  d.dir("g/sub", 0755);
  BOOST_TEST(trust_problems(d.file("g/sub/t.conf", 0644)).size() == 1u);
  // A root-owned sticky directory (like /tmp): others cannot rename or remove root's entries.
  d.dir("sticky", 01777);
  BOOST_TEST(trust_problems(d.file("sticky/t.conf", 0644)).empty());
  // … but a file there that is not root's is refused for its owner.
  const std::string theirs = d.file("sticky/theirs.conf", 0644);
  BOOST_TEST_REQUIRE(::chown(theirs.c_str(), kNobody, kNobody) == 0);
  BOOST_TEST(trust_problems(theirs).size() == 1u);
  // A sticky directory that is not root's: its owner can replace anything in it.
  const std::string us = d.dir("usticky", 01777);
  BOOST_TEST_REQUIRE(::chown(us.c_str(), kNobody, kNobody) == 0);
  BOOST_TEST(trust_problems(d.file("usticky/t.conf", 0644)).size() == 1u);
  // ".." and "." are walked like the kernel walks them.
  BOOST_TEST(
      trust_problems((d.path / "sticky" / ".." / "." / "sticky" / "t.conf").string()).empty());
}

BOOST_AUTO_TEST_CASE(symlinks_are_followed_and_checked) {
  if (!root()) return;
  const TempDir d;
  const std::string g = d.dir("g", 0777);
  d.file("g/t.conf", 0644);
  d.dir("ok", 0755);
  const std::string target = d.file("ok/t.conf", 0644);
  // A safe link to a file in an unsafe directory: the target's directory is named.
  const fs::path l1 = d.path / "ok" / "to-g.conf";
  fs::create_symlink(d.path / "g" / "t.conf", l1);
  const auto p1 = trust_problems(l1.string());
  BOOST_TEST_REQUIRE(p1.size() == 1u);
  BOOST_TEST(
      p1[0].rfind("directory " + g + " is writable by group and others (mode 0777)", 0) == 0);
  // A relative link to a safe file is fine.
  const fs::path l2 = d.path / "ok" / "rel.conf";
  fs::create_symlink("t.conf", l2);
  BOOST_TEST(trust_problems(l2.string()).empty());
  // A link in an unsafe directory to a safe file: the link can be repointed.
  const fs::path l3 = d.path / "g" / "to-ok.conf";
  fs::create_symlink(target, l3);
  BOOST_TEST(trust_problems(l3.string()).size() == 1u);
  // A link owned by another user.
  const fs::path l4 = d.path / "ok" / "theirs.conf";
  fs::create_symlink(target, l4);
  BOOST_TEST_REQUIRE(::lchown(l4.c_str(), kNobody, kNobody) == 0);
  BOOST_TEST(trust_problems(l4.string()) ==
                 std::vector<std::string>{"symlink " + l4.string() +
                                          " is owned by uid 65534, not root, so that user can "
                                          "change it; fix: chown -h root " +
                                          l4.string()},
             boost::test_tools::per_element());
  // A loop ends with ELOOP.
  const fs::path loop = d.path / "ok" / "loop";
  fs::create_symlink(loop, loop);
  const auto p5 = trust_problems(loop.string());
  BOOST_TEST_REQUIRE(p5.size() == 1u);
  BOOST_TEST(p5[0].find("Too many levels of symbolic links") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(hook_programs_checked_with_positions) {
  const TempDir d;
  const std::string good_hook = d.file("up.sh", 0755, "#!/bin/sh\n");
  const std::string plain = d.file("plain.sh", 0644, "#!/bin/sh\n");
  const std::string missing = (d.path / "nope.sh").string();
  const std::string open = d.file("open.sh", 0777, "#!/bin/sh\n");
  const std::string text = kTunnel + "on_down = [[\"" + missing + "\"], [\"" + plain +
                           "\", \"x\"]]\non_up = [[\"" + good_hook + "\"], [\"" +
                           d.path.string() + "\"], [\"" + open + "\"]]\n";
  const Config c = good(text);
  const std::vector<std::string> errors = strings(check_hooks(c));
  // Columns: on_down = [[" is 12 characters, on_up = [[" 10.
  const int second = static_cast<int>(13 + missing.size() + 6);
  const int up2 = static_cast<int>(11 + good_hook.size() + 6);
  const int up3 = static_cast<int>(up2 + d.path.string().size() + 6);
  std::vector<std::string> expected = {
      "t.conf:4:13: the program in on_down, \"" + missing + "\", does not exist",
      "t.conf:4:" + std::to_string(second) + ": the program in on_down, \"" + plain +
          "\", is not executable (mode 0644); fix: chmod u+x " + plain,
      "t.conf:5:" + std::to_string(up2) + ": the program in on_up, \"" + d.path.string() +
          "\", is a directory, not a program",
  };
  if (root()) {
    expected.push_back(
        "t.conf:5:" + std::to_string(up3) + ": the program in on_up, \"" + open +
        "\", could be changed by users other than root, and it runs as root: " + open +
        " is writable by group and others (mode 0777), so users other than root "
        "can change it; fix: chmod go-w " +
        open);
    BOOST_TEST(errors == expected, boost::test_tools::per_element());
  } else {
    // Not root: every program here is the user's, so each is also reported for that.
    BOOST_TEST(errors.size() > expected.size());
  }
  // Pure parsing does not look at the programs.
  BOOST_TEST(errors_of(text).empty());
}

BOOST_AUTO_TEST_CASE(load_applies_every_check_and_read_none) {
  const TempDir d;
  const std::string hook = d.file("hook", 0755, "#!/bin/sh\n");
  const std::string text = kTunnel + "on_down = [[\"" + hook + "\"]]\n";
  const std::string f = d.file("t.conf", 0644, text);
  BOOST_TEST(std::holds_alternative<Config>(read_config(f)));
  if (!root()) {
    BOOST_TEST(!load_errors(f).empty());
    return;
  }
  BOOST_TEST(load_errors(f).empty());
  BOOST_TEST_REQUIRE(::chmod(f.c_str(), 0666) == 0);
  BOOST_TEST(std::holds_alternative<Config>(read_config(f)));
  BOOST_TEST(
      load_errors(f) ==
          std::vector<std::string>{f + ": refused, root runs what this file says: " + f +
                                   " is writable by group and others (mode 0666), so "
                                   "users other than root can change it; fix: chmod go-w " +
                                   f},
      boost::test_tools::per_element());
  // The content is still checked, so one run shows every problem.
  std::ofstream(f) << text << "bogus = 1\n";
  BOOST_TEST(load_errors(f).size() == 2u);
  BOOST_TEST_REQUIRE(::chmod(f.c_str(), 0644) == 0);
  std::ofstream(f) << text;
  BOOST_TEST_REQUIRE(::chmod(hook.c_str(), 0775) == 0);
  const auto errors = load_errors(f);
  BOOST_TEST_REQUIRE(errors.size() == 1u);
  BOOST_TEST(errors[0].rfind(f + ":4:13: the program in on_down", 0) == 0);
}

BOOST_AUTO_TEST_CASE(special_files_refused_without_blocking) {
  const TempDir d;
  BOOST_TEST(load_errors("/dev/null") ==
                 std::vector<std::string>{
                     "/dev/null: cannot read: it is a character device, and a config must be a "
                     "regular file"},
             boost::test_tools::per_element());
  const std::string fifo = (d.path / "fifo.conf").string();
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // With a writer that sends nothing, a blocking read would wait for ever: the writer is
  // closed after 5 s so that a failure ends.
  const int writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  BOOST_TEST_REQUIRE(writer >= 0);
  std::promise<std::vector<std::string>> done;
  std::future<std::vector<std::string>> result = done.get_future();
  std::thread reader([&] { done.set_value(load_errors(fifo)); });
  const bool prompt = result.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  ::close(writer);
  reader.join();
  BOOST_TEST(prompt, "load_config blocked on a FIFO");
  BOOST_TEST(
      result.get() ==
          std::vector<std::string>{fifo + ": cannot read: it is a FIFO, and a config must be a "
                                          "regular file"},
      boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
