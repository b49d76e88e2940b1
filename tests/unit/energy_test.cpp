// Energy and cost (docs/policies.md#energy-and-cost): a service's idle power times the time it
// spent asleep (saved) and in cold starts (spent), priced at price_per_kwh; counted on the
// injected clock and shown in decide()'s timers, idle-status and /metrics.
#include "siesta/core/energy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/config/labels.h"
#include "siesta/core/decide.h"
#include "siesta/metrics/metrics.h"
#include "world.h"

namespace siesta {
namespace {

using nlohmann::json;
using siesta::testing::config_error;
using siesta::testing::World;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kConfig = R"({
  "price_per_kwh": 0.25, "currency": "EUR",
  "services": {
    "gpu": {"command": ["gpu"], "idle_power_watts": 150},
    "web": {"command": ["web"]}
  }})";

const ServiceTimer& timer_of(const Decision& d, const std::string& name) {
  for (const auto& t : d.services) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no timer for " + name);
}

// The issue's example: asleep 2 h at 150 W saved 300 Wh (0.3 kWh at 0.25 a kWh: 0.075).
TEST(Energy, AServiceAsleepTwoHoursAt150WattsSaved300WattHours) {
  World w(kConfig);
  w.run("gpu");
  w.run("web");
  ASSERT_TRUE(w.controller->sleep("gpu"));
  ASSERT_TRUE(w.controller->sleep("web"));
  w.clock.advance(hours(2));

  const Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  const ServiceTimer& gpu = timer_of(d, "gpu");
  ASSERT_TRUE(gpu.energy);
  EXPECT_EQ(gpu.energy->watts, 150);
  EXPECT_STREQ(gpu.energy->source, "configured");
  EXPECT_NEAR(gpu.energy->asleep_seconds, 7200, 1e-6);
  EXPECT_NEAR(gpu.energy->saved_joules, 150 * 7200, 1e-3);
  EXPECT_NEAR(gpu.energy->saved_joules / kJoulesPerWattHour, 300, 1e-6);
  ASSERT_TRUE(gpu.energy->cost_saved);
  EXPECT_NEAR(*gpu.energy->cost_saved, 0.075, 1e-9);
  EXPECT_EQ(gpu.energy->cold_start_joules, 0);
  // No idle power declared: nothing estimated, not a zero as if measured.
  EXPECT_FALSE(timer_of(d, "web").energy);
}

// A wake ends the time asleep at its start, and the start itself (20 s on the fake clock) is
// spent at the same power; a second sleep adds to the first.
TEST(Energy, ColdStartsSpendAndSleepsAddUp) {
  World w(kConfig);
  w.run("gpu");
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(hours(1));
  w.backend.on_start = [&] { w.clock.advance(seconds(20)); };
  ASSERT_TRUE(w.controller->wake("gpu", Reason::kRequest));
  w.backend.on_start = nullptr;
  w.clock.advance(minutes(30));  // awake: not counted
  auto d = decide(w.registry->snapshot(), w.clock.wall_now());
  auto e = *timer_of(d, "gpu").energy;
  EXPECT_NEAR(e.asleep_seconds, 3600, 1e-6);
  EXPECT_NEAR(e.start_seconds, 20, 0.1);  // the readiness polls add milliseconds
  EXPECT_NEAR(e.cold_start_joules, 150 * e.start_seconds, 1e-6);
  EXPECT_NEAR(*e.cold_start_cost, e.cold_start_joules / kJoulesPerKwh * 0.25, 1e-12);

  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(hours(1));
  d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_NEAR(timer_of(d, "gpu").energy->asleep_seconds, 7200, 1e-6);
}

// Without a price there is energy but no cost.
TEST(Energy, NoPriceNoCost) {
  World w(R"({"services": {"gpu": {"command": ["gpu"], "idle_power_watts": 100}}})");
  w.clock.advance(hours(1));  // stopped since start-up: asleep
  const Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  const auto& e = timer_of(d, "gpu").energy;
  ASSERT_TRUE(e);
  EXPECT_NEAR(e->saved_joules, 100 * 3600, 1e-3);
  EXPECT_FALSE(e->cost_saved);
  EXPECT_FALSE(e->cold_start_cost);
}

