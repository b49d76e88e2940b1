// vLLM and OpenAI-compatible model servers on fakes and the fake clock: the request parsing the
// proxy uses (providers/openai_api.h), the config's checks of model_api and vllm_sleep, and the
// vllm_sleep tier through the monitor and the controller (sleep, wake with is_sleeping polled,
// the failure modes).
#include <gtest/gtest.h>

#include "siesta/api/status_json.h"
#include "siesta/metrics/metrics.h"
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

// A model request naming a model vLLM does not serve is answered without it once its list is
// known (a card from its /v1/models), in vLLM's own 404 shape; an OpenAI-compatible server and
// Ollama are never answered for (they may load any name).
TEST(VllmApi, KnowsItServesOnlyTheModelsItListedAndAnswersVllmsOwn404) {
  const ModelApi& api = vllm_api();
  EXPECT_FALSE(api.serves_only({}));
  EXPECT_FALSE(api.serves_only({{"m", "", 1}}));  // configured only: not listed yet
  EXPECT_TRUE(api.serves_only({{"m", R"({"id": "m"})", 1}, {"lora", "", 1}}));
  const ModelApi::Reply r = api.unknown_model_reply("Qwen/Qwen3-0.6");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(
      nlohmann::json::parse(r.body),
      nlohmann::json::parse(R"({"error": {"message": "The model `Qwen/Qwen3-0.6` does not exist.",
                                     "type": "NotFoundError", "param": "model", "code": 404}})"));
  EXPECT_FALSE(openai_api().serves_only({{"m", R"({"id": "m"})", 1}}));
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
  ASSERT_TRUE(w.controller->touch_model(w.key("Qwen/Qwen3-0.6B")));
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
  ASSERT_TRUE(one.controller->touch_model(one.key("Qwen/Qwen3-0.6B")));
  EXPECT_EQ(model_state(one), "loaded");
  one.clock.advance(minutes(1));
  one.monitor->step();
  ASSERT_TRUE(one.service("vllm").paused);
  one.clock.advance(minutes(4));
  one.monitor->step();
  ASSERT_TRUE(one.service("vllm").engine_asleep);
  EXPECT_EQ(model_state(one), "offloaded");
  ASSERT_TRUE(one.controller->wake("vllm", Reason::kRequest));
  ASSERT_TRUE(one.controller->touch_model(one.key("Qwen/Qwen3-0.6B")));
  EXPECT_EQ(model_state(one), "loaded");

  World two(R"({"idle_check_interval_minutes": 1000,
    "services": {"vllm": {"command": ["vllm", "serve"], "upstream": "127.0.0.1:8000",
      "model_api": "vllm", "sleep_tiers": [{"after_minutes": 5, "action": "vllm_sleep", "level": 2},
                                           {"after_minutes": 60, "action": "stop"}]}},
    "models": {"Qwen/Qwen3-0.6B": {"provider": "vllm"}}})");
  two.run("vllm");
  ASSERT_TRUE(two.controller->touch_model(two.key("Qwen/Qwen3-0.6B")));
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
  EXPECT_THAT(w.engine.take_calls(),
              ElementsAre("wake_up", "is_sleeping", "is_sleeping", "is_sleeping", "is_sleeping"));
  EXPECT_TRUE(w.backend.take_calls().empty());  // nothing started, nothing resumed
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_FALSE(w.service("vllm").engine_asleep);
  EXPECT_EQ(w.service("vllm").tier, 0u);
  EXPECT_EQ(w.recorder.tier_events().back(), "woke vllm from vllm_sleep");
}

