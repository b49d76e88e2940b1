// vLLM and OpenAI-compatible model servers on fakes and the fake clock: the request parsing the
// proxy uses (providers/openai_api.h), the config's checks of model_api and vllm_sleep, and the
// vllm_sleep tier through the monitor and the controller (sleep, wake with is_sleeping polled,
// the failure modes).
#include <gtest/gtest.h>

#include "siesta/api/status_json.h"
#include "siesta/providers/openai_api.h"
#include "siesta/providers/vllm_api.h"
#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

TEST(OpenAiApi, TheThreeRoutesNameAModelInTheirBody) {
  const ModelApi& api = openai_api();
  for (const char* path :
       {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/completions?stream=1"}) {
    EXPECT_TRUE(api.names_model("POST", path)) << path;
  }
  EXPECT_FALSE(api.names_model("GET", "/v1/chat/completions"));
  EXPECT_FALSE(api.names_model("GET", "/v1/models"));
  EXPECT_FALSE(api.names_model("POST", "/api/generate"));  // Ollama's, not OpenAI's
  EXPECT_FALSE(api.names_model("POST", "/v1/chat/completionsx"));
  EXPECT_FALSE(api.names_model("POST", "/sleep"));

  auto r = api.read("/v1/chat/completions",
                    R"({"model": "Qwen/Qwen3-0.6B", "messages": [], "keep_alive": 5})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "Qwen/Qwen3-0.6B");
  // The server keeps its model while it runs: no keep-alive read, carried or set after.
  EXPECT_FALSE(r->asked_keep_alive);
  EXPECT_FALSE(r->carries_keep_alive);
  EXPECT_FALSE(r->keep_alive_after);
  EXPECT_FALSE(api.with_keep_alive(*r, 60));  // the body goes on unchanged
  // No answer says what a load cost: the proxy reports none (the wake's dur says it).
  EXPECT_FALSE(api.reports_load());
  EXPECT_FALSE(api.load_seconds(R"({"load_duration": 5000000000})"));
  auto meter = api.load_meter();
  ASSERT_NE(meter, nullptr);
  meter->feed("data: {\"load_duration\": 1}\n\n");
  EXPECT_FALSE(meter->seconds());
}

TEST(VllmApi, RefusesTheDevelopmentRoutesAsVllmReadsThemAndNothingElse) {
  const ModelApi& api = vllm_api();
  for (const char* target :
       {"/sleep", "/sleep?level=2", "/wake_up", "/wake_up?tags=weights", "/is_sleeping",
        "/collective_rpc", "/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache",
        "/reconfigure", "/server_info", "/pause", "/resume", "/is_paused", "/abort_requests",
        "/update_weights", "/init_weight_transfer_engine", "/get_world_size",
        // As uvicorn and Starlette read them: percent-decoded, a trailing slash redirected.
        "/%73leep", "/wake%5Fup", "/sleep/", "/is_sleeping//?x=1",
        // The absolute form a proxy may be sent.
        "http://127.0.0.1:8000/sleep?level=1",
        // As anything on the way may normalize them (Python's http.server merges slashes; a
        // new user's trial put the emulator to sleep with //sleep).
        "//sleep?level=2", "///sleep", "//wake_up", "/./sleep", "/v1/../sleep", "/%2Fsleep",
        "/..//is_sleeping"}) {
    EXPECT_TRUE(vllm_dev_route(target)) << target;
    auto why = api.refusal("POST", target);
    ASSERT_TRUE(why) << target;
    EXPECT_NE(why->find("siesta alone controls"), std::string::npos) << *why;
  }
  for (const char* target :
       {"/v1/chat/completions", "/v1/models", "/health", "/metrics", "/", "/sleeping", "/v1/sleep",
        "/Sleep", "/version", "/tokenize", "/sleep/../v1/models", "//v1//models"}) {
    EXPECT_FALSE(api.refusal("POST", target)) << target;
    EXPECT_FALSE(api.refusal("GET", target)) << target;
  }
  // Its model routes are OpenAI's; the OpenAI and Ollama APIs refuse nothing.
  EXPECT_TRUE(api.names_model("POST", "/v1/chat/completions"));
  EXPECT_EQ(api.read("/v1/completions", R"({"model": "m", "prompt": "x"})")->model, "m");
  EXPECT_FALSE(openai_api().refusal("POST", "/sleep"));
}

TEST(OpenAiApi, ABodyThatNamesNoModelPassesUntracked) {
  const ModelApi& api = openai_api();
  for (const char* body : {"", "not json", "[]", "{}", R"({"model": 3})", R"({"model": ""})",
                           R"({"model": null})", R"({"messages": []})"}) {
    EXPECT_FALSE(api.read("/v1/completions", body)) << body;
  }
  EXPECT_FALSE(api.read("/v1/completions", R"({"model": ")" + std::string(257, 'm') + "\"}"));
  EXPECT_TRUE(api.read("/v1/completions", R"({"model": ")" + std::string(256, 'm') + "\"}"));
  EXPECT_EQ(openai_model_of("POST", "/v1/embeddings", R"({"model": "e5", "input": "x"})"), "e5");
  EXPECT_FALSE(openai_model_of("GET", "/v1/embeddings", R"({"model": "e5"})"));
}

