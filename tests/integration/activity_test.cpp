// Activity signals end to end: the real siesta binary, real processes burning CPU, real
// clients talking to the upstream port directly, a real Prometheus, real commands.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <utmp.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A 1.2 s idle timeout and signals sampled every 0.3 s: each test takes a few seconds.
constexpr const char* kFast = R"("idle_timeout_minutes": 0.02, "idle_check_interval_minutes": 10,)";

class Activity : public ::testing::Test {
 protected:
  TempDir dir;
  int port = free_port();

  // The test server as service "web", its command wrapped by `wrap` (a shell line that ends by
  // exec'ing "$@"), with `activity` as its signals.
  std::string config(const std::string& activity, const std::string& wrap = "",
                     const std::string& extra = "") {
    json cmd = json::array();
    if (!wrap.empty()) cmd = json::array({"/bin/sh", "-c", wrap, "sh"});
    for (const char* a : {SIESTA_TESTSERVER, "--port"}) cmd.push_back(a);
    cmd.push_back(std::to_string(port));
    return std::string("{") + kFast + extra + R"("services": {"web": {"command": )" + cmd.dump() +
           R"(, "upstream": "127.0.0.1:)" + std::to_string(port) +
           R"(", "health": "/health", "activity": )" + activity + "}}}";
  }
  static json signal(const SiestaProcess& s, std::size_t i = 0) {
    return status_of(s, "web")["activity"][i];
  }
  static bool stopped(const SiestaProcess& s) { return status_of(s, "web")["actual"] == "stopped"; }
};

// A process that burns CPU stays up past its timeout, and sleeps once it stops burning.
TEST_F(Activity, ACpuBurningProcessStaysUpAndSleepsOnceItStops) {
  const std::string stop_file = (dir / "stop-burning").string();
  // A busy loop in the service's process group (a child of the shell that becomes the server).
  const std::string wrap = "(while [ ! -e '" + stop_file + "' ]; do :; done) & exec \"$@\"";
  SiestaProcess siesta(
      dir.path(), config(R"([{"kind": "cpu", "threshold": 5, "interval_seconds": 0.3}])", wrap));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  // Three timeouts later it still runs, kept awake by its CPU.
  std::this_thread::sleep_for(seconds(4));
  const json busy = status_of(siesta, "web");
  ASSERT_EQ(busy["actual"], "running") << siesta.log();
  EXPECT_EQ(busy["activity"][0]["kind"], "cpu");
  EXPECT_EQ(busy["activity"][0]["state"], "busy") << busy.dump();
  EXPECT_GT(busy["activity"][0]["value"].get<double>(), 5);
  EXPECT_GT(busy["activity"][0]["last_busy_at"].get<double>(), 0);
  EXPECT_GT(metric(siesta, R"(siesta_activity_busy{service="web",signal="cpu"})"), 0);
  EXPECT_GT(metric(siesta, R"(siesta_activity_value{service="web",signal="cpu"})"), 5);

  std::ofstream(stop_file).put('x');  // it stops burning
  const auto quiet = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return stopped(siesta); }, seconds(8))) << siesta.log();
  EXPECT_GE(std::chrono::steady_clock::now() - quiet, milliseconds(900));  // a timeout's worth
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web"));
}

// Established connections to `port` on this machine, server side, from /proc/net/tcp.
int established_to(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);
  int n = 0;
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", port);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, state;
    f >> sl >> local >> remote >> state;
    if (state == "01" && local.substr(local.find(':') + 1) == hex) ++n;
  }
  return n;
}