// Issue 24, a new user's trial: a pause's wake counted well under a millisecond in
// siesta_service_tier_wake_seconds_total while X-Siesta-Wake said dur=0.003 for it: the metric
// timed the resume alone, the header the whole wake the request waited for (the state file's save
// included). Both are in seconds and now time the same: the whole wake. A cold start's
// siesta_service_wake_duration_seconds stays the start until ready.
TEST(VllmSleep, AWakeFromATierIsTimedWholeAsTheRequestWaitsForIt) {
  World w(kVllmOneLightTier);
  asleep_after_use(w);
  w.engine.during_wake_up = [&] { w.clock.advance(std::chrono::milliseconds(200)); };
  w.on_save = [&] { w.clock.advance(std::chrono::milliseconds(3)); };
  MonoTime t0 = w.clock.mono_now();
  WakeReport report;
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest, &report));
  double took = std::chrono::duration<double>(w.clock.mono_now() - t0).count();
  ASSERT_GE(took, 0.203);
  EXPECT_EQ(w.recorder.tier_events().back(), "woke vllm from vllm_sleep");
  EXPECT_DOUBLE_EQ(w.recorder.tier_wake_seconds().back(), took);
  // The request is told the same figure (X-Siesta-Wake's dur), not its own timing of the wait:
  // CI's stop 31 saw dur=0.003 beside 0.0005 counted for one pause, the wake thread's hand-over.
  EXPECT_EQ(report.from, "vllm_sleep");
  ASSERT_TRUE(report.took);
  EXPECT_DOUBLE_EQ(report.took->count(), took);

  // A cold start: the same, from stop.
  ASSERT_TRUE(w.controller->sleep("vllm"));
  w.backend.on_start = [&] { w.clock.advance(std::chrono::seconds(1)); };
  t0 = w.clock.mono_now();
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest, &report));
  took = std::chrono::duration<double>(w.clock.mono_now() - t0).count();
  EXPECT_EQ(w.recorder.tier_events().back(), "woke vllm from stop");
  EXPECT_DOUBLE_EQ(w.recorder.tier_wake_seconds().back(), took);
  EXPECT_EQ(report.from, "stop");
  ASSERT_TRUE(report.took);
  EXPECT_DOUBLE_EQ(report.took->count(), took);

  // Up already: nothing undone, nothing timed.
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest, &report));
  EXPECT_EQ(report.from, "");
  EXPECT_FALSE(report.took);
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));  // given up, then a cold start
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
  EXPECT_THAT(w.engine.take_calls(), ElementsAre("wake_up"));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop vllm", "start vllm"));
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_NE(w.service("vllm").last_error.find("resume failed: 500: CUDA error"), std::string::npos)
      << w.service("vllm").last_error;
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed vllm resume", "woke vllm request"));
}

// Issue 24, a new user's trial: a vllm_sleep tier known to be unavailable (dev mode off) was
// still promised as next_tier, and tried (a 404 and a failure counted) at every idle period.
// Known, it is skipped: the next tier promised, and entered, is the stop.
TEST(VllmSleep, WithoutDevModeTheTierIsSkippedAndTheStopIsPromisedAndComes) {
  World w(kVllmOneLightTier);
  w.engine.no_dev_mode = true;
  w.run("vllm");
  // The first check (reconcile) says why, before the tier is due.
  w.controller->reconcile();
  const std::string error = w.service("vllm").last_error;
  EXPECT_EQ(error, "vllm_sleep unavailable: 404 (no dev mode)");
  const auto vllm = [&] {
    const Snapshot snap = w.registry->snapshot();
    return nlohmann::json::parse(services_text(snap, decide(snap, w.clock.wall_now())))["vllm"];
  };
  EXPECT_EQ(vllm()["next_tier"], "stop") << vllm().dump();
  EXPECT_EQ(vllm()["next_tier_in_seconds"], 60 * 60);
  EXPECT_EQ(vllm()["policy_reason"],
            "sleep_tiers: tier 2 of 2 (stop) comes after 60 minutes idle; its vllm_sleep tier is "
            "skipped: its engine has no sleep routes (last_error says why)");
  w.engine.take_calls();
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_TRUE(sleeps_and_wakes(w).empty());  // not tried
  ServiceRuntime rt = w.service("vllm");
  EXPECT_EQ(rt.state, ServiceState::kRunning);
  EXPECT_FALSE(rt.engine_asleep);
  EXPECT_EQ(rt.last_error, error);
  const auto events = w.recorder.events();
  EXPECT_EQ(std::count(events.begin(), events.end(), "failed vllm pause"), 0);  // none counted
  EXPECT_EQ(vllm()["next_tier"], "stop");
  EXPECT_EQ(vllm()["next_tier_in_seconds"], 55 * 60);
  w.clock.advance(minutes(55));
  w.monitor->step();
  EXPECT_EQ(w.service("vllm").state, ServiceState::kStopped);
}