// vLLM with its sleep mode, behind the three tiers of the issue on a short scale.
constexpr const char* kVllmTiers = R"({
  "idle_check_interval_minutes": 1000,
  "services": {"vllm": {"command": ["vllm", "serve"], "upstream": "127.0.0.1:8000",
                        "model_api": "vllm", "sleep_tiers": [
    {"after_minutes": 1, "action": "pause"},
    {"after_minutes": 5, "action": "vllm_sleep", "level": 1},
    {"after_minutes": 60, "action": "stop"}]}},
  "models": {"Qwen/Qwen3-0.6B": {"provider": "vllm"}}})";

constexpr const char* kVllmOneLightTier = R"({
  "idle_check_interval_minutes": 1000,
  "services": {"vllm": {"command": ["vllm", "serve"], "upstream": "127.0.0.1:8000",
                        "model_api": "vllm", "sleep_tiers": [
    {"after_minutes": 5, "action": "vllm_sleep", "level": 2},
    {"after_minutes": 60, "action": "stop"}]}}})";

// What the engine was asked to do, without the reconciles' is_sleeping checks.
std::vector<std::string> sleeps_and_wakes(World& w) {
  std::vector<std::string> out;
  for (auto& call : w.engine.take_calls()) {
    if (call != "is_sleeping") out.push_back(call);
  }
  return out;
}

// Runs "vllm" and lets it idle into its vllm_sleep tier.
void asleep_after_use(World& w) {
  w.run("vllm");
  w.clock.advance(minutes(5));
  w.monitor->step();
  ASSERT_EQ(w.service("vllm").state, ServiceState::kPaused);
  ASSERT_TRUE(w.service("vllm").engine_asleep);
  w.backend.take_calls();
  w.engine.take_calls();
}

TEST(VllmSleep, ConfigReadsModelApiHealthAndTheLevel) {
  Config c = parse_config(kVllmTiers, "c.json");
  const ServiceSpec& spec = c.services.front().spec;
  EXPECT_EQ(spec.model_api, ServiceSpec::ModelApi::kVllm);  // not made Ollama by the model
  EXPECT_EQ(spec.health.kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(spec.health.http_path, "/health");
  EXPECT_EQ(spec.sleep_tiers[1], (SleepTier{5, TierAction::kVllmSleep, 1}));
  Config o = parse_config(R"({"services": {"llama": {"command": ["llama-server"],
      "upstream": "127.0.0.1:8080", "model_api": "openai"}}})",
                          "c.json");
  EXPECT_EQ(o.services.front().spec.model_api, ServiceSpec::ModelApi::kOpenAi);
  EXPECT_EQ(o.services.front().spec.health.http_path, "/v1/models");
}

