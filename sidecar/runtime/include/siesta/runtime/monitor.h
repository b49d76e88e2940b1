// Monitor: the idle monitor task. A thin runner around decide(): each pass takes a snapshot,
// acts on the actions due through MonitorActions (the Controller), reconciles backends every
// idle_check_interval_minutes, and then waits on the registry's change signal until the next
// deadline, so a service is stopped at its deadline rather than up to a check interval late.
// See DESIGN.md beside this file.
//
// step() is for tests and is not thread-safe against a running thread; start()/stop() and the
// accessors are thread-safe.
#pragma once

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "siesta/core/clock.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/activity_sampler.h"
#include "siesta/runtime/executor.h"
#include "siesta/runtime/monitor_actions.h"
#include "siesta/runtime/power_meter.h"

namespace siesta {

class Monitor {
 public:
  Monitor(Registry& registry, MonitorActions& controller, const Clock& clock, Recorder& recorder,
          Executor& executor);
  ~Monitor();

  // Activity signals sampled on each pass (before start()); none by default.
  void set_activity(ActivitySampler* activity) { activity_ = activity; }
  // Idle power measured at stops ("idle_power_watts": "measured"; before start()); none by
  // default.
  void set_power_meter(PowerMeter* power) { power_ = power; }

  // One pass at clock.wall_now(); returns when the next pass is due.
  WallTime step();

  void start();
  void stop();
  bool running() const { return running_.load(); }
  std::optional<WallTime> last_run() const;

  // The longest the thread waits between passes even when nothing is due, so that a jump of
  // the wall clock is noticed.
  static constexpr std::chrono::seconds kMaxWait{30};

 private:
  void loop();

  Registry& registry_;
  MonitorActions& controller_;
  const Clock& clock_;
  Recorder& recorder_;
  Executor& executor_;
  ActivitySampler* activity_ = nullptr;
  PowerMeter* power_ = nullptr;

  std::optional<WallTime> last_reconcile_;  // only touched by the pass
  mutable std::mutex mu_;
  std::optional<WallTime> last_run_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace siesta
