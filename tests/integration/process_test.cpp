// siesta end to end on real processes: the real binary, the real test server, real signals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Service {
  int port = free_port();
  std::vector<std::string> extra;  // more test-server flags
  std::string fields;              // more config fields, e.g. R"("stop_timeout_seconds": 1,)"
  std::string pid_file;

  std::string config(const std::string& name) const {
    json cmd =
        json::array({SIESTA_TESTSERVER, "--port", std::to_string(port), "--pid-file", pid_file});
    for (const auto& e : extra) cmd.push_back(e);
    return "\"" + name + "\": {" + fields + "\"command\": " + cmd.dump() +
           ", \"upstream\": \"127.0.0.1:" + std::to_string(port) + "\", \"health\": \"/health\"}";
  }
  pid_t pid() const {
    std::ifstream in(pid_file);
    pid_t p = -1;
    in >> p;
    return p;
  }
};

class Process : public ::testing::Test {
 protected:
  TempDir dir;
  Service web{free_port(), {}, "", (dir / "web.pid").string()};

  std::string config(const std::string& settings, const Service& svc) {
    return "{" + settings + "\"services\": {" + svc.config("web") + "}}";
  }
};

TEST_F(Process, WakeStartsTheProcessAndWaitsForItsHealthCheck) {
  web.extra = {"--ready-after-ms", "300"};
  SiestaProcess siesta(dir.path(), config("", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_EQ(status_of(siesta, "web")["actual"], "stopped");

  auto t0 = std::chrono::steady_clock::now();
  auto res = siesta.client().Post("/admin/services/web/wake");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["actual"], "running");
  EXPECT_GE(took, milliseconds(300));  // it waited for /health, not just for the process
  httplib::Client upstream("127.0.0.1", web.port);
  auto hello = upstream.Get("/");
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->status, 200);
  EXPECT_TRUE(pid_alive(web.pid()));
  EXPECT_TRUE(siesta.wait_log("[web] siesta-testserver listening on"));  // output in siesta's log
}