TEST(VllmSleep, ThreeTiersPauseThenSleepTheEngineThenStop) {
  World w(kVllmTiers);
  w.run("vllm");
  ASSERT_TRUE(w.controller->touch_model("Qwen/Qwen3-0.6B"));
  w.backend.take_calls();

  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("pause vllm"));
  EXPECT_TRUE(sleeps_and_wakes(w).empty());

  // 5 min: the frozen server is thawed for its /sleep and frozen again; out of service.
  w.clock.advance(minutes(4));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume vllm", "pause vllm"));
  EXPECT_THAT(sleeps_and_wakes(w), ElementsAre("sleep 1"));
  ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kPaused);
  EXPECT_TRUE(rt.paused);
  EXPECT_TRUE(rt.engine_asleep);
  EXPECT_EQ(rt.tier, 2u);
  EXPECT_STREQ(tier_name(*w.registry->service("vllm")->spec, rt), "vllm_sleep");
  // Its weights left the GPU.
  EXPECT_FALSE(w.model("Qwen/Qwen3-0.6B").loaded);
  EXPECT_THAT(w.recorder.tier_events(),
              ElementsAre("entered vllm pause", "entered vllm vllm_sleep"));

  // 60 min: stopped; a stopped vLLM holds nothing to unload model by model.
  w.clock.advance(minutes(55));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop vllm"));
  EXPECT_TRUE(w.provider_vllm.calls.empty());
  EXPECT_EQ(w.service("vllm").state, ServiceState::kStopped);
  EXPECT_FALSE(w.service("vllm").engine_asleep);
}

// A model of a sleeping engine: offloaded at level 1 (weights in CPU RAM), not loaded at level 2,
// loaded again after the wake; the status JSON and decide() (which /metrics reads) agree.
TEST(VllmSleep, AModelShowsOffloadedAtLevelOneAndNotLoadedAtLevelTwo) {
  const auto model_state = [](World& w) {
    const Snapshot snap = w.registry->snapshot();
    const Decision d = decide(snap, w.clock.wall_now());
    const auto doc = nlohmann::json::parse(idle_status_text(snap, d, {}));
    const auto& m = doc["models"]["Qwen/Qwen3-0.6B"];
    EXPECT_EQ(m["state"] == "offloaded", d.models.front().offloaded) << m;
    EXPECT_EQ(m["loaded"].get<bool>(), d.models.front().loaded) << m;
    return m["state"].get<std::string>();
  };
  World one(kVllmTiers);  // pause at 1 min, vllm_sleep level 1 at 5
  one.run("vllm");
  ASSERT_TRUE(one.controller->touch_model("Qwen/Qwen3-0.6B"));
  EXPECT_EQ(model_state(one), "loaded");
  one.clock.advance(minutes(1));
  one.monitor->step();
  ASSERT_TRUE(one.service("vllm").paused);
  one.clock.advance(minutes(4));
  one.monitor->step();
  ASSERT_TRUE(one.service("vllm").engine_asleep);
  EXPECT_EQ(model_state(one), "offloaded");
  ASSERT_TRUE(one.controller->wake("vllm", "request"));
  ASSERT_TRUE(one.controller->touch_model("Qwen/Qwen3-0.6B"));
  EXPECT_EQ(model_state(one), "loaded");

  World two(R"({"idle_check_interval_minutes": 1000,
    "services": {"vllm": {"command": ["vllm", "serve"], "upstream": "127.0.0.1:8000",
      "model_api": "vllm", "sleep_tiers": [{"after_minutes": 5, "action": "vllm_sleep", "level": 2},
                                           {"after_minutes": 60, "action": "stop"}]}},
    "models": {"Qwen/Qwen3-0.6B": {"provider": "vllm"}}})");
  two.run("vllm");
  ASSERT_TRUE(two.controller->touch_model("Qwen/Qwen3-0.6B"));
  two.clock.advance(minutes(5));
  two.monitor->step();
  ASSERT_TRUE(two.service("vllm").engine_asleep);
  EXPECT_EQ(model_state(two), "not_loaded");
  two.clock.advance(minutes(55));
  two.monitor->step();
  EXPECT_EQ(model_state(two), "not_loaded");  // stopped
}

