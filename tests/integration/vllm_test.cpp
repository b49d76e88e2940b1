// vLLM and OpenAI-compatible servers end to end: the real siesta binary in front of the vLLM
// emulator (tests/support/vllm_emulator.py, which follows vLLM's source: its sleep routes, a
// sleeping engine holding requests, the 404 without dev mode), started, slept, woken and stopped
// by siesta, with real sockets and cpp-httplib as the client.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

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
  // `top`: more top-level settings; `prefix`: what the command starts with (e.g. env).
  std::string config(const std::string& tiers, std::vector<std::string> emulator_args = {},
                     const std::string& model_api = "vllm", json top = json::object(),
                     std::vector<std::string> prefix = {}) {
    json cmd = json::array();
    for (const auto& a : prefix) cmd.push_back(a);
    for (const auto& a :
         {std::string("python3"),
          std::string(SIESTA_SOURCE_DIR) + "/tests/support/vllm_emulator.py", std::string("--port"),
          std::to_string(upstream), std::string("--model"), std::string(kModel)}) {
      cmd.push_back(a);
    }
    for (const auto& a : emulator_args) cmd.push_back(a);
    json service = {{"command", cmd},
                    {"upstream", "127.0.0.1:" + std::to_string(upstream)},
                    {"listen", "127.0.0.1:" + std::to_string(listen)},
                    {"model_api", model_api}};
    if (!tiers.empty()) service["sleep_tiers"] = json::parse(tiers);
    if (!top.contains("idle_check_interval_minutes")) top["idle_check_interval_minutes"] = 0.01;
    top["services"] = {{"vllm", service}};
    return top.dump();
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
  // No load= (a new user's trial saw the generation's time there): the model is the process,
  // its load is the start, which dur says.
  EXPECT_EQ(first->get_header_value("X-Siesta-Wake").find("load="), std::string::npos)
      << first->get_header_value("X-Siesta-Wake");
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
  // Level 1: its weights wait in CPU RAM.
  EXPECT_EQ(get_json(siesta, "/admin/idle-status")["models"][kModel]["state"], "offloaded");
  EXPECT_EQ(metric(siesta, std::string(R"(siesta_model_offloaded{model=")") + kModel +
                               R"(",provider="vllm"})"),
            1);

  // Through the proxy: siesta wakes the engine and waits for is_sleeping: false.
  const auto t0 = std::chrono::steady_clock::now();
  auto res = chat();
  const double whole = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  const std::string header = res->get_header_value("X-Siesta-Wake");
  EXPECT_EQ(header.rfind("warm-from=vllm_sleep; dur=", 0), 0u) << header;
  EXPECT_EQ(header.find("load="), std::string::npos) << header;
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

// An engine put to sleep outside siesta (a client on vLLM's own port) holds the requests that
// reach it: siesta, finding it asleep at its next check with requests in flight, wakes it then,
// so they are answered (they waited for response_timeout_seconds, then a 504, before).
TEST_F(Vllm, RequestsThatReachAnEngineSleptOutsideSiestaAreAnsweredOnceSiestaSeesIt) {
  SiestaProcess siesta(dir.path(), config(""));
  start_awake(siesta);
  ASSERT_EQ(chat()->status, 200);
  {
    httplib::Client direct("127.0.0.1", upstream);
    auto slept = direct.Post("/sleep?level=1", "", "application/json");
    ASSERT_TRUE(slept);
    ASSERT_EQ(slept->status, 200);
  }
  auto res = chat();  // forwarded (siesta does not know yet) and held by the sleeping engine
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_TRUE(siesta.wait_log("reached its sleeping engine")) << siesta.log();
  EXPECT_EQ(events("wake_up").size(), 1u);
  EXPECT_EQ(emulator("/is_sleeping")["is_sleeping"], false);
}

