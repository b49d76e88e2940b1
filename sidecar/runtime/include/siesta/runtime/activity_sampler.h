// ActivitySampler: runs the activity signals (core/activity.h) of every running service, each on
// its own interval, on the monitor's executor, so a slow or hung signal never delays the
// monitor or another signal. A busy sample is a use of the service (its idle timer restarts);
// every result goes to the service's runtime (idle-status, /metrics). decide() reads none of it.
//
// A failing sample (timeout, error, tool absent) is counted (SignalState::errors), logged
// once per change of its message, and neither keeps the service awake nor puts it to sleep.
//
// Thread-safe: run_due() is called by the monitor thread; samples finish on executor threads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/activity.h"
#include "siesta/core/clock.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/executor.h"

namespace siesta {

// One sample's outcome: a value, or an error ("unavailable: ..." when the source is absent).
// Neither (a first CPU sample, which only sets the baseline) records nothing.
struct SignalSample {
  std::optional<double> value;
  std::string error;
};

// One signal of one service. It may keep state between samples (the CPU time last read); the
// sampler never runs two samples of one probe at once.
class SignalProbe {
 public:
  virtual ~SignalProbe() = default;
  virtual SignalSample sample(const ServiceSpec& spec) = 0;
};

class ActivitySampler {
 public:
  using ProbeFactory =
      std::function<std::unique_ptr<SignalProbe>(const ServiceSpec&, const SignalSpec&)>;

  // `defaults`: the signals of services without an "activity" list of their own.
  ActivitySampler(Registry& registry, const Clock& clock, std::vector<SignalSpec> defaults,
                  ProbeFactory factory);

  // Posts every due sample of a running service to `executor`; returns when the next one is due
  // (nullopt: no running service has a signal).
  std::optional<WallTime> run_due(const Snapshot& snapshot, WallTime now, Executor& executor);

  // The signals in force for a service.
  const std::vector<SignalSpec>& signals_of(const ServiceSpec& spec) const {
    return spec.activity ? *spec.activity : defaults_;
  }

  // The sample that measures a service's GPU memory for the budget ("gpu_memory_mib":
  // "measured", docs/gpu.md): a gpu signal of metric memory, sampled after the activity signals
  // (its slot is the last), which is no activity: it only raises ServiceRuntime::gpu_measured_mib.
  static const SignalSpec& gpu_measure_signal();

 private:
  struct Slot {
    std::unique_ptr<SignalProbe> probe;
    std::optional<WallTime> next_due;  // nullopt: at once
    bool running = false;
    std::string logged_error;  // the last failure logged, so each change is logged once
  };
  struct Entry {
    std::shared_ptr<const ServiceSpec> spec;  // the slots belong to this spec
    std::vector<SignalSpec> signals;          // sampled_of(*spec), one per slot
    std::vector<std::shared_ptr<Slot>> slots;
  };

  // The signals sampled for a service: its activity signals, then the GPU measure if it has one.
  std::vector<SignalSpec> sampled_of(const ServiceSpec& spec) const;
  void record(const std::string& service, std::size_t index, const SignalSpec& signal,
              const SignalSample& sample, Slot& slot);
  void record_gpu_measure(const std::string& service, const SignalSample& sample, Slot& slot);

  Registry& registry_;
  const Clock& clock_;
  const std::vector<SignalSpec> defaults_;
  ProbeFactory factory_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace siesta
