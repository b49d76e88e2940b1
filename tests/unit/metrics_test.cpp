// /metrics rendering, from the same Decision as the idle-status JSON (status_json_test.cpp, which
// also checks that the two agree).
#include "siesta/metrics/metrics.h"

#include <gtest/gtest.h>

#include "world.h"

namespace siesta::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kConfig = R"({"idle_timeout_minutes": 60,
  "services": {"ollama": {"command": ["o"]}, "redis": {"command": ["r"], "idle_sleep_enabled": false}},
  "models": {"llama3.2:3b": {"provider": "ollama"}}})";

TEST(Metrics, GaugesComeFromTheDecision) {
  World w(kConfig);
  w.run("ollama");
  w.run("redis");
  ASSERT_TRUE(w.controller->touch_service("ollama"));
  ASSERT_TRUE(w.controller->touch_model(w.key("llama3.2:3b")));
  w.clock.advance_minutes(45);
  Metrics m;
  Snapshot snap = w.registry->snapshot();
  m.declare(snap);
  m.service_slept("ollama", Reason::kIdle);
  Decision d = decide(snap, w.clock.wall_now());
  std::string text = m.render(snap, d, MonitorStatus{true, w.clock.wall_now()});

  EXPECT_THAT(text, HasSubstr("siesta_service_idle_seconds{service=\"ollama\"} 2700\n"));
  EXPECT_THAT(text, HasSubstr("siesta_service_sleep_in_seconds{service=\"ollama\"} 900\n"));
  EXPECT_THAT(text, Not(HasSubstr("siesta_service_sleep_in_seconds{service=\"redis\"}")));
  EXPECT_THAT(
      text,
      HasSubstr("siesta_service_sleep_blocked{service=\"redis\",reason=\"service_disabled\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("siesta_service_state{service=\"ollama\",state=\"running\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("siesta_service_state{service=\"ollama\",state=\"stopped\"} 0\n"));
  // Its service stops in 15 minutes, before its keep-alive's 75: the countdown ends with it.
  EXPECT_THAT(text, HasSubstr("siesta_model_keep_alive_remaining_seconds{model=\"llama3.2:3b\","
                              "provider=\"ollama\"} 900\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_model_loaded{model=\"llama3.2:3b\",provider=\"ollama\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("siesta_settings_idle_timeout_seconds 3600\n"));
  EXPECT_THAT(text, HasSubstr("siesta_monitor_running 1\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_sleeps_total{reason=\"idle\",service=\"ollama\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_wakes_total{reason=\"request\",service=\"redis\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("siesta_build_info{version=\""));
  EXPECT_THAT(text, HasSubstr("siesta_proxy_upgraded_connections_open{service=\"ollama\"} 0\n"));
  // Histograms appear with their first observation: 10,000 idle services cost no buckets.
  EXPECT_THAT(text, Not(HasSubstr("siesta_service_wake_duration_seconds")));
  m.service_woke("ollama", Reason::kRequest, Seconds(0.5));
  text = m.render(snap, d, MonitorStatus{true, w.clock.wall_now()});
  EXPECT_THAT(text, HasSubstr("# TYPE siesta_service_wake_duration_seconds histogram\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_wake_duration_seconds_count{service=\"ollama\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_wakes_total{reason=\"request\",service=\"ollama\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
}

TEST(Metrics, MonitorPassDurationIsObservedAndTheLastKept) {
  World w(kConfig);
  Metrics m;
  m.monitor_ran(w.clock.wall_now(), Seconds(0.003));
  m.monitor_ran(w.clock.wall_now(), Seconds(0.0002));
  Snapshot snap = w.registry->snapshot();
  std::string text = m.render(snap, decide(snap, w.clock.wall_now()), MonitorStatus{});
  EXPECT_THAT(text, HasSubstr("siesta_monitor_runs_total 2\n"));
  EXPECT_THAT(text, HasSubstr("siesta_monitor_pass_duration_seconds_count 2\n"));
  EXPECT_THAT(text, HasSubstr("siesta_monitor_pass_duration_seconds_bucket{le=\"0.00025\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("siesta_monitor_pass_duration_seconds_bucket{le=\"0.005\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("siesta_monitor_last_pass_duration_seconds 0.0002\n"));
}

}  // namespace
}  // namespace siesta::testing