// The sockets siesta holds (its proxy's listeners among them) must not go with the service: a
// service left running (on_exit "leave") would keep siesta's ports bound after siesta exits.
TEST_F(Process, TheServiceInheritsNoneOfSiestasSockets) {
  const int proxy_port = free_port();
  web.fields = R"("listen": "127.0.0.1:)" + std::to_string(proxy_port) + "\", ";
  SiestaProcess siesta(dir.path(), config("", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  auto sockets_of = [](pid_t pid) {
    std::set<std::string> sockets;
    const fs::path fds = "/proc/" + std::to_string(pid) + "/fd";
    for (const auto& entry : fs::directory_iterator(fds)) {
      std::error_code ec;
      const std::string target = fs::read_symlink(entry.path(), ec).string();
      if (!ec && target.rfind("socket:", 0) == 0) sockets.insert(target);
    }
    return sockets;
  };
  const auto mine = sockets_of(siesta.pid());
  const auto theirs = sockets_of(web.pid());
  EXPECT_GE(mine.size(), 2u);    // the admin API's and the proxy's listeners at least
  EXPECT_GE(theirs.size(), 1u);  // the service's own listener
  for (const auto& s : theirs) EXPECT_EQ(mine.count(s), 0u) << s << " is siesta's";
}

// With a 10-minute check interval, only waiting for the deadline itself can stop the
// service within a few seconds of it.
TEST_F(Process, AnIdleServiceIsStoppedAtItsDeadlineAndTheProcessIsGone) {
  SiestaProcess siesta(dir.path(), config(R"("idle_timeout_minutes": 0.02,
                                              "idle_check_interval_minutes": 10,)",
                                          web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const auto ready = std::chrono::steady_clock::now();
  const pid_t pid = web.pid();
  ASSERT_TRUE(pid_alive(pid));
  json running = status_of(siesta, "web");
  EXPECT_EQ(running["actual"], "running");
  EXPECT_GT(running["will_sleep_in_seconds"].get<double>(), 0.5);

  ASSERT_TRUE(
      eventually([&] { return status_of(siesta, "web")["actual"] == "stopped"; }, seconds(8)))
      << siesta.log();
  const auto stopped = std::chrono::steady_clock::now();
  EXPECT_GE(stopped - ready, milliseconds(1100));  // not before the 1.2 s timeout
  EXPECT_LT(stopped - ready, seconds(6));          // at the deadline, not at the next check
  EXPECT_FALSE(pid_alive(pid));
  EXPECT_TRUE(siesta.wait_log("Service web has been idle for 0.02 minutes, stopping..."));
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web"));
  auto metrics = siesta.client().Get("/metrics");
  EXPECT_NE(metrics->body.find("siesta_service_sleeps_total{reason=\"idle\",service=\"web\"} 1"),
            std::string::npos);
  // The memory it held (its resident set, megabytes for the test server) counts as freed.
  EXPECT_GT(metric(siesta, R"(siesta_service_memory_freed_bytes_total{service="web"})"), 1e6);
}

TEST_F(Process, AChildThatIgnoresSigtermIsKilledAfterTheStopTimeout) {
  web.extra = {"--ignore-sigterm"};
  web.fields = R"("stop_timeout_seconds": 0.3, )";
  SiestaProcess siesta(dir.path(), config("", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const pid_t pid = web.pid();
  auto res = siesta.client().Post("/admin/services/web/sleep");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_FALSE(pid_alive(pid));
  EXPECT_TRUE(siesta.wait_log("still running 0.3 s after SIGTERM; sending SIGKILL"));
  EXPECT_TRUE(siesta.wait_log("killed by signal 9"));
}

TEST_F(Process, NoZombiesAreLeftAfterStartsAndStops) {
  SiestaProcess siesta(dir.path(), config("", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
    ASSERT_EQ(siesta.client().Post("/admin/services/web/sleep")->status, 200);
  }
  std::string children;
  for (const auto& task :
       fs::directory_iterator("/proc/" + std::to_string(siesta.pid()) + "/task")) {
    children += slurp(task.path() / "children");
  }
  EXPECT_EQ(children, "");  // neither live children nor zombies
}

TEST_F(Process, AProcessThatDiesIsSeenAtTheNextReconcile) {
  web.extra = {"--exit-after-ms", "1500"};
  SiestaProcess siesta(dir.path(), config(R"("idle_check_interval_minutes": 0.01,)", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200) << siesta.log();
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["actual"] == "stopped"; }))
      << siesta.log();
  EXPECT_TRUE(siesta.wait_log("Service web is no longer running (process"));
  EXPECT_TRUE(siesta.wait_log("exited with code 3"));
}

TEST_F(Process, AStartThatCannotRunIsAnErrorWithTheReason) {
  SiestaProcess siesta(dir.path(), R"({"services": {"web": {"command": ["/nonexistent/bin"]}}})");
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = siesta.client().Post("/admin/services/web/wake");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  json err = json::parse(res->body)["error"];
  EXPECT_EQ(err["code"], "failed");
  // Said as the proxy says it (changed on purpose, issue 21: the admin API said the reason alone).
  EXPECT_EQ(
      err["message"],
      "service web could not be woken: cannot run /nonexistent/bin: No such file or directory");
  EXPECT_EQ(err["source"], "siesta");
  json st = status_of(siesta, "web");
  EXPECT_EQ(st["actual"], "error");
  EXPECT_EQ(st["last_error"],
            "start failed: cannot run /nonexistent/bin: No such file or directory");
  auto metrics = siesta.client().Get("/metrics");
  EXPECT_NE(
      metrics->body.find("siesta_service_failures_total{operation=\"start\",service=\"web\"} 1"),
      std::string::npos);
}

TEST_F(Process, AHealthCheckThatNeverPassesTimesOutAndTheProcessIsStopped) {
  web.extra = {"--ready-after-ms", "100000"};
  web.fields = R"("start_timeout_seconds": 0.5, )";
  SiestaProcess siesta(dir.path(), config("", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = siesta.client().Post("/admin/services/web/wake");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "5");
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "timeout");
  EXPECT_EQ(status_of(siesta, "web")["actual"], "error");
  EXPECT_TRUE(eventually([&] { return !pid_alive(web.pid()); }));
}

TEST_F(Process, RuntimeChangesAreRestoredAfterARestart) {
  const std::string cfg = config(
      "\"state_file\": \"" + (dir / "state.json").string() + "\", \"idle_timeout_minutes\": 60,",
      web);
  SiestaProcess siesta(dir.path(), cfg);
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto c = siesta.client();
  ASSERT_EQ(
      c.Post("/admin/settings", R"({"idleTimeout": 30, "modelKeepAlive": 1})", "application/json")
          ->status,
      200);
  ASSERT_EQ(
      c.Post("/admin/services/web/idle-sleep", R"({"enabled": false})", "application/json")->status,
      200);
  ASSERT_EQ(c.Post("/admin/services/web/touch")->status, 200);
  const json last_used = status_of(siesta, "web")["last_used"];
  EXPECT_EQ(siesta.stop(SIGTERM), 0);
  EXPECT_NE(siesta.log().find("siesta stopped"), std::string::npos);

  ASSERT_TRUE(siesta.start()) << siesta.log();
  json st = get_json(siesta, "/admin/idle-status");
  EXPECT_EQ(st["idle_timeout_minutes"], 30);
  EXPECT_EQ(st["model_keep_alive_hours"], 1);
  EXPECT_EQ(st["services"]["web"]["idle_sleep_enabled"], false);
  EXPECT_EQ(st["services"]["web"]["last_used"], last_used);
  EXPECT_TRUE(siesta.wait_log("Restored runtime state from"));
}

TEST_F(Process, OnExitStopStopsManagedProcessesAndLeaveAdoptsThemAgain) {
  {
    SiestaProcess siesta(dir.path(), config("", web));
    ASSERT_TRUE(siesta.start()) << siesta.log();
    ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
    const pid_t pid = web.pid();
    EXPECT_EQ(siesta.stop(SIGTERM), 0);
    EXPECT_FALSE(pid_alive(pid));  // on_exit "stop" is the default
  }
  const std::string cfg = config(
      "\"on_exit\": \"leave\", \"state_file\": \"" + (dir / "state.json").string() + "\",", web);
  SiestaProcess siesta(dir.path(), cfg);
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const pid_t pid = web.pid();
  EXPECT_EQ(siesta.stop(SIGINT), 0);
  EXPECT_TRUE(pid_alive(pid));  // left running

  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(siesta.wait_log("adopted process " + std::to_string(pid)));
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["actual"] == "running"; }));
  ASSERT_EQ(siesta.client().Post("/admin/services/web/sleep")->status, 200);
  EXPECT_TRUE(eventually([&] { return !pid_alive(pid); }));
}

