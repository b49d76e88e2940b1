#include "siesta/core/energy.h"

#include <algorithm>
#include <cmath>

namespace siesta {

double asleep_seconds(const ServiceRuntime& runtime, WallTime now) {
  double open = 0;
  // A runtime never stamped (state_since at the epoch) has no stop to count.
  if (runtime.state == ServiceState::kStopped && runtime.state_since != WallTime{}) {
    open = std::max(0.0, Seconds(now - runtime.state_since).count());
  }
  return runtime.asleep_seconds + open;
}

bool record_idle_power(std::vector<double>& samples, double before_watts, double after_watts) {
  const double drop = before_watts - after_watts;
  if (!(drop > 0) || !std::isfinite(drop)) return false;
  if (samples.size() >= kMaxIdlePowerSamples) {
    samples.erase(samples.begin(), samples.end() - (kMaxIdlePowerSamples - 1));
  }
  samples.push_back(drop);
  return true;
}

std::optional<double> measured_idle_power(const std::vector<double>& samples) {
  if (samples.empty()) return std::nullopt;
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

std::optional<EnergyAccount> energy_account(const Settings& settings, const ServiceSpec& spec,
                                            const ServiceRuntime& runtime, WallTime now) {
  const std::optional<double> watts = spec.idle_power_measured
                                          ? measured_idle_power(runtime.idle_power_samples)
                                          : spec.idle_power_watts;
  if (!watts) return std::nullopt;
  EnergyAccount e;
  e.watts = *watts;
  if (spec.idle_power_measured) e.source = "measured";
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
