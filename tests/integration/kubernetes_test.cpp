// The Kubernetes backend end to end: the real siesta binary against the stand-in API server
// (support/kube/kube_apiserver.py: HTTPS with certificates made by openssl, answers and watch
// streams in the shapes of support/kube/shapes.json), whose workloads are real processes
// (siesta-testserver on loopback) started and stopped as their replicas go above and to 0. No
// real Kubernetes can run here; Python's http.client-free stand-in is driven through its own
// /_stand-in/ endpoints, and its workloads through the API as kubectl would.
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The stand-in API server, run for one test.
class StandIn {
 public:
  explicit StandIn(const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    pid_ = spawn_with_output(
        {"python3", std::string(SIESTA_SOURCE_DIR) + "/tests/support/kube/kube_apiserver.py",
         "--dir", dir_.string()},
        dir_ / "out.log");
    eventually(
        [&] {
          const std::string out = slurp(dir_ / "out.log");
          auto at = out.find("PORT ");
          if (at == std::string::npos) return false;
          port_ = std::stoi(out.substr(at + 5));
          return true;
        },
        seconds(30));
  }
  ~StandIn() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  int port() const { return port_; }
  const fs::path& dir() const { return dir_; }
  std::string log() const { return slurp(dir_ / "out.log"); }

  // A request to the API as kubectl would make it (bearer token) or to /_stand-in/.
  json call(const std::string& method, const std::string& path, const json& body = nullptr,
            int* status = nullptr) const {
    httplib::SSLClient cli("127.0.0.1", port_);
    cli.set_ca_cert_path((dir_ / "ca.crt").c_str());
    cli.enable_server_certificate_verification(true);
    cli.set_bearer_token_auth("stand-in-token");
    cli.set_read_timeout(seconds(10));
    httplib::Result res = method == "GET" ? cli.Get(path)
                          : method == "POST"
                              ? cli.Post(path, body.dump(), "application/json")
                              : cli.Patch(path, body.dump(), "application/merge-patch+json");
    if (!res) {
      ADD_FAILURE() << method << " " << path << ": " << httplib::to_string(res.error());
      return nullptr;
    }
    if (status != nullptr) *status = res->status;
    return json::parse(res->body, nullptr, false);
  }
  json workload(const std::string& kind, const std::string& name) const {
    return call("GET", "/apis/apps/v1/namespaces/default/" + kind + "s/" + name);
  }
  int replicas(const std::string& kind, const std::string& name) const {
    return workload(kind, name)["spec"]["replicas"].get<int>();
  }
  std::string annotation(const std::string& kind, const std::string& name,
                         const std::string& key) const {
    json a = workload(kind, name)["metadata"]["annotations"];
    return a.is_object() && a.contains(key) ? a[key].get<std::string>() : "";
  }
  void auth(const std::string& mode) const { call("POST", "/_stand-in/auth", {{"mode", mode}}); }
  // How many requests matching `needle` it has served.
  int requests(const std::string& needle) const {
    int n = 0;
    for (const auto& r : call("GET", "/_stand-in/requests")) {
      if ((r[0].get<std::string>() + " " + r[1].get<std::string>()).find(needle) !=
          std::string::npos) {
        ++n;
      }
    }
    return n;
  }

  // A workload running siesta-testserver on `port` while its replicas are above 0.
  void create(const std::string& kind, const std::string& name, int replicas, int port,
              json labels = json::object(), json annotations = json::object()) const {
    call("POST", "/_stand-in/workloads",
         {{"kind", kind},
          {"name", name},
          {"replicas", replicas},
          {"labels", labels},
          {"annotations", annotations},
          {"command", {SIESTA_TESTSERVER, "--port", std::to_string(port)}},
          {"port", port}});
  }

