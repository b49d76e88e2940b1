// The controller on fakes: wakes, sleeps, failures, requests in flight, reconcile, models.
#include <gtest/gtest.h>

#include <limits>
#include <thread>

#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

constexpr const char* kTwo = R"({
  "idle_timeout_minutes": 10, "idle_check_interval_minutes": 5,
  "services": {"a": {"command": ["a"]}, "b": {"command": ["b"], "idle_timeout_minutes": 3}}})";

TEST(Controller, ConcurrentWakesShareOneStart) {
  World w(kTwo);
  std::atomic<bool> release{false};
  w.backend.on_start = [&] {
    while (!release) std::this_thread::yield();
  };
  std::vector<std::thread> wakers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    wakers.emplace_back([&] { ok += w.controller->wake("a", "request").is_ok(); });
  }
  while (w.backend.count("start a") == 0) std::this_thread::yield();
  release = true;
  for (auto& t : wakers) t.join();
  EXPECT_EQ(ok, 20);
  EXPECT_EQ(w.backend.count("start a"), 1);
}

TEST(Controller, ConcurrentWakesOfAFailingServiceShareTheFailure) {
  World w(kTwo);
  w.backend.fail_start.insert("a");
  std::atomic<bool> release{false};
  w.backend.on_start = [&] {
    while (!release) std::this_thread::yield();
  };
  std::vector<std::thread> wakers;
  wakers.emplace_back([&] { (void)w.controller->wake("a", "request"); });
  while (w.backend.count("start a") == 0) std::this_thread::yield();
  for (int i = 0; i < 9; ++i)
    wakers.emplace_back([&] { (void)w.controller->wake("a", "request"); });
  while (w.controller->waiters("a") < 9) std::this_thread::yield();
  release = true;
  for (auto& t : wakers) t.join();
  // Wakers that queued behind the failing start share its result instead of retrying.
  EXPECT_EQ(w.backend.count("start a"), 1);
  EXPECT_EQ(w.service("a").state, ServiceState::kError);
}

TEST(Controller, StartFailureSetsErrorCountsAndIsRetriedForDesiredOn) {
  World w(R"({"idle_check_interval_minutes": 5,
              "services": {"r": {"command": ["r"], "desired": "on"}}})");
  w.backend.fail_start.insert("r");
  w.monitor->step();
  EXPECT_EQ(w.service("r").state, ServiceState::kError);
  EXPECT_EQ(w.service("r").last_error, "start failed: start refused");
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed r start"));
  EXPECT_EQ(w.backend.count("start r"), 1);
  w.monitor->step();  // no tight retry loop
  EXPECT_EQ(w.backend.count("start r"), 1);
  w.backend.fail_start.clear();
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_EQ(w.service("r").state, ServiceState::kRunning);
  EXPECT_EQ(w.backend.count("start r"), 2);
}

TEST(Controller, NotReadyWithinStartTimeoutIsAnErrorAndTheProcessIsStopped) {
  World w(R"({"services": {"a": {"command": ["a"], "start_timeout_seconds": 2}}})");
  w.backend.never_ready.insert("a");
  MonoTime t0 = w.clock.mono_now();
  Status st = w.controller->wake("a", "manual");
  EXPECT_EQ(st.code(), ErrorCode::kTimeout);
  EXPECT_GE(w.clock.mono_now() - t0, seconds(2));  // the fake clock advanced while polling
  EXPECT_LT(w.clock.mono_now() - t0, seconds(3));
  EXPECT_EQ(w.service("a").state, ServiceState::kError);
  EXPECT_EQ(w.backend.count("stop a"), 1);
}

