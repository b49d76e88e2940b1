// The seed's three Real-World Scenarios, end to end through the monitor on a fake clock.
#include <gtest/gtest.h>

#include "world.h"

namespace siesta::testing {
namespace {

using ::testing::ElementsAre;

// Scenario 1: whisper running, last used 2 hours ago; idle 120 > 60 minutes -> stopped.
TEST(SeedScenarios, WhisperIdleForTwoHoursIsStopped) {
  World w(R"({"services": {"whisper": {"idle_sleep_enabled": true}}})");
  w.run("whisper");
  w.registry->update_service("whisper", [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.last_used = w.clock.wall_now() - std::chrono::hours(2);
  });
  w.monitor->step();
  EXPECT_EQ(w.service("whisper").state, ServiceState::kStopped);
  EXPECT_EQ(w.backend.count("stop whisper"), 1);
  EXPECT_EQ(w.backend.running.count("whisper"), 0u);
  EXPECT_THAT(w.recorder.events(), ElementsAre("slept whisper idle"));

  // Next request: auto-wake starts whisper when needed.
  ASSERT_TRUE(w.controller->wake("whisper", Reason::kRequest));
  EXPECT_EQ(w.service("whisper").state, ServiceState::kRunning);
  EXPECT_EQ(w.backend.count("start whisper"), 1);
}

// Scenario 2: llama3.2:3b loaded, keep_alive_until 2 hours from now; once that passes the
// monitor sends the unload, and keep_alive_until reads 0. (Ollama itself is kept up here: a
// service that sleeps first unloads its models, which Controller tests cover.)
TEST(SeedScenarios, ModelKeepAliveExpirationUnloadsIt) {
  World w(R"({"model_keep_alive_hours": 2,
              "services": {"ollama": {"command": ["ollama", "serve"], "idle_timeout_minutes": 180}},
              "models": {"llama3.2:3b": {"provider": "ollama"}}})");
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_model(w.key("llama3.2:3b")));
  w.provider.loaded_models.insert("llama3.2:3b");

  w.clock.advance(std::chrono::hours(2) - std::chrono::seconds(1));
  w.monitor->step();
  EXPECT_TRUE(w.model("llama3.2:3b").loaded);
  EXPECT_TRUE(w.provider.calls.empty());

  w.clock.advance(std::chrono::seconds(1));
  w.monitor->step();
  EXPECT_FALSE(w.model("llama3.2:3b").loaded);
  EXPECT_THAT(w.provider.calls, ElementsAre("unload llama3.2:3b"));
  EXPECT_THAT(w.recorder.events(), ElementsAre("unloaded llama3.2:3b expired"));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_FALSE(d.models[0].keep_alive_until);  // rendered as keep_alive_until: 0
}

// Scenario 3: Redis (idle sleep disabled) stays up; Ollama and Qdrant stop after an hour.
TEST(SeedScenarios, SelectiveSleepKeepsRedisRunning) {
  World w(R"({"services": {
      "ollama": {"idle_sleep_enabled": true},
      "qdrant": {"idle_sleep_enabled": true},
      "redis":  {"idle_sleep_enabled": false}}})");
  for (const char* s : {"ollama", "qdrant", "redis"}) {
    w.run(s);
    ASSERT_TRUE(w.controller->touch_service(s));
  }
  w.clock.advance_minutes(59);
  w.monitor->step();
  EXPECT_TRUE(w.backend.take_calls().empty());

  w.clock.advance_minutes(1);
  w.monitor->step();
  EXPECT_EQ(w.service("redis").state, ServiceState::kRunning);
  EXPECT_EQ(w.service("ollama").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("qdrant").state, ServiceState::kStopped);
  EXPECT_THAT(w.backend.take_calls(), ElementsAre("stop ollama", "stop qdrant"));

  w.clock.advance_minutes(600);
  w.monitor->step();
  EXPECT_EQ(w.service("redis").state, ServiceState::kRunning);
}

}  // namespace
}  // namespace siesta::testing
