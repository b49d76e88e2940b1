// Energy and cost (docs/policies.md#energy-and-cost): a service's idle power times the time it
// spent asleep (saved) and in cold starts (spent), priced at price_per_kwh; counted on the
// injected clock and shown in decide()'s timers, idle-status and /metrics.
#include "siesta/core/energy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/config/labels.h"
#include "siesta/core/decide.h"
#include "siesta/metrics/metrics.h"
#include "siesta/runtime/power_meter.h"
#include "siesta/state/state_store.h"
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
  // Null as the others, not 0 (a new user's trial): nothing is measured for it.
  EXPECT_TRUE(web["idle_power_measurements"].is_null());
  EXPECT_TRUE(gpu["idle_power_measurements"].is_null());  // configured, not measured
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
      HasSubstr("services.a.idle_power_watts: must be a number of watts or \"measured\", got "
                "\"150W\""));
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
            "container c: label siesta.idle-power: must be a number of watts such as 80, or "
            "\"measured\", got \"80W\"");
  // As in the config (a new user's trial: a label could not say it).
  auto measured = service_from_labels("c", {{"siesta.idle-power", "measured"}});
  ASSERT_TRUE(measured) << measured.status().message();
  EXPECT_TRUE(measured->spec.idle_power_measured);
  EXPECT_FALSE(measured->spec.idle_power_watts);
}

// "idle_power_watts": "measured" (PowerMeter): the drop of the service's GPUs' draw at each stop,
// from its last idle reading before the stop to a reading once settled after it; the median of
// the measurements is its idle power. A fake nvidia-smi reading on the fake clock.
struct MeteredWorld {
  explicit MeteredWorld(const std::string& extra = "")
      : world(R"({"price_per_kwh": 0.25, "idle_timeout_minutes": 10,
                  "gpu": {"devices": [{"id": 0, "memory_mib": 1000}, {"id": 1, "memory_mib": 1000}]},
                  "services": {"gpu": {"command": ["gpu"], "idle_power_watts": "measured",
                                       "gpu_devices": [1]}, "web": {"command": ["web"]})" +
              extra + "}}"),
        meter(*world.registry, world.clock, [this](std::string& error) {
          ++readings;
          if (!draw) {
            error = "nvidia-smi exited with code 9";
            return std::optional<std::map<int, double>>();
          }
          // GPU 0 belongs to someone else: only the service's device counts.
          return std::optional(std::map<int, double>{{0, 500}, {1, *draw}});
        }) {
    world.monitor->set_power_meter(&meter);
  }
  World world;
  std::optional<double> draw = 95;
  int readings = 0;
  PowerMeter meter;
};