// A new user's trial (issue 24): siesta finding the engine asleep (slept outside siesta, nothing
// in flight) logged "unloaded: its service vllm stopped"; the log says what it found.
TEST_F(Vllm, AModelFoundWithItsEngineAsleepIsLoggedAsSuchNotAsStopped) {
  SiestaProcess siesta(dir.path(), config(""));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  ASSERT_EQ(chat()->status, 200);
  {
    httplib::Client direct("127.0.0.1", upstream);
    auto slept = direct.Post("/sleep?level=1", "", "application/json");
    ASSERT_TRUE(slept);
    ASSERT_EQ(slept->status, 200);
  }
  ASSERT_TRUE(siesta.wait_log("its engine reports is_sleeping: true")) << siesta.log();
  EXPECT_TRUE(siesta.wait_log(std::string("Model ") + kModel +
                              " unloaded: its service vllm was found with its engine asleep"))
      << siesta.log();
  EXPECT_EQ(siesta.log().find("unloaded: its service vllm stopped"), std::string::npos)
      << siesta.log();
}

TEST_F(Vllm, TheDevelopmentRoutesAreRefusedThroughTheProxyAndNeverReachTheEngine) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(20)));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  auto c = via();
  for (const char* path : {"/sleep?level=1", "/wake_up", "/collective_rpc", "/reset_prefix_cache",
                           "/%73leep", "/sleep/"}) {
    auto res = c.Post(path, "{}", "application/json");
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 403) << path << ": " << res->body;
    const json body = json::parse(res->body, nullptr, false);
    EXPECT_EQ(body["error"]["code"], "forbidden") << res->body;
  }
  auto is_sleeping = c.Get("/is_sleeping");
  ASSERT_TRUE(is_sleeping);
  EXPECT_EQ(is_sleeping->status, 403) << is_sleeping->body;
  // Nothing was forwarded: the engine never slept and serves on.
  EXPECT_TRUE(events("sleep").empty());
  EXPECT_TRUE(events("wake_up").empty());
  EXPECT_EQ(emulator("/is_sleeping"), json({{"is_sleeping", false}}));
  auto res = chat();
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_requests_total{code="403",service="vllm"})"), 7);
}

// Found by a new user: `env VLLM_SERVER_DEV_MODE=1 vllm serve ...` execs vllm, so the process
// no longer shows the service's command; after a restart with on_exit "leave" siesta refused to
// adopt it and started another, which could not bind the port the orphan held.
TEST_F(Vllm, AnEngineStartedThroughEnvIsAdoptedAgainAfterARestart) {
  const std::string state = (dir / "state.json").string();
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(20), {}, "vllm",
                                          {{"on_exit", "leave"}, {"state_file", state}},
                                          {"env", "VLLM_SERVER_DEV_MODE=1"}));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  ASSERT_EQ(chat()->status, 200);
  EXPECT_EQ(siesta.stop(SIGTERM), 0);
  const pid_t pid = json::parse(slurp(state))["services"]["vllm"]["handle"]["pid"].get<pid_t>();
  ASSERT_TRUE(pid_alive(pid));  // left running

  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(siesta.wait_log("adopted process " + std::to_string(pid))) << siesta.log();
  EXPECT_EQ(siesta.log().find("not adopting"), std::string::npos) << siesta.log();
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "vllm")["actual"] == "running"; }))
      << siesta.log();
  // Served by the engine left running: no start, no wake.
  auto res = chat();
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake"), "");
  EXPECT_EQ(events("request").size(), 2u);
  // And siesta controls it: a sleep stops the adopted engine.
  ASSERT_EQ(siesta.client().Post("/admin/services/vllm/sleep")->status, 200);
  EXPECT_TRUE(eventually([&] { return !pid_alive(pid); }));
  if (pid_alive(pid)) ::kill(-pid, SIGKILL);
}

