// The adaptive policy live (docs/policies.md): its config keys, its history recorded by the
// controller on the fake clock and kept in the state file, a pre-warm that is no use, and
// idle-status naming the policy.
#include <gtest/gtest.h>

#include "siesta/config/config.h"
#include "siesta/core/decide.h"
#include "siesta/state/state_store.h"
#include "world.h"

namespace siesta {
namespace {

using siesta::testing::config_error;
using siesta::testing::World;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(PolicyLive, ConfigKeys) {
  Config c = parse_config(
      R"({"services": {"a": {"command": ["a"], "policy": "adaptive", "cold_start_seconds": 30}}})",
      "t.json");
  EXPECT_EQ(c.services[0].spec.policy, "adaptive");
  EXPECT_EQ(*c.services[0].spec.cold_start_seconds, 30);
  EXPECT_EQ(
      parse_config(R"({"services": {"a": {"command": ["a"]}}})", "t.json").services[0].spec.policy,
      "fixed");
  EXPECT_EQ(config_error(R"({"services": {"a": {"command": ["a"], "policy": "lru"}}})"),
            "config error in bad.json: services.a.policy: must be one of fixed, adaptive, got "
            "\"lru\"");
  EXPECT_EQ(
      config_error(
          R"({"services": {"a": {"command": ["a"], "policy": "adaptive", "sleep_tiers": [{"after_minutes": 5, "action": "stop"}]}}})"),
      "config error in bad.json: services.a.policy: \"adaptive\" chooses the one idle timeout: "
      "not together with sleep_tiers");
  EXPECT_NE(config_error(R"({"services": {"a": {"command": ["a"], "cold_start_seconds": -1}}})")
                .find("services.a.cold_start_seconds: must be at least 0"),
            std::string::npos);
}

TEST(PolicyLive, UsesRecordTheirIdleGapsAndThePolicyIsInIdleStatus) {
  World w(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  w.run("a");
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(w.controller->begin_request("a"));
    w.clock.advance(seconds(2));
    w.controller->end_request("a");
    w.clock.advance(minutes(5));
  }
  const auto view = *w.registry->service("a");
  ASSERT_EQ(view.runtime.idle_gaps.size(), 11u);  // the first use had no last use before it
  EXPECT_DOUBLE_EQ(view.runtime.idle_gaps.back(), 300);
  const Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_STREQ(d.services[0].policy, "adaptive");
  EXPECT_NE(d.services[0].policy_reason.find("p99 of 11 idle gaps"), std::string::npos)
      << d.services[0].policy_reason;
  // Every gap 5 minutes: keep-alive to 300 s +10 %. No start known yet (none measured, none
  // configured): no pre-warm, whose lead and break-even need one.
  EXPECT_EQ(d.services[0].policy_reason.find("pre-warmed"), std::string::npos)
      << d.services[0].policy_reason;
  EXPECT_NEAR(d.services[0].timeout.count(), 330, 1e-6);

  // With a 5 s start: asleep 60 s after a use and pre-warmed before the next one (270 s less
  // the start), awake at most to the break-even (5 s x 60).
  World known(R"({"services": {"a": {"command": ["a"], "policy": "adaptive",
                  "cold_start_seconds": 5}}})");
  known.registry->update_service("a", [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.idle_gaps = view.runtime.idle_gaps;
    rt.last_used = known.clock.wall_now();
  });
  const Decision k = decide(known.registry->snapshot(), known.clock.wall_now());
  EXPECT_NE(k.services[0].policy_reason.find("pre-warmed"), std::string::npos)
      << k.services[0].policy_reason;
  EXPECT_EQ(k.services[0].timeout.count(), 60);
  const auto kv = *known.registry->service("a");
  EXPECT_NEAR(
      policy_choice(known.registry->settings(), *kv.spec, kv.runtime, known.clock.wall_now())
          .keep_alive.count(),
      300, 1e-6);
}