TEST(Controller, ReadinessIsPolledFromTenMillisecondsWithACappedBackoff) {
  World w(R"({"services": {"a": {"command": ["a"], "start_timeout_seconds": 1}}})");
  w.backend.never_ready.insert("a");
  std::vector<MonoTime> probes;
  w.backend.on_probe = [&] { probes.push_back(w.clock.mono_now()); };
  (void)w.controller->wake("a", "manual");
  ASSERT_GT(probes.size(), 10u);
  std::vector<std::chrono::milliseconds> gaps;
  for (size_t i = 1; i < probes.size(); ++i) {
    gaps.push_back(
        std::chrono::duration_cast<std::chrono::milliseconds>(probes[i] - probes[i - 1]));
  }
  EXPECT_EQ(gaps.front(), std::chrono::milliseconds(10));
  EXPECT_EQ(gaps[1], std::chrono::milliseconds(15));
  EXPECT_TRUE(std::is_sorted(gaps.begin(), gaps.end()));
  EXPECT_EQ(gaps.back(), std::chrono::milliseconds(25));  // capped: ready is seen within 25 ms
}

TEST(Controller, AnUpgradedConnectionIsCountedAndStaysInFlightUntilItsRequestEnds) {
  World w(kTwo);  // a: 10 minutes
  w.run("a");
  ASSERT_TRUE(w.controller->begin_request("a"));
  w.controller->count_upgraded("a", true);
  EXPECT_EQ(w.service("a").upgraded, 1);
  EXPECT_EQ(w.service("a").in_flight, 1);
  w.clock.advance(minutes(60));  // a WebSocket open for six timeouts
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  w.controller->count_upgraded("a", false);
  EXPECT_EQ(w.service("a").upgraded, 0);
  EXPECT_EQ(w.service("a").in_flight, 1);  // until the request itself ends
  w.controller->end_request("a");
  w.clock.advance(minutes(10));
  w.monitor->step();
  EXPECT_EQ(w.backend.count("stop a"), 1);
}

TEST(Controller, ARequestInFlightBlocksSleepAndItsEndStartsTheIdleTimer) {
  World w(kTwo);  // a: 10 minutes
  w.run("a");
  auto state = w.controller->begin_request("a");
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, ServiceState::kRunning);
  EXPECT_EQ(w.service("a").in_flight, 1);
  w.clock.advance(minutes(30));  // a stream three times the timeout
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  EXPECT_EQ(w.backend.count("stop a"), 0);

  w.controller->end_request("a");
  EXPECT_EQ(w.service("a").in_flight, 0);
  EXPECT_EQ(w.service("a").last_used, w.clock.wall_now());  // idle from the end, not the start
  w.clock.advance(minutes(9));
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.controller->begin_request("nope").status().code(), ErrorCode::kNotFound);
}

TEST(Controller, StopFailureIsAnErrorNotACrash) {
  World w(kTwo);
  w.run("b");
  w.backend.fail_stop.insert("b");
  w.clock.advance(minutes(3));
  w.monitor->step();
  EXPECT_EQ(w.service("b").state, ServiceState::kError);
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed b stop"));
}

TEST(Controller, ManualSleepOfADesiredOnServiceIsRefused) {
  World w(R"({"services": {"r": {"command": ["r"], "desired": "on"}}})");
  w.run("r");
  EXPECT_EQ(w.controller->sleep("r").code(), ErrorCode::kConflict);
  EXPECT_EQ(w.service("r").state, ServiceState::kRunning);
}

TEST(Controller, SleepingTheProviderMarksItsModelsUnloaded) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"llama3.2:3b": {"provider": "ollama"}}})");
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_model("llama3.2:3b"));
  ASSERT_TRUE(w.controller->sleep("ollama"));
  EXPECT_FALSE(w.model("llama3.2:3b").loaded);
  EXPECT_THAT(w.recorder.events(),
              ElementsAre("slept ollama manual", "unloaded llama3.2:3b service_sleep"));
}

