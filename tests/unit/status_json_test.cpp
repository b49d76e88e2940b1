// The idle-status JSON (sidecar/api status_json.h): the seed's shape and order, read from the
// same Decision as /metrics.
#include "siesta/api/status_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "siesta/metrics/metrics.h"
#include "world.h"

namespace siesta::testing {
namespace {

using ::testing::HasSubstr;

constexpr const char* kConfig = R"({"idle_timeout_minutes": 60,
  "services": {"ollama": {"command": ["o"]}, "redis": {"command": ["r"], "idle_sleep_enabled": false}},
  "models": {"llama3.2:3b": {"provider": "ollama"}}})";

TEST(IdleStatus, HasTheSeedsShapeAndPreciseTwins) {
  World w(kConfig);
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_service("ollama"));
  ASSERT_TRUE(w.controller->touch_model(w.key("llama3.2:3b")));
  w.clock.advance(Seconds(45 * 60 + 30));
  Snapshot snap = w.registry->snapshot();
  Decision d = decide(snap, w.clock.wall_now());
  auto j = nlohmann::json::parse(idle_status_text(snap, d, {MonitorStatus{true, std::nullopt}}));
  EXPECT_EQ(j["idle_sleep_enabled"], true);
  EXPECT_EQ(j["idle_timeout_minutes"], 60);
  EXPECT_EQ(j["model_keep_alive_hours"], 2);
  EXPECT_EQ(j["monitor_task_running"], true);
  const auto& o = j["services"]["ollama"];
  EXPECT_EQ(o["idle_for_minutes"], 45);
  EXPECT_EQ(o["will_sleep_in_minutes"], 15);  // 14.5 rounds up: 45 + 15 = 60
  EXPECT_EQ(o["idle_for_seconds"], 2730.0);
  EXPECT_EQ(o["will_sleep_in_seconds"], 870.0);
  EXPECT_EQ(o["idle_sleep_enabled"], true);
  EXPECT_EQ(o["desired"], "off");
  EXPECT_EQ(o["actual"], "running");
  EXPECT_EQ(o["last_used"], 1'700'000'000);
  EXPECT_TRUE(o["will_not_sleep_because"].is_null());
  const auto& r = j["services"]["redis"];
  EXPECT_TRUE(r["will_sleep_in_minutes"].is_null());
  EXPECT_EQ(r["sleep_blocker"], "service_disabled");
  const auto& m = j["models"]["llama3.2:3b"];
  EXPECT_EQ(m["provider"], "ollama");
  EXPECT_EQ(m["last_used"], 1'700'000'000);
  EXPECT_EQ(m["keep_alive_until"], 1'700'000'000 + 7200);
  // Its service stops first (issue 24): the countdown ends with it, 15 minutes before the
  // keep-alive's 75.
  EXPECT_EQ(m["will_unload_in_minutes"], 15);  // 14.5 rounds up
  EXPECT_EQ(m["will_unload_in_seconds"], 870.0);
  EXPECT_EQ(m["freed_by"], "service");
}

TEST(IdleStatus, AnUnloadedModelHasKeepAliveUntilZero) {
  World w(kConfig);
  Snapshot snap = w.registry->snapshot();
  auto j = nlohmann::json::parse(idle_status_text(snap, decide(snap, w.clock.wall_now()), {}));
  EXPECT_EQ(j["models"]["llama3.2:3b"]["keep_alive_until"], 0);
  EXPECT_TRUE(j["models"]["llama3.2:3b"]["will_unload_in_minutes"].is_null());
  EXPECT_EQ(j["models"]["llama3.2:3b"]["will_not_unload_because"], "the model is not loaded");
}

TEST(IdleStatus, FieldsComeInTheSeedsOrderIndentedByTwo) {
  World w(kConfig);
  w.run("ollama");
  Snapshot snap = w.registry->snapshot();
  const std::string text = idle_status_text(snap, decide(snap, w.clock.wall_now()), {});
  size_t at = 0;
  for (const char* key : {"\n  \"idle_sleep_enabled\": true", "\n  \"idle_timeout_minutes\": 60.0",
                          "\n  \"services\": {", "\n    \"ollama\": {", "\n      \"last_used\": ",
                          "\n      \"idle_for_minutes\": ", "\n      \"idle_sleep_enabled\": true",
                          "\n      \"desired\": \"off\"", "\n      \"actual\": \"running\"",
                          "\n      \"will_sleep_in_minutes\": ", "\n  \"models\": {",
                          "\n  \"monitor_task_running\": false"}) {
    const size_t found = text.find(key, at);
    ASSERT_NE(found, std::string::npos) << key << " after " << at << " in\n" << text;
    at = found;
  }
  EXPECT_EQ(text.back(), '\n');
}

TEST(IdleStatus, AnErrorThatIsNotUtf8IsShownWithReplacementCharacters) {
  World w(kConfig);
  Snapshot snap = w.registry->snapshot();
  snap.services[0].runtime.last_error = "engine said \xff\xfe then \"quoted\"\n";
  snap.models[0].runtime.last_error = "plain";
  const Decision d = decide(snap, w.clock.wall_now());
  const auto j = nlohmann::json::parse(idle_status_text(snap, d, {}));  // throws if not UTF-8
  EXPECT_EQ(j["services"][d.services[0].name]["last_error"],
            "engine said \xef\xbf\xbd\xef\xbf\xbd then \"quoted\"\n");
  EXPECT_EQ(j["models"]["llama3.2:3b"]["last_error"], "plain");
  const auto one = nlohmann::json::parse(service_text("x", snap.services[0], d.services[0]));
  EXPECT_EQ(one["name"], "x");
  EXPECT_EQ(one["last_error"], j["services"][d.services[0].name]["last_error"]);
}

// The idle status and /metrics, read from the same Decision, show the same open connections.
TEST(IdleStatus, AndMetricsShowOpenUpgradedConnections) {
  World w(kConfig);
  w.run("ollama");
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  w.controller->count_upgraded("ollama", true);
  Snapshot snap = w.registry->snapshot();
  Decision d = decide(snap, w.clock.wall_now());
  auto j = nlohmann::json::parse(idle_status_text(snap, d, {}));
  EXPECT_EQ(j["services"]["ollama"]["in_flight"], 2);
  EXPECT_EQ(j["services"]["ollama"]["upgraded_connections"], 1);
  EXPECT_EQ(j["services"]["redis"]["upgraded_connections"], 0);
  Metrics m;
  const std::string text = m.render(snap, d, MonitorStatus{});
  EXPECT_THAT(text, HasSubstr("# TYPE siesta_proxy_upgraded_connections_open gauge\n"));
  EXPECT_THAT(text, HasSubstr("siesta_proxy_upgraded_connections_open{service=\"ollama\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("siesta_proxy_upgraded_connections_open{service=\"redis\"} 0\n"));
}

}  // namespace
}  // namespace siesta::testing
