// decide(): every skip rule and boundary, on hand-built snapshots and a fixed `now`.
#include "siesta/core/decide.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace siesta {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

const WallTime kNow = from_unix_seconds(1'700'000'000);

ServiceView service(const std::string& name, ServiceState state, std::optional<WallTime> last_used,
                    std::optional<double> timeout_override = std::nullopt) {
  auto spec = std::make_shared<ServiceSpec>();
  spec->name = name;
  spec->idle_timeout_minutes = timeout_override;
  ServiceRuntime rt;
  rt.state = state;
  rt.last_used = last_used;
  rt.state_since = kNow - std::chrono::hours(10);
  return {spec, rt};
}

ModelView model(const std::string& name, bool loaded, std::optional<WallTime> last_used) {
  auto spec = std::make_shared<ModelSpec>();
  spec->name = name;
  spec->provider = "ollama";
  ModelRuntime rt;
  rt.loaded = loaded;
  rt.last_used = last_used;
  return {spec, rt};
}

Snapshot one(ServiceView v, Settings s = {}) {
  Snapshot snap;
  snap.settings = s;
  snap.services.push_back(std::move(v));
  return snap;
}

TEST(Decide, IdleLongerThanTimeoutSleeps) {
  Decision d = decide(one(service("whisper", ServiceState::kRunning, kNow - minutes(120))), kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0], (Action{ActionKind::kSleepService, "whisper", Reason::kIdle}));
  EXPECT_EQ(d.services[0].idle_for->count(), 7200.0);
  EXPECT_EQ(d.services[0].sleeps_in->count(), 0.0);
}

TEST(Decide, ExactlyAtTheTimeoutSleepsAndJustBeforeDoesNot) {
  auto before =
      decide(one(service("a", ServiceState::kRunning, kNow - minutes(60) + seconds(1))), kNow);
  EXPECT_TRUE(before.actions.empty());
  EXPECT_DOUBLE_EQ(before.services[0].sleeps_in->count(), 1.0);
  ASSERT_TRUE(before.next_deadline);
  EXPECT_EQ(*before.next_deadline, kNow + seconds(1));

  auto at = decide(one(service("a", ServiceState::kRunning, kNow - minutes(60))), kNow);
  ASSERT_EQ(at.actions.size(), 1u);
  EXPECT_EQ(at.actions[0].kind, ActionKind::kSleepService);
  EXPECT_FALSE(at.next_deadline);  // nothing else is due later
}

