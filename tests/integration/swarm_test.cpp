// The Swarm backend end to end on a real single-node swarm: the real siesta binary, a dockerd of
// its own in swarm mode (scripts/test.sh starts it; SIESTA_SWARM_DOCKER_HOST names it), real
// Swarm services of the busybox test image on the host network, and the docker CLI as the
// independent witness of the replica counts. Without a swarm engine these tests fail: they are
// never skipped. Each test re-initialises the swarm if a previous one left it.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "docker_cli.h"
#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kImage = "siesta-test/busybox:1";

std::string swarm_engine() {
  return engine_from_env("SIESTA_SWARM_DOCKER_HOST", "unix:///tmp/siesta-swarm/docker.sock");
}

std::pair<int, std::string> docker(std::vector<std::string> args) {
  return docker_at(swarm_engine(), std::move(args));
}

std::string replicas(const std::string& service) {
  return docker({"service", "inspect", "-f", "{{.Spec.Mode.Replicated.Replicas}}", service}).second;
}
std::string replicas_label(const std::string& service) {
  return docker({"service", "inspect", "-f", "{{index .Spec.Labels \"siesta.replicas\"}}", service})
      .second;
}
// Tasks of the service whose container runs (docker service ps shows them as Running).
int running_tasks(const std::string& service) {
  auto [rc, out] = docker({"service", "ps", "-q", "--filter", "desired-state=running", "--format",
                           "{{.CurrentState}}", service});
  if (rc != 0) return -1;
  int n = 0;
  for (std::size_t at = out.find("Running"); at != std::string::npos;
       at = out.find("Running", at + 1)) {
    ++n;
  }
  return n;
}

class Swarm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [rc, out] = docker({"info", "-f", "{{.Swarm.LocalNodeState}}"});
    ASSERT_EQ(rc, 0) << "No Docker engine at " << swarm_engine()
                     << ". Start one with: scripts/docker-engine.sh start /tmp/siesta-swarm ("
                     << out << ")";
    if (out != "active") {
      auto [irc, iout] = docker({"swarm", "init", "--advertise-addr", "127.0.0.1"});
      ASSERT_EQ(irc, 0) << iout;
    }
  }

  void TearDown() override {
    for (const auto& name : services_) docker({"service", "rm", name});
  }

  // A unique Swarm service on the host network running `command`, removed at the end. --init
  // makes the task exit at once on SIGTERM (busybox as PID 1 ignores it), so a wake right after
  // a sleep does not wait for the 10 s grace period.
  std::string create(const std::string& role, int replica_count, std::vector<std::string> options,
                     std::vector<std::string> command) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string n = "sst-" + std::to_string(::getpid()) + "-" + info->name() + "-" + role;
    if (n.size() > 63) n = n.substr(n.size() - 63);
    while (!n.empty() && !std::isalnum(static_cast<unsigned char>(n.front()))) n.erase(0, 1);
    services_.push_back(n);
    std::vector<std::string> args = {
        "service",   "create", "-d",     "--name",     n,
        "--network", "host",   "--init", "--replicas", std::to_string(replica_count)};
    args.insert(args.end(), options.begin(), options.end());
    args.push_back(kImage);
    args.insert(args.end(), command.begin(), command.end());
    auto [rc, out] = docker(args);
    EXPECT_EQ(rc, 0) << out;
    return n;
  }

  static std::string config(const std::string& services, const std::string& top = "") {
    return R"({"idle_check_interval_minutes": 10, "docker": {"host": ")" + swarm_engine() +
           R"(", "swarm": true, "label_discovery": true},)" + top + R"("services": {)" + services +
           "}}";
  }

  TempDir dir;
  std::vector<std::string> services_;
};

