// The GPU budget end to end (docs/gpu.md): the real siesta binary, real processes that declare
// what they hold (gpu_memory_mib), the Ollama emulator reporting size_vram, and clients
// (cpp-httplib) that wake them. No GPU is needed: the budget is what the config says.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Svc {
  std::string name;
  int mib;
  int port = free_port();
  int listen = free_port();
  std::string config() const {
    const json cmd = json::array({SIESTA_TESTSERVER, "--port", std::to_string(port)});
    return "\"" + name + "\": {\"command\": " + cmd.dump() +
           ", \"upstream\": \"127.0.0.1:" + std::to_string(port) +
           "\", \"health\": \"/health\", \"listen\": \"127.0.0.1:" + std::to_string(listen) +
           "\", \"gpu_memory_mib\": " + std::to_string(mib) + "}";
  }
};

class Gpu : public ::testing::Test {
 protected:
  TempDir dir;
  // A 1000 MiB card: a and b (600 each) never fit together; c (300) fits beside either.
  Svc a{"a", 600}, b{"b", 600}, c{"c", 300};

  std::string config(const std::string& gpu_extra = "") const {
    return R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}])" + gpu_extra +
           R"(}, "services": {)" + a.config() + "," + b.config() + "," + c.config() + "}}";
  }
  static httplib::Result wake(const SiestaProcess& s, const std::string& name) {
    auto client = s.client();
    client.set_read_timeout(seconds(30));
    return client.Post("/admin/services/" + name + "/wake");
  }
};

TEST_F(Gpu, AWakeThatDoesNotFitStopsTheLeastRecentlyUsedIdleService) {
  SiestaProcess siesta(dir.path(), config());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(wake(siesta, "a")->status, 200);
  ASSERT_EQ(wake(siesta, "c")->status, 200);  // 900 of 1000 held: fits
  EXPECT_EQ(status_of(siesta, "a")["actual"], "running");
  json gpu = get_json(siesta, "/admin/idle-status")["gpu"];
  EXPECT_EQ(gpu["devices"][0]["held_mib"], 900) << gpu;
  EXPECT_EQ(gpu["devices"][0]["free_mib"], 100) << gpu;

  // b needs 600: a (used before c) goes, c stays.
  auto res = wake(siesta, "b");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_EQ(status_of(siesta, "a")["actual"], "stopped");
  EXPECT_EQ(status_of(siesta, "b")["actual"], "running");
  EXPECT_EQ(status_of(siesta, "c")["actual"], "running");
  EXPECT_TRUE(siesta.wait_log("Stopping service a (make_room)...")) << siesta.log();
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_evictions_total{reason="make_room"})"), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_memory_budget_bytes{device="0"})"), 1000.0 * 1048576);
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_memory_free_bytes{device="0"})"), 100.0 * 1048576);
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_service_memory_bytes{service="b",device="0"})"),
            600.0 * 1048576);
  gpu = get_json(siesta, "/admin/idle-status")["gpu"];
  ASSERT_EQ(gpu["holders"].size(), 2u) << gpu;
}

TEST_F(Gpu, AWakeWaitsForInFlightWorkThenGetsA503NamingTheHolder) {
  SiestaProcess siesta(dir.path(), config(R"(, "wait_seconds": 1)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(wake(siesta, "a")->status, 200);
  // A stream of 4 s keeps a in flight.
  std::thread streaming([&] {
    httplib::Client proxy("127.0.0.1", a.listen);
    proxy.set_read_timeout(seconds(30));
    auto r = proxy.Get("/stream?n=40&interval_ms=100");
    EXPECT_TRUE(r && r->status == 200);
  });
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "a")["in_flight"] == 1; }))
      << status_of(siesta, "a");
  const auto t0 = std::chrono::steady_clock::now();
  auto res = wake(siesta, "b");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503) << res->body;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "unavailable") << body;
  EXPECT_NE(
      body["error"]["message"].get<std::string>().find("held by service a (600 MiB, in flight)"),
      std::string::npos)
      << body;
  EXPECT_GE(took, milliseconds(1000));                     // it waited gpu.wait_seconds first
  EXPECT_LT(took, seconds(4));                             // not for the stream to end
  EXPECT_EQ(status_of(siesta, "a")["actual"], "running");  // never stopped under a request
  EXPECT_EQ(status_of(siesta, "b")["actual"], "stopped");
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_waits_total{outcome="timed_out"})"), 1);
  EXPECT_EQ(metric(siesta, "siesta_gpu_waiting"), 0);
  streaming.join();
}