  // A kubeconfig for it: a bearer token, or (client_cert) the client certificate inline.
  fs::path kubeconfig(bool client_cert = false) const {
    const fs::path path = dir_ / (client_cert ? "kubeconfig-cert.yaml" : "kubeconfig.yaml");
    std::ofstream out(path);
    out << "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n"
        << "clusters:\n- name: stand-in\n  cluster:\n    server: https://127.0.0.1:" << port_
        << "\n    certificate-authority: ca.crt\n"
        << "contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: siesta\n"
        << "    namespace: default\n"
        << "users:\n- name: siesta\n  user:\n";
    if (client_cert) {
      out << "    client-certificate-data: " << base64(slurp(dir_ / "client.crt")) << "\n"
          << "    client-key-data: " << base64(slurp(dir_ / "client.key")) << "\n";
    } else {
      out << "    token: stand-in-token\n";
    }
    return path;
  }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

class Kubernetes : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GT(api.port(), 0) << api.log(); }

  std::string config(const std::string& services, const std::string& top = "",
                     bool client_cert = false) const {
    return R"({"idle_check_interval_minutes": 10, "kubernetes": {"kubeconfig": ")" +
           api.kubeconfig(client_cert).string() + R"("},)" + top + R"("services": {)" + services +
           "}}";
  }

  TempDir dir;
  StandIn api{dir.path() / "api"};
};

TEST_F(Kubernetes, ALabelledDeploymentSleepsAtItsDeadlineAndWakesThroughSiestasPort) {
  const int port = free_port();
  const int listen = free_port();
  api.create("deployment", "web", 1, port, {{"siesta.io/enable", "true"}},
             {{"siesta.io/idle-timeout", "4s"},
              {"siesta.io/upstream", "127.0.0.1:" + std::to_string(port)},
              {"siesta.io/health", "/health"},
              {"siesta.io/listen", "127.0.0.1:" + std::to_string(listen)}});
  SiestaProcess siesta(dir.path(), config(""));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "running"; }, seconds(10)))
      << status_of(siesta, "web") << siesta.log();
  const auto seen = Clock::now();
  EXPECT_EQ(get_json(siesta, "/admin/services")["web"]["backend"], "kubernetes");

  // Nobody uses it: scaled to 0 at its deadline, with the count it had on the annotation.
  ASSERT_TRUE(eventually([&] { return api.replicas("deployment", "web") == 0; }, seconds(15)))
      << siesta.log();
  const double slept_after = std::chrono::duration<double>(Clock::now() - seen).count();
  EXPECT_GT(slept_after, 3.0);
  EXPECT_LT(slept_after, 8.0);
  EXPECT_EQ(api.annotation("deployment", "web", "siesta.io/replicas"), "1");
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "stopped"; }, seconds(10)));
  // The workload's process is gone.
  httplib::Client direct("127.0.0.1", port);
  EXPECT_FALSE(direct.Get("/health"));

  // A request through siesta's port scales it back and is answered by the workload's process.
  httplib::Client via("127.0.0.1", listen);
  via.set_read_timeout(seconds(30));
  const auto asked = Clock::now();
  auto res = via.Get("/");
  ASSERT_TRUE(res) << siesta.log();
  const double wake_s = std::chrono::duration<double>(Clock::now() - asked).count();
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_TRUE(res->has_header("X-Siesta-Wake"));
  EXPECT_EQ(api.replicas("deployment", "web"), 1);
  std::printf("[ measured ] Kubernetes (stand-in) wake 0 -> 1 through the proxy: %.2f s\n", wake_s);
  EXPECT_EQ(metric(siesta, R"(siesta_service_wakes_total{reason="request",service="web"})"), 1);
}