// A process left running (on_exit "leave") and adopted by the next siesta keeps its idle time
// from the state file: a restart is no use of the service (a siesta restarted more often than
// the timeout would never put it to sleep). One started by hand later gets its timer from then.
TEST_F(Process, AnAdoptedProcessKeepsItsLastUseFromTheStateFile) {
  const std::string state_file = (dir / "state.json").string();
  const std::string cfg =
      config("\"on_exit\": \"leave\", \"state_file\": \"" + state_file + "\",", web);
  SiestaProcess siesta(dir.path(), cfg);
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const double used = status_of(siesta, "web")["last_used"].get<double>();
  EXPECT_EQ(siesta.stop(SIGINT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));

  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(siesta.wait_log("adopted process")) << siesta.log();
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["actual"] == "running"; }));
  const json st = status_of(siesta, "web");
  EXPECT_NEAR(st["last_used"].get<double>(), used, 0.01) << st.dump();
  EXPECT_GE(st["idle_for_seconds"].get<double>(), 2.4) << st.dump();
  EXPECT_EQ(siesta.log().find("started outside siesta"), std::string::npos) << siesta.log();
  // on_exit "leave" leaves it running after this siesta too: not after the test.
  EXPECT_EQ(siesta.stop(SIGINT), 0);
  if (const pid_t pid = web.pid(); pid > 0) ::kill(pid, SIGKILL);
}

