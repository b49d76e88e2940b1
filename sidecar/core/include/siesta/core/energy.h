// Energy and cost (docs/policies.md#energy-and-cost): what sleeping saved and cold starts spent,
// from a service's idle power (its idle_power_watts), the time it spent stopped and in cold
// starts (counted on the injected clock: ServiceRuntime::asleep_seconds, start_seconds), and
// the price of a kWh (the price_per_kwh setting). A service that declares no idle power gets
// no estimate at all, not a zero. Pure.
#pragma once

#include <optional>

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

// The seconds the service has been stopped since siesta started, up to `now`.
double asleep_seconds(const ServiceRuntime& runtime, WallTime now);
// Its account at `now`; absent when the service declares no idle power.
std::optional<EnergyAccount> energy_account(const Settings& settings, const ServiceSpec& spec,
                                            const ServiceRuntime& runtime, WallTime now);

}  // namespace siesta
