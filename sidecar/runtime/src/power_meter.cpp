#include "siesta/runtime/power_meter.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "siesta/core/energy.h"

namespace siesta {

PowerMeter::PowerMeter(Registry& registry, const Clock& clock, Reader reader,
                       std::function<void()> measured)
    : registry_(registry),
      clock_(clock),
      reader_(std::move(reader)),
      measured_(std::move(measured)) {}

std::optional<WallTime> PowerMeter::run_due(const Snapshot& snapshot, WallTime now,
                                            Executor& executor) {
  std::optional<WallTime> next;
  const auto due_at = [&](WallTime at) { next = next ? std::min(*next, at) : at; };
  std::vector<std::function<void()>> readings;  // posted once the lock is released
  std::unique_lock lock(mu_);
  for (const ServiceView& view : snapshot.services) {
    if (!view.spec->idle_power_measured) continue;
    const std::string& name = view.spec->name;
    Entry& e = entries_[name];
    if (e.running) continue;  // its end is followed by a pass of its own
    const ServiceRuntime& rt = view.runtime;
    if (rt.state == ServiceState::kRunning) {
      if (rt.in_flight > 0) {  // serving: its draw now is no idle draw
        e.idle.reset();
        e.next_due.reset();
        continue;
      }
      if (!e.next_due || *e.next_due <= now) {
        e.running = true;
        e.next_due = now + to_wall_duration(Seconds(kIntervalSeconds));
        readings.emplace_back([this, name] { read_idle(name); });
      }
      due_at(*e.next_due);
      continue;
    }
    e.next_due.reset();
    if (rt.state != ServiceState::kStopped || !e.idle) continue;
    const WallTime stopped_at = rt.state_since;
    // The idle reading must come from just before this stop.
    if (e.idle->at > stopped_at ||
        stopped_at - e.idle->at > to_wall_duration(Seconds(kMaxBeforeAgeSeconds))) {
      e.idle.reset();
      continue;
    }
    const WallTime settled = stopped_at + to_wall_duration(Seconds(kSettleSeconds));
    if (now < settled) {
      due_at(settled);
      continue;
    }
    e.running = true;
    readings.emplace_back(
        [this, name, idle = *e.idle, stopped_at] { read_stopped(name, idle, stopped_at); });
    e.idle.reset();
  }
  lock.unlock();
  for (auto& reading : readings) executor.post(std::move(reading));
  return next;
}

std::optional<double> PowerMeter::read(const ServiceSpec& spec, Entry& entry) {
  std::string error;
  const std::optional<std::map<int, double>> watts = reader_(error);
  std::optional<double> sum;
  if (watts) {
    for (const auto& [index, w] : *watts) {
      if (!spec.gpu_devices.empty() && std::find(spec.gpu_devices.begin(), spec.gpu_devices.end(),
                                                 index) == spec.gpu_devices.end()) {
        continue;
      }
      sum = sum.value_or(0) + w;
    }
    if (!sum) error = "nvidia-smi reports no power draw for its GPUs";
  }
  std::lock_guard lock(mu_);
  if (!sum) {
    if (entry.logged_error != error) {
      spdlog::warn(
          "Service {}: its idle power cannot be measured: {} (what was measured before, if "
          "anything, is still counted; without a measurement nothing is estimated)",
          spec.name, error);
      entry.logged_error = error;
    }
  } else if (!entry.logged_error.empty()) {
    spdlog::info("Service {}: its idle power is measured again", spec.name);
    entry.logged_error.clear();
  }
  return sum;
}

void PowerMeter::read_idle(const std::string& service) {
  auto view = registry_.service(service);
  Entry* e = nullptr;
  {
    std::lock_guard lock(mu_);
    e = &entries_[service];  // std::map: stable
  }
  const std::optional<double> watts = view ? read(*view->spec, *e) : std::nullopt;
  const WallTime at = clock_.wall_now();
  auto after = registry_.service(service);
  std::lock_guard lock(mu_);
  e->running = false;
  // Still running idle, and not used since the reading began: an idle draw.
  const ServiceRuntime* rt = after ? &after->runtime : nullptr;
  if (watts && rt != nullptr && rt->state == ServiceState::kRunning && rt->in_flight == 0 &&
      (!rt->last_used || *rt->last_used <= at)) {
    e->idle = Idle{at, *watts};
  }
}

void PowerMeter::read_stopped(const std::string& service, Idle idle, WallTime stopped_at) {
  auto view = registry_.service(service);
  Entry* e = nullptr;
  {
    std::lock_guard lock(mu_);
    e = &entries_[service];
  }
  const std::optional<double> watts = view ? read(*view->spec, *e) : std::nullopt;
  {
    std::lock_guard lock(mu_);
    e->running = false;
  }
  if (!watts) return;
  // Another service started or stopped between the two readings: the drop is not this one's.
  const Snapshot snap = registry_.snapshot();
  for (const ServiceView& other : snap.services) {
    if (other.spec->name != service && other.runtime.state_since > idle.at) {
      spdlog::debug("Service {}: no idle power measured at this stop: {} changed state meanwhile",
                    service, other.spec->name);
      return;
    }
  }
  bool still_stopped = false, recorded = false;
  std::optional<double> counted;
  std::size_t count = 0;
  registry_.update_service_quiet(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    if (rt.state != ServiceState::kStopped || rt.state_since != stopped_at) return;  // woken
    still_stopped = true;
    recorded = record_idle_power(rt.idle_power_samples, idle.watts, *watts);
    counted = measured_idle_power(rt.idle_power_samples);
    count = rt.idle_power_samples.size();
  });
  if (recorded) {
    if (measured_) measured_();
    spdlog::info(
        "Service {}: idle power measured at its stop: {:.1f} W ({:.1f} W drawn before, {:.1f} W "
        "after); counted at {:.1f} W, the median of {}",
        service, idle.watts - *watts, idle.watts, *watts, *counted, count);
  } else if (still_stopped) {
    spdlog::info(
        "Service {}: no idle power measured at this stop: its GPUs drew {:.1f} W before and "
        "{:.1f} W after",
        service, idle.watts, *watts);
  }
}

}  // namespace siesta