// Issue 24, a new user's trial: the failed sleep's last_error ("vllm_sleep failed: ... 404") was
// replaced by "vllm_sleep unavailable" at the next reconcile, which found the same 404. The
// first, more specific one stays until something clears it; once the routes answer, a later 404
// is said again.
TEST(VllmSleep, AFailedSleepsErrorIsNotReplacedByTheReconcilesUnavailable) {
  World w(kVllmOneLightTier);
  w.run("vllm");
  w.monitor->step();  // its first reconcile finds the sleep routes
  w.engine.no_dev_mode = true;
  w.clock.advance(minutes(5));
  w.monitor->step();  // the tier comes before the next reconcile: its /sleep answers 404
  ASSERT_EQ(w.service("vllm").last_error, "vllm_sleep failed: 404 (no dev mode)");
  const WallTime failed_at = *w.service("vllm").last_error_at;
  w.clock.advance(minutes(1));
  w.controller->reconcile();
  w.controller->reconcile();
  EXPECT_EQ(w.service("vllm").last_error, "vllm_sleep failed: 404 (no dev mode)");
  EXPECT_EQ(w.service("vllm").last_error_at, failed_at);
  // Dev mode on again (the container recreated): the error no longer holds and is cleared (a new
  // user's re-trial: it stayed in idle-status); then off: said again.
  w.engine.no_dev_mode = false;
  w.controller->reconcile();
  EXPECT_EQ(w.service("vllm").last_error, "");
  EXPECT_FALSE(w.service("vllm").last_error_at);
  w.engine.no_dev_mode = true;
  w.controller->reconcile();
  EXPECT_EQ(w.service("vllm").last_error, "vllm_sleep unavailable: 404 (no dev mode)");
  w.engine.no_dev_mode = false;
  w.controller->reconcile();
  EXPECT_EQ(w.service("vllm").last_error, "");
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
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest));
  EXPECT_EQ(w.service("vllm").state, ServiceState::kRunning);
  EXPECT_FALSE(w.engine.asleep);
}

TEST(VllmSleep, AModelOfAServerWithoutAnUnloadApiHasNoKeepAliveUnload) {
  World w(R"({"model_keep_alive_hours": 0.01, "services": {"vllm": {"command": ["vllm"],
      "upstream": "127.0.0.1:8000", "model_api": "vllm"}}, "models": {"m": {"provider": "vllm",
      "keep_alive_min_seconds": 0}}})");
  w.run("vllm");
  ASSERT_TRUE(w.controller->touch_model(w.key("m")));
  w.clock.advance(minutes(10));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  ASSERT_EQ(d.models.size(), 1u);
  EXPECT_EQ(d.models[0].blocker, UnloadBlocker::kNoUnloadApi);
  EXPECT_TRUE(d.actions.empty());
  const auto status = nlohmann::json::parse(models_text(w.registry->snapshot(), d));
  EXPECT_EQ(status["m"]["unload_blocker"], "no_unload_api") << status.dump();
}

// Issue 24, a new user's trial: after a wake by a request that names no model (GET /health or
// /v1/models through a vllm or openai service), the served model showed not_loaded in
// idle-status until the next reconcile (idle_check_interval_minutes later). Such a server serves
// its models as soon as it is ready: the wake reads them at once.
TEST(ServedModels, AColdWakeOfAServerWhoseModelIsTheProcessReadsItsModelsAtOnce) {
  for (const char* api : {"vllm", "openai"}) {
    World w(std::string(R"({"idle_check_interval_minutes": 1000, "services": {"vllm": {
        "command": ["vllm", "serve"], "upstream": "127.0.0.1:8000", "model_api": ")") +
            api + R"("}}})");
    w.provider_vllm.loaded_models = {"Qwen/Qwen3-0.6B"};
    w.provider_vllm.cards["Qwen/Qwen3-0.6B"] =
        R"({"id": "Qwen/Qwen3-0.6B", "max_model_len": 4096})";
    ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest)) << api;
    ASSERT_THAT(w.model_names(), ElementsAre("Qwen/Qwen3-0.6B")) << api;
    const ModelRuntime m = w.model("Qwen/Qwen3-0.6B");
    EXPECT_TRUE(m.loaded) << api;
    // The server's own entry, for the list siesta answers while it sleeps.
    EXPECT_EQ(m.card, R"({"id": "Qwen/Qwen3-0.6B", "max_model_len": 4096})") << api;
    EXPECT_EQ(m.first_seen, w.clock.wall_now()) << api;
  }
}

TEST(ServedModels, AWakeFromTheEngineSleepShowsItsModelsLoadedAgainAtOnce) {
  World w(kVllmTiers);
  w.provider_vllm.loaded_models = {"Qwen/Qwen3-0.6B"};
  w.run("vllm");
  w.controller->reconcile();
  ASSERT_TRUE(w.model("Qwen/Qwen3-0.6B").loaded);
  w.clock.advance(minutes(1));
  w.monitor->step();  // the pause
  w.clock.advance(minutes(4));
  w.monitor->step();  // the engine's sleep
  ASSERT_TRUE(w.service("vllm").engine_asleep);
  ASSERT_FALSE(w.model("Qwen/Qwen3-0.6B").loaded);
  ASSERT_TRUE(
      w.controller->wake("vllm", Reason::kRequest));  // no request on the model, no reconcile
  EXPECT_TRUE(w.model("Qwen/Qwen3-0.6B").loaded);
}