TEST_F(Swarm, ALabelledServiceSleepsAtItsDeadlineAndWakesThroughSiestasPort) {
  const int port = free_port();
  const int listen = free_port();
  const std::string web =
      create("web", 1,
             {"--label", "siesta.enable=true", "--label", "siesta.name=web", "--label",
              "siesta.idle-timeout=4s", "--label",
              "siesta.upstream=127.0.0.1:" + std::to_string(port), "--label", "siesta.health=/",
              "--label", "siesta.listen=127.0.0.1:" + std::to_string(listen)},
             {"httpd", "-f", "-p", "127.0.0.1:" + std::to_string(port), "-h", "/www"});
  ASSERT_TRUE(eventually([&] { return running_tasks(web) == 1; }, seconds(30)));
  SiestaProcess siesta(dir.path(), config(""));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "running"; }, seconds(5)))
      << status_of(siesta, "web") << siesta.log();
  const auto seen = Clock::now();
  EXPECT_EQ(get_json(siesta, "/admin/services")["web"]["backend"], "swarm");

  // Nobody uses it: scaled to 0 at its deadline (4 s after siesta first saw it running), with
  // the count it had remembered on the service.
  ASSERT_TRUE(eventually([&] { return replicas(web) == "0"; }, seconds(15))) << siesta.log();
  const double slept_after = std::chrono::duration<double>(Clock::now() - seen).count();
  EXPECT_GT(slept_after, 3.0);
  EXPECT_LT(slept_after, 8.0);
  EXPECT_EQ(replicas_label(web), "1");
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "stopped"; }, seconds(15)))
      << status_of(siesta, "web");

  // A request through siesta's port scales it back and is answered by the service.
  httplib::Client via("127.0.0.1", listen);
  via.set_read_timeout(seconds(60));
  const auto asked = Clock::now();
  auto res = via.Get("/");
  ASSERT_TRUE(res) << siesta.log();
  const double wake_s = std::chrono::duration<double>(Clock::now() - asked).count();
  ASSERT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_EQ(res->body, "ok\n");
  EXPECT_TRUE(res->has_header("X-Siesta-Wake"));
  EXPECT_EQ(replicas(web), "1");
  EXPECT_EQ(running_tasks(web), 1);
  std::printf("[ measured ] Swarm wake 0 -> 1 through the proxy: %.1f s\n", wake_s);
  EXPECT_EQ(metric(siesta, R"(siesta_service_wakes_total{reason="request",service="web"})"), 1);
}

TEST_F(Swarm, ThreeReplicasSleepToZeroWakeToThreeAndARestartKeepsTheCount) {
  const std::string svc = create("three", 3, {}, {"sleep", "3600"});
  ASSERT_TRUE(eventually([&] { return running_tasks(svc) == 3; }, seconds(40)));
  const std::string cfg =
      config(R"("three": {"backend": "swarm", "swarm_service": ")" + svc + R"("})",
             R"("state_file": ")" + (dir.path() / "state.json").string() + R"(",)");
  {
    SiestaProcess siesta(dir.path(), cfg);
    ASSERT_TRUE(siesta.start()) << siesta.log();
    ASSERT_TRUE(eventually([&] { return actual(siesta, "three") == "running"; }, seconds(5)))
        << status_of(siesta, "three");
    auto res = siesta.client().Post("/admin/services/three/sleep");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(replicas(svc), "0");
    EXPECT_EQ(replicas_label(svc), "3");
    // stop() returns once the tasks are gone.
    EXPECT_EQ(running_tasks(svc), 0);
    EXPECT_EQ(actual(siesta, "three"), "stopped");

    res = siesta.client().Post("/admin/services/three/wake");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body << siesta.log();
    EXPECT_EQ(replicas(svc), "3");
    EXPECT_EQ(running_tasks(svc), 3);
    ASSERT_EQ(siesta.client().Post("/admin/services/three/sleep")->status, 200);
    ASSERT_EQ(replicas(svc), "0");
    siesta.stop();
  }
  // A redeploy that drops the label (as `docker stack deploy` of a file without it would):
  // the state file still knows the count.
  ASSERT_EQ(docker({"service", "update", "-d", "--label-rm", "siesta.replicas", svc}).first, 0);
  ASSERT_EQ(replicas_label(svc), "");
  json state = json::parse(slurp(dir.path() / "state.json"));
  EXPECT_NE(state.dump().find(R"("replicas":3)"), std::string::npos) << state.dump();

  SiestaProcess again(dir.path(), cfg);
  ASSERT_TRUE(again.start()) << again.log();
  auto res = again.client().Post("/admin/services/three/wake");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << again.log();
  EXPECT_EQ(replicas(svc), "3");
}

