#include "siesta/runtime/activity_sampler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

#include "siesta/core/decide.h"

namespace siesta {

namespace {

// A signal sampled less often than the service's first tier comes can miss a busy spell shorter
// than its interval: said once per spec, at the first sight of it.
void warn_if_slower_than_first_tier(const Settings& settings, const ServiceSpec& spec,
                                    const std::vector<SignalSpec>& signals) {
  const auto tiers = effective_tiers(settings, spec);
  if (tiers.empty()) return;
  const double first_seconds = tiers.front().after_minutes * 60;
  for (const SignalSpec& signal : signals) {
    if (signal.interval_seconds > first_seconds) {
      spdlog::warn(
          "Service {}: activity signal {} is sampled every {:g} s, less often than the service "
          "goes to sleep ({:g} s idle): a busy spell shorter than {:g} s can be missed; lower its "
          "interval_seconds",
          spec.name, signal.name, signal.interval_seconds, first_seconds, signal.interval_seconds);
    }
  }
}

// The states of a service's signals, in their order, before any sample.
void init_states(ServiceRuntime& rt, const std::vector<SignalSpec>& signals) {
  if (rt.activity.size() == signals.size()) return;
  rt.activity.assign(signals.size(), SignalState{});
  for (std::size_t i = 0; i < signals.size(); ++i) {
    rt.activity[i].name = signals[i].name;
    rt.activity[i].kind = signals[i].kind;
    rt.activity[i].threshold = signals[i].threshold;
  }
}

}  // namespace

const SignalSpec& ActivitySampler::gpu_measure_signal() {
  static const SignalSpec signal = [] {
    SignalSpec s;
    s.kind = SignalKind::kGpu;
    s.name = "gpu memory (measured for the GPU budget)";
    s.gpu_metric = "memory";
    s.interval_seconds = 10;
    return s;
  }();
  return signal;
}

std::vector<SignalSpec> ActivitySampler::sampled_of(const ServiceSpec& spec) const {
  std::vector<SignalSpec> signals = signals_of(spec);
  if (spec.gpu_memory_measured) signals.push_back(gpu_measure_signal());
  return signals;
}

ActivitySampler::ActivitySampler(Registry& registry, const Clock& clock,
                                 std::vector<SignalSpec> defaults, ProbeFactory factory)
    : registry_(registry),
      clock_(clock),
      defaults_(std::move(defaults)),
      factory_(std::move(factory)) {}

std::optional<WallTime> ActivitySampler::run_due(const Snapshot& snapshot, WallTime now,
                                                 Executor& executor) {
  struct Due {
    std::shared_ptr<const ServiceSpec> spec;
    std::size_t index;
    SignalSpec signal;
    std::shared_ptr<Slot> slot;
  };
  std::vector<Due> due;
  std::vector<std::string> fresh;  // services whose states are not in the registry yet
  std::optional<WallTime> next;
  {
    std::lock_guard lock(mu_);
    for (const ServiceView& view : snapshot.services) {
      if (signals_of(*view.spec).empty() && !view.spec->gpu_memory_measured) continue;
      Entry& entry = entries_[view.spec->name];
      if (entry.spec != view.spec) {
        entry.spec = view.spec;
        entry.signals = sampled_of(*view.spec);  // once per spec, not at every pass
        entry.slots.clear();
        warn_if_slower_than_first_tier(snapshot.settings, *view.spec, signals_of(*view.spec));
        if (view.runtime.activity.size() != signals_of(*view.spec).size()) {
          fresh.push_back(view.spec->name);
        }
        for (const SignalSpec& signal : entry.signals) {
          auto slot = std::make_shared<Slot>();
          slot->probe = factory_(*view.spec, signal);
          entry.slots.push_back(std::move(slot));
        }
      }
      // Only a running service is sampled: nothing else can be used, and a paused one is frozen.
      // Its first sample after a start is taken at once.
      if (view.runtime.state != ServiceState::kRunning) {
        for (auto& slot : entry.slots) {
          if (!slot->running) slot->next_due.reset();
        }
        continue;
      }
      for (std::size_t i = 0; i < entry.slots.size(); ++i) {
        Slot& slot = *entry.slots[i];
        if (slot.running) continue;  // its end schedules the next
        if (!slot.next_due || *slot.next_due <= now) {
          slot.running = true;
          slot.next_due = now + to_wall_duration(Seconds(entry.signals[i].interval_seconds));
          due.push_back({view.spec, i, entry.signals[i], entry.slots[i]});
        }
        next = next ? std::min(*next, *slot.next_due) : *slot.next_due;
      }
    }
  }
  for (const std::string& name : fresh) {
    registry_.update_service_quiet(name, [this](const ServiceSpec& spec, ServiceRuntime& rt) {
      init_states(rt, signals_of(spec));
    });
  }
  for (Due& d : due) {
    executor.post([this, d] {
      const SignalSpec& signal = d.signal;
      SignalSample sample;
      try {
        sample = d.slot->probe ? d.slot->probe->sample(*d.spec)
                               : SignalSample{std::nullopt, "unavailable: no probe for this kind"};
      } catch (const std::exception& e) {
        sample = {std::nullopt, e.what()};
      }
      if (d.index < signals_of(*d.spec).size()) {
        record(d.spec->name, d.index, signal, sample, *d.slot);
      } else {
        record_gpu_measure(d.spec->name, sample, *d.slot);
      }
      {
        std::lock_guard lock(mu_);
        d.slot->running = false;
      }
      // The next sample may be due before the monitor's planned wake.
      registry_.changes().notify_if_before(clock_.wall_now() +
                                           to_wall_duration(Seconds(signal.interval_seconds)));
    });
  }
  return next;
}

void ActivitySampler::record(const std::string& service, std::size_t index,
                             const SignalSpec& signal, const SignalSample& sample, Slot& slot) {
  const WallTime at = clock_.wall_now();
  const bool failed = !sample.error.empty();
  const bool busy = !failed && sample.value && *sample.value > signal.threshold;
  registry_.update_service_quiet(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    init_states(rt, signals_of(spec));
    if (index >= rt.activity.size()) return;
    SignalState& state = rt.activity[index];
    if (failed) {
      state.error = sample.error;
      state.busy = false;
      ++state.errors;
      state.sampled_at = at;
      return;
    }
    if (!sample.value) return;  // a baseline only
    state.error.clear();
    state.value = *sample.value;
    state.busy = busy;
    state.sampled_at = at;
    if (busy) {
      state.last_busy_at = at;
      // A use, as a request through siesta would be: the idle timer restarts, and a light tier
      // that left the service serving (unload_models) ends.
      if (!rt.last_used || *rt.last_used < at) rt.last_used = at;
      if (rt.state == ServiceState::kRunning) rt.tier = 0;
    }
  });
  if (failed) {
    if (slot.logged_error != sample.error) {
      spdlog::warn("Service {}: activity signal {} failed: {} (it counts as neither busy nor idle)",
                   service, signal.name, sample.error);
      slot.logged_error = sample.error;
    }
  } else if (!slot.logged_error.empty() && sample.value) {
    spdlog::info("Service {}: activity signal {} works again", service, signal.name);
    slot.logged_error.clear();
  }
}

void ActivitySampler::record_gpu_measure(const std::string& service, const SignalSample& sample,
                                         Slot& slot) {
  if (!sample.error.empty()) {
    if (slot.logged_error != sample.error) {
      spdlog::warn(
          "Service {}: its GPU memory cannot be measured: {} (the budget counts the most "
          "seen so far, or nothing before the first sample)",
          service, sample.error);
      slot.logged_error = sample.error;
    }
    return;
  }
  if (!slot.logged_error.empty()) {
    spdlog::info("Service {}: its GPU memory is measured again", service);
    slot.logged_error.clear();
  }
  if (!sample.value) return;
  std::optional<double> raised;
  registry_.update_service_quiet(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    // Only while it runs: a sample that ends after a stop measured a process on its way out.
    if (rt.state != ServiceState::kRunning) return;
    if (!rt.gpu_measured_mib || *sample.value > *rt.gpu_measured_mib) {
      rt.gpu_measured_mib = *sample.value;
      raised = *sample.value;
    }
  });
  if (raised) spdlog::info("Service {}: holds {:g} MiB of GPU memory (measured)", service, *raised);
}

}  // namespace siesta