TEST(VllmSleep, AWakeCallsWakeUpAndWaitsUntilTheEngineSaysItIsAwake) {
  World w(kVllmOneLightTier);
  asleep_after_use(w);
  w.engine.lag_polls = 3;  // /wake_up answered before the engine is awake
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  EXPECT_THAT(w.engine.take_calls(),
              ElementsAre("wake_up", "is_sleeping", "is_sleeping", "is_sleeping", "is_sleeping"));
  EXPECT_TRUE(w.backend.take_calls().empty());  // nothing started, nothing resumed
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_FALSE(w.service("vllm").engine_asleep);
  EXPECT_EQ(w.service("vllm").tier, 0u);
  EXPECT_EQ(w.recorder.tier_events().back(), "woke vllm from vllm_sleep");
}

// Review: a wake between the claim of the vllm_sleep tier and its finish called /wake_up on an
// engine never put to sleep. It has nothing to undo; the finish then finds the sleep cancelled.
TEST(VllmSleep, AWakeBetweenTheClaimAndItsFinishUndoesNothingAndCancelsTheSleep) {
  World w(kVllmOneLightTier);
  w.run("vllm");
  w.clock.advance(minutes(5));
  w.backend.take_calls();
  w.engine.take_calls();
  ASSERT_TRUE(w.controller->claim_light_sleep("vllm", 1));
  ASSERT_EQ(w.service("vllm").state, ServiceState::kPaused);  // out of service from the claim
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  w.controller->finish_light_sleep("vllm", 1);
  EXPECT_TRUE(sleeps_and_wakes(w).empty());  // neither /wake_up nor /sleep
  EXPECT_TRUE(w.backend.take_calls().empty());
  const ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kRunning);
  EXPECT_FALSE(rt.engine_asleep);
  EXPECT_EQ(rt.tier, 0u);
  EXPECT_TRUE(w.recorder.tier_events().empty());
}

// The same after a pause that was done: the wake undoes the pause only.
TEST(VllmSleep, AWakeBetweenTheClaimAndItsFinishUndoesOnlyTheLighterTiers) {
  World w(kVllmTiers);
  w.run("vllm");
  w.clock.advance(minutes(1));
  w.monitor->step();
  ASSERT_TRUE(w.service("vllm").paused);
  w.clock.advance(minutes(4));
  w.backend.take_calls();
  w.engine.take_calls();
  ASSERT_TRUE(w.controller->claim_light_sleep("vllm", 2));
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  w.controller->finish_light_sleep("vllm", 2);
  EXPECT_TRUE(sleeps_and_wakes(w).empty());
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume vllm"));
  const ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kRunning);
  EXPECT_FALSE(rt.paused);
  EXPECT_FALSE(rt.engine_asleep);
  EXPECT_THAT(w.recorder.tier_events(), ElementsAre("entered vllm pause", "woke vllm from pause"));
}

TEST(VllmSleep, AnEngineThatStaysAsleepPastTheStartTimeoutIsStoppedAndColdStarted) {
  World w(kVllmOneLightTier);
  asleep_after_use(w);
  w.engine.lag_polls = 1000000;  // never wakes; the fake clock's sleep_for advances time
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop vllm", "start vllm"));
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("failed vllm resume"));
}