// Found by a new user: a load balancer's GET /health (and a client's GET /v1/models) woke the
// engine from vllm_sleep and the server from its stop, and kept it awake.
// A cold start of a real vLLM takes tens of seconds: a load balancer's /health during it is
// answered at once, not held until the engine is up (a new user's trial: it waited the whole
// start and carried the wake's header).
TEST_F(Vllm, AHealthCheckDuringAColdStartIsAnsweredWithoutWaitingForIt) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(10), {}, "vllm", json::object(),
                                          {"sh", "-c", "sleep 3; exec \"$@\"", "sh"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  std::thread request([&] { EXPECT_EQ(chat()->status, 200); });  // it starts the engine
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "vllm")["actual"] == "starting"; }))
      << siesta.log();
  const auto t0 = std::chrono::steady_clock::now();
  auto health = via().Get("/health");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->get_header_value("X-Siesta-Asleep"), "starting");
  EXPECT_FALSE(health->has_header("X-Siesta-Wake"));
  EXPECT_LT(took, seconds(2)) << "held for the start";  // the start takes 3 s at least
  request.join();
}

TEST_F(Vllm, HealthChecksAndTheModelListNeitherWakeNorKeepTheEngineAwake) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.01)));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto c = via();
  // Stopped, and no model known yet: the model list needs the server, woken for it.
  auto first = c.Get("/v1/models");
  ASSERT_TRUE(first) << siesta.log();
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(first->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
  EXPECT_EQ(json::parse(first->body)["data"][0]["id"], kModel);
  ASSERT_EQ(chat()->status, 200);

  // Health checks every 100 ms while it serves do not keep it awake: it sleeps on time.
  const auto t0 = std::chrono::steady_clock::now();
  while (siesta.log().find("Service vllm is in light sleep: vllm_sleep") == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < seconds(10)) {
    auto health = c.Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(siesta.log().find("Service vllm is in light sleep: vllm_sleep"), std::string::npos)
      << siesta.log();

  // Asleep: siesta answers them itself, and the engine is not woken.
  for (int i = 0; i < 3; ++i) {
    auto health = c.Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(health->body, "");
    EXPECT_EQ(health->get_header_value("X-Siesta-Asleep"), "vllm_sleep");
    auto models = c.Get("/v1/models");
    ASSERT_TRUE(models);
    ASSERT_EQ(models->status, 200);
    const json list = json::parse(models->body);
    EXPECT_EQ(list["object"], "list");
    ASSERT_EQ(list["data"].size(), 1u) << list;
    EXPECT_EQ(list["data"][0]["id"], kModel);
    EXPECT_EQ(list["data"][0]["object"], "model");
  }
  EXPECT_TRUE(events("wake_up").empty());
  EXPECT_EQ(emulator("/is_sleeping"), json({{"is_sleeping", true}}));
  EXPECT_EQ(status_of(siesta, "vllm")["tier"], "vllm_sleep");

  // Stopped: the same, and nothing starts it.
  ASSERT_EQ(siesta.client().Post("/admin/services/vllm/sleep")->status, 200);
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->get_header_value("X-Siesta-Asleep"), "stopped");
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], kModel);
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "stopped");
  // A real request still wakes it.
  auto res = chat();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
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

