// PowerMeter: measures the idle power of services that ask for it ("idle_power_watts":
// "measured", docs/policies.md#energy-and-cost) at their stops. A card's draw is not one
// service's, so the meter takes the difference one service makes: the draw of its GPUs while it
// runs idle (sampled every kIntervalSeconds, no request in flight, after its last use), less the
// draw once it has stopped and the card has settled (kSettleSeconds after the stop). One stop is
// one measurement (record_idle_power, energy.h); none is taken when another service changed state
// between the two samples (the drop would not be this one's alone) or when the idle sample is
// older than kMaxBeforeAgeSeconds at the stop.
//
// Thread-safe: run_due() is called by the monitor thread; readings run on executor threads (a
// slow nvidia-smi never delays the monitor).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "siesta/core/clock.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/executor.h"

namespace siesta {

class PowerMeter {
 public:
  // Every GPU's draw in watts, by nvidia-smi index; nullopt with `error` set when it cannot.
  using Reader = std::function<std::optional<std::map<int, double>>(std::string& error)>;
  // `measured`: called after a measurement was recorded (the state file keeps them: main has the
  // controller save at its next pass).
  PowerMeter(Registry& registry, const Clock& clock, Reader reader,
             std::function<void()> measured = {});

  // Posts the readings due to `executor`; returns when the next one is due (nullopt: none).
  std::optional<WallTime> run_due(const Snapshot& snapshot, WallTime now, Executor& executor);

  static constexpr double kIntervalSeconds = 10;
  static constexpr double kSettleSeconds = 10;
  static constexpr double kMaxBeforeAgeSeconds = 60;

 private:
  struct Idle {
    WallTime at;
    double watts = 0;
  };
  struct Entry {
    std::optional<Idle> idle;  // the last reading while it ran idle
    std::optional<WallTime> next_due;
    bool running = false;      // a reading is under way
    std::string logged_error;  // the last failure logged
  };
  // The draw of the service's GPUs (its gpu_devices, else every GPU); nullopt on a failure (logged
  // once per change).
  std::optional<double> read(const ServiceSpec& spec, Entry& entry);
  void read_idle(const std::string& service);
  void read_stopped(const std::string& service, Idle idle, WallTime stopped_at);

  Registry& registry_;
  const Clock& clock_;
  Reader reader_;
  std::function<void()> measured_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace siesta