// Review: /wake_up (up to 120 s) and the is_sleeping polls (start_timeout_seconds more) could
// outlast the proxy's backstop. They now share start_timeout_seconds (60 s here).
TEST(VllmSleep, TheWakeUpAndThePollsAfterItShareTheStartTimeout) {
  World w(kVllmOneLightTier);
  asleep_after_use(w);
  w.engine.lag_polls = 1000000;  // never says it is awake
  w.engine.during_wake_up = [&] { w.clock.advance(seconds(40)); };
  const MonoTime t0 = w.clock.mono_now();
  ASSERT_TRUE(w.controller->wake("vllm", "request"));  // given up, then a cold start
  EXPECT_THAT(w.engine.wake_up_timeouts, ElementsAre(60.0));
  const double took = std::chrono::duration<double>(w.clock.mono_now() - t0).count();
  EXPECT_GE(took, 60.0);
  EXPECT_LT(took, 60.1);  // not 40 + 60
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop vllm", "start vllm"));
}

TEST(VllmSleep, AWakeUpThatFailsGoesToTheNextDeeperStateAndIsCounted) {
  World w(kVllmOneLightTier);
  asleep_after_use(w);
  w.engine.fail_wake_up = true;
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  EXPECT_THAT(w.engine.take_calls(), ElementsAre("wake_up"));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop vllm", "start vllm"));
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_NE(w.service("vllm").last_error.find("resume failed: 500: CUDA error"), std::string::npos)
      << w.service("vllm").last_error;
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed vllm resume", "woke vllm request"));
}

TEST(VllmSleep, WithoutDevModeTheTierFailsAndTheServiceKeepsServing) {
  World w(kVllmOneLightTier);
  w.engine.no_dev_mode = true;
  w.run("vllm");
  // The first check (reconcile) says why, before the tier is due.
  w.controller->reconcile();
  const std::string error = w.service("vllm").last_error;
  EXPECT_EQ(error, "vllm_sleep unavailable: 404 (no dev mode)");
  w.clock.advance(minutes(5));
  w.monitor->step();
  ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kRunning);
  EXPECT_FALSE(rt.engine_asleep);
  EXPECT_EQ(rt.tier, 1u);  // passed: the stop comes at its time, no retry loop
  EXPECT_EQ(rt.last_error, "vllm_sleep failed: 404 (no dev mode)");
  EXPECT_TRUE(w.recorder.tier_events().empty());
  w.clock.advance(minutes(55));
  w.monitor->step();
  EXPECT_EQ(w.service("vllm").state, ServiceState::kStopped);
}

TEST(VllmSleep, AnEngineFoundAsleepIsOutOfServiceUntilAWake) {
  World w(kVllmOneLightTier);
  w.run("vllm");
  w.engine.asleep = true;  // put to sleep by an earlier siesta, or by hand
  w.controller->reconcile();
  ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kPaused);
  EXPECT_TRUE(rt.engine_asleep);
  EXPECT_EQ(rt.tier, 1u);
  // The backend sees a running process: that is not "resumed outside siesta".
  w.controller->reconcile();
  EXPECT_EQ(w.service("vllm").state, ServiceState::kPaused);
  ASSERT_TRUE(w.controller->wake("vllm", "request"));
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_FALSE(w.engine.asleep);
}

TEST(VllmSleep, AModelOfAServerWithoutAnUnloadApiHasNoKeepAliveUnload) {
  World w(R"({"model_keep_alive_hours": 0.01, "services": {"vllm": {"command": ["vllm"],
      "upstream": "127.0.0.1:8000", "model_api": "vllm"}}, "models": {"m": {"provider": "vllm",
      "keep_alive_min_seconds": 0}}})");
  w.run("vllm");
  ASSERT_TRUE(w.controller->touch_model("m"));
  w.clock.advance(minutes(10));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  ASSERT_EQ(d.models.size(), 1u);
  EXPECT_EQ(d.models[0].blocker, UnloadBlocker::kNoUnloadApi);
  EXPECT_TRUE(d.actions.empty());
  const auto status = nlohmann::json::parse(models_text(w.registry->snapshot(), d));
  EXPECT_EQ(status["m"]["unload_blocker"], "no_unload_api") << status.dump();
}

}  // namespace
}  // namespace siesta::testing