TEST(PolicyLive, APreWarmKeepsTheLastUseAndMeasuresTheStart) {
  World w(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  const WallTime used = w.clock.wall_now() - minutes(20);
  w.registry->update_service("a",
                             [&](const ServiceSpec&, ServiceRuntime& rt) { rt.last_used = used; });
  ASSERT_TRUE(w.controller->wake("a", Reason::kPrewarm));
  EXPECT_EQ(*w.registry->service("a")->runtime.last_used, used);
  // The monitor's pre-warm action again once the start is done (two passes saw it stopped):
  // the service is up, and still no use (an end-to-end test found the timer restarted).
  w.clock.advance(seconds(1));
  ASSERT_TRUE(w.controller->wake("a", Reason::kPrewarm));
  EXPECT_EQ(*w.registry->service("a")->runtime.last_used, used);
  ASSERT_TRUE(w.controller->sleep("a"));
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  EXPECT_GT(*w.registry->service("a")->runtime.last_used, used);
}

// Nor is a schedule window's start a use: at the window's end the normal rules apply from the
// last real use, as if the window had not been there (docs/schedules.md; a new user's trial: a
// window shorter than the timeout kept the service up a whole timeout after its end).
TEST(PolicyLive, AScheduleStartKeepsTheLastUse) {
  World w(R"({"services": {"a": {"command": ["a"]}}})");
  const WallTime used = w.clock.wall_now() - minutes(20);
  w.registry->update_service("a",
                             [&](const ServiceSpec&, ServiceRuntime& rt) { rt.last_used = used; });
  ASSERT_TRUE(w.controller->wake("a", Reason::kSchedule));
  EXPECT_EQ(*w.registry->service("a")->runtime.last_used, used);
  ASSERT_TRUE(w.controller->wake("a", Reason::kSchedule));  // up already
  EXPECT_EQ(*w.registry->service("a")->runtime.last_used, used);
  ASSERT_TRUE(w.controller->wake("a", Reason::kManual));  // an admin wake is a use
  EXPECT_GT(*w.registry->service("a")->runtime.last_used, used);
}

// A gap recorded between state changes is saved by the monitor's next pass (a new user's trial:
// the state file had only the gaps up to the last start or stop, and a restart lost the rest);
// the request itself does not wait for a save.
TEST(PolicyLive, AGapIsSavedAtTheNextPassNotByTheRequest) {
  World w(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  w.run("a");
  ASSERT_TRUE(w.controller->begin_request("a"));
  w.controller->end_request("a");
  w.clock.advance(minutes(5));
  const int before = w.saves;
  ASSERT_TRUE(w.controller->begin_request("a"));  // a 5-minute gap joins the history
  w.controller->end_request("a");
  EXPECT_EQ(w.saves, before);
  ASSERT_EQ(w.registry->service("a")->runtime.idle_gaps.size(), 1u);
  w.controller->reconcile();
  EXPECT_EQ(w.saves, before + 1);
  w.controller->reconcile();  // nothing new: no save
  EXPECT_EQ(w.saves, before + 1);
}

TEST(PolicyLive, TheHistorySurvivesInTheStateFile) {
  World w(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  w.registry->update_service("a", [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.idle_gaps = {60, 120.5, 3600};
  });
  const nlohmann::json doc = encode_state(w.registry->snapshot(), Baseline{}, {});
  EXPECT_EQ(doc["services"]["a"]["idle_gaps"], nlohmann::json({60, 120.5, 3600}));

  World after(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  Baseline base;
  base.services["a"] = {true, Desired::kOff};
  ASSERT_TRUE(restore_state(doc, base, *after.registry, after.clock.wall_now()));
  EXPECT_EQ(after.registry->service("a")->runtime.idle_gaps,
            (std::vector<double>{60, 120.5, 3600}));

  // A bad value drops itself, not the history, and the warning counts them and shows the first
  // (a new user's trial: one bad value dropped all 256, and the warning printed every value).
  // Gaps under kMinIdleGapSeconds are not gaps (record_idle_gap never keeps them): dropped too.
  nlohmann::json bad = doc;
  bad["services"]["a"]["idle_gaps"] = nlohmann::json::array();
  for (int i = 0; i < 200; ++i) bad["services"]["a"]["idle_gaps"].push_back(60 + i);
  bad["services"]["a"]["idle_gaps"].push_back(-1);
  bad["services"]["a"]["idle_gaps"].push_back(2);
  bad["services"]["a"]["idle_gaps"].push_back(1e12);  // no gap siesta measured (a trial's edit)
  World third(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  auto restored = restore_state(bad, base, *third.registry, third.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_EQ(third.registry->service("a")->runtime.idle_gaps.size(), 200u);
  ASSERT_EQ(restored->warnings.size(), 1u);
  EXPECT_EQ(restored->warnings[0],
            "services.a.idle_gaps: ignored 3 of 203 values, the first -1 (each must be seconds, at "
            "least 10 and at most a year)");
  // Not an array at all: the whole history is ignored.
  bad["services"]["a"]["idle_gaps"] = 5;
  World fourth(R"({"services": {"a": {"command": ["a"], "policy": "adaptive"}}})");
  restored = restore_state(bad, base, *fourth.registry, fourth.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_TRUE(fourth.registry->service("a")->runtime.idle_gaps.empty());
  EXPECT_EQ(
      restored->warnings.at(0),
      "services.a.idle_gaps: ignored 5 (must be an array of seconds, at least 10 and at most a "
      "year)");
}

}  // namespace
}  // namespace siesta