TEST(Controller, FailedUnloadIsCountedShownAndRetriedLater) {
  World w(R"({"model_keep_alive_hours": 1, "idle_check_interval_minutes": 5,
              "services": {"ollama": {"command": ["o"], "idle_sleep_enabled": false}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_model("m"));
  w.provider.loaded_models.insert("m");
  w.provider.fail_unload = true;
  w.clock.advance(std::chrono::hours(1));
  w.monitor->step();
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(w.model("m").last_error, "unload failed: ollama did not answer");
  w.monitor->step();
  EXPECT_EQ(w.provider.calls.size(), 1u);  // waits for the retry time
  w.provider.fail_unload = false;
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_THAT(w.recorder.events(), ElementsAre("unload_failed m", "unloaded m expired"));
}

TEST(Controller, ReconcileTracksModelsLoadedAndUnloadedOutsideSiesta) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"known": {"provider": "ollama"}}})");
  w.run("ollama");
  w.provider.loaded_models = {"known", "qwen2:7b"};
  w.controller->reconcile();
  EXPECT_TRUE(w.model("known").loaded);
  ASSERT_TRUE(w.registry->model("qwen2:7b"));
  EXPECT_EQ(w.registry->model("qwen2:7b")->spec->provider, "ollama");
  w.provider.loaded_models = {"qwen2:7b"};
  w.controller->reconcile();
  EXPECT_FALSE(w.model("known").loaded);
  EXPECT_THAT(w.recorder.events(), ElementsAre("unloaded known external"));
}

TEST(Controller, AModelStillLoadingForARequestIsNotTakenForUnloaded) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  auto ticket = w.controller->begin_model_request("m", "ollama");
  ASSERT_TRUE(ticket);  // was not loaded
  auto second = w.controller->begin_model_request("m", "ollama");
  w.provider.loaded_models = {"m"};  // loaded meanwhile: /api/ps shows it before any answer
  w.controller->reconcile();
  EXPECT_TRUE(w.controller->model_accepted("m", 600, ticket));   // this one paid the load
  EXPECT_FALSE(w.controller->model_accepted("m", 600, second));  // ... not this one too
  w.controller->end_model_request("m", true);
  w.provider.loaded_models = {};  // Ollama lists a model only once it has loaded
  w.controller->reconcile();
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(w.model("m").in_flight, 1);
  w.controller->end_model_request("m", true);
  EXPECT_EQ(w.model("m").in_flight, 0);
  EXPECT_EQ(w.model("m").keep_alive_seconds, 600);
  w.clock.advance(std::chrono::seconds(599));
  w.provider.loaded_models = {"m"};
  w.monitor->step();
  EXPECT_TRUE(w.model("m").loaded);
  w.clock.advance(std::chrono::seconds(1));  // 600 s after the request ended
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("unloaded m expired"));
}

TEST(Controller, AModelIsLoadedOnlyOnceItsServerAcceptedARequest) {
  // Issue 14, item 4: a generate for a model Ollama does not have (404) showed it loaded, with a
  // keep-alive timer and a load counted.
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  w.controller->begin_model_request("nope:1b", "ollama");
  ASSERT_TRUE(w.registry->model("nope:1b"));  // in flight while its request runs
  EXPECT_FALSE(w.model("nope:1b").loaded);
  EXPECT_EQ(w.model("nope:1b").in_flight, 1);
  w.controller->end_model_request("nope:1b", /*accepted=*/false);
  EXPECT_FALSE(w.registry->model("nope:1b"));  // forgotten: it was never loaded
  // A configured model is kept, and not loaded by a failed request.
  w.controller->begin_model_request("m", "ollama");
  w.controller->end_model_request("m", false);
  ASSERT_TRUE(w.registry->model("m"));
  EXPECT_FALSE(w.model("m").loaded);
  // Two requests on a new name: the first failing does not forget it under the second.
  w.controller->begin_model_request("new:1b", "ollama");
  w.controller->begin_model_request("new:1b", "ollama");
  w.controller->end_model_request("new:1b", false);
  ASSERT_TRUE(w.registry->model("new:1b"));
  EXPECT_TRUE(w.controller->model_accepted("new:1b", 600, 0));  // its first load
  w.controller->end_model_request("new:1b", true);
  EXPECT_TRUE(w.model("new:1b").loaded);
  EXPECT_EQ(w.model("new:1b").keep_alive_seconds, 600);
  EXPECT_TRUE(w.recorder.events().empty());
}