// A client talking to the upstream port directly (not through siesta) keeps it up; siesta's own
// connection to it (the proxy's, kept alive in its pool) does not count.
TEST_F(Activity, AClientTalkingToTheUpstreamDirectlyKeepsItUp) {
  const int listen = free_port();
  SiestaProcess siesta(dir.path(), config(R"([{"kind": "network", "interval_seconds": 0.3}])", "",
                                          R"("proxy": {"upstream_idle_timeout_seconds": 30},)"));
  // The service also has a proxy port, so siesta holds a connection to the upstream itself.
  {
    std::string text = slurp(dir / "siesta.json");
    const std::string at = R"("health": "/health",)";
    text.insert(text.find(at) + at.size(),
                R"( "listen": "127.0.0.1:)" + std::to_string(listen) + R"(",)");
    std::ofstream(dir / "siesta.json") << text;
  }
  ASSERT_TRUE(siesta.start()) << siesta.log();
  httplib::Client proxied("127.0.0.1", listen);
  ASSERT_EQ(proxied.Get("/echo")->status, 200);  // wakes it; the proxy keeps its connection

  // A direct client on a kept-alive connection, asking now and then for three timeouts.
  {
    httplib::Client direct("127.0.0.1", port);
    direct.set_keep_alive(true);
    ASSERT_EQ(direct.Get("/echo")->status, 200);
    // Both connections are there (siesta's pooled one and the direct one); one is counted.
    EXPECT_TRUE(eventually(
        [&] {
          const json s = signal(siesta);
          return s["state"] == "busy" && s["value"] == 1 && established_to(port) >= 2;
        },
        seconds(5)))
        << status_of(siesta, "web").dump() << " established " << established_to(port);
    const auto until = std::chrono::steady_clock::now() + milliseconds(3600);
    while (std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(400));
      ASSERT_EQ(direct.Get("/echo")->status, 200);
    }
    EXPECT_EQ(status_of(siesta, "web")["actual"], "running") << siesta.log();
  }  // the client leaves: it sleeps
  ASSERT_TRUE(eventually([&] { return stopped(siesta); }, seconds(8))) << siesta.log();
}

// A command says busy (exit 0) or idle (exit 1); one that fails is an error that neither keeps
// the service up nor puts it to sleep, and is logged once.
TEST_F(Activity, ACommandSaysBusyOrIdleAndAFailingOneIsNeither) {
  const std::string flag = (dir / "busy").string();
  std::ofstream(flag).put('x');
  const json activity = json::array(
      {{{"kind", "command"}, {"command", {"/bin/test", "-e", flag}}, {"interval_seconds", 0.3}},
       {{"kind", "command"},
        {"name", "broken"},
        {"command", {"/bin/sh", "-c", "exit 7"}},
        {"interval_seconds", 0.3}}});
  SiestaProcess siesta(dir.path(), config(activity.dump()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  std::this_thread::sleep_for(seconds(3));
  json st = status_of(siesta, "web");
  ASSERT_EQ(st["actual"], "running") << siesta.log();
  EXPECT_EQ(st["activity"][0]["state"], "busy");
  EXPECT_EQ(st["activity"][1]["state"], "error");
  EXPECT_EQ(st["activity"][1]["error"], "/bin/sh exited with 7");
  EXPECT_GE(st["activity"][1]["errors"].get<int>(), 3);
  EXPECT_GE(metric(siesta, R"(siesta_activity_errors_total{service="web",signal="broken"})"), 3);
  EXPECT_EQ(metric(siesta, R"(siesta_activity_up{service="web",signal="broken"})"), 0);

  std::filesystem::remove(flag);
  ASSERT_TRUE(eventually([&] { return stopped(siesta); }, seconds(8))) << siesta.log();
  // Logged once per change, not once per sample.
  const std::string log = siesta.log();
  std::size_t logged = 0;
  for (auto at = log.find("activity signal broken failed"); at != std::string::npos;
       at = log.find("activity signal broken failed", at + 1)) {
    ++logged;
  }
  EXPECT_EQ(logged, 1u) << log;
}

// People at the machine, from a utmp file the test writes: a session keeps it up.
TEST_F(Activity, ALoggedInSessionKeepsItUp) {
  const std::string utmp_path = (dir / "utmp").string();
  {
    utmp u{};
    u.ut_type = USER_PROCESS;
    std::strncpy(u.ut_user, "ann", sizeof u.ut_user);
    std::strncpy(u.ut_line, "siesta-test-no-such-tty", sizeof u.ut_line);
    std::ofstream(utmp_path, std::ios::binary).write(reinterpret_cast<const char*>(&u), sizeof u);
  }
  SiestaProcess siesta(dir.path(), config(R"([{"kind": "users", "utmp": ")" + utmp_path +
                                          R"(", "interval_seconds": 0.3}])"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  std::this_thread::sleep_for(seconds(3));
  ASSERT_EQ(status_of(siesta, "web")["actual"], "running") << siesta.log();
  EXPECT_EQ(signal(siesta)["value"], 1);
  std::ofstream(utmp_path, std::ios::trunc).flush();  // ann logs out
  ASSERT_TRUE(eventually([&] { return stopped(siesta); }, seconds(8))) << siesta.log();
}