TEST_F(Swarm, AWakeWaitsForTheImagesHealthcheck) {
  // Healthy only 3 s after the task started (the start period keeps the failing checks before
  // that from counting). No siesta health check: the task's state is all siesta reads, and
  // swarm reports a task with a HEALTHCHECK as running only once it is healthy.
  const std::string svc = create("health", 0,
                                 {"--health-cmd", "test -f /tmp/ok", "--health-interval", "1s",
                                  "--health-retries", "30", "--health-start-period", "20s"},
                                 {"sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 3600"});
  SiestaProcess siesta(
      dir.path(), config(R"("health": {"backend": "swarm", "swarm_service": ")" + svc + R"("})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  const auto asked = Clock::now();
  auto res = siesta.client().Post("/admin/services/health/wake");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_GT(std::chrono::duration<double>(Clock::now() - asked).count(), 3.0);
  auto [rc, health] = docker(
      {"ps", "--filter", "label=com.docker.swarm.service.name=" + svc, "--format", "{{.Status}}"});
  ASSERT_EQ(rc, 0);
  EXPECT_NE(health.find("(healthy)"), std::string::npos) << health;
}

TEST_F(Swarm, AServiceScaledBySomeoneElseShowsAtOnce) {
  const std::string svc = create("outside", 0, {}, {"sleep", "3600"});
  // The reconcile interval is 10 minutes: only the event stream can show the scale in time.
  SiestaProcess siesta(
      dir.path(), config(R"("outside": {"backend": "swarm", "swarm_service": ")" + svc + R"("})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "stopped"; }, seconds(5)))
      << status_of(siesta, "outside");

  ASSERT_EQ(docker({"service", "scale", "-d", svc + "=2"}).first, 0);
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "running"; }, seconds(1)))
      << status_of(siesta, "outside") << siesta.log();
  ASSERT_TRUE(eventually([&] { return running_tasks(svc) == 2; }, seconds(30)));
  EXPECT_EQ(actual(siesta, "outside"), "running");

  ASSERT_EQ(docker({"service", "scale", "-d", svc + "=0"}).first, 0);
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "stopped"; }, seconds(1)))
      << status_of(siesta, "outside");
}

TEST_F(Swarm, TheEngineLeavingTheSwarmIsAClearErrorState) {
  const std::string svc = create("leave", 1, {}, {"sleep", "3600"});
  SiestaProcess siesta(
      dir.path(), config(R"("leave": {"backend": "swarm", "swarm_service": ")" + svc + R"("})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "leave") == "running"; }, seconds(5)))
      << status_of(siesta, "leave");

  ASSERT_EQ(docker({"swarm", "leave", "--force"}).first, 0);
  services_.clear();  // gone with the swarm
  // No event says so; siesta reads the node's swarm state every 2 s.
  ASSERT_TRUE(eventually([&] { return actual(siesta, "leave") == "error"; }, seconds(6)))
      << status_of(siesta, "leave") << siesta.log();
  const std::string error = status_of(siesta, "leave")["last_error"].get<std::string>();
  EXPECT_NE(error.find("the Docker engine is not in a swarm"), std::string::npos) << error;
  EXPECT_TRUE(siesta.wait_log("left the swarm"));
  // It was running when last seen: served in error (issue 18: a control-plane outage is not
  // the service's), so a wake has nothing to start; siesta keeps running.
  EXPECT_EQ(status_of(siesta, "leave")["serving_in_error"], true);
  auto res = siesta.client().Post("/admin/services/leave/wake");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(actual(siesta, "leave"), "error");
  EXPECT_TRUE(siesta.running());

  // Back in a swarm (a new one: the service is gone), the error is the service's absence.
  ASSERT_EQ(docker({"swarm", "init", "--advertise-addr", "127.0.0.1"}).first, 0);
  ASSERT_TRUE(eventually(
      [&] { return status_of(siesta, "leave").dump().find("does not exist") != std::string::npos; },
      seconds(6)))
      << status_of(siesta, "leave");
}

}  // namespace
}  // namespace siesta::testing