TEST(Controller, LearnedModelsAreBoundedTheOldestUnloadedForgottenFirst) {
  World w(R"({"max_learned_models": 2, "services": {"ollama": {"command": ["o"]}},
              "models": {"configured": {"provider": "ollama"}}})");
  w.run("ollama");
  auto use = [&](const std::string& m) {
    auto ticket = w.controller->begin_model_request(m, "ollama");
    w.controller->model_accepted(m, 600, ticket);
    w.controller->end_model_request(m, true);
    w.clock.advance(std::chrono::seconds(1));
  };
  use("a");
  use("b");
  use("c");  // a, b and c are loaded: none is forgotten, the limit notwithstanding
  EXPECT_EQ(w.registry->model_names(), (std::vector<std::string>{"a", "b", "c", "configured"}));
  ASSERT_TRUE(w.controller->unload_model("b"));
  ASSERT_TRUE(w.controller->unload_model("a"));  // a was used before b
  use("d");                                      // 4 learned > 2: a, then b, the oldest unloaded
  EXPECT_EQ(w.registry->model_names(), (std::vector<std::string>{"c", "configured", "d"}));
  ASSERT_TRUE(w.controller->unload_model("c"));
  ASSERT_TRUE(w.controller->unload_model("configured"));
  use("e");  // c goes; a configured model is never forgotten
  EXPECT_EQ(w.registry->model_names(), (std::vector<std::string>{"configured", "d", "e"}));
}

TEST(Controller, AdminLoadOfAnInstalledModelSiestaHasNotSeenLearnsIt) {
  // Issue 14, item 6: a model in /api/tags but not in the config or traffic answered 404.
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.provider.installed = {"m", "qwen2.5:7b"};
  ASSERT_TRUE(w.controller->load_model("qwen2.5:7b"));  // one model server: no question asked
  ASSERT_TRUE(w.registry->model("qwen2.5:7b"));
  EXPECT_EQ(w.registry->model("qwen2.5:7b")->spec->provider, "ollama");
  EXPECT_TRUE(w.model("qwen2.5:7b").loaded);
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);  // woken first
  Status st = w.controller->load_model("nope:1b");
  EXPECT_EQ(st.code(), ErrorCode::kNotFound) << st.message();
  EXPECT_FALSE(w.registry->model("nope:1b"));
}

TEST(Controller, AdminLoadFindsWhichOfSeveralModelServersHasTheModel) {
  World w(R"({"services": {"ollama": {"command": ["o"], "model_api": "ollama"},
                           "ollama-b": {"command": ["b"], "model_api": "ollama"}}})");
  w.run("ollama");
  w.provider.installed = {"llama3.2:3b"};
  w.provider_b.installed = {"qwen2.5:7b"};
  ASSERT_TRUE(w.controller->load_model("qwen2.5:7b"));
  EXPECT_EQ(w.registry->model("qwen2.5:7b")->spec->provider, "ollama-b");
  // The running server was asked first; the stopped one was woken to be asked.
  EXPECT_THAT(w.provider.calls, ElementsAre("list_installed"));
  EXPECT_THAT(w.provider_b.calls, ElementsAre("list_installed", "load qwen2.5:7b"));
  ASSERT_TRUE(w.controller->load_model("llama3.2:3b"));
  EXPECT_EQ(w.registry->model("llama3.2:3b")->spec->provider, "ollama");
  EXPECT_EQ(w.controller->load_model("nope:1b").code(), ErrorCode::kNotFound);
  EXPECT_FALSE(w.registry->model("nope:1b"));
}

TEST(Controller, ForcedUnloadOfAnUnloadedModelIsANoOp) {
  World w(
      R"({"services": {"ollama": {"command": ["o"]}}, "models": {"m": {"provider": "ollama"}}})");
  EXPECT_TRUE(w.controller->unload_model("m"));
  EXPECT_TRUE(w.provider.calls.empty());
  EXPECT_EQ(w.controller->unload_model("nope").code(), ErrorCode::kNotFound);
}

TEST(Controller, InspectFailureShowsAnErrorAndTheMonitorGoesOn) {
  World w(kTwo);
  w.run("a");
  w.run("b");
  w.backend.fail_inspect = true;
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kError);
  EXPECT_EQ(w.service("a").last_error, "inspect failed: backend unreachable");
  w.backend.fail_inspect = false;
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);  // picked up again
}