TEST_F(Gpu, MoreThanTheBudgetIsRefusedAtOnceAndADesiredOnServiceIsNeverStopped) {
  Svc big{"big", 1200};
  SiestaProcess siesta(dir.path(),
                       R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]}, "services": {)" +
                           a.config() + "," + b.config() + "," + big.config() + "}}");
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = wake(siesta, "big");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("more than its budget of 1000 MiB"), std::string::npos) << res->body;

  ASSERT_EQ(siesta.client()
                .Post("/admin/services/a/desired", R"({"desired": "on"})", "application/json")
                ->status,
            200);
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "a")["actual"] == "running"; }));
  res = wake(siesta, "b");
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("service a (600 MiB, desired on or idle sleep disabled)"),
            std::string::npos)
      << res->body;
  EXPECT_EQ(status_of(siesta, "a")["actual"], "running");
  // Both refusals counted, though neither waited: the alert watches cannot_fit.
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_waits_total{outcome="cannot_fit"})"), 2);
  EXPECT_EQ(metric(siesta, "siesta_gpu_waiting"), 0);
}

TEST_F(Gpu, AnExclusiveGroupStopsTheOtherWhateverTheMemory) {
  SiestaProcess siesta(dir.path(), config(R"(, "exclusive": [["a", "c"]])"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(wake(siesta, "a")->status, 200);
  ASSERT_EQ(wake(siesta, "c")->status, 200);  // 900 MiB would fit; the group says no
  EXPECT_EQ(status_of(siesta, "a")["actual"], "stopped");
  EXPECT_EQ(status_of(siesta, "c")["actual"], "running");
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["gpu"]["exclusive"],
            json::parse(R"([["a","c"]])"));
}

// The Ollama emulator reports each loaded model's size_vram in /api/ps (2e9 bytes, ~1907 MiB):
// a wake that needs that room unloads the model (LRU, before its server), not the server.
TEST_F(Gpu, AModelsSizeVramCountsAndTheModelGoesBeforeItsServer) {
  const int upstream = free_port(), listen = free_port();
  const json cmd = json::array({"python3", SIESTA_SOURCE_DIR "/tests/support/ollama_emulator.py",
                                "--port", std::to_string(upstream), "--load-ms", "50"});
  Svc whisper{"whisper", 1500};
  SiestaProcess siesta(
      dir.path(),
      R"({"idle_check_interval_minutes": 0.01, "gpu": {"devices": [{"id": 0, "memory_mib": 3000}]},
          "services": {"ollama": {"command": )" +
          cmd.dump() + R"(, "upstream": "127.0.0.1:)" + std::to_string(upstream) +
          R"(", "health": "/api/version", "listen": "127.0.0.1:)" + std::to_string(listen) +
          R"(", "gpu_memory_mib": 100}, )" + whisper.config() +
          R"(}, "models": {"llama3.2:3b": {"provider": "ollama"}}})");
  ASSERT_TRUE(siesta.start()) << siesta.log();
  httplib::Client via("127.0.0.1", listen);
  via.set_read_timeout(seconds(30));
  auto gen =
      via.Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "hi"})", "application/json");
  ASSERT_TRUE(gen && gen->status == 200) << siesta.log();
  // size_vram arrives with the next reconcile of /api/ps.
  ASSERT_TRUE(eventually([&] {
    return metric(siesta, R"(siesta_gpu_model_memory_bytes{model="llama3.2:3b",device="0"})") ==
           2e9;
  })) << get_json(siesta, "/admin/idle-status")["gpu"];
  auto res = wake(siesta, "whisper");  // 3000 - 100 - 1907 = 993 free: the model must go
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_TRUE(siesta.wait_log("GPU: unloading model llama3.2:3b to make room")) << siesta.log();
  EXPECT_EQ(status_of(siesta, "ollama")["actual"], "running");  // the server stays
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["models"]["llama3.2:3b"]["loaded"], false);
  EXPECT_EQ(metric(siesta, R"(siesta_model_unloads_total{model="llama3.2:3b",reason="make_room"})"),
            1);
  EXPECT_EQ(metric(siesta, R"(siesta_gpu_evictions_total{reason="make_room"})"), 1);
}

}  // namespace
}  // namespace siesta::testing