// Without dev mode siesta says why at its first check, and from then on skips the vllm_sleep
// tier (issue 24, a new user's trial: it was still promised as next_tier, then tried and failed):
// the stop is promised and nothing is tried or counted as failed.
TEST_F(Vllm, WithoutDevModeSiestaSaysWhySkipsTheTierAndTheServiceKeepsServing) {
  // vllm_sleep after 0.03 min (1.8 s): the first checks (every 0.6 s) come before it.
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.03), {"--no-dev-mode"}));
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
  json st = status_of(siesta, "vllm");
  EXPECT_EQ(st["next_tier"], "stop") << st;  // not the vllm_sleep it cannot do
  // Past the tier's time: not tried, the service serving, nothing failed.
  std::this_thread::sleep_for(milliseconds(2500));
  EXPECT_EQ(siesta.log().find("light sleep (vllm_sleep)"), std::string::npos) << siesta.log();
  EXPECT_TRUE(events("sleep").empty());
  st = status_of(siesta, "vllm");
  EXPECT_EQ(st["actual"], "running") << st;
  EXPECT_EQ(st["last_error"], error) << st;
  EXPECT_EQ(st["tier"], "awake") << st;
  EXPECT_EQ(st["next_tier"], "stop") << st;
  EXPECT_EQ(st["failed_tiers"], json::array()) << st;
  EXPECT_EQ(metric(siesta, R"(siesta_service_tier{service="vllm",tier="awake"})"), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_service_tier{service="vllm",tier="vllm_sleep"})"), 0);
  EXPECT_EQ(metric(siesta, R"(siesta_service_failures_total{operation="pause",service="vllm"})"),
            0);
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
  // A cold start, and said so (a new user's trial saw warm-from=vllm_sleep here): no wake from
  // the light tier is counted, a start is.
  const std::string header = res->get_header_value("X-Siesta-Wake");
  EXPECT_EQ(header.rfind("cold; dur=", 0), 0u) << header;
  EXPECT_LE(metric(siesta, R"(siesta_service_tier_wakes_total{service="vllm",tier="vllm_sleep"})"),
            0);
  EXPECT_EQ(metric(siesta, R"(siesta_service_tier_wakes_total{service="vllm",tier="stop"})"), 2);
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
  // Tracked from the request's body; its keep-alive does not apply to it. The request counts in
  // flight until the proxy ends it, which may be just after the client has its answer.
  json m;
  EXPECT_TRUE(eventually([&] {
    m = get_json(siesta, "/admin/idle-status")["models"][kModel];
    return m["unload_blocker"] == "no_unload_api";
  })) << m;
  EXPECT_EQ(m["loaded"], true) << m;
  EXPECT_EQ(m["provider"], "vllm") << m;
  // No keep-alive applies (the last trial: it showed the global one): its service frees it.
  EXPECT_TRUE(m["keep_alive_seconds"].is_null()) << m;
  EXPECT_EQ(m["freed_by"], "service") << m;
  EXPECT_EQ(metric(siesta, "siesta_model_keep_alive_seconds{model=\"" + std::string(kModel) +
                               "\",provider=\"vllm\"}"),
            -1);  // absent
  // A model it does not serve: the server's own 404, in OpenAI's shape; not tracked.
  auto other =
      via().Post("/v1/completions", R"({"model": "other", "prompt": "x"})", "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  EXPECT_EQ(json::parse(other->body)["error"]["type"], "NotFoundError");
  // Forgotten when the proxy ends the request, which may be just after the client has its answer
  // (this check raced with it and failed now and then).
  EXPECT_TRUE(eventually(
      [&] { return !get_json(siesta, "/admin/idle-status")["models"].contains("other"); }));
  // An unload cannot be done model by model: refused, and the model stays.
  auto unload = siesta.client().Post("/admin/models/Qwen/Qwen3-0.6B/unload");
  ASSERT_TRUE(unload);
  EXPECT_EQ(unload->status, 503) << unload->body;
  EXPECT_NE(unload->body.find("the model is the process"), std::string::npos) << unload->body;
  // For good: no Retry-After (a client that follows it would retry forever; a new user's trial).
  EXPECT_FALSE(unload->has_header("Retry-After"));
  const json after = get_json(siesta, "/admin/idle-status")["models"][kModel];
  EXPECT_EQ(after["loaded"], true);
  // Refused, not failed: no failure counted (its alert says the VRAM is not freed), no error on
  // the model, no retry.
  EXPECT_TRUE(after["last_error"].is_null()) << after;
  // Absent (-1) or 0.
  EXPECT_LE(metric(siesta, "siesta_model_unload_failures_total{model=\"" + std::string(kModel) +
                               "\",service=\"vllm\"}"),
            0);
  EXPECT_EQ(siesta.log().find("unload failed"), std::string::npos) << siesta.log();
  // A load is refused the same way (a new user's trial: it "loaded" the model and counted a load
  // time, though nothing was loaded).
  auto load = siesta.client().Post("/admin/models/Qwen/Qwen3-0.6B/load");
  ASSERT_TRUE(load);
  EXPECT_EQ(load->status, 503) << load->body;
  EXPECT_NE(load->body.find("cannot load model"), std::string::npos) << load->body;
  EXPECT_FALSE(load->has_header("Retry-After"));
  EXPECT_EQ(siesta.log().find("Loading model"), std::string::npos) << siesta.log();
  EXPECT_EQ(siesta.log().find("loaded in"), std::string::npos) << siesta.log();
  EXPECT_TRUE(get_json(siesta, "/admin/idle-status")["models"][kModel]["last_error"].is_null());
}