// The GPU signal on a machine without nvidia-smi: "unavailable", never a crash, and no effect.
TEST_F(Activity, AGpuSignalWithoutTheToolIsUnavailable) {
  SiestaProcess siesta(dir.path(), config(R"([{"kind": "gpu", "interval_seconds": 0.3}])", "",
                                          R"("activity": [],)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(eventually([&] { return signal(siesta)["state"] == "error"; }, seconds(5)));
  EXPECT_EQ(signal(siesta)["error"].get<std::string>().substr(0, 12), "unavailable:");
  ASSERT_TRUE(eventually([&] { return stopped(siesta); }, seconds(8))) << siesta.log();
}

// The GPU signal runs the nvidia-smi that SIESTA_NVIDIA_SMI names, as the GPU budget does (it ran
// "nvidia-smi" from PATH whatever the variable said: a new user's re-trial of issue 21). The fake
// puts every process on one GPU busy at 90 %: the service's process group is among them.
TEST_F(Activity, AGpuSignalRunsTheToolSiestaNvidiaSmiNames) {
  const fs::path tool = dir / "nvidia-smi";
  std::ofstream(tool) << R"(#!/bin/sh
case "$1" in
  --query-gpu=*) echo '0, GPU-fake-0, 90, 5000' ;;
  --query-compute-apps=*) for p in $(ps -e -o pid=); do echo "$p, GPU-fake-0, 100"; done ;;
  *) exit 2 ;;
esac
)";
  fs::permissions(tool, fs::perms::owner_all);
  ::setenv("SIESTA_NVIDIA_SMI", tool.c_str(), 1);
  SiestaProcess siesta(dir.path(),
                       config(R"([{"kind": "gpu", "threshold": 50, "interval_seconds": 0.3}])", "",
                              R"("activity": [],)"));
  const bool started = siesta.start();
  ::unsetenv("SIESTA_NVIDIA_SMI");
  ASSERT_TRUE(started) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  std::this_thread::sleep_for(seconds(3));  // three timeouts
  EXPECT_EQ(status_of(siesta, "web")["actual"], "running") << siesta.log();
  EXPECT_EQ(signal(siesta)["value"], 90) << signal(siesta).dump();
}