TEST(Decide, MasterSwitchOffBlocksEverything) {
  Settings s;
  s.idle_sleep_enabled = false;
  Snapshot snap = one(service("a", ServiceState::kRunning, kNow - minutes(600)), s);
  snap.models.push_back(model("m", true, kNow - std::chrono::hours(10)));
  Decision d = decide(snap, kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(d.services[0].blocker, SleepBlocker::kGlobalDisabled);
  EXPECT_FALSE(d.services[0].sleeps_at);
  EXPECT_EQ(d.models[0].blocker, UnloadBlocker::kGlobalDisabled);
  EXPECT_FALSE(d.next_deadline);
}

TEST(Decide, ServiceIdleSleepDisabledIsSkipped) {
  ServiceView v = service("redis", ServiceState::kRunning, kNow - minutes(600));
  v.runtime.idle_sleep_enabled = false;
  Decision d = decide(one(v), kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(d.services[0].blocker, SleepBlocker::kServiceDisabled);
  EXPECT_STREQ(describe(d.services[0].blocker), "idle sleep is disabled for this service");
}

TEST(Decide, DesiredOnIsSkipped) {
  ServiceView v = service("redis", ServiceState::kRunning, kNow - minutes(600));
  v.runtime.desired = Desired::kOn;
  Decision d = decide(one(v), kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(d.services[0].blocker, SleepBlocker::kDesiredOn);
}

TEST(Decide, DesiredOnAndStoppedIsStarted) {
  ServiceView v = service("redis", ServiceState::kStopped, std::nullopt);
  v.runtime.desired = Desired::kOn;
  Decision d = decide(one(v), kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0], (Action{ActionKind::kStartService, "redis", Reason::kDesired}));
}

TEST(Decide, DesiredOnInErrorIsRetriedOnlyAfterTheRetryTime) {
  ServiceView v = service("redis", ServiceState::kError, std::nullopt);
  v.runtime.desired = Desired::kOn;
  v.runtime.retry_at = kNow + minutes(5);
  Decision early = decide(one(v), kNow);
  EXPECT_TRUE(early.actions.empty());
  EXPECT_EQ(*early.next_deadline, kNow + minutes(5));
  Decision later = decide(one(v), kNow + minutes(5));
  ASSERT_EQ(later.actions.size(), 1u);
  EXPECT_EQ(later.actions[0].kind, ActionKind::kStartService);
}

TEST(Decide, StoppedOrStartingServicesHaveNoTimer) {
  for (ServiceState st : {ServiceState::kStopped, ServiceState::kStarting, ServiceState::kStopping,
                          ServiceState::kError}) {
    Decision d = decide(one(service("a", st, kNow - minutes(600))), kNow);
    EXPECT_TRUE(d.actions.empty()) << to_string(st);
    EXPECT_EQ(d.services[0].blocker, SleepBlocker::kNotRunning) << to_string(st);
  }
}

TEST(Decide, InFlightRequestsBlockSleep) {
  ServiceView v = service("ollama", ServiceState::kRunning, kNow - minutes(600));
  v.runtime.in_flight = 1;
  Decision d = decide(one(v), kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(d.services[0].blocker, SleepBlocker::kInFlight);
}

TEST(Decide, PerServiceOverrideBeatsTheGlobalTimeout) {
  Decision d = decide(one(service("a", ServiceState::kRunning, kNow - minutes(20), 15.0)), kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.services[0].timeout, Seconds(900));
  Decision d2 = decide(one(service("b", ServiceState::kRunning, kNow - minutes(20), 120.0)), kNow);
  EXPECT_TRUE(d2.actions.empty());
  EXPECT_DOUBLE_EQ(d2.services[0].sleeps_in->count(), 100 * 60.0);
}

TEST(Decide, FractionalSettings) {
  Settings s;
  s.idle_timeout_minutes = 0.02;   // 1.2 s
  s.model_keep_alive_hours = 0.5;  // 30 min
  Snapshot snap =
      one(service("a", ServiceState::kRunning, kNow - std::chrono::milliseconds(1100)), s);
  snap.models.push_back(model("m", true, kNow - minutes(29)));
  Decision d = decide(snap, kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NEAR(d.services[0].sleeps_in->count(), 0.1, 1e-9);
  EXPECT_NEAR(d.models[0].unloads_in->count(), 60.0, 1e-9);
  EXPECT_EQ(*d.next_deadline, kNow + std::chrono::milliseconds(100));

  Decision later = decide(snap, kNow + std::chrono::milliseconds(100));
  ASSERT_EQ(later.actions.size(), 1u);
  EXPECT_EQ(later.actions[0].name, "a");
}

TEST(Decide, SettingsChangedAtRuntimeMoveTheDeadline) {
  Snapshot snap = one(service("a", ServiceState::kRunning, kNow - minutes(40)));
  EXPECT_TRUE(decide(snap, kNow).actions.empty());  // 60 min timeout
  snap.settings.idle_timeout_minutes = 30;          // POST /admin/settings {"idleTimeout": 30}
  Decision d = decide(snap, kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, ActionKind::kSleepService);
}

TEST(Decide, NeverUsedRunningServiceIdlesFromWhenItWasSeenRunning) {
  ServiceView v = service("a", ServiceState::kRunning, std::nullopt);
  v.runtime.state_since = kNow - minutes(59);
  Decision d = decide(one(v), kNow);
  EXPECT_FALSE(d.services[0].idle_for);
  EXPECT_EQ(*d.services[0].sleeps_at, kNow + minutes(1));
}

TEST(Decide, ModelUnloadsWhenKeepAliveHasPassed) {
  Snapshot snap;
  snap.models.push_back(model("llama3.2:3b", true, kNow - std::chrono::hours(2)));
  Decision d = decide(snap, kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0],
            (Action{ActionKind::kUnloadModel, "llama3.2:3b", Reason::kExpired, 0, "ollama"}));
  EXPECT_EQ(*d.models[0].keep_alive_until, kNow);
}

TEST(Decide, ModelKeepAliveOverridesAndBlockers) {
  Snapshot snap;
  ModelView per_model = model("a", true, kNow - minutes(50));
  std::const_pointer_cast<ModelSpec>(per_model.spec)->keep_alive_hours = 1.0;
  ModelView per_use = model("b", true, kNow - minutes(50));
  per_use.runtime.keep_alive_seconds = 600;  // a client asked for 10 minutes
  ModelView busy = model("c", true, kNow - std::chrono::hours(5));
  busy.runtime.in_flight = 2;
  ModelView unloaded = model("d", false, kNow - std::chrono::hours(5));
  ModelView failed = model("e", true, kNow - std::chrono::hours(5));
  failed.runtime.retry_at = kNow + minutes(3);
  snap.models = {per_model, per_use, busy, unloaded, failed};
  Decision d = decide(snap, kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].name, "b");
  EXPECT_EQ(*d.models[0].unloads_in, Seconds(600));
  EXPECT_EQ(d.models[2].blocker, UnloadBlocker::kInFlight);
  EXPECT_EQ(d.models[3].blocker, UnloadBlocker::kNotLoaded);
  EXPECT_FALSE(d.models[3].keep_alive_until);
  EXPECT_EQ(d.models[4].blocker, UnloadBlocker::kRetryWait);
  EXPECT_EQ(*d.next_deadline, kNow + minutes(3));  // earlier than model a's 10 minutes
}

TEST(Decide, EveryKeepAliveSourceIsClampedIntoTheModelsBounds) {
  // Issue 14, item 8: keep_alive_max_seconds 15, yet "modelKeepAlive": 1 (hour) gave 3,600 s.
  auto bounded = [](ModelView v) {
    auto spec = std::const_pointer_cast<ModelSpec>(v.spec);
    spec->keep_alive_min_seconds = 5;
    spec->keep_alive_max_seconds = 15;
    return v;
  };
  Settings s;
  s.model_keep_alive_hours = 1;
  ModelView global = bounded(model("global", true, kNow));
  ModelView configured = bounded(model("configured", true, kNow));
  std::const_pointer_cast<ModelSpec>(configured.spec)->keep_alive_hours = 2.0;
  ModelView client = bounded(model("client", true, kNow));
  client.runtime.keep_alive_seconds = 600;
  ModelView tiny = bounded(model("tiny", true, kNow));
  std::const_pointer_cast<ModelSpec>(tiny.spec)->keep_alive_hours = 0.0;
  Snapshot snap;
  snap.settings = s;
  snap.models = {global, configured, client, tiny};
  Decision d = decide(snap, kNow);
  EXPECT_EQ(d.models[0].keep_alive, Seconds(15));
  EXPECT_EQ(d.models[1].keep_alive, Seconds(15));
  EXPECT_EQ(d.models[2].keep_alive, Seconds(15));
  EXPECT_EQ(d.models[3].keep_alive, Seconds(5));
  EXPECT_EQ(*d.models[0].keep_alive_until, kNow + seconds(15));
  EXPECT_EQ(effective_keep_alive(s, *global.spec, global.runtime), Seconds(15));
}

TEST(Decide, NextDeadlineIsTheEarliestAcrossServicesAndModels) {
  Snapshot snap;
  snap.services.push_back(service("a", ServiceState::kRunning, kNow - minutes(10)));  // +50 min
  snap.services.push_back(service("b", ServiceState::kRunning, kNow - minutes(55)));  // +5 min
  snap.models.push_back(model("m", true, kNow - minutes(118)));                       // +2 min
  Decision d = decide(snap, kNow);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(*d.next_deadline, kNow + minutes(2));
}

// The timers set outside decide() (a request's end, a retry, a load) come from decide.h too,
// and agree with what decide() finds due.

TEST(DecideTimers, AUsesEndMakesTheFirstTierDueAfterTheIdleTimeoutOrTheFirstSleepTier) {
  Settings settings;
  settings.idle_timeout_minutes = 60;
  ServiceSpec spec;
  EXPECT_EQ(first_tier_at(settings, spec, {}, kNow), kNow + minutes(60));  // the global timeout
  spec.idle_timeout_minutes = 3;
  EXPECT_EQ(first_tier_at(settings, spec, {}, kNow), kNow + minutes(3));  // its own
  spec.sleep_tiers = {{2, TierAction::kPause}, {30, TierAction::kStop}};
  EXPECT_EQ(first_tier_at(settings, spec, {}, kNow), kNow + minutes(2));  // its first tier
  // The deadline is the one decide() reports for a service last used then.
  auto view = service("a", ServiceState::kRunning, kNow, 3);
  EXPECT_EQ(*decide(one(view, settings), kNow).next_deadline,
            first_tier_at(settings, *view.spec, view.runtime, kNow));
}

TEST(DecideTimers, AKeepAliveEndsItsEffectiveKeepAliveAfterTheLastUseAndNeverWhenForever) {
  Settings settings;
  settings.model_keep_alive_hours = 2;
  auto view = model("m", true, kNow);
  EXPECT_EQ(keep_alive_ends(settings, *view.spec, view.runtime), kNow + std::chrono::hours(2));
  view.runtime.keep_alive_seconds = 90;  // a request's own
  EXPECT_EQ(keep_alive_ends(settings, *view.spec, view.runtime), kNow + seconds(90));
  view.runtime.keep_alive_seconds = std::numeric_limits<double>::infinity();
  EXPECT_EQ(keep_alive_ends(settings, *view.spec, view.runtime),  // within its max, a day
            kNow + std::chrono::hours(24));
  ModelSpec unbounded = *view.spec;
  unbounded.keep_alive_max_seconds = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(keep_alive_ends(settings, unbounded, view.runtime));
  view.runtime.keep_alive_seconds.reset();
  view.runtime.last_used.reset();
  EXPECT_FALSE(keep_alive_ends(settings, *view.spec, view.runtime));
  // decide() unloads at the same instant.
  auto used = model("m", true, kNow - std::chrono::hours(2));
  Snapshot snap;
  snap.settings = settings;
  snap.models.push_back(used);
  EXPECT_EQ(keep_alive_ends(settings, *used.spec, used.runtime), kNow);
  ASSERT_EQ(decide(snap, kNow).actions.size(), 1u);
}

TEST(DecideTimers, AFailureIsRetriedOneCheckIntervalLater) {
  Settings settings;
  settings.idle_check_interval_minutes = 5;
  EXPECT_EQ(reconcile_interval(settings), Seconds(300));
  EXPECT_EQ(retry_delay(settings), Seconds(300));
  EXPECT_EQ(retry_at(settings, kNow), kNow + minutes(5));
}

TEST(DecideTimers, TheKeepAlivePolicyOfAKnownModelAndOfOneItsServerWouldLearn) {
  Settings settings;
  settings.model_keep_alive_hours = 2;
  ModelSpec known;
  known.keep_alive_hours = 1;
  known.keep_alive_min_seconds = 60;
  known.keep_alive_max_seconds = 7200;
  ServiceSpec server;
  server.model_keep_alive_hours = 0.5;
  KeepAlivePolicy p = keep_alive_policy(settings, &known, &server);  // its own wins
  EXPECT_EQ(p.default_seconds, 3600);
  EXPECT_EQ(p.min_seconds, 60);
  EXPECT_EQ(p.max_seconds, 7200);
  EXPECT_EQ(keep_alive_policy(settings, nullptr, &server).default_seconds, 1800);
  EXPECT_EQ(keep_alive_policy(settings, nullptr, nullptr).default_seconds, 7200);
  const ModelSpec defaults;
  EXPECT_EQ(keep_alive_policy(settings, nullptr, nullptr).min_seconds,
            defaults.keep_alive_min_seconds);
  EXPECT_EQ(keep_alive_policy(settings, nullptr, nullptr).max_seconds,
            defaults.keep_alive_max_seconds);
}

TEST(DecideTimers, AModelServerIsToldTheKeepAlivePlusAGraceAndForeverStaysForever) {
  EXPECT_EQ(model_server_keep_alive(600), 900);
  EXPECT_EQ(model_server_keep_alive(0), kModelServerGraceSeconds);
  EXPECT_TRUE(std::isinf(model_server_keep_alive(std::numeric_limits<double>::infinity())));
}

// The words are the metrics' `reason` label values and GET /admin/events' (docs/metrics.md):
// dashboards and alerts match them, so each is pinned here.
TEST(Reason, EachIsTheWordDashboardsAndAlertsMatch) {
  const std::pair<Reason, const char*> words[] = {{Reason::kRequest, "request"},
                                                  {Reason::kManual, "manual"},
                                                  {Reason::kDesired, "desired"},
                                                  {Reason::kSchedule, "schedule"},
                                                  {Reason::kPrewarm, "prewarm"},
                                                  {Reason::kIdle, "idle"},
                                                  {Reason::kExpired, "expired"},
                                                  {Reason::kForced, "forced"},
                                                  {Reason::kServiceSleep, "service_sleep"},
                                                  {Reason::kExternal, "external"},
                                                  {Reason::kSleepTier, "sleep_tier"},
                                                  {Reason::kMakeRoom, "make_room"}};
  for (const auto& [reason, word] : words) EXPECT_STREQ(to_string(reason), word);
}

}  // namespace
}  // namespace siesta