// The failure is recorded once, as an operation (an enum, a string only in the answer and the
// metrics), however many passes see the backend unreachable again for the same reason.
TEST(Controller, ARepeatedInspectFailureIsCountedOnce) {
  World w(kTwo);
  w.run("a");
  w.backend.fail_inspect = true;
  w.monitor->step();
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_EQ(w.service("a").failed_operation, ServiceOperation::kInspect);
  EXPECT_THAT(w.recorder.events(), ElementsAre("failed a inspect", "failed b inspect"));
}

TEST(Controller, AServiceDownWhileTheBackendWasUnreachableIsStoppedWhenItAnswers) {
  World w(kTwo);
  w.run("a");
  w.backend.fail_inspect = true;
  w.monitor->step();
  ASSERT_EQ(w.service("a").state, ServiceState::kError);
  w.backend.running.erase("a");  // e.g. the engine restarted and took its containers down
  w.backend.fail_inspect = false;
  w.controller->refresh("a");
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("a").last_error, "inspect failed: backend unreachable");  // kept
  ASSERT_TRUE(w.controller->wake("a", "manual"));  // and it can be woken again
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
}

TEST(Controller, AFailedStartStaysAnErrorUntilTheNextWake) {
  World w(kTwo);
  w.backend.fail_start.insert("a");
  EXPECT_FALSE(w.controller->wake("a", "manual"));
  w.controller->refresh("a");  // not running, but the start failed: still an error
  EXPECT_EQ(w.service("a").state, ServiceState::kError);
  EXPECT_EQ(w.service("a").last_error, "start failed: start refused");
  w.backend.fail_start.clear();
  EXPECT_TRUE(w.controller->wake("a", "manual"));
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
}

TEST(Controller, AddedServiceIsReadAtOnceAndSleepsLikeAnyOther) {
  World w(kTwo);
  ServiceSpec spec;
  spec.name = "found";
  spec.backend = "docker";
  spec.idle_timeout_minutes = 10;
  w.backend.running.insert("found");  // already up when discovered
  ASSERT_TRUE(w.controller->add_service(spec, true, Desired::kOff));
  EXPECT_EQ(w.service("found").state, ServiceState::kRunning);
  EXPECT_EQ(w.service("found").last_used, w.clock.wall_now());  // idle timer starts now
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("added found"));
  Status again = w.controller->add_service(spec, true, Desired::kOff);
  EXPECT_EQ(again.code(), ErrorCode::kConflict);

  w.clock.advance(minutes(10));
  w.monitor->step();
  EXPECT_EQ(w.service("found").state, ServiceState::kStopped);
  EXPECT_EQ(w.backend.count("stop found"), 1);
}