TEST_F(Kubernetes, ThreeReplicasSleepToZeroWakeToThreeAndARestartKeepsTheCount) {
  api.create("deployment", "three", 3, free_port());
  const std::string cfg =
      config(R"("three": {"backend": "kubernetes", "workload": "deployment/three"})",
             R"("state_file": ")" + (dir.path() / "state.json").string() + R"(",)");
  {
    SiestaProcess siesta(dir.path(), cfg);
    ASSERT_TRUE(siesta.start()) << siesta.log();
    ASSERT_TRUE(eventually([&] { return actual(siesta, "three") == "running"; }, seconds(10)))
        << status_of(siesta, "three");
    auto res = siesta.client().Post("/admin/services/three/sleep");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body << siesta.log();
    EXPECT_EQ(api.replicas("deployment", "three"), 0);
    EXPECT_EQ(api.annotation("deployment", "three", "siesta.io/replicas"), "3");
    // stop() returns once the pods are gone.
    EXPECT_EQ(api.workload("deployment", "three")["status"]["replicas"], 0);
    EXPECT_EQ(actual(siesta, "three"), "stopped");

    res = siesta.client().Post("/admin/services/three/wake");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body << siesta.log();
    EXPECT_EQ(api.replicas("deployment", "three"), 3);
    EXPECT_EQ(api.workload("deployment", "three")["status"]["readyReplicas"], 3);
    ASSERT_EQ(siesta.client().Post("/admin/services/three/sleep")->status, 200);
    ASSERT_EQ(api.replicas("deployment", "three"), 0);
    siesta.stop();
  }
  // A redeploy that drops the annotation, and from now on the role deploy/kubernetes ships
  // (no patch on the workload itself): the state file still knows the count.
  api.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/three",
           {{"metadata", {{"annotations", {{"siesta.io/replicas", nullptr}}}}}});
  ASSERT_EQ(api.annotation("deployment", "three", "siesta.io/replicas"), "");
  api.auth("role");
  json state = json::parse(slurp(dir.path() / "state.json"));
  EXPECT_NE(state.dump().find(R"("replicas":3)"), std::string::npos) << state.dump();

  SiestaProcess again(dir.path(), cfg);
  ASSERT_TRUE(again.start()) << again.log();
  auto res = again.client().Post("/admin/services/three/wake");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << again.log();
  EXPECT_EQ(api.replicas("deployment", "three"), 3);
  // With that role a sleep still works (the scale subresource); the annotation is refused,
  // said once in the log.
  res = again.client().Post("/admin/services/three/sleep");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << again.log();
  EXPECT_EQ(api.replicas("deployment", "three"), 0);
  EXPECT_TRUE(again.wait_log("could not write annotation siesta.io/replicas")) << again.log();
  EXPECT_NE(again.log().find("403 Forbidden"), std::string::npos);
}

TEST_F(Kubernetes, AStatefulSetWithAClientCertificateSleepsAndWakes) {
  api.create("statefulset", "db", 2, free_port());
  SiestaProcess siesta(
      dir.path(), config(R"("db": {"backend": "kubernetes", "workload": "statefulset/db"})", "",
                         /*client_cert=*/true));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "db") == "running"; }, seconds(10)))
      << status_of(siesta, "db") << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/db/sleep")->status, 200) << siesta.log();
  EXPECT_EQ(api.replicas("statefulset", "db"), 0);
  ASSERT_EQ(siesta.client().Post("/admin/services/db/wake")->status, 200) << siesta.log();
  EXPECT_EQ(api.replicas("statefulset", "db"), 2);
  // Every call was made with the certificate: the stand-in had no token to accept.
  EXPECT_NE(siesta.log().find("kubeconfig"), std::string::npos);
}

TEST_F(Kubernetes, AWorkloadScaledBySomeoneElseShowsAtOnce) {
  api.create("deployment", "outside", 0, free_port());
  // The reconcile interval is 10 minutes: only the watch can show the scale in time.
  SiestaProcess siesta(
      dir.path(),
      config(R"("outside": {"backend": "kubernetes", "workload": "deployment/outside"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "stopped"; }, seconds(5)))
      << status_of(siesta, "outside");
  api.call("POST", "/_stand-in/scale", {{"workload", "deployment/outside"}, {"replicas", 2}});
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "running"; }, seconds(1)))
      << status_of(siesta, "outside") << siesta.log();
  api.call("POST", "/_stand-in/scale", {{"workload", "deployment/outside"}, {"replicas", 0}});
  ASSERT_TRUE(eventually([&] { return actual(siesta, "outside") == "stopped"; }, seconds(1)))
      << status_of(siesta, "outside");
}