// A state file naming the pid (and start time) of an unrelated process, e.g. after the pid
// was reused or the file was edited: siesta must not adopt it, nor kill it on sleep.
TEST_F(Process, ARestoredPidRunningAnotherCommandIsNotAdopted) {
  // Its own session and process group, so that a stop of the "service" would reach it.
  const pid_t other = spawn_with_output({"setsid", "sleep", "30"}, dir / "sleep.out");
  ASSERT_GT(other, 0);
  const std::string proc = "/proc/" + std::to_string(other);
  ASSERT_TRUE(eventually([&] {
    return slurp(proc + "/cmdline") == std::string(
                                           "sleep\0"
                                           "30\0",
                                           9);
  }));
  std::string stat = slurp(proc + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;
  json state = {
      {"format", "siesta-state/1"},
      {"services", {{"web", {{"handle", {{"pid", other}, {"start_ticks", std::stoll(field)}}}}}}}};
  std::ofstream(dir / "state.json") << state.dump();

  SiestaProcess siesta(dir.path(),
                       config("\"state_file\": \"" + (dir / "state.json").string() + "\",", web));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(siesta.wait_log("not adopting process " + std::to_string(other))) << siesta.log();
  EXPECT_EQ(siesta.log().find("adopted process " + std::to_string(other)), std::string::npos);
  EXPECT_EQ(siesta.client().Post("/admin/services/web/sleep")->status, 200);
  EXPECT_TRUE(pid_alive(other));
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
}

TEST_F(Process, JsonLogsAreOneObjectALine) {
  SiestaProcess siesta(dir.path(), config(R"("idle_timeout_minutes": 0.01,)", web),
                       {"--log-format", "json"});
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(siesta.wait_log("Successfully stopped idle service web")) << siesta.log();
  siesta.stop(SIGTERM);
  std::istringstream lines(siesta.log());
  std::string line;
  int n = 0;
  bool monitor_started = false;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not JSON: " << line;
    ASSERT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    monitor_started |= j["msg"] == "Idle monitor task started";
    ++n;
  }
  EXPECT_GT(n, 5);
  EXPECT_TRUE(monitor_started);
}

// The processes of a process group, with their state letter from /proc/<pid>/stat.
std::map<pid_t, char> group_states(pid_t pgid) {
  std::map<pid_t, char> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string text;
    if (!std::getline(in, text)) continue;
    const auto paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(text.substr(paren + 2));
    char state = 0;
    long ppid = 0;
    long pgrp = 0;
    fields >> state >> ppid >> pgrp;
    if (pgrp == pgid) out[static_cast<pid_t>(std::stol(name))] = state;
  }
  return out;
}

bool all_in_state(pid_t pgid, char state) {
  auto states = group_states(pgid);
  return !states.empty() && std::all_of(states.begin(), states.end(),
                                        [&](const auto& p) { return p.second == state; });
}

// The pause tier on a real process group: a shell's child (sleep) beside the test server, so
// that SIGSTOP and SIGCONT are seen to reach the whole group.
class ProcessTiers : public Process {
 protected:
  int listen = free_port();
  // with_child: through a shell that leaves a sleep beside the server. Without: the server's
  // own argv, which a later siesta can adopt (it checks /proc/<pid>/cmdline).
  std::string tiered(const std::string& top = "", bool with_child = true) {
    const std::string server = std::string(SIESTA_TESTSERVER) + " --port " +
                               std::to_string(web.port) + " --pid-file " + web.pid_file;
    json cmd = with_child ? json::array({"sh", "-c", "sleep 3600 & exec " + server})
                          : json::array({SIESTA_TESTSERVER, "--port", std::to_string(web.port),
                                         "--pid-file", web.pid_file});
    return "{" + top + R"("services": {"web": {"command": )" + cmd.dump() +
           R"(, "upstream": "127.0.0.1:)" + std::to_string(web.port) +
           R"(", "health": "/health", "listen": "127.0.0.1:)" + std::to_string(listen) +
           R"(", "sleep_tiers": [{"after_minutes": 0.02, "action": "pause"},
               {"after_minutes": 60, "action": "stop"}]}}})";
  }
};

