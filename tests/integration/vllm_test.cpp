// vLLM and OpenAI-compatible servers end to end: the real siesta binary in front of the vLLM
// emulator (tests/support/vllm_emulator.py, which follows vLLM's source: its sleep routes, a
// sleeping engine holding requests, the 404 without dev mode), started, slept, woken and stopped
// by siesta, with real sockets and cpp-httplib as the client.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kModel = "Qwen/Qwen3-0.6B";

class Vllm : public ::testing::Test {
 protected:
  TempDir dir;
  int upstream = free_port();
  int listen = free_port();

  // A "vllm" service running the emulator with `tiers` and `model_api`.
  std::string config(const std::string& tiers, std::vector<std::string> emulator_args = {},
                     const std::string& model_api = "vllm") {
    json cmd = json::array({"python3", SIESTA_SOURCE_DIR "/tests/support/vllm_emulator.py",
                            "--port", std::to_string(upstream), "--model", kModel});
    for (const auto& a : emulator_args) cmd.push_back(a);
    json service = {{"command", cmd},
                    {"upstream", "127.0.0.1:" + std::to_string(upstream)},
                    {"listen", "127.0.0.1:" + std::to_string(listen)},
                    {"model_api", model_api}};
    if (!tiers.empty()) service["sleep_tiers"] = json::parse(tiers);
    return json({{"idle_check_interval_minutes", 0.01}, {"services", {{"vllm", service}}}}).dump();
  }
  // vllm_sleep at level 1 after `minutes` idle, the stop after half an hour.
  static std::string sleep_then_stop(double minutes) {
    return json::array({{{"after_minutes", minutes}, {"action", "vllm_sleep"}, {"level", 1}},
                        {{"after_minutes", 30}, {"action", "stop"}}})
        .dump();
  }
  // Starts siesta and wakes the service through the admin API.
  static void start_awake(SiestaProcess& siesta) {
    ASSERT_TRUE(siesta.start()) << siesta.log();
    ASSERT_EQ(siesta.client().Post("/admin/services/vllm/wake")->status, 200);
  }
  httplib::Client via() const {
    httplib::Client c("127.0.0.1", listen);
    c.set_read_timeout(seconds(30));
    return c;
  }
  httplib::Result chat() const {
    return via().Post("/v1/chat/completions",
                      json({{"model", kModel},
                            {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}})
                          .dump(),
                      "application/json");
  }
  // Straight to the emulator, not through siesta (only while its process is not frozen).
  json emulator(const std::string& path) const {
    httplib::Client c("127.0.0.1", upstream);
    c.set_read_timeout(seconds(5));
    auto res = c.Get(path);
    return res ? json::parse(res->body, nullptr, false) : json();
  }
  std::vector<json> events(const std::string& kind) const {
    std::vector<json> out;
    const json all = emulator("/emulator/events");
    for (const auto& e : all) {
      if (e["kind"] == kind) out.push_back(e);
    }
    return out;
  }
  // The `dur=` of an X-Siesta-Wake header, in seconds; -1 without one.
  static double wake_duration(const std::string& header) {
    const auto at = header.find("dur=");
    return at == std::string::npos ? -1 : std::stod(header.substr(at + 4));
  }
};

TEST_F(Vllm, ARequestWakesTheSleepingEngineAndNeverReachesItAsleep) {
  // vllm_sleep after 0.01 min (0.6 s) idle; /wake_up takes 50 ms and the engine still says
  // is_sleeping: true for 150 ms after it answered.
  SiestaProcess siesta(dir.path(),
                       config(sleep_then_stop(0.01), {"--wake-ms", "50", "--wake-lag-ms", "150"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();

  auto first = chat();  // a cold start
  ASSERT_TRUE(first) << siesta.log();
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(first->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
  EXPECT_EQ(json::parse(first->body)["choices"][0]["message"]["content"], "Hello from vLLM");

  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: vllm_sleep", seconds(10)))
      << siesta.log();
  EXPECT_EQ(emulator("/is_sleeping"), json({{"is_sleeping", true}}));
  ASSERT_EQ(events("sleep").size(), 1u);
  EXPECT_EQ(events("sleep")[0]["level"], 1);
  json st = status_of(siesta, "vllm");
  EXPECT_EQ(st["actual"], "paused") << st;
  EXPECT_EQ(st["tier"], "vllm_sleep") << st;
  EXPECT_EQ(st["next_tier"], "stop") << st;
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["models"][kModel]["loaded"], false);

  // Through the proxy: siesta wakes the engine and waits for is_sleeping: false.
  const auto t0 = std::chrono::steady_clock::now();
  auto res = chat();
  const double whole = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  const std::string header = res->get_header_value("X-Siesta-Wake");
  EXPECT_EQ(header.rfind("warm-from=vllm_sleep; dur=", 0), 0u) << header;
  const double dur = wake_duration(header);
  // /wake_up (50 ms) plus the 150 ms lag: the request waited for the engine.
  EXPECT_GE(dur, 0.19) << header;
  EXPECT_LT(dur, 2.0) << header;
  std::printf("[ measured ] wake from vllm_sleep: dur=%.3f s, whole request %.3f s\n", dur, whole);

  ASSERT_EQ(events("wake_up").size(), 1u);
  // Every request the engine served arrived while it said it was awake.
  const auto served = events("request");
  ASSERT_EQ(served.size(), 2u);
  for (const auto& e : served) EXPECT_EQ(e["arrived_asleep"], false) << e;
  EXPECT_EQ(emulator("/is_sleeping"), json({{"is_sleeping", false}}));
  st = status_of(siesta, "vllm");
  EXPECT_EQ(st["actual"], "running") << st;
  EXPECT_EQ(metric(siesta, R"(siesta_service_tier_wakes_total{service="vllm",tier="vllm_sleep"})"),
            1);
  EXPECT_EQ(
      metric(siesta, R"(siesta_service_tier_entries_total{service="vllm",tier="vllm_sleep"})"), 1);
  // The model was tracked from the request, and is loaded again after the wake.
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["models"][kModel]["loaded"], true);
}

TEST_F(Vllm, ThreeTiersOnASecondsScalePauseSleepTheEngineThenStop) {
  SiestaProcess siesta(dir.path(), config(R"([{"after_minutes": 0.01, "action": "pause"},
                                  {"after_minutes": 0.03, "action": "vllm_sleep", "level": 2},
                                  {"after_minutes": 0.08, "action": "stop"}])"));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: pause", seconds(10)))
      << siesta.log();
  // The frozen server is thawed for its /sleep and frozen again.
  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: vllm_sleep", seconds(10)))
      << siesta.log();
  json st = status_of(siesta, "vllm");
  EXPECT_EQ(st["actual"], "paused") << st;
  EXPECT_EQ(st["tier"], "vllm_sleep") << st;
  ASSERT_TRUE(siesta.wait_log("Successfully stopped idle service vllm", seconds(10)))
      << siesta.log();
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "stopped");
  for (const char* tier : {"pause", "vllm_sleep", "stop"}) {
    EXPECT_EQ(
        metric(siesta, std::string(R"(siesta_service_tier_entries_total{service="vllm",tier=")") +
                           tier + "\"}"),
        1)
        << tier;
  }
  // A request after the stop is a cold start of a fresh engine.
  auto res = chat();
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
}

