// Graduated sleep on fakes and the fake clock: the tiers' schedule through decide() and the
// monitor, wakes from each tier, reconcile of a paused service, the config's checks, and what
// idle-status and /metrics show.
#include <gtest/gtest.h>

#include "siesta/api/status_json.h"
#include "siesta/config/labels.h"
#include "siesta/metrics/metrics.h"
#include "siesta/state/state_store.h"
#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

// The issue's three tiers on a model server with one model kept alive for a day, so that only
// the tiers unload it.
constexpr const char* kThreeTiers = R"({
  "model_keep_alive_hours": 24, "idle_check_interval_minutes": 1000,
  "services": {"ollama": {"command": ["ollama"], "sleep_tiers": [
    {"after_minutes": 1, "action": "pause"},
    {"after_minutes": 5, "action": "unload_models"},
    {"after_minutes": 60, "action": "stop"}]}},
  "models": {"m": {"provider": "ollama"}}})";

ServiceTimer timer_of(World& w, const std::string& service) {
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  for (const auto& t : d.services) {
    if (t.name == service) return t;
  }
  ADD_FAILURE() << "no timer for " << service;
  return {};
}

// The model is loaded and the service used at the current (fake) time.
void use_model(World& w) {
  ASSERT_TRUE(w.controller->touch_model(w.key("m")));
  w.provider.loaded_models.insert("m");
}

// Runs the service, optionally with its model in use, and lets it idle into its pause tier.
void pause_after_use(World& w, bool with_model) {
  w.run("ollama");
  if (with_model) use_model(w);
  w.clock.advance(minutes(1));
  w.monitor->step();
  ASSERT_EQ(w.service("ollama").state, ServiceState::kPaused);
  w.backend.take_calls();
}

TEST(Tiers, ThreeTierScheduleOnTheFakeClock) {
  World w(kThreeTiers);
  w.run("ollama");
  use_model(w);
  w.backend.take_calls();
  const WallTime t0 = w.clock.wall_now();

  ServiceTimer t = timer_of(w, "ollama");
  EXPECT_STREQ(t.tier, "awake");
  EXPECT_EQ(t.next_tier, TierAction::kPause);
  EXPECT_EQ(*t.sleeps_in, seconds(60));
  EXPECT_EQ(w.monitor->step(), t0 + minutes(1));  // the next deadline is the first tier

  w.clock.advance(seconds(59));
  w.monitor->step();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_TRUE(w.backend.take_calls().empty());

  // 1 min: paused, its model still loaded (a pause keeps memory).
  // Each tier is acted on in one pass; the registry's change wakes the monitor for another,
  // which returns the next tier's deadline.
  w.clock.advance(seconds(1));
  w.monitor->step();
  EXPECT_EQ(w.monitor->step(), t0 + minutes(5));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
  EXPECT_TRUE(w.service("ollama").paused);
  EXPECT_EQ(w.service("ollama").tier, 1u);
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("pause ollama"));
  EXPECT_TRUE(w.model("m").loaded);
  t = timer_of(w, "ollama");
  EXPECT_STREQ(t.tier, "pause");
  EXPECT_EQ(t.next_tier, TierAction::kUnloadModels);
  EXPECT_EQ(*t.sleeps_in, minutes(4));
  EXPECT_EQ(t.timeout, minutes(5));  // idle_for + sleeps_in adds up to the next tier's time
  EXPECT_EQ(*t.idle_for + *t.sleeps_in, t.timeout);

  // 5 min: thawed for the unload (a frozen server answers nothing), frozen again.
  w.clock.advance(minutes(4));
  w.monitor->step();
  EXPECT_EQ(w.monitor->step(), t0 + minutes(60));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume ollama", "pause ollama"));
  EXPECT_THAT(w.provider.calls, ElementsAre("unload m"));
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
  EXPECT_EQ(w.service("ollama").tier, 2u);
  EXPECT_STREQ(timer_of(w, "ollama").tier, "unload_models");

  // 60 min: stopped, straight from paused.
  w.clock.advance(minutes(55) - seconds(1));
  w.monitor->step();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
  w.clock.advance(seconds(1));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop ollama"));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kStopped);
  EXPECT_FALSE(w.service("ollama").paused);
  t = timer_of(w, "ollama");
  EXPECT_STREQ(t.tier, "stop");
  EXPECT_FALSE(t.next_tier);
  EXPECT_THAT(
      w.recorder.tier_events(),
      ElementsAre("entered ollama pause", "entered ollama unload_models", "entered ollama stop"));
  EXPECT_THAT(w.recorder.events(), ElementsAre("unloaded m sleep_tier", "slept ollama idle"));
}

