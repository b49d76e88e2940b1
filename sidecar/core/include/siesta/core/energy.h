// Energy and cost (docs/policies.md#energy-and-cost): what sleeping saved and cold starts spent,
// from a service's idle power (its idle_power_watts), the time it spent stopped and in cold
// starts (counted on the injected clock: ServiceRuntime::asleep_seconds, start_seconds), and
// the price of a kWh (the price_per_kwh setting). A service that declares no idle power gets
// no estimate at all, not a zero. Pure.
#pragma once

#include <optional>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/service.h"
#include "siesta/core/settings.h"

namespace siesta {

inline constexpr double kJoulesPerWattHour = 3600;
inline constexpr double kJoulesPerKwh = 3.6e6;

struct EnergyAccount {
  double watts = 0;                   // the idle power it is counted at
  const char* source = "configured";  // where `watts` came from (idle_power_watts)
  double asleep_seconds = 0;          // stopped, since siesta started (the open stop included)
  double start_seconds = 0;           // its cold starts, start to ready
  double saved_joules = 0;            // asleep_seconds × watts
  double cold_start_joules = 0;       // start_seconds × watts
  // At price_per_kwh; absent while it is 0 (no price).
  std::optional<double> cost_saved;
  std::optional<double> cold_start_cost;
};

// "idle_power_watts": "measured" (PowerMeter): each stop of the service gives one measurement,
// the drop of its GPUs' draw from just before the stop to once it has settled after it. The
// service's idle power is the median of the last kMaxIdlePowerSamples (one odd reading, another
// load on the card at that moment, moves it little).
inline constexpr std::size_t kMaxIdlePowerSamples = 16;
// Adds one measurement (watts) when it is a drop (> 0); returns whether it did.
bool record_idle_power(std::vector<double>& samples, double before_watts, double after_watts);
// The median of `samples`; nullopt when there is none.
std::optional<double> measured_idle_power(const std::vector<double>& samples);

// The seconds the service has been stopped since siesta started, up to `now`.
double asleep_seconds(const ServiceRuntime& runtime, WallTime now);
// Its account at `now`; absent when the service declares no idle power (or a measured one has no
// measurement yet).
std::optional<EnergyAccount> energy_account(const Settings& settings, const ServiceSpec& spec,
                                            const ServiceRuntime& runtime, WallTime now);

}  // namespace siesta