TEST_F(Vllm, WithoutDevModeSiestaSaysWhyAndTheServiceKeepsServing) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.02), {"--no-dev-mode"}));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  // The first check of the running server (a reconcile) already says it, before the tier.
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "vllm")["last_error"].is_string(); }))
      << siesta.log();
  const std::string error = status_of(siesta, "vllm")["last_error"];
  EXPECT_EQ(error.rfind("vllm_sleep unavailable: vLLM at 127.0.0.1:", 0), 0u) << error;
  EXPECT_NE(error.find("answered 404 to GET /is_sleeping"), std::string::npos) << error;
  EXPECT_NE(error.find("VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode"), std::string::npos)
      << error;
  // When the tier comes, the sleep fails the same way and the service goes on serving.
  ASSERT_TRUE(siesta.wait_log("light sleep (vllm_sleep) failed", seconds(10))) << siesta.log();
  json st = status_of(siesta, "vllm");
  EXPECT_EQ(st["actual"], "running") << st;
  EXPECT_NE(st["last_error"].get<std::string>().find("vllm_sleep failed: vLLM at"),
            std::string::npos)
      << st;
  auto res = chat();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake"), "");  // it never slept
}

TEST_F(Vllm, AFailingWakeUpGoesToTheNextDeeperStateAndIsCounted) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.01), {"--fail-wake-up"}));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: vllm_sleep", seconds(10)))
      << siesta.log();
  // The wake_up answers 500: siesta stops the server and cold-starts it; the client is served.
  auto res = chat();
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_NE(siesta.log().find("resume from vllm_sleep failed"), std::string::npos) << siesta.log();
  EXPECT_EQ(metric(siesta, R"(siesta_service_failures_total{operation="resume",service="vllm"})"),
            1);
  const std::string last_error = status_of(siesta, "vllm")["last_error"];
  EXPECT_NE(last_error.find("resume failed: vLLM at"), std::string::npos) << last_error;
  EXPECT_NE(last_error.find("answered 500 to POST /wake_up: wake_up failed: CUDA error"),
            std::string::npos)
      << last_error;
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "running");
  // The fresh engine served it awake.
  const auto served = events("request");
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0]["arrived_asleep"], false);
}

TEST_F(Vllm, AnOpenAiCompatibleServerIsTrackedFromItsTrafficAndCannotUnloadAModel) {
  // The emulator without dev mode is a plain OpenAI-compatible server (as llama-server is).
  SiestaProcess siesta(dir.path(), config("", {"--no-dev-mode"}, "openai"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = chat();
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  // Tracked from the request's body; its keep-alive does not apply to it.
  json m = get_json(siesta, "/admin/idle-status")["models"][kModel];
  EXPECT_EQ(m["loaded"], true) << m;
  EXPECT_EQ(m["provider"], "vllm") << m;
  EXPECT_EQ(m["unload_blocker"], "no_unload_api") << m;
  // A model it does not serve: the server's own 404, in OpenAI's shape; not tracked.
  auto other =
      via().Post("/v1/completions", R"({"model": "other", "prompt": "x"})", "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  EXPECT_EQ(json::parse(other->body)["error"]["type"], "NotFoundError");
  EXPECT_FALSE(get_json(siesta, "/admin/idle-status")["models"].contains("other"));
  // An unload cannot be done model by model: refused, and the model stays.
  auto unload = siesta.client().Post("/admin/models/Qwen/Qwen3-0.6B/unload");
  ASSERT_TRUE(unload);
  EXPECT_EQ(unload->status, 503) << unload->body;
  EXPECT_NE(unload->body.find("the model is the process"), std::string::npos) << unload->body;
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["models"][kModel]["loaded"], true);
}

}  // namespace
}  // namespace siesta::testing