// A real Prometheus: a query with a result above 0 keeps the service up; an empty one does not.
class PrometheusActivity : public Activity {
 protected:
  void SetUp() override {
    prom_port = free_port();
    // It scrapes itself every second, so up{job="prometheus"} is 1 once it has.
    std::ofstream(dir / "prometheus.yml")
        << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n"
           "    static_configs:\n      - targets: ['127.0.0.1:"
        << prom_port << "']\n";
    prom_pid =
        spawn_with_output({"prometheus", "--config.file=" + (dir / "prometheus.yml").string(),
                           "--storage.tsdb.path=" + (dir / "prom-data").string(),
                           "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                          dir / "prometheus.log");
    ASSERT_GT(prom_pid, 0);
    httplib::Client c("127.0.0.1", prom_port);
    ASSERT_TRUE(eventually(
        [&] {
          auto r = c.Get("/-/ready");
          return r && r->status == 200;
        },
        seconds(60)))
        << slurp(dir / "prometheus.log");
    ASSERT_TRUE(eventually(
        [&] {
          auto r = c.Get("/api/v1/query?query=up");
          return r && r->status == 200 &&
                 r->body.find("\"job\":\"prometheus\"") != std::string::npos;
        },
        seconds(30)))
        << "no scrape yet: " << slurp(dir / "prometheus.log");
  }
  void TearDown() override {
    if (prom_pid > 0) {
      ::kill(prom_pid, SIGTERM);
      ::waitpid(prom_pid, nullptr, 0);
    }
  }
  std::string signal_json(const std::string& query) {
    return json::array({{{"kind", "prometheus"},
                         {"url", "http://127.0.0.1:" + std::to_string(prom_port)},
                         {"query", query},
                         {"interval_seconds", 0.3}}})
        .dump();
  }
  int prom_port = 0;
  pid_t prom_pid = -1;
};

TEST_F(PrometheusActivity, ANonEmptyResultAboveZeroKeepsItUpAndAnEmptyOneLetsItSleep) {
  // Prometheus's own target is up: busy.
  SiestaProcess siesta(dir.path(), config(signal_json(R"(max(up{job="prometheus"}))")));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  std::this_thread::sleep_for(seconds(3));
  ASSERT_EQ(status_of(siesta, "web")["actual"], "running") << siesta.log();
  EXPECT_EQ(signal(siesta)["state"], "busy");
  EXPECT_EQ(signal(siesta)["value"], 1);
  siesta.stop();

  // A series that does not exist: an empty result, idle.
  SiestaProcess idle(dir.path(), config(signal_json(R"(up{job="none"})")));
  ASSERT_TRUE(idle.start()) << idle.log();
  ASSERT_EQ(idle.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(eventually([&] { return signal(idle)["state"] == "idle"; }, seconds(5)));
  ASSERT_TRUE(eventually([&] { return stopped(idle); }, seconds(8))) << idle.log();

  // A query Prometheus refuses: an error naming Prometheus's reason.
  SiestaProcess bad(dir.path(), config(signal_json("sum(")));
  ASSERT_TRUE(bad.start()) << bad.log();
  ASSERT_EQ(bad.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(eventually([&] { return signal(bad)["state"] == "error"; }, seconds(5)));
  EXPECT_EQ(signal(bad)["error"].get<std::string>().substr(0, 24), "query failed: bad_data: ");
  bad.stop();

  // +Inf is busy, and idle-status writes it as Prometheus's API does (JSON has no infinity).
  SiestaProcess inf(dir.path(), config(signal_json("vector(1/0)")));
  ASSERT_TRUE(inf.start()) << inf.log();
  ASSERT_EQ(inf.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(eventually([&] { return signal(inf)["state"] == "busy"; }, seconds(5)))
      << signal(inf).dump();
  EXPECT_EQ(signal(inf)["value"], "+Inf");
}

// Prometheus not listening: the error says what happened in words, not httplib's enum name
// ("cannot query http://...: Connection" read as a cut-off sentence).
TEST_F(Activity, APrometheusThatIsNotListeningIsAnErrorThatSaysSo) {
  const std::string url = "http://127.0.0.1:" + std::to_string(free_port());
  SiestaProcess siesta(
      dir.path(),
      config(
          json::array(
              {{{"kind", "prometheus"}, {"url", url}, {"query", "up"}, {"interval_seconds", 0.3}}})
              .dump()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/web/wake")->status, 200);
  ASSERT_TRUE(eventually([&] { return signal(siesta)["state"] == "error"; }, seconds(5)));
  EXPECT_EQ(signal(siesta)["error"],
            "cannot query " + url + ": could not connect: refused, unreachable or no such host");
}

// A signal sampled less often than the service goes to sleep can miss a busy spell: siesta says
// so at start-up, naming the signal; one sampled often enough is not mentioned.
TEST_F(Activity, ASignalSampledLessOftenThanTheTimeoutIsWarnedAbout) {
  SiestaProcess siesta(
      dir.path(),
      config(R"([{"name": "slow", "kind": "command", "command": ["true"], "interval_seconds": 5},
                 {"name": "quick", "kind": "command", "command": ["true"], "interval_seconds": 0.3}])"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(
      siesta.wait_log("activity signal slow is sampled every 5 s, less often than the "
                      "service goes to sleep (1.2 s idle)"))
      << siesta.log();
  EXPECT_EQ(siesta.log().find("activity signal quick is sampled"), std::string::npos);
}

}  // namespace
}  // namespace siesta::testing