TEST(Controller, AModelServersKeepAliveIsTheDefaultOfTheModelsItServes) {
  // Issue 17: a discovered model server (siesta.model-keep-alive) sets the keep-alive of the
  // models it serves that have no "models" entry; a configured model keeps its own.
  World w(R"({"model_keep_alive_hours": 2,
              "services": {"ollama": {"command": ["o"], "model_keep_alive_hours": 0.5}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  w.run("ollama");
  EXPECT_EQ(w.controller->keep_alive_policy("new:1b", "ollama").configured_seconds, 1800);
  EXPECT_EQ(w.controller->keep_alive_policy("new:1b").configured_seconds, 7200);  // no server
  EXPECT_EQ(w.controller->keep_alive_policy("m", "ollama").configured_seconds, 3600);
  // Learned from traffic ...
  w.controller->begin_model_request("new:1b", "ollama");
  ASSERT_TRUE(w.registry->model("new:1b"));
  EXPECT_EQ(w.registry->model("new:1b")->spec->keep_alive_hours, 0.5);
  // ... or found loaded on the server.
  w.provider.loaded_models = {"other:7b"};
  w.controller->reconcile();
  ASSERT_TRUE(w.registry->model("other:7b"));
  EXPECT_TRUE(w.model("other:7b").loaded);
  w.clock.advance(std::chrono::minutes(29));
  w.monitor->step();
  EXPECT_TRUE(w.model("other:7b").loaded);
  w.clock.advance(std::chrono::minutes(1));  // 30 minutes: the server's keep-alive, not 2 h
  w.monitor->step();
  EXPECT_FALSE(w.model("other:7b").loaded);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("unloaded other:7b expired"));
}

// The timers the controller sets itself come from decide.h (first_tier_at, keep_alive_ends,
// retry_at, model_server_keep_alive): on the fake clock, each lands where decide() acts.

TEST(Controller, ARequestsEndWakesTheMonitorForTheFirstTierDeadline) {
  World w(R"({"idle_timeout_minutes": 10, "services": {"a": {"command": ["a"],
              "sleep_tiers": [{"after_minutes": 2, "action": "pause"},
                              {"after_minutes": 30, "action": "stop"}]}}})");
  w.run("a");
  const WallTime now = w.clock.wall_now();
  ChangeSignal& signal = w.registry->changes();
  signal.plan_wake(now + minutes(2));  // the monitor sleeps until exactly that deadline
  ASSERT_TRUE(w.controller->begin_request("a"));
  const auto g0 = signal.generation();
  w.controller->end_request("a");
  EXPECT_EQ(signal.generation(), g0);  // first_tier_at(now) is not before it: no wake-up
  signal.plan_wake(now + minutes(2) + seconds(1));
  ASSERT_TRUE(w.controller->begin_request("a"));
  w.controller->end_request("a");
  EXPECT_EQ(signal.generation(), g0 + 1);  // 2 minutes, the first tier, not the 10 or 30
  EXPECT_EQ(*decide(w.registry->snapshot(), now).next_deadline,
            first_tier_at(w.registry->settings(), *w.registry->service("a")->spec, now));
}

TEST(Controller, AModelRequestsKeepAliveEndsWhereTheMonitorUnloadsIt) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  w.run("ollama");
  w.provider.loaded_models.insert("m");  // as the server will list it
  const WallTime now = w.clock.wall_now();
  (void)w.controller->begin_model_request("m", "ollama");
  w.controller->model_accepted("m", 60, std::nullopt);  // the request's own keep_alive
  w.controller->end_model_request("m", true);
  const Settings settings = w.registry->settings();
  EXPECT_EQ(keep_alive_ends(settings, *w.registry->model("m")->spec, w.model("m")),
            now + seconds(60));
  EXPECT_EQ(w.monitor->step(), now + seconds(60));  // the monitor sleeps until exactly then
  w.clock.advance(seconds(60));
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  // A client's "forever" is bounded by the model's keep_alive_max_seconds (a day).
  (void)w.controller->begin_model_request("m", "ollama");
  w.controller->model_accepted("m", std::numeric_limits<double>::infinity(), std::nullopt);
  w.controller->end_model_request("m", true);
  const WallTime later = w.clock.wall_now();
  EXPECT_EQ(keep_alive_ends(settings, *w.registry->model("m")->spec, w.model("m")),
            later + std::chrono::hours(24));
  const Decision d = decide(w.registry->snapshot(), later);
  ASSERT_EQ(d.models.size(), 1u);
  EXPECT_EQ(d.models[0].keep_alive_until, later + std::chrono::hours(24));
}

TEST(Controller, FailuresAreRetriedAtRetryAt) {
  World w(R"({"idle_check_interval_minutes": 5,
              "services": {"r": {"command": ["r"], "desired": "on"}}})");
  w.backend.fail_start.insert("r");
  const WallTime now = w.clock.wall_now();
  EXPECT_FALSE(w.controller->wake("r", "desired"));
  EXPECT_EQ(w.service("r").retry_at, retry_at(w.registry->settings(), now));
}

TEST(Controller, AnAdminLoadAsksTheServerForTheKeepAlivePlusTheGrace) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  ASSERT_TRUE(w.controller->load_model("m"));
  EXPECT_THAT(w.provider.load_keep_alives, ElementsAre(model_server_keep_alive(3600)));
  EXPECT_THAT(w.provider.load_keep_alives, ElementsAre(3600 + kModelServerGraceSeconds));
}

}  // namespace
}  // namespace siesta::testing