// Issue 24, a new user's trial: a wake by a request that names no model (GET /health through an
// OpenAI-compatible service, which is a use there) showed the served model not_loaded until the
// next reconcile (an hour here). The wake reads the served models at once.
TEST_F(Vllm, AWakeByARequestNamingNoModelShowsTheServedModelLoadedAtOnce) {
  SiestaProcess siesta(
      dir.path(), config("", {"--no-dev-mode"}, "openai", {{"idle_check_interval_minutes", 60}}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = via().Get("/health");
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
  const json models = get_json(siesta, "/admin/idle-status")["models"];
  ASSERT_TRUE(models.contains(kModel)) << models;
  const json& m = models[kModel];
  EXPECT_EQ(m["loaded"], true) << m;
  EXPECT_EQ(m["state"], "loaded") << m;
  EXPECT_EQ(m["provider"], "vllm") << m;
}

// Issue 24: while vLLM sleeps siesta answers GET /v1/models itself; its entries had `created` 0
// and lacked vLLM's ModelCard fields (max_model_len, parent, permission). They are the server's
// own, as it last listed them.
TEST_F(Vllm, WhileAsleepTheModelListIsTheServersOwnLastAnswer) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.01)));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto awake = via().Get("/v1/models");  // wakes it (no model known yet)
  ASSERT_TRUE(awake) << siesta.log();
  ASSERT_EQ(awake->status, 200) << awake->body;
  json served = json::parse(awake->body)["data"][0];
  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: vllm_sleep", seconds(10)))
      << siesta.log();
  auto asleep = via().Get("/v1/models");
  ASSERT_TRUE(asleep) << siesta.log();
  ASSERT_EQ(asleep->status, 200) << asleep->body;
  EXPECT_EQ(asleep->get_header_value("X-Siesta-Asleep"), "vllm_sleep");
  json card = json::parse(asleep->body)["data"][0];
  EXPECT_TRUE(events("wake_up").empty());
  for (const char* field : {"id", "object", "owned_by", "root", "parent", "max_model_len"}) {
    EXPECT_EQ(card[field], served[field]) << field << ": " << card;
  }
  EXPECT_EQ(card["max_model_len"], 4096) << card;
  EXPECT_GT(card["created"].get<long long>(), 1'600'000'000) << card;  // not 0
  ASSERT_EQ(card["permission"].size(), 1u) << card;
  EXPECT_EQ(card["permission"][0]["object"], "model_permission") << card;
}

// Before the server ever listed its models (a configured model, the server never run), the list
// has the fields vLLM always sends, with honest values: `created` when siesta first knew of the
// model (its start), what it cannot know null.
TEST_F(Vllm, BeforeTheServerListedItsModelsTheListHasVllmsFieldsWithHonestValues) {
  const auto t0 = std::chrono::system_clock::now();
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(20), {}, "vllm",
                                          {{"models", {{kModel, {{"provider", "vllm"}}}}}}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = via().Get("/v1/models");
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Siesta-Asleep"), "stopped");
  json card = json::parse(res->body)["data"][0];
  EXPECT_EQ(card["id"], kModel);
  EXPECT_EQ(card["object"], "model");
  EXPECT_EQ(card["owned_by"], "vllm");
  const long long created = card["created"].get<long long>();
  EXPECT_GE(created, std::chrono::duration_cast<seconds>(t0.time_since_epoch()).count() - 1)
      << card;
  EXPECT_LE(created,
            std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
                .count())
      << card;
  for (const char* unknown : {"root", "parent", "max_model_len"}) {
    EXPECT_TRUE(card.contains(unknown) && card[unknown].is_null()) << unknown << ": " << card;
  }
  ASSERT_EQ(card["permission"].size(), 1u) << card;
  EXPECT_EQ(card["permission"][0]["object"], "model_permission") << card;
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "stopped");  // nothing was started
}