TEST(Tiers, AMonitorLateByAnHourStopsWithoutPausingFirst) {
  World w(kThreeTiers);
  w.run("ollama");
  w.clock.advance(minutes(61));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop ollama"));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kStopped);
}

// An admin unload of a model whose server is frozen: refused, saying why (a new user's trial:
// 200 and "Successfully unloaded" while the model stayed loaded, shown as waiting to retry a
// failure that never happened).
TEST(Tiers, AForcedUnloadWhileTheServerIsPausedIsRefusedSayingWhy) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/true);
  const Status st = w.controller->unload_model(w.key("m"));
  EXPECT_EQ(st.code(), ErrorCode::kConflict);
  EXPECT_NE(st.message().find("its service ollama is paused"), std::string::npos) << st.message();
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_FALSE(w.model("m").retry_at);                          // nothing failed: no retry
  EXPECT_TRUE(w.recorder.events().empty());                     // no unload counted
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);  // nor thawed
}

TEST(Tiers, AWakeFromPauseResumesAndStartsNothing) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/true);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume ollama"));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_EQ(w.service("ollama").tier, 0u);
  EXPECT_FALSE(w.service("ollama").paused);
  EXPECT_TRUE(w.model("m").loaded);  // a pause kept it
  EXPECT_EQ(*w.service("ollama").last_used, w.clock.wall_now());
  EXPECT_THAT(w.recorder.tier_events(),
              ElementsAre("entered ollama pause", "woke ollama from pause"));
  EXPECT_TRUE(w.recorder.events().empty());  // no start, so no "woke" of the seed's counter
  // The schedule starts over: paused again one minute later.
  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
}

TEST(Tiers, AWakeFromUnloadModelsWhilePausedResumesAndTheModelLoadsOnItsRequest) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/true);
  w.clock.advance(minutes(4));
  w.monitor->step();
  w.backend.take_calls();
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume ollama"));
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_EQ(w.recorder.tier_events().back(), "woke ollama from unload_models");
}

TEST(Tiers, ARequestEndsAnUnloadModelsTierThatLeftTheServiceServing) {
  World w(R"({"model_keep_alive_hours": 24, "services": {"ollama": {"command": ["ollama"],
    "model_api": "ollama", "sleep_tiers": [{"after_minutes": 5, "action": "unload_models"},
    {"after_minutes": 60, "action": "stop"}]}}, "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  use_model(w);
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);  // still serving
  EXPECT_EQ(w.service("ollama").tier, 1u);
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_EQ(w.backend.count("pause ollama"), 0);
  auto state = w.controller->begin_request("ollama");
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, ServiceState::kRunning);  // no wake: the proxy forwards at once
  EXPECT_EQ(w.service("ollama").tier, 0u);
  w.controller->end_request("ollama");
  EXPECT_EQ(w.recorder.tier_events().back(), "woke ollama from unload_models");
}

TEST(Tiers, ARequestAfterThePauseClaimWaitsForTheWakeThatResumesIt) {
  World w(kThreeTiers);
  w.run("ollama");
  w.clock.advance(minutes(1));
  ASSERT_TRUE(w.controller->claim_light_sleep("ollama", 1));
  // The pause itself has not run yet, but a request must not reach the service now.
  auto state = w.controller->begin_request("ollama");
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, ServiceState::kPaused);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  w.controller->finish_light_sleep("ollama", 1);  // after the wake: a no-op
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_EQ(w.backend.count("pause ollama"), 0);
  w.controller->end_request("ollama");
}

