// FirewallSync: one job at a time, the latest wanted state wins, reapply queued behind, a
// final removal on stop. The backend here holds each job open until the test completes it,
// so the interleavings (a want during a job, a stop during a job, callbacks that want
// again) are driven one by one.
#include <boost/test/unit_test.hpp>
#include <deque>
#include <string>
#include <vector>

#include "proxy/firewall.h"

using tunshim::proxy::FirewallSync;
using tunshim::proxy::FirewallTunnel;
using Rules = FirewallSync::Rules;

namespace {

struct Backend {
  struct Job {
    std::string what;  // "apply ppp0>ppp0,tun0", "reapply ppp0", "remove"
    FirewallSync::Done done;
  };
  std::deque<Job> jobs;
  std::vector<std::string> log;

  static std::string names(const Rules& r) {
    std::string s;
    for (const auto& t : r)
      s += (s.empty() ? "" : ",") + t.iface + ":" + std::to_string(t.guard4);
    return s;
  }
  FirewallSync::Backend make() {
    FirewallSync::Backend b;
    b.apply = [this](const Rules& from, const Rules& to, FirewallSync::Done d) {
      jobs.push_back({"apply " + names(from) + ">" + names(to), std::move(d)});
      log.push_back(jobs.back().what);
    };
    b.reapply = [this](const FirewallTunnel& t, FirewallSync::Done d) {
      jobs.push_back({"reapply " + t.iface, std::move(d)});
      log.push_back(jobs.back().what);
    };
    b.remove_all = [this](FirewallSync::Done d) {
      jobs.push_back({"remove", std::move(d)});
      log.push_back("remove");
    };
    return b;
  }
  // Completes the oldest running job.
  void complete(bool ok = true, std::string err = {}) {
    BOOST_REQUIRE(!jobs.empty());
    Job j = std::move(jobs.front());
    jobs.pop_front();
    j.done(ok, std::move(err));
  }
};

FirewallTunnel tun(const char* iface, std::uint16_t guard4 = 0) {
  return FirewallTunnel{iface, true, true, guard4, 0};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(firewall_sync)

BOOST_AUTO_TEST_CASE(one_job_at_a_time_latest_state_wins) {
  Backend be;
  FirewallSync fs(be.make(), {tun("ppp0")});
  std::vector<std::string> told;
  auto cb = [&](const char* tag) {
    return [&told, tag](bool ok, std::string) {
      told.push_back(std::string(tag) + (ok ? "+" : "-"));
    };
  };
  fs.want({tun("ppp0", 1400)}, cb("a"));
  BOOST_TEST(fs.busy());
  BOOST_TEST(be.jobs.size() == 1u);
  // Three more while the first runs: only the last is applied, and all three hear of it.
  fs.want({tun("ppp0", 1300)}, cb("b"));
  fs.want({tun("ppp0", 1200)}, cb("c"));
  fs.want({tun("ppp0", 1100)}, cb("d"));
  BOOST_TEST(be.jobs.size() == 1u);  // never two at once
  be.complete();
  BOOST_TEST(told == (std::vector<std::string>{"a+"}));
  BOOST_TEST(fs.installed() == (Rules{tun("ppp0", 1400)}));
  BOOST_TEST(be.jobs.size() == 1u);
  be.complete();
  BOOST_TEST(told == (std::vector<std::string>{"a+", "b+", "c+", "d+"}));
  BOOST_TEST(fs.installed() == (Rules{tun("ppp0", 1100)}));
  BOOST_TEST(be.log ==
             (std::vector<std::string>{"apply ppp0:0>ppp0:1400", "apply ppp0:1400>ppp0:1100"}));
  BOOST_TEST(!fs.busy());
  BOOST_TEST(fs.jobs_run() == 2u);
}

BOOST_AUTO_TEST_CASE(nothing_to_change_runs_nothing) {
  Backend be;
  FirewallSync fs(be.make(), {tun("ppp0")});
  bool told = false;
  fs.want({tun("ppp0")}, [&](bool ok, std::string) { told = ok; });
  BOOST_TEST(told);
  BOOST_TEST(be.log.empty());
  // Back to the installed state while a change is queued: the queued one is dropped.
  fs.want({tun("ppp0", 1400)});
  fs.want({tun("ppp0", 1300)});
  fs.want({tun("ppp0", 1400)});
  be.complete();
  BOOST_TEST(be.log.size() == 1u);
  BOOST_TEST(!fs.busy());
}

BOOST_AUTO_TEST_CASE(failure_keeps_installed_and_does_not_retry_by_itself) {
  Backend be;
  FirewallSync fs(be.make(), {tun("ppp0")});
  std::string error;
  fs.want({tun("ppp0"), tun("tun0")}, [&](bool ok, std::string e) { error = ok ? "" : e; });
  be.complete(false, "iptables-nft-restore: exit 1");
  BOOST_TEST(error == "iptables-nft-restore: exit 1");
  BOOST_TEST(fs.installed() == (Rules{tun("ppp0")}));
  BOOST_TEST(!fs.busy());
  BOOST_TEST(be.jobs.empty());
  fs.want({tun("ppp0"), tun("tun0")});  // the next want tries again
  BOOST_TEST(be.jobs.size() == 1u);
  be.complete();
  BOOST_TEST(fs.installed().size() == 2u);
}

BOOST_AUTO_TEST_CASE(reapply_waits_for_the_state_and_uses_it) {
  Backend be;
  FirewallSync fs(be.make(), {tun("ppp0")});
  fs.want({tun("ppp0", 1400)});
  std::vector<std::string> told;
  fs.reapply("ppp0", [&](bool ok, std::string e) { told.push_back(ok ? "ok" : e); });
  fs.reapply("eth9", [&](bool ok, std::string e) { told.push_back(ok ? "ok" : e); });
  fs.want({tun("ppp0", 1300)});  // wanted state goes before the queued reapplies
  BOOST_TEST(be.jobs.size() == 1u);
  be.complete();
  be.complete();
  BOOST_TEST(be.jobs.size() == 1u);
  BOOST_TEST(be.jobs.front().what == "reapply ppp0");
  be.complete();
  BOOST_TEST(told == (std::vector<std::string>{
                         "ok", "eth9 is not a configured tunnel (configured: ppp0)"}));
  BOOST_TEST(be.log == (std::vector<std::string>{"apply ppp0:0>ppp0:1400",
                                                 "apply ppp0:1400>ppp0:1300", "reapply ppp0"}));
}

BOOST_AUTO_TEST_CASE(stop_waits_for_the_running_job_then_removes_everything) {
  Backend be;
  FirewallSync fs(be.make(), {tun("ppp0")});
  std::vector<std::string> told;
  auto cb = [&](const char* tag) {
    return [&told, tag](bool ok, std::string) {
      told.push_back(std::string(tag) + (ok ? "+" : "-"));
    };
  };
  fs.want({tun("ppp0", 1400)}, cb("running"));
  fs.want({tun("ppp0", 1300)}, cb("queued"));
  fs.reapply("ppp0", cb("reapply"));
  fs.stop(cb("stop"));
  fs.stop(cb("stop-again"));  // once
  BOOST_TEST(told == (std::vector<std::string>{"queued-", "reapply-"}));
  fs.want({tun("ppp0", 1200)}, cb("late"));
  BOOST_TEST(told.back() == "late-");
  BOOST_TEST(be.jobs.size() == 1u);  // the running apply finishes first
  be.complete();
  BOOST_TEST(be.jobs.front().what == "remove");
  be.complete();
  BOOST_TEST(told ==
             (std::vector<std::string>{"queued-", "reapply-", "late-", "running+", "stop+"}));
  BOOST_TEST(fs.installed().empty());
  BOOST_TEST(be.log.back() == "remove");
  BOOST_TEST(be.log.size() == 2u);
}

BOOST_AUTO_TEST_CASE(stop_when_idle_and_synchronous_backend) {
  // A backend that completes inside the call (as the blocking removal does).
  std::vector<std::string> log;
  FirewallSync::Backend b;
  b.apply = [&](const Rules&, const Rules& to, FirewallSync::Done d) {
    log.push_back("apply " + std::to_string(to.size()));
    d(true, {});
  };
  b.reapply = [&](const FirewallTunnel&, FirewallSync::Done d) { d(true, {}); };
  b.remove_all = [&](FirewallSync::Done d) {
    log.push_back("remove");
    d(true, {});
  };
  FirewallSync fs(std::move(b), {});
  int applied = 0;
  // A callback that wants again, from inside the completion.
  fs.want({tun("ppp0")}, [&](bool, std::string) {
    ++applied;
    fs.want({tun("ppp0"), tun("tun0")}, [&](bool, std::string) { ++applied; });
  });
  BOOST_TEST(applied == 2);
  BOOST_TEST(fs.installed().size() == 2u);
  bool stopped = false;
  fs.stop([&](bool ok, std::string) { stopped = ok; });
  BOOST_TEST(stopped);
  BOOST_TEST(log == (std::vector<std::string>{"apply 1", "apply 2", "remove"}));
}

BOOST_AUTO_TEST_SUITE_END()
