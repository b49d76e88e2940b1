// The monitor on fakes: deadlines, reconcile, claims against a use or a wake, the change signal
// (the controller's own tests are in controller_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>

#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr const char* kTwo = R"({
  "idle_timeout_minutes": 10, "idle_check_interval_minutes": 5,
  "services": {"a": {"command": ["a"]}, "b": {"command": ["b"], "idle_timeout_minutes": 3}}})";

TEST(Monitor, StepReturnsTheNextDeadlineNotTheCheckInterval) {
  World w(kTwo);
  w.run("a");
  w.run("b");
  WallTime t0 = w.clock.wall_now();
  WallTime next = w.monitor->step();
  EXPECT_EQ(next, t0 + minutes(3));  // b's deadline comes before the 5-minute reconcile
  w.clock.advance(minutes(3));
  next = w.monitor->step();
  EXPECT_EQ(w.service("b").state, ServiceState::kStopped);
  EXPECT_EQ(next, t0 + minutes(5));  // now the reconcile is next (a sleeps at +10)
}

TEST(Monitor, ReconcileSeesAProcessThatDiedAndOneStartedOutside) {
  World w(kTwo);
  w.run("a");
  w.monitor->step();
  w.backend.running.erase("a");   // crashed
  w.backend.running.insert("b");  // started by someone else
  w.clock.advance(minutes(4));
  w.monitor->step();  // reconcile not due yet
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
  // b gets an idle timer from when it was first seen, and is put to sleep like any other.
  EXPECT_EQ(*w.service("b").last_used, w.clock.wall_now());
  w.clock.advance(minutes(3));
  w.monitor->step();
  EXPECT_EQ(w.service("b").state, ServiceState::kStopped);
}

// The monitor alone, on a fake MonitorActions: what it asks for, in order, and that a refused
// claim leaves the slow step undone.
class RecordingActions final : public MonitorActions {
 public:
  bool claim_sleep(const std::string& s) override { return add("claim_sleep " + s, grant); }
  void finish_sleep(const std::string& s) override { add("finish_sleep " + s); }
  bool claim_light_sleep(const std::string& s, std::size_t tier) override {
    return add("claim_light_sleep " + s + " " + std::to_string(tier), grant);
  }
  void finish_light_sleep(const std::string& s, std::size_t tier) override {
    add("finish_light_sleep " + s + " " + std::to_string(tier));
  }
  bool claim_unload(const ModelKey& m) override { return add("claim_unload " + m.name, grant); }
  void finish_unload(const ModelKey& m, Reason r) override {
    add("finish_unload " + m.name + "@" + m.service + " " + to_string(r));
  }
  Status wake(const std::string& s, Reason r) override {
    add("wake " + s + " " + to_string(r));
    return Status::ok();
  }
  void reconcile() override { add("reconcile"); }

  bool grant = true;
  std::vector<std::string> calls;

 private:
  bool add(std::string call, bool result = true) {
    calls.push_back(std::move(call));
    return result;
  }
};

TEST(Monitor, CarriesOutEachDecisionThroughItsActionsAlone) {
  const Config config = parse_config(R"({
    "idle_timeout_minutes": 10, "idle_check_interval_minutes": 5,
    "services": {
      "a": {"command": ["a"], "idle_timeout_minutes": 3},
      "on": {"command": ["on"], "desired": "on"},
      "t": {"command": ["t"], "sleep_tiers": [{"after_minutes": 2, "action": "pause"},
                                             {"after_minutes": 60, "action": "stop"}]},
      "ollama": {"command": ["ollama"]}},
    "models": {"llama3": {"provider": "ollama", "keep_alive_hours": 0.05}}})",
                                     "test.json");
  FakeClock clock;
  auto registry = make_registry(config, clock.wall_now());
  for (const char* name : {"a", "t", "ollama"}) {
    registry->update_service(name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_state(rt, ServiceState::kRunning, clock.wall_now());
      rt.last_used = clock.wall_now();
    });
  }
  registry->update_model({"llama3", "ollama"}, [&](const ModelSpec&, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = clock.wall_now();
  });
  RecordingActions actions;
  RecordingRecorder recorder;
  InlineExecutor executor;
  Monitor monitor(*registry, actions, clock, recorder, executor);

  monitor.step();  // the first pass reconciles; the desired-on one is started
  EXPECT_THAT(actions.calls, ElementsAre("reconcile", "wake on desired"));
  actions.calls.clear();
  clock.advance(minutes(3));  // a's timeout, t's pause tier, llama3's keep-alive: all due
  monitor.step();
  EXPECT_THAT(actions.calls,
              UnorderedElementsAre("claim_sleep a", "finish_sleep a", "claim_light_sleep t 1",
                                   "finish_light_sleep t 1", "claim_unload llama3",
                                   "finish_unload llama3@ollama expired", "wake on desired"));
  // Each claim before its finish (the two steps' contract).
  const auto at = [&](const std::string& call) {
    return std::find(actions.calls.begin(), actions.calls.end(), call) - actions.calls.begin();
  };
  EXPECT_LT(at("claim_sleep a"), at("finish_sleep a"));
  EXPECT_LT(at("claim_light_sleep t 1"), at("finish_light_sleep t 1"));
  EXPECT_LT(at("claim_unload llama3"), at("finish_unload llama3@ollama expired"));
  actions.calls.clear();
  actions.grant = false;  // a use came between the decision and the claim: nothing slow runs
  monitor.step();
  EXPECT_THAT(actions.calls, ::testing::IsSupersetOf({"claim_sleep a", "claim_light_sleep t 1",
                                                      "claim_unload llama3"}));
  for (const auto& call : actions.calls) EXPECT_FALSE(call.starts_with("finish")) << call;
}

TEST(ChangeSignal, ARequestEndingWakesTheMonitorOnlyWhenItWouldSleepPastTheNewDeadline) {
  ChangeSignal signal;
  const WallTime t = from_unix_seconds(1'700'000'000);
  signal.plan_wake(t + std::chrono::seconds(30));
  const auto g0 = signal.generation();
  signal.notify_if_before(t + std::chrono::minutes(60));  // later than planned: no wake-up
  EXPECT_EQ(signal.generation(), g0);
  signal.notify_if_before(t + std::chrono::seconds(2));  // earlier: wake up
  EXPECT_EQ(signal.generation(), g0 + 1);
  signal.plan_wake(std::nullopt);  // the monitor is awake and deciding: every change counts
  signal.notify_if_before(t + std::chrono::minutes(60));
  EXPECT_EQ(signal.generation(), g0 + 2);
}

}  // namespace
}  // namespace siesta::testing