// Issue 24, a new user's trial: after a failed start, a load balancer's GET /health started the
// server again (and counted as a use). In error after a failed start, as while it sleeps, siesta
// answers it itself: nothing started, no start failure added.
TEST_F(Vllm, AHealthCheckOfAServerInErrorAfterAFailedStartStartsNothing) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(10), {}, "vllm", json::object(),
                                          {"sh", "-c", "exit 1", "sh"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto failed = chat();
  ASSERT_TRUE(failed) << siesta.log();
  EXPECT_EQ(failed->status, 503) << failed->body;
  ASSERT_EQ(status_of(siesta, "vllm")["actual"], "error");
  const std::string starts = R"(siesta_service_failures_total{operation="start",service="vllm"})";
  ASSERT_EQ(metric(siesta, starts), 1);
  for (int i = 0; i < 3; ++i) {
    auto health = via().Get("/health");
    ASSERT_TRUE(health) << siesta.log();
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(health->get_header_value("X-Siesta-Asleep"), "error");
    EXPECT_FALSE(health->has_header("X-Siesta-Wake"));
  }
  EXPECT_EQ(metric(siesta, starts), 1) << siesta.log();  // no start tried again
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "error");
}

// Issue 24, a new user's trial: an engine started by hand on the upstream port answers siesta's
// readiness check, and siesta's own engine dies on "address in use": before, at every wake, with
// no last_error. Now the service's last_error names the exit and the other process, and a failed
// start is counted; requests are not refused (the upstream may be served by another process by
// design).
TEST_F(Vllm, AnEngineThatCannotTakeItsPortBecauseAnotherHoldsItIsAFailedStartSaidSo) {
  const pid_t by_hand = spawn_with_output(
      {"python3", std::string(SIESTA_SOURCE_DIR) + "/tests/support/vllm_emulator.py", "--port",
       std::to_string(upstream), "--model", kModel},
      dir / "by_hand.log");
  ASSERT_GT(by_hand, 0);
  const Reaped reaped(by_hand);
  ASSERT_TRUE(eventually([&] { return emulator("/is_sleeping").is_object(); }));
  // Checks ten minutes apart: the exit is news at once, not at the next check (a new user's
  // re-trial: it said running, "kept serving", for a whole check interval).
  SiestaProcess siesta(dir.path(),
                       config("", {}, "vllm", json{{"idle_check_interval_minutes", 10}}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = chat();  // served: by the engine started by hand
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 200) << res->body;
  json st;
  ASSERT_TRUE(eventually([&] {
    st = status_of(siesta, "vllm");
    return st["last_error"].is_string();
  })) << siesta.log();
  const std::string error = st["last_error"];
  EXPECT_EQ(error.rfind("start failed: process ", 0), 0u) << error;
  EXPECT_NE(error.find("exited with code 1"), std::string::npos) << error;
  EXPECT_NE(
      error.find("another process answers its upstream 127.0.0.1:" + std::to_string(upstream)),
      std::string::npos)
      << error;
  EXPECT_EQ(st["actual"], "error") << st;
  EXPECT_GE(metric(siesta, R"(siesta_service_failures_total{operation="start",service="vllm"})"),
            1);
  // Not refused: the next request is served all the same.
  auto again = chat();
  ASSERT_TRUE(again) << siesta.log();
  EXPECT_EQ(again->status, 200) << again->body;
}

// Issue 24, the last trial's findings: a request naming a model the sleeping vLLM does not serve
// (a typo) woke the engine only to get its 404. siesta knows the server's model list (its last
// /v1/models, read at each wake and reconcile): it answers vLLM's own 404 without waking it, and
// the request is no use of the service. A model it serves still wakes it; so does a typo to a
// stopped server, answered the same way without a start.
TEST_F(Vllm, ARequestNamingAModelTheSleepingEngineDoesNotServeGetsItsOwn404WithoutAWake) {
  SiestaProcess siesta(dir.path(), config(sleep_then_stop(0.01)));
  start_awake(siesta);  // the wake reads its /v1/models
  if (HasFatalFailure()) return;
  const std::string typo = R"({"model": "Qwen/Qwen3-0.6", "messages": []})";
  // vLLM's own answer, straight from the server while it serves.
  httplib::Client direct("127.0.0.1", upstream);
  auto own = direct.Post("/v1/chat/completions", typo, "application/json");
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 404) << own->body;
  ASSERT_TRUE(siesta.wait_log("Service vllm is in light sleep: vllm_sleep", seconds(10)))
      << siesta.log();
  const json before = status_of(siesta, "vllm");
  auto res = via().Post("/v1/chat/completions", typo, "application/json");
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 404) << res->body;
  EXPECT_EQ(json::parse(res->body), json::parse(own->body)) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(res->get_header_value("X-Siesta-Asleep"), "vllm_sleep");
  EXPECT_FALSE(res->has_header("X-Siesta-Wake"));
  EXPECT_TRUE(events("wake_up").empty());
  const json after = status_of(siesta, "vllm");
  EXPECT_EQ(after["tier"], "vllm_sleep") << after;
  EXPECT_EQ(after["last_used"], before["last_used"]) << after;  // no use
  EXPECT_FALSE(get_json(siesta, "/admin/idle-status")["models"].contains("Qwen/Qwen3-0.6"));
  // On the same connection, a model it serves wakes it as before.
  auto c = via();
  auto again = c.Post("/v1/completions", R"({"model": "Qwen/Qwen3-0.6B-x", "prompt": "x"})",
                      "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 404);
  auto served =
      c.Post("/v1/chat/completions", json({{"model", kModel}, {"messages", json::array()}}).dump(),
             "application/json");
  ASSERT_TRUE(served) << siesta.log();
  EXPECT_EQ(served->status, 200) << served->body;
  EXPECT_EQ(served->get_header_value("X-Siesta-Wake").rfind("warm-from=vllm_sleep", 0), 0u);
  EXPECT_EQ(events("wake_up").size(), 1u);
  // Stopped: the same answer, and nothing starts it.
  ASSERT_EQ(siesta.client().Post("/admin/services/vllm/sleep")->status, 200);
  auto stopped = via().Post("/v1/chat/completions", typo, "application/json");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->status, 404);
  EXPECT_EQ(stopped->get_header_value("X-Siesta-Asleep"), "stopped");
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "stopped");
}

// An OpenAI-compatible server is woken for any model name: llama.cpp's llama-server answers
// whatever name a request gives, LocalAI and LM Studio load a model by its name from disk, so
// its last list does not say what it would refuse.
TEST_F(Vllm, AnOpenAiCompatibleServerIsWokenForAModelItDidNotList) {
  SiestaProcess siesta(dir.path(), config("", {"--no-dev-mode"}, "openai"));
  start_awake(siesta);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(eventually([&] {
    return get_json(siesta, "/admin/idle-status")["models"].contains(kModel);
  })) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/vllm/sleep")->status, 200);
  auto res = via().Post("/v1/chat/completions", R"({"model": "other", "messages": []})",
                        "application/json");
  ASSERT_TRUE(res) << siesta.log();
  EXPECT_EQ(res->status, 404);  // the server's own, after a cold start
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake").rfind("cold; dur=", 0), 0u);
  EXPECT_EQ(status_of(siesta, "vllm")["actual"], "running");
}

}  // namespace
}  // namespace siesta::testing