TEST(Tiers, DesiredOnResumesAPausedService) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/false);
  ASSERT_TRUE(w.controller->set_desired("ollama", Desired::kOn));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_THAT(d.actions,
              ElementsAre(Action{ActionKind::kStartService, "ollama", Reason::kDesired}));
  w.monitor->step();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume ollama"));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  w.clock.advance(minutes(120));
  w.monitor->step();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);  // desired on: no tier applies
}

TEST(Tiers, AResumeThatFailsFallsBackToAColdStart) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/false);
  w.backend.fail_resume.insert("ollama");
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("resume ollama", "stop ollama", "start ollama"));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed ollama resume", "woke ollama request"));
}

TEST(Tiers, ReconcileTakesAPausedServiceForNeitherDeadNorStartedOutside) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/false);
  const WallTime since = w.service("ollama").state_since;
  w.controller->reconcile();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
  EXPECT_EQ(w.service("ollama").state_since, since);
  EXPECT_EQ(w.service("ollama").tier, 1u);
  // Resumed by someone else: running, awake, its idle timer restarted.
  w.backend.paused.erase("ollama");
  w.controller->reconcile();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_EQ(w.service("ollama").tier, 0u);
  // Paused by someone else: a request must resume it, so it is kPaused, in its pause tier.
  w.backend.paused.insert("ollama");
  w.controller->reconcile();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kPaused);
  EXPECT_TRUE(w.service("ollama").paused);
  EXPECT_EQ(w.service("ollama").tier, 1u);
  // And one that died while paused is stopped.
  w.backend.running.erase("ollama");
  w.backend.paused.erase("ollama");
  w.controller->reconcile();
  EXPECT_EQ(w.service("ollama").state, ServiceState::kStopped);
  EXPECT_FALSE(w.service("ollama").paused);
}

TEST(Tiers, ExitWithOnExitStopStopsAPausedServiceWithoutAskingItsFrozenModelServer) {
  World w(kThreeTiers);
  pause_after_use(w, /*with_model=*/true);
  w.controller->stop_all();
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop ollama"));
  EXPECT_TRUE(w.provider.calls.empty());  // no unload sent to a frozen server
  EXPECT_EQ(w.service("ollama").state, ServiceState::kStopped);
  EXPECT_FALSE(w.model("m").loaded);  // its models went with it
}

TEST(Tiers, AKeepAliveExpiryWhileThePauseHoldsDoesNotAskTheFrozenServer) {
  World w(R"({"model_keep_alive_hours": 0.05, "idle_check_interval_minutes": 1000,
    "services": {"ollama": {"command": ["ollama"], "sleep_tiers": [
      {"after_minutes": 1, "action": "pause"}, {"after_minutes": 60, "action": "stop"}]}},
    "models": {"m": {"provider": "ollama", "keep_alive_min_seconds": 1}}})");
  w.run("ollama");
  use_model(w);
  w.clock.advance(minutes(1));
  w.monitor->step();
  ASSERT_EQ(w.service("ollama").state, ServiceState::kPaused);
  w.clock.advance(minutes(3));  // the keep-alive (3 min) has expired
  w.monitor->step();
  EXPECT_TRUE(w.provider.calls.empty());
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_TRUE(w.model("m").retry_at.has_value());
}