TEST_F(ProcessTiers, SigstopPausesTheGroupAndARequestContinuesItInMilliseconds) {
  SiestaProcess siesta(dir.path(), tiered());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  httplib::Client via("127.0.0.1", listen);
  via.set_read_timeout(seconds(30));
  auto cold = via.Get("/");
  ASSERT_TRUE(cold) << siesta.log();
  ASSERT_EQ(cold->status, 200);
  const pid_t pid = web.pid();
  ASSERT_EQ(group_states(pid).size(), 2u);  // the server and the shell's sleep

  ASSERT_TRUE(
      eventually([&] { return status_of(siesta, "web")["actual"] == "paused"; }, seconds(10)))
      << siesta.log();
  // "paused" shows from the claim on (so requests wait); the signal follows at once.
  ASSERT_TRUE(siesta.wait_log("Service web is in light sleep: pause")) << siesta.log();
  EXPECT_TRUE(eventually([&] { return all_in_state(pid, 'T'); }, seconds(1)))
      << "every process of the group is stopped";
  EXPECT_EQ(status_of(siesta, "web")["tier"], "pause");

  const auto t0 = std::chrono::steady_clock::now();
  auto warm = via.Get("/");
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(warm) << siesta.log();
  ASSERT_EQ(warm->status, 200);
  const std::string header = warm->get_header_value("X-Siesta-Wake");
  // Measured and printed, not asserted: a loaded machine decides the figure. The header says
  // it was a thaw, not a start.
  EXPECT_EQ(header.rfind("warm-from=pause; dur=", 0), 0u) << header;
  std::printf(
      "[ measured ] SIGCONT through the proxy: request %.1f ms, wake %s (the cold start "
      "before: %s)\n",
      took * 1000, header.c_str(), cold->get_header_value("X-Siesta-Wake").c_str());
  EXPECT_EQ(web.pid(), pid);  // the same process, not restarted
  EXPECT_FALSE(all_in_state(pid, 'T'));
  for (const auto& [p, state] : group_states(pid)) EXPECT_NE(state, 'T') << p;
  EXPECT_EQ(metric(siesta, R"(siesta_service_tier_wakes_total{service="web",tier="pause"})"), 1);
  // The metric counts the same figure as the header, in seconds (issue 24, a new user's trial: it
  // said 0.0004 for the SIGCONT alone while the header said dur=0.003; CI then saw 0.0005 beside
  // dur=0.003 when the header timed its own wait, the wake thread's hand-over included): the
  // header rounds it to the millisecond.
  const double counted =
      metric(siesta, R"(siesta_service_tier_wake_seconds_total{service="web",tier="pause"})");
  const auto at = header.find("dur=");
  ASSERT_NE(at, std::string::npos) << header;
  const double dur = std::stod(header.substr(at + 4));
  EXPECT_NEAR(counted, dur, 0.0005 + 1e-9) << counted << " s counted, " << header;
}

// A SIGSTOPped group keeps a SIGTERM pending until continued: siesta's exit (on_exit "stop")
// must still end it at once, not after stop_timeout_seconds and a SIGKILL.
TEST_F(ProcessTiers, OnExitStopEndsAPausedGroupWithSigterm) {
  SiestaProcess siesta(dir.path(), tiered());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const pid_t pid = web.pid();
  ASSERT_TRUE(eventually([&] { return all_in_state(pid, 'T'); }, seconds(10))) << siesta.log();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(siesta.stop(SIGTERM), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(5));  // stop_timeout_seconds is 10
  EXPECT_TRUE(group_states(pid).empty());
  EXPECT_EQ(siesta.log().find("SIGKILL"), std::string::npos) << siesta.log();
}

// on_exit "leave" with a paused group: left stopped, the group would be orphaned when siesta
// exits, and the kernel sends an orphaned group with a stopped member SIGHUP and SIGCONT, which
// ends the service (seen before the fix). siesta continues it first; the next siesta adopts it
// running, and pauses it again at its time.
TEST_F(ProcessTiers, APausedGroupIsContinuedBeforeSiestaLeavesItAndAdoptedAgain) {
  const std::string top =
      R"("on_exit": "leave", "state_file": ")" + (dir / "state.json").string() + R"(",)";
  SiestaProcess siesta(dir.path(), tiered(top, /*with_child=*/false));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  const pid_t pid = web.pid();
  ASSERT_TRUE(
      eventually([&] { return status_of(siesta, "web")["actual"] == "paused"; }, seconds(10)));
  EXPECT_EQ(siesta.stop(SIGINT), 0);
  EXPECT_TRUE(siesta.wait_log("Resuming paused service web"));
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_TRUE(pid_alive(pid)) << "left running";
  EXPECT_FALSE(all_in_state(pid, 'T'));

  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(siesta.wait_log("adopted process " + std::to_string(pid)));
  ASSERT_TRUE(
      eventually([&] { return status_of(siesta, "web")["actual"] == "paused"; }, seconds(10)))
      << status_of(siesta, "web") << siesta.log();
  EXPECT_TRUE(eventually([&] { return all_in_state(pid, 'T'); }, seconds(1)));
  httplib::Client via("127.0.0.1", listen);
  auto res = via.Get("/");
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake").rfind("warm-from=pause", 0), 0u);
  EXPECT_EQ(web.pid(), pid);
  ASSERT_EQ(siesta.client().Post("/admin/services/web/sleep")->status, 200);
  EXPECT_TRUE(eventually([&] { return group_states(pid).empty(); }));
}

}  // namespace
}  // namespace siesta::testing