TEST(Energy, IdleStatusShowsEachServiceAndTheTotals) {
  World w(kConfig);
  w.run("gpu");
  w.run("web");
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(hours(2));
  const auto snap = w.registry->snapshot();
  const Decision d = decide(snap, w.clock.wall_now());
  IdleStatusExtras extras;
  extras.currency = "EUR";
  const json status = json::parse(idle_status_text(snap, d, extras));
  const json& gpu = status["services"]["gpu"];
  EXPECT_EQ(gpu["idle_power_watts"], 150);
  EXPECT_EQ(gpu["idle_power_source"], "configured");
  EXPECT_NEAR(gpu["energy_saved_wh"].get<double>(), 300, 1e-6);
  EXPECT_NEAR(gpu["cost_saved"].get<double>(), 0.075, 1e-9);
  EXPECT_EQ(gpu["cold_start_energy_wh"], 0);
  EXPECT_NEAR(gpu["asleep_seconds"].get<double>(), 7200, 1e-6);
  const json& web = status["services"]["web"];
  EXPECT_TRUE(web["idle_power_watts"].is_null());
  EXPECT_TRUE(web["energy_saved_wh"].is_null());
  EXPECT_TRUE(web["cost_saved"].is_null());
  EXPECT_EQ(status["price_per_kwh"], 0.25);
  const json& total = status["energy"];
  EXPECT_EQ(total["services"], 1);  // those with an idle power
  EXPECT_NEAR(total["energy_saved_wh"].get<double>(), 300, 1e-6);
  EXPECT_NEAR(total["cost_saved"].get<double>(), 0.075, 1e-9);
  EXPECT_EQ(total["currency"], "EUR");
}

TEST(Energy, MetricsCountJoulesAndCostPerService) {
  World w(kConfig);
  w.run("gpu");
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(hours(2));
  const auto snap = w.registry->snapshot();
  Metrics metrics;
  metrics.set_currency("EUR");
  const std::string text = metrics.render(snap, decide(snap, w.clock.wall_now()), {});
  EXPECT_THAT(text, HasSubstr("siesta_service_energy_saved_joules_total{service=\"gpu\"} 1080000"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_cold_start_energy_joules_total{service=\"gpu\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("siesta_service_cost_saved_total{service=\"gpu\",currency=\"EUR\"} 0.075"));
  EXPECT_THAT(text, HasSubstr("siesta_service_idle_power_watts{service=\"gpu\",source="
                              "\"configured\"} 150"));
  EXPECT_THAT(text, HasSubstr("siesta_settings_price_per_kwh 0.25"));
  // Nothing for a service without an idle power.
  EXPECT_THAT(text, Not(HasSubstr("siesta_service_energy_saved_joules_total{service=\"web\"")));
}

TEST(Energy, ConfigAndLabels) {
  Config c = parse_config(kConfig, "t.json");
  EXPECT_EQ(c.settings.price_per_kwh, 0.25);
  EXPECT_EQ(c.currency, "EUR");
  EXPECT_EQ(*c.services[0].spec.idle_power_watts, 150);
  EXPECT_FALSE(c.services[1].spec.idle_power_watts);
  EXPECT_THAT(config_error(R"({"services": {"a": {"command": ["a"], "idle_power_watts": -1}}})"),
              HasSubstr("services.a.idle_power_watts: must be at least 0, got -1"));
  EXPECT_THAT(
      config_error(R"({"services": {"a": {"command": ["a"], "idle_power_watts": "150W"}}})"),
      HasSubstr("services.a.idle_power_watts: must be a number, got \"150W\""));
  EXPECT_THAT(config_error(R"({"price_per_kwh": -0.1})"),
              HasSubstr("price_per_kwh: must be at least 0, got -0.1"));
  EXPECT_THAT(config_error(R"({"currency": ""})"), HasSubstr("currency: must be 1 to 16"));
  EXPECT_THAT(config_error(R"({"currency": "E\"UR"})"), HasSubstr("currency: must be 1 to 16"));

  auto sc = service_from_labels("c", {{"siesta.idle-power", "80"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(*sc->spec.idle_power_watts, 80);
  auto bad = service_from_labels("c", {{"siesta.idle-power", "80W"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().message(),
            "container c: label siesta.idle-power: must be a number of watts such as 80, got "
            "\"80W\"");
}

}  // namespace
}  // namespace siesta