TEST(Tiers, StateFileKeepsTheTierAcrossARestart) {
  World w(kThreeTiers);
  w.run("ollama");
  w.backend.paused.insert("ollama");
  w.registry->update_service("ollama", [](const ServiceSpec&, ServiceRuntime& rt) {
    rt.tier = 2;
    rt.paused = true;
    set_state(rt, ServiceState::kPaused, rt.state_since);
  });
  Baseline baseline;
  baseline.services["ollama"] = {};
  const auto doc = encode_state(w.registry->snapshot(), baseline, {});
  EXPECT_EQ(doc["services"]["ollama"]["tier"], 2);

  World after(kThreeTiers);  // a new siesta: the container or process is still paused
  after.backend.running.insert("ollama");
  after.backend.paused.insert("ollama");
  ASSERT_TRUE(restore_state(doc, baseline, *after.registry, after.clock.wall_now()));
  after.controller->reconcile();
  EXPECT_EQ(after.service("ollama").state, ServiceState::kPaused);
  EXPECT_EQ(after.service("ollama").tier, 2u);
  EXPECT_STREQ(timer_of(after, "ollama").tier, "unload_models");
  ASSERT_TRUE(after.controller->wake("ollama", Reason::kRequest));
  EXPECT_THAT(after.backend.take_calls(), ElementsAre("resume ollama"));

  // A tier the config no longer has is ignored, with a warning.
  auto bad = doc;
  bad["services"]["ollama"]["tier"] = 7;
  World again(kThreeTiers);
  auto restored = restore_state(bad, baseline, *again.registry, again.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_EQ(again.service("ollama").tier, 0u);
  ASSERT_EQ(restored->warnings.size(), 1u);
  EXPECT_NE(restored->warnings[0].find("services.ollama.tier"), std::string::npos);
}

TEST(Tiers, IdleStatusAndMetricsShowTheTierAndTheNextOne) {
  World w(kThreeTiers);
  w.run("ollama");
  w.clock.advance(minutes(1));
  w.monitor->step();
  w.clock.advance(seconds(30));
  const Snapshot snap = w.registry->snapshot();
  const Decision d = decide(snap, w.clock.wall_now());
  const auto j = nlohmann::json::parse(idle_status_text(snap, d, {}));
  const auto& s = j["services"]["ollama"];
  EXPECT_EQ(s["tier"], "pause");
  EXPECT_EQ(s["next_tier"], "unload_models");
  EXPECT_EQ(s["next_tier_in_seconds"], 210.0);
  EXPECT_EQ(s["actual"], "paused");

  Metrics metrics;
  metrics.declare(snap);
  metrics.service_tier_entered("ollama", "pause");
  metrics.service_woke_from_tier("ollama", "pause", Seconds(0.002));
  const std::string text = metrics.render(snap, d, {});
  for (const char* line : {
           R"(siesta_service_tier{service="ollama",tier="awake"} 0)",
           R"(siesta_service_tier{service="ollama",tier="pause"} 1)",
           R"(siesta_service_tier{service="ollama",tier="unload_models"} 0)",
           R"(siesta_service_tier{service="ollama",tier="stop"} 0)",
           R"(siesta_service_state{service="ollama",state="paused"} 1)",
           R"(siesta_service_tier_entries_total{service="ollama",tier="pause"} 1)",
           R"(siesta_service_tier_entries_total{service="ollama",tier="stop"} 0)",
           R"(siesta_service_tier_wakes_total{service="ollama",tier="pause"} 1)",
           R"(siesta_service_tier_wake_seconds_total{service="ollama",tier="pause"} 0.002)",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
}

TEST(Tiers, TheOneTimeoutIsTheOneStopTier) {
  World w(R"({"idle_timeout_minutes": 10, "services": {"a": {"command": ["a"]}}})");
  w.run("a");
  ServiceTimer t = timer_of(w, "a");
  EXPECT_STREQ(t.tier, "awake");
  EXPECT_EQ(t.next_tier, TierAction::kStop);
  EXPECT_EQ(t.timeout, minutes(10));
  w.clock.advance(minutes(10));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_THAT(d.actions, ElementsAre(Action{ActionKind::kSleepService, "a", Reason::kIdle}));
}

struct BadTiers {
  const char* tiers;
  const char* message;
};

class BadSleepTiers : public ::testing::TestWithParam<BadTiers> {};

TEST_P(BadSleepTiers, AreRejectedWithFileKeyAndReason) {
  const std::string text = std::string(R"({"services": {"s": {"command": ["s"], "sleep_tiers": )") +
                           GetParam().tiers + "}}}";
  try {
    parse_config(text, "bad.json");
    FAIL() << "accepted: " << text;
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              std::string("config error in bad.json: ") + GetParam().message);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadSleepTiers,
    ::testing::Values(
        BadTiers{"[]",
                 "services.s.sleep_tiers: must be a non-empty array of {\"after_minutes\": ..., "
                 "\"action\": ...}"},
        BadTiers{
            R"([{"after_minutes": 5, "action": "pause"}, {"after_minutes": 5, "action": "stop"}])",
            "services.s.sleep_tiers[1].after_minutes: 5 must be greater than the tier "
            "before's 5 (tiers go from light to deep)"},
        BadTiers{R"([{"after_minutes": 1, "action": "nap"}])",
                 "services.s.sleep_tiers[0].action: must be \"pause\", \"vllm_sleep\", "
                 "\"unload_models\" or \"stop\", got \"nap\""},
        BadTiers{R"([{"after_minutes": 1, "action": "vllm_sleep"}])",
                 "services.s.sleep_tiers[0].level: is required for \"vllm_sleep\": 1 or 2"},
        BadTiers{
            R"([{"after_minutes": 1, "action": "stop"}, {"after_minutes": 2, "action": "pause"}])",
            "services.s.sleep_tiers[1].action: no tier can follow \"stop\": it must be the "
            "last"},
        BadTiers{
            R"([{"after_minutes": 1, "action": "pause"}, {"after_minutes": 2, "action": "pause"}])",
            "services.s.sleep_tiers[1].action: \"pause\" is already sleep_tiers[0]"},
        BadTiers{R"([{"after_minutes": 0, "action": "pause"}])",
                 "services.s.sleep_tiers[0].after_minutes: must be greater than 0, got 0"},
        BadTiers{R"([{"action": "pause"}])",
                 "services.s.sleep_tiers[0].after_minutes: is required"},
        BadTiers{R"([{"after_minutes": 1, "action": "pause", "level": 1}])",
                 "services.s.sleep_tiers[0].level: is for the \"vllm_sleep\" action only"},
        BadTiers{R"([{"after_minutes": 1, "action": "pause", "lvl": 1}])",
                 "services.s.sleep_tiers[0].lvl: unknown key (known keys: action, "
                 "after_minutes, level)"},
        BadTiers{R"([{"after_minutes": 1, "action": "unload_models"}])",
                 "services.s.sleep_tiers[0].action: \"unload_models\" needs a model server: set "
                 "\"model_api\" or name the service as a model's provider"}));

TEST(Tiers, ADockerLabelSetsTheTiers) {
  auto sc = service_from_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.sleep-tiers", "pause:90s,stop:1h"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.sleep_tiers,
            (std::vector<SleepTier>{{1.5, TierAction::kPause}, {60, TierAction::kStop}}));
  auto bad = service_from_labels("web", {{"siesta.sleep-tiers", "pause=1m"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().message(),
            "container web: label siesta.sleep-tiers: must be action:duration pairs such as "
            "pause:1m,stop:1h (actions pause and stop), got \"pause=1m\"");
  auto order = service_from_labels("web", {{"siesta.sleep-tiers", "stop:1m,pause:2m"}});
  ASSERT_FALSE(order);
  EXPECT_EQ(order.status().message(),
            "config error in labels of container web: label siesta.sleep-tiers[1].action: no "
            "tier can follow \"stop\": it must be the last");
}

TEST(Tiers, SleepTiersAndIdleTimeoutMinutesTogetherAreRefused) {
  EXPECT_THROW(parse_config(R"({"services": {"s": {"command": ["s"], "idle_timeout_minutes": 3,
      "sleep_tiers": [{"after_minutes": 1, "action": "stop"}]}}})",
                            "bad.json"),
               ConfigError);
}

}  // namespace
}  // namespace siesta::testing
