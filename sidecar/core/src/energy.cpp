#include "siesta/core/energy.h"

#include <algorithm>

namespace siesta {

double asleep_seconds(const ServiceRuntime& runtime, WallTime now) {
  double open = 0;
  // A runtime never stamped (state_since at the epoch) has no stop to count.
  if (runtime.state == ServiceState::kStopped && runtime.state_since != WallTime{}) {
    open = std::max(0.0, Seconds(now - runtime.state_since).count());
  }
  return runtime.asleep_seconds + open;
}

std::optional<EnergyAccount> energy_account(const Settings& settings, const ServiceSpec& spec,
                                            const ServiceRuntime& runtime, WallTime now) {
  if (!spec.idle_power_watts) return std::nullopt;
  EnergyAccount e;
  e.watts = *spec.idle_power_watts;
  e.asleep_seconds = asleep_seconds(runtime, now);
  e.start_seconds = runtime.start_seconds;
  e.saved_joules = e.asleep_seconds * e.watts;
  e.cold_start_joules = e.start_seconds * e.watts;
  if (settings.price_per_kwh > 0) {
    e.cost_saved = e.saved_joules / kJoulesPerKwh * settings.price_per_kwh;
    e.cold_start_cost = e.cold_start_joules / kJoulesPerKwh * settings.price_per_kwh;
  }
  return e;
}

}  // namespace siesta