// An Ollama server loads a model on its first request: its wake asks nothing.
TEST(ServedModels, AColdWakeOfOllamaReadsNoModels) {
  World w(R"({"idle_check_interval_minutes": 1000, "services": {"ollama": {"command": ["ollama"],
      "upstream": "127.0.0.1:11434", "model_api": "ollama"}}})");
  w.provider.loaded_models = {"llama3.2:3b"};  // would be learned, were it read
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  EXPECT_TRUE(w.model_names().empty());
}

// Issue 24: siesta's own /v1/models while the server sleeps had `created` 0 and lacked the rest
// of vLLM's ModelCard. It is the server's own last entry when siesta has one, else the fields
// vLLM always sends, with what siesta knows.
TEST(VllmApi, TheModelListWhileAsleepIsTheServersLastEntryElseVllmsFieldsWithHonestValues) {
  const ModelApi& api = vllm_api();
  const std::string card =
      R"({"id": "a", "object": "model", "created": 1700000123, "owned_by": "vllm",
          "root": "/models/a", "parent": null, "max_model_len": 32768,
          "permission": [{"id": "modelperm-0123", "object": "model_permission"}]})";
  const std::vector<ModelApi::KnownModel> models = {{"a", card, 1600000000}, {"b", "", 1650000000}};
  auto reply = api.asleep_reply("GET", "/v1/models", models);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->content_type, "application/json");
  const auto doc = nlohmann::json::parse(reply->body);
  EXPECT_EQ(doc["object"], "list");
  ASSERT_EQ(doc["data"].size(), 2u);
  EXPECT_EQ(doc["data"][0], nlohmann::json::parse(card));  // as the server wrote it
  const auto& b = doc["data"][1];
  std::vector<std::string> keys;
  for (const auto& [k, v] : b.items()) keys.push_back(k);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("id", "object", "created", "owned_by", "root",
                                                    "parent", "max_model_len", "permission"));
  EXPECT_EQ(b["id"], "b");
  EXPECT_EQ(b["object"], "model");
  EXPECT_EQ(b["created"], 1650000000);  // when siesta first knew of it, not 0
  EXPECT_EQ(b["owned_by"], "vllm");
  EXPECT_TRUE(b["root"].is_null());  // the path vLLM loaded it from: unknown
  EXPECT_TRUE(b["parent"].is_null());
  EXPECT_TRUE(b["max_model_len"].is_null());  // the engine's: unknown
  ASSERT_EQ(b["permission"].size(), 1u);
  const auto& p = b["permission"][0];
  EXPECT_EQ(p["object"], "model_permission");
  EXPECT_EQ(p["id"].get<std::string>().rfind("modelperm-", 0), 0u) << p;
  EXPECT_EQ(p["id"].get<std::string>().size(), 10u + 32u) << p;
  EXPECT_EQ(p["created"], 1650000000);
  EXPECT_EQ(p["allow_sampling"], true);
  EXPECT_EQ(p["allow_create_engine"], false);
  EXPECT_EQ(p["organization"], "*");
  EXPECT_TRUE(p["group"].is_null());
  // An entry that is not a JSON object is not trusted: vLLM's fields instead.
  auto bad = api.asleep_reply("GET", "/v1/models", {{"c", "[1, 2]", 1650000000}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(nlohmann::json::parse(bad->body)["data"][0]["id"], "c");
  // No model known: the server alone can say (a wake).
  EXPECT_FALSE(api.asleep_reply("GET", "/v1/models", {}));
  // /health is vLLM's empty 200.
  auto health = api.asleep_reply("GET", "/health", {});
  ASSERT_TRUE(health);
  EXPECT_EQ(health->body, "");
}

TEST(ServedModels, ASyncKeepsTheServersEntryAndWhenSiestaFirstKnewOfTheModel) {
  World w(kVllmOneLightTier);
  w.run("vllm");
  const WallTime first = w.clock.wall_now();
  w.provider_vllm.loaded_models = {"m"};
  w.provider_vllm.cards["m"] = R"({"id": "m", "created": 1})";
  w.controller->reconcile();
  EXPECT_EQ(w.model("m").card, R"({"id": "m", "created": 1})");
  EXPECT_EQ(w.model("m").first_seen, first);
  w.clock.advance(minutes(3));
  w.provider_vllm.cards["m"] = R"({"id": "m", "created": 2})";
  w.controller->reconcile();
  EXPECT_EQ(w.model("m").card, R"({"id": "m", "created": 2})");  // its latest word
  EXPECT_EQ(w.model("m").first_seen, first);                     // first is first
  // A configured model: known from siesta's start.
  World c(kVllmTiers);
  EXPECT_EQ(c.model("Qwen/Qwen3-0.6B").first_seen, c.clock.wall_now());
}

// The idle-status entry and the /metrics text of the snapshot now.
struct Shown {
  nlohmann::json services;
  nlohmann::json models;
  std::string metrics;
};
Shown shown(World& w) {
  const Snapshot snap = w.registry->snapshot();
  const Decision d = decide(snap, w.clock.wall_now());
  Metrics m;
  m.declare(snap);
  return {nlohmann::json::parse(services_text(snap, d)),
          nlohmann::json::parse(models_text(snap, d)),
          m.render(snap, d, MonitorStatus{true, w.clock.wall_now()})};
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// Issue 24, a new user's trial: a vllm_sleep that failed (no dev mode: the routes 404) still
// showed vllm_sleep as the tier in force, in idle-status and in siesta_service_tier, while the
// engine served. The service is shown in the state it is in (awake, its next tier the stop), the
// failure with it (failed_tiers, last_error, counted as a failed pause), and a request then is no
// wake from vllm_sleep.
TEST(VllmSleep, AFailedEngineSleepShowsTheServiceAwakeWithTheFailure) {
  World w(kVllmOneLightTier);
  w.run("vllm");
  w.monitor->step();            // its first reconcile finds the sleep routes
  w.engine.no_dev_mode = true;  // gone before the tier comes (restarted without dev mode)
  w.clock.advance(minutes(5));
  w.monitor->step();
  ASSERT_EQ(w.service("vllm").tier, 1u);  // passed: the stop comes at its time
  const Shown s = shown(w);
  const auto& vllm = s.services["vllm"];
  EXPECT_EQ(vllm["tier"], "awake") << vllm.dump();
  EXPECT_EQ(vllm["failed_tiers"], nlohmann::json::array({"vllm_sleep"})) << vllm.dump();
  EXPECT_EQ(vllm["next_tier"], "stop");
  EXPECT_EQ(vllm["next_tier_in_seconds"], 55 * 60);
  EXPECT_EQ(vllm["last_error"], "vllm_sleep failed: 404 (no dev mode)");
  EXPECT_TRUE(has_line(s.metrics, R"(siesta_service_tier{service="vllm",tier="awake"} 1)"))
      << s.metrics;
  EXPECT_TRUE(has_line(s.metrics, R"(siesta_service_tier{service="vllm",tier="vllm_sleep"} 0)"));
  const auto events = w.recorder.events();
  EXPECT_EQ(std::count(events.begin(), events.end(), "failed vllm pause"), 1);
  // A request now wakes nothing: no wake from vllm_sleep is counted.
  ASSERT_TRUE(w.controller->begin_request("vllm", true));
  w.controller->end_request("vllm", true);
  EXPECT_TRUE(w.recorder.tier_events().empty());
  // Its next idle period promises the stop, not the vllm_sleep known to fail (issue 24), and the
  // sleep is not tried again.
  const auto after = shown(w).services["vllm"];
  EXPECT_EQ(after["next_tier"], "stop") << after.dump();
  EXPECT_EQ(after["next_tier_in_seconds"], 60 * 60);
  w.engine.take_calls();
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_TRUE(sleeps_and_wakes(w).empty());
  const auto later = w.recorder.events();
  EXPECT_EQ(std::count(later.begin(), later.end(), "failed vllm pause"), 1);
}

// Issue 24, a new user's trial: idle-status showed tier vllm_sleep for the ~50 ms of a /sleep that
// then failed. From the claim the service is out of service (actual paused), but the tier is
// shown only once its action succeeded, in idle-status and siesta_service_tier alike.
TEST(VllmSleep, TheTierIsShownOnlyOnceTheEngineSleepSucceeded) {
  for (const bool fails : {true, false}) {
    World w(kVllmOneLightTier);
    w.engine.no_dev_mode = fails;
    w.run("vllm");
    w.clock.advance(minutes(5));
    ASSERT_TRUE(w.controller->claim_light_sleep("vllm", 1));
    Shown s = shown(w);
    EXPECT_EQ(s.services["vllm"]["actual"], "paused") << fails;  // a request waits from here
    EXPECT_EQ(s.services["vllm"]["tier"], "awake") << fails;
    EXPECT_TRUE(has_line(s.metrics, R"(siesta_service_tier{service="vllm",tier="awake"} 1)"))
        << s.metrics;
    w.controller->finish_light_sleep("vllm", 1);
    s = shown(w);
    EXPECT_EQ(s.services["vllm"]["tier"], fails ? "awake" : "vllm_sleep") << fails;
    EXPECT_TRUE(
        has_line(s.metrics, fails ? R"(siesta_service_tier{service="vllm",tier="awake"} 1)"
                                  : R"(siesta_service_tier{service="vllm",tier="vllm_sleep"} 1)"))
        << s.metrics;
  }
  // Behind a pause that holds, the pause is shown meanwhile.
  World w(kVllmTiers);
  w.run("vllm");
  w.clock.advance(minutes(1));
  w.monitor->step();
  w.clock.advance(minutes(4));
  ASSERT_TRUE(w.controller->claim_light_sleep("vllm", 2));
  EXPECT_EQ(shown(w).services["vllm"]["tier"], "pause");
  w.controller->finish_light_sleep("vllm", 2);
  EXPECT_EQ(shown(w).services["vllm"]["tier"], "vllm_sleep");
}

// Issue 24, a new user's trial: a service in error after a failed start showed tier "awake". It
// is in no tier and not awake: tier is null, and siesta_service_tier is 0 for every tier.
TEST(VllmSleep, AServiceInErrorAfterAFailedStartShowsNoTier) {
  World w(kVllmTiers);
  w.backend.fail_start.insert("vllm");
  ASSERT_FALSE(w.controller->wake("vllm", Reason::kRequest));
  ASSERT_EQ(w.service("vllm").state, ServiceState::kError);
  const Shown s = shown(w);
  EXPECT_TRUE(s.services["vllm"]["tier"].is_null()) << s.services["vllm"].dump();
  EXPECT_EQ(s.services["vllm"]["actual"], "error");
  for (const char* tier : {"awake", "pause", "vllm_sleep", "stop"}) {
    EXPECT_TRUE(has_line(
        s.metrics, std::string(R"(siesta_service_tier{service="vllm",tier=")") + tier + R"("} 0)"))
        << tier << "\n"
        << s.metrics;
  }
}

// With a pause before it, a failed engine sleep leaves the service paused: that is its tier.
TEST(VllmSleep, AFailedEngineSleepAfterAPauseShowsThePause) {
  World w(kVllmTiers);
  w.run("vllm");
  w.clock.advance(minutes(1));
  w.monitor->step();  // the pause, after its first reconcile found the sleep routes
  w.engine.no_dev_mode = true;
  w.clock.advance(minutes(4));
  w.monitor->step();
  ASSERT_EQ(w.service("vllm").tier, 2u);
  ASSERT_TRUE(w.service("vllm").paused);
  const Shown s = shown(w);
  EXPECT_EQ(s.services["vllm"]["tier"], "pause") << s.services.dump();
  EXPECT_EQ(s.services["vllm"]["failed_tiers"], nlohmann::json::array({"vllm_sleep"}));
  EXPECT_TRUE(has_line(s.metrics, R"(siesta_service_tier{service="vllm",tier="pause"} 1)"));
  WakeReport report;
  ASSERT_TRUE(w.controller->wake("vllm", Reason::kRequest, &report));
  EXPECT_EQ(report.from, "pause");
}

// Issue 24, a new user's trial: idle-status's policy_reason was null for a service with
// sleep_tiers. It says which tier comes next, after what idle time, and the stop after it.
TEST(VllmSleep, ThePolicyReasonOfTieredServicesSaysWhichTierComesNextAndWhy) {
  World w(kVllmTiers);
  w.run("vllm");
  EXPECT_EQ(shown(w).services["vllm"]["policy_reason"],
            "sleep_tiers: tier 1 of 3 (pause) comes after 1 minute idle, then tier 3 of 3 (stop) "
            "after 60 minutes idle");
  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_EQ(shown(w).services["vllm"]["policy_reason"],
            "sleep_tiers: tier 2 of 3 (vllm_sleep level 1) comes after 5 minutes idle, then tier 3 "
            "of 3 (stop) after 60 minutes idle");
  w.engine.no_dev_mode = true;
  w.clock.advance(minutes(4));
  w.monitor->step();
  // Behind the pause that holds it, it did not keep serving (issue 24, a new user's trial: it
  // said so of a paused service, which serves nothing).
  ASSERT_TRUE(w.service("vllm").paused);
  EXPECT_EQ(shown(w).services["vllm"]["policy_reason"],
            "sleep_tiers: tier 3 of 3 (stop) comes after 60 minutes idle; its vllm_sleep tier "
            "failed, so it stayed in its pause tier (last_error says why)");
  w.clock.advance(minutes(55));
  w.monitor->step();
  ASSERT_EQ(w.service("vllm").state, ServiceState::kStopped);
  // Its vllm_sleep is known to fail now: skipped after the next wake.
  EXPECT_EQ(shown(w).services["vllm"]["policy_reason"],
            "sleep_tiers: stopped (its last tier); after a wake, tier 1 of 3 (pause) comes after 1 "
            "minute idle; its vllm_sleep tier is skipped: its engine has no sleep routes "
            "(last_error says why)");
  EXPECT_EQ(shown(w).services["vllm"]["failed_tiers"], nlohmann::json::array());
}

// Issue 24, a new user's re-trial: policy_reason promised the next tier to a service that none
// will come to while it holds: desired on, idle sleep disabled, in error.
TEST(VllmSleep, ThePolicyReasonPromisesNoTierWhileNoneCanCome) {
  World w(kVllmTiers);
  w.run("vllm");
  const auto reason = [&] { return shown(w).services["vllm"]["policy_reason"]; };
  ASSERT_TRUE(w.controller->set_idle_sleep("vllm", false));
  EXPECT_EQ(reason(), "sleep_tiers: no tier comes while idle sleep is disabled for this service");
  ASSERT_TRUE(w.controller->set_idle_sleep("vllm", true));
  ASSERT_TRUE(w.controller->set_desired("vllm", Desired::kOn));
  EXPECT_EQ(reason(), "sleep_tiers: no tier comes while desired is \"on\"");
  ASSERT_TRUE(w.controller->set_desired("vllm", Desired::kOff));
  w.registry->update_service(
      "vllm", [](const ServiceSpec&, ServiceRuntime& rt) { rt.state = ServiceState::kError; });
  EXPECT_EQ(reason(), "sleep_tiers: no tier comes while it is in error (last_error says why)");
  // In flight only delays them: still promised.
  w.registry->update_service(
      "vllm", [](const ServiceSpec&, ServiceRuntime& rt) { rt.state = ServiceState::kRunning; });
  ASSERT_TRUE(w.controller->begin_request("vllm"));
  EXPECT_EQ(reason(),
            "sleep_tiers: tier 1 of 3 (pause) comes after 1 minute idle, then tier 3 of 3 (stop) "
            "after 60 minutes idle");
  w.controller->end_request("vllm");
  // Stopped, with idle sleep off (for it, or globally): no tier after a wake either (a new
  // user's re-trial: tier 1 was promised).
  ASSERT_TRUE(w.controller->sleep("vllm"));
  ASSERT_TRUE(w.controller->set_idle_sleep("vllm", false));
  EXPECT_EQ(reason(),
            "sleep_tiers: stopped (its last tier); after a wake, no tier comes while idle sleep is "
            "disabled for this service");
  ASSERT_TRUE(w.controller->set_idle_sleep("vllm", true));
  ASSERT_TRUE(w.controller->update_settings([](Settings& s) { s.idle_sleep_enabled = false; }));
  EXPECT_EQ(reason(),
            "sleep_tiers: stopped (its last tier); after a wake, no tier comes while idle sleep is "
            "disabled globally");
}

// Issue 24, a new user's trial: a model of a vLLM or OpenAI-compatible server showed a keep-alive
// (the global 2 h) in idle-status, the admin API's model answer and /metrics, which never
// applies: the model is the process, its service's idle timeout or tiers free it. No keep-alive
// is shown, freed_by says the service, and the countdown is to the service's next tier that
// frees it (vllm_sleep or stop; a pause does not), the same in all three.
TEST(VllmSleep, AModelThatIsTheProcessShowsNoKeepAliveButWhenItsServiceFreesIt) {
  World w(kVllmTiers);
  w.run("vllm");
  ASSERT_TRUE(w.controller->touch_model(w.key("Qwen/Qwen3-0.6B")));
  ASSERT_TRUE(w.controller->touch_service("vllm"));
  w.clock.advance(seconds(30));
  const Shown s = shown(w);
  const auto& m = s.models["Qwen/Qwen3-0.6B"];
  EXPECT_TRUE(m["keep_alive_seconds"].is_null()) << m.dump();
  EXPECT_EQ(m["freed_by"], "service");
  EXPECT_EQ(m["will_unload_in_seconds"], 270);  // vllm_sleep at 5 minutes, not the pause at 1
  EXPECT_EQ(m["will_unload_in_minutes"], 5);
  EXPECT_EQ(m["unload_blocker"], "no_unload_api");
  const Snapshot snap = w.registry->snapshot();
  const Decision d = decide(snap, w.clock.wall_now());
  const auto one =
      nlohmann::json::parse(model_text("Qwen/Qwen3-0.6B", snap.models[0], d.models[0]));
  EXPECT_EQ(one["will_unload_in_seconds"], 270);
  EXPECT_TRUE(one["keep_alive_seconds"].is_null());
  EXPECT_EQ(one["keep_alive_until"], m["keep_alive_until"]);
  EXPECT_EQ(s.services["vllm"]["sleeps_at"].get<long long>() + 240,
            m["keep_alive_until"].get<long long>());
  EXPECT_EQ(s.metrics.find("siesta_model_keep_alive_seconds{"), std::string::npos) << s.metrics;
  EXPECT_TRUE(has_line(
      s.metrics,
      R"(siesta_model_keep_alive_remaining_seconds{model="Qwen/Qwen3-0.6B",provider="vllm"} 270)"))
      << s.metrics;
  // Its service kept awake: nothing will free it.
  ASSERT_TRUE(w.controller->set_idle_sleep("vllm", false));
  const Shown awake = shown(w);
  EXPECT_TRUE(awake.models["Qwen/Qwen3-0.6B"]["will_unload_in_seconds"].is_null());
  EXPECT_TRUE(awake.models["Qwen/Qwen3-0.6B"]["keep_alive_until"].is_null());
  EXPECT_EQ(awake.metrics.find("siesta_model_keep_alive_remaining_seconds{"), std::string::npos);
}

// Issue 24, a new user's trial: an Ollama model's countdown was its keep-alive (an hour) while its
// service's idle timeout (20 minutes) stops the server, and the model with it, first. The
// countdown ends with the service (freed_by "service", as for a model that is the process) in
// idle-status, the admin API's model answer and /metrics alike; its keep-alive still applies and
// is shown. A keep-alive that ends first is the countdown.
TEST(VllmSleep, AModelOfAnOpenAiServerIsFreedByTheIdleTimeoutAndAnOllamaModelByWhateverComesFirst) {
  World w(R"({"idle_timeout_minutes": 20, "model_keep_alive_hours": 1, "services": {
      "llama": {"command": ["l"], "upstream": "127.0.0.1:8081", "model_api": "openai"},
      "ollama": {"command": ["o"], "upstream": "127.0.0.1:11434", "model_api": "ollama"}},
      "models": {"m": {"provider": "llama"}, "o": {"provider": "ollama"},
                 "short": {"provider": "ollama", "keep_alive_hours": 0.1}}})");
  w.run("llama");
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_service("llama"));
  ASSERT_TRUE(w.controller->touch_model(w.key("m")));
  ASSERT_TRUE(w.controller->touch_model(w.key("o")));
  ASSERT_TRUE(w.controller->touch_model(w.key("short")));
  const Shown s = shown(w);
  EXPECT_EQ(s.models["m"]["will_unload_in_seconds"], 1200) << s.models.dump();
  EXPECT_TRUE(s.models["m"]["keep_alive_seconds"].is_null());
  EXPECT_EQ(s.models["o"]["keep_alive_seconds"], 3600);
  EXPECT_EQ(s.models["o"]["freed_by"], "service");
  EXPECT_EQ(s.models["o"]["will_unload_in_seconds"], 1200);
  // Its keep-alive's end is still when its keep-alive ends.
  EXPECT_EQ(s.models["o"]["keep_alive_until"], s.models["o"]["last_used"].get<long long>() + 3600);
  EXPECT_TRUE(
      has_line(s.metrics, R"(siesta_model_keep_alive_seconds{model="o",provider="ollama"} 3600)"));
  EXPECT_TRUE(has_line(
      s.metrics, R"(siesta_model_keep_alive_remaining_seconds{model="o",provider="ollama"} 1200)"))
      << s.metrics;
  const Snapshot snap = w.registry->snapshot();
  const Decision d = decide(snap, w.clock.wall_now());
  for (std::size_t i = 0; i < snap.models.size(); ++i) {
    if (snap.models[i].spec->name != "o") continue;
    const auto one = nlohmann::json::parse(model_text("o", snap.models[i], d.models[i]));
    EXPECT_EQ(one["will_unload_in_seconds"], 1200) << one.dump();
    EXPECT_EQ(one["freed_by"], "service");
  }
  // A keep-alive of 6 minutes ends before the service's stop: it is the countdown.
  EXPECT_EQ(s.models["short"]["freed_by"], "keep_alive");
  EXPECT_EQ(s.models["short"]["will_unload_in_seconds"], 360);
}

}  // namespace
}  // namespace siesta::testing