TEST_F(Kubernetes, AnExpiredWatchIsListedAgainAndWatchedFromTheNewList) {
  api.create("deployment", "gone", 0, free_port());
  SiestaProcess siesta(
      dir.path(), config(R"("gone": {"backend": "kubernetes", "workload": "deployment/gone"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "gone") == "stopped"; }, seconds(5)));
  const std::string list = "GET /apis/apps/v1/namespaces/default/deployments?resourceVersion";
  ASSERT_TRUE(eventually([&] { return api.requests("deployments?watch=1") >= 1; }, seconds(5)));
  const int lists = api.requests("GET /apis/apps/v1/namespaces/default/deployments") -
                    api.requests("deployments?watch=1");
  (void)list;

  // The history is compacted and open watches end: the watch from the old version gets
  // 410 Gone as an ERROR event, and siesta lists again.
  api.call("POST", "/_stand-in/compact", json::object());
  ASSERT_TRUE(eventually(
      [&] {
        return api.requests("GET /apis/apps/v1/namespaces/default/deployments") -
                   api.requests("deployments?watch=1") >
               lists;
      },
      seconds(5)))
      << siesta.log();
  EXPECT_TRUE(siesta.wait_log("too old resource version")) << siesta.log();
  // Every watch asked for bookmarks: both counted in one snapshot of the requests (read one
  // after the other, a watch arriving between the reads made them differ: 8 vs 7 in a CI run).
  const json seen = api.call("GET", "/_stand-in/requests");
  auto count = [&](const std::string& needle) {
    return std::count_if(seen.begin(), seen.end(), [&](const json& r) {
      return r[1].get<std::string>().find(needle) != std::string::npos;
    });
  };
  EXPECT_GT(count("watch=1"), 0);
  EXPECT_EQ(count("allowWatchBookmarks=true"), count("watch=1"));
  // And the new watch sees the next change at once.
  api.call("POST", "/_stand-in/scale", {{"workload", "deployment/gone"}, {"replicas", 1}});
  ASSERT_TRUE(eventually([&] { return actual(siesta, "gone") == "running"; }, seconds(2)))
      << status_of(siesta, "gone") << siesta.log();
}

TEST_F(Kubernetes, UnauthorizedAndForbiddenAreAClearErrorState) {
  api.create("deployment", "locked", 0, free_port());
  SiestaProcess siesta(
      dir.path(),
      config(R"("locked": {"backend": "kubernetes", "workload": "deployment/locked"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "locked") == "stopped"; }, seconds(5)));

  // The token is revoked: the next list (after the watch ends) and every read fail with 401.
  api.auth("401");
  api.call("POST", "/_stand-in/compact", json::object());
  ASSERT_TRUE(eventually([&] { return actual(siesta, "locked") == "error"; }, seconds(5)))
      << status_of(siesta, "locked") << siesta.log();
  std::string error = status_of(siesta, "locked")["last_error"].get<std::string>();
  EXPECT_NE(error.find("401 Unauthorized"), std::string::npos) << error;
  EXPECT_NE(error.find("deployment/locked"), std::string::npos) << error;

  // RBAC refuses: a wake fails with the API's own message.
  api.auth("403");
  auto res = siesta.client().Post("/admin/services/locked/wake");
  ASSERT_TRUE(res);
  EXPECT_GE(res->status, 500) << res->body;
  EXPECT_NE(res->body.find("is forbidden: User"), std::string::npos) << res->body;
  error = status_of(siesta, "locked")["last_error"].get<std::string>();
  EXPECT_NE(error.find("403 Forbidden"), std::string::npos) << error;

  // Nothing was scaled; with access restored a wake works again.
  api.auth("full");
  EXPECT_EQ(api.replicas("deployment", "locked"), 0);
  res = siesta.client().Post("/admin/services/locked/wake");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_EQ(actual(siesta, "locked"), "running");
}

TEST_F(Kubernetes, AMissingWorkloadIsANotFoundError) {
  SiestaProcess siesta(
      dir.path(), config(R"("nope": {"backend": "kubernetes", "workload": "deployment/nope"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_TRUE(eventually([&] { return actual(siesta, "nope") == "error"; }, seconds(5)))
      << status_of(siesta, "nope");
  const std::string error = status_of(siesta, "nope")["last_error"].get<std::string>();
  EXPECT_NE(error.find("does not exist"), std::string::npos) << error;
  EXPECT_NE(error.find("404 NotFound: deployments.apps \"nope\" not found"), std::string::npos)
      << error;
}

}  // namespace
}  // namespace siesta::testing