TEST(MeasuredPower, EachStopMeasuresTheDropOfItsGpusAndTheMedianCounts) {
  MeteredWorld m;
  World& w = m.world;
  w.run("gpu");
  // Before any measurement: no estimate, but idle-status says it is measured.
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  EXPECT_FALSE(timer_of(d, "gpu").energy);
  const json before = json::parse(idle_status_text(w.registry->snapshot(), d, {}));
  EXPECT_EQ(before["services"]["gpu"]["idle_power_source"], "measured");
  EXPECT_TRUE(before["services"]["gpu"]["idle_power_watts"].is_null());
  EXPECT_EQ(before["services"]["gpu"]["idle_power_measurements"], 0);

  // Idle at `idle_draw` until its timeout stops it; its GPU then draws `asleep_draw`.
  const auto cycle = [&](double idle_draw, double asleep_draw) {
    m.draw = idle_draw;
    w.backend.on_stop = [&, asleep_draw](const std::string&) { m.draw = asleep_draw; };
    for (int i = 0; i <= 62; ++i) {  // 10 minutes idle, read every 10 s; then asleep, settled
      w.monitor->step();
      w.clock.advance(seconds(10));
    }
    EXPECT_EQ(w.service("gpu").state, ServiceState::kStopped);
    ASSERT_TRUE(w.controller->wake("gpu", Reason::kRequest));
  };
  cycle(95, 35);
  EXPECT_EQ(w.service("gpu").idle_power_samples, (std::vector<double>{60}));
  cycle(100, 30);
  cycle(90, 40);
  EXPECT_EQ(w.service("gpu").idle_power_samples, (std::vector<double>{60, 70, 50}));
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(hours(2));
  d = decide(w.registry->snapshot(), w.clock.wall_now());
  const auto& e = timer_of(d, "gpu").energy;
  ASSERT_TRUE(e);
  EXPECT_EQ(e->watts, 60);  // the median
  EXPECT_STREQ(e->source, "measured");
  const json after = json::parse(idle_status_text(w.registry->snapshot(), d, {}));
  EXPECT_EQ(after["services"]["gpu"]["idle_power_watts"], 60);
  EXPECT_EQ(after["services"]["gpu"]["idle_power_measurements"], 3);

  // Kept in the state file; a bad value there is ignored with a warning.
  const json doc = encode_state(w.registry->snapshot(), Baseline{}, {});
  EXPECT_EQ(doc["services"]["gpu"]["idle_power_samples"], json({60, 70, 50}));
  MeteredWorld restarted;
  Baseline base;
  base.services["gpu"] = {true, Desired::kOff};
  base.services["web"] = {true, Desired::kOff};
  ASSERT_TRUE(restore_state(doc, base, *restarted.world.registry, w.clock.wall_now()));
  EXPECT_EQ(restarted.world.service("gpu").idle_power_samples, (std::vector<double>{60, 70, 50}));
  // A bad value there drops itself, not the measurements (a new user's trial: one -3 lost all
  // 16 for good), and one past the config's bound of idle_power_watts is bad (1e9 W was taken).
  json bad = doc;
  bad["services"]["gpu"]["idle_power_samples"] = json({60, -5, 70, 0, 1e9});
  MeteredWorld third;
  auto restored = restore_state(bad, base, *third.world.registry, w.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_EQ(third.world.service("gpu").idle_power_samples, (std::vector<double>{60, 70}));
  EXPECT_EQ(restored->warnings.at(0),
            "services.gpu.idle_power_samples: ignored 3 of 5 values, the first -5 (each must be "
            "watts, above 0 and at most 100000)");
}

// No measurement when the drop may not be its own, or there is none, or no reading.
TEST(MeasuredPower, NothingIsMeasuredWhenAnotherServiceChangedStateOrNvidiaSmiFails) {
  MeteredWorld m;
  World& w = m.world;
  // Its GPU draws 60 W less once it is stopped: each case below would measure that otherwise.
  w.backend.on_stop = [&](const std::string& name) {
    if (name == "gpu" && m.draw) m.draw = 35;
  };
  w.backend.on_start = [&] {
    if (m.draw) m.draw = 95;
  };
  w.run("gpu");
  w.run("web");
  w.monitor->step();  // the idle reading
  w.clock.advance(seconds(5));
  ASSERT_TRUE(w.controller->sleep("web"));  // another one stops meanwhile
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(seconds(20));
  w.monitor->step();
  EXPECT_TRUE(w.service("gpu").idle_power_samples.empty());

  // Serving when read: no idle reading; so no measurement at the stop.
  ASSERT_TRUE(w.controller->wake("gpu", Reason::kRequest));
  w.clock.advance(seconds(1));
  ASSERT_TRUE(w.controller->begin_request("gpu"));
  w.monitor->step();
  w.controller->end_request("gpu");
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(seconds(20));
  w.monitor->step();
  EXPECT_TRUE(w.service("gpu").idle_power_samples.empty());

  // nvidia-smi fails: nothing measured, no estimate.
  ASSERT_TRUE(w.controller->wake("gpu", Reason::kRequest));
  m.draw.reset();
  w.monitor->step();
  ASSERT_TRUE(w.controller->sleep("gpu"));
  w.clock.advance(seconds(20));
  w.monitor->step();
  EXPECT_TRUE(w.service("gpu").idle_power_samples.empty());
  EXPECT_FALSE(timer_of(decide(w.registry->snapshot(), w.clock.wall_now()), "gpu").energy);
}

TEST(MeasuredPower, NvidiaSmiPowerRowsParse) {
  const GpuPowerParse p = parse_query_gpu_power("0, 35.12\n1, [N/A]\n");
  ASSERT_TRUE(p.error.empty()) << p.error;
  ASSERT_EQ(p.gpus.size(), 2u);
  EXPECT_EQ(p.gpus[0].index, 0);
  EXPECT_DOUBLE_EQ(*p.gpus[0].watts, 35.12);
  EXPECT_FALSE(p.gpus[1].watts);
  EXPECT_FALSE(parse_query_gpu_power("0, lots\n").error.empty());
  // SIESTA_NVIDIA_SMI="" (none wanted) says so, not "no command" (a new user's trial).
  std::string error;
  EXPECT_FALSE(query_gpu_power("", error));
  EXPECT_EQ(error, "SIESTA_NVIDIA_SMI is set but empty: no nvidia-smi is run");
  EXPECT_EQ(measured_idle_power({}), std::nullopt);
  EXPECT_EQ(measured_idle_power({10, 40, 20, 30}), 25);
  std::vector<double> samples;
  EXPECT_FALSE(record_idle_power(samples, 30, 35));  // no drop: not a measurement
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(record_idle_power(samples, 100, 100 - (i + 1)));
  EXPECT_EQ(samples.size(), kMaxIdlePowerSamples);
  EXPECT_EQ(samples.back(), 20);  // the oldest went
}

}  // namespace
}  // namespace siesta
