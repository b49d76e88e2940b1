#include "siesta/runtime/monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

#include "siesta/core/decide.h"

namespace siesta {

Monitor::Monitor(Registry& registry, MonitorActions& controller, const Clock& clock,
                 Recorder& recorder, Executor& executor)
    : registry_(registry),
      controller_(controller),
      clock_(clock),
      recorder_(recorder),
      executor_(executor) {}

Monitor::~Monitor() { stop(); }

WallTime Monitor::step() {
  const MonoTime began = clock_.mono_now();
  WallTime now = clock_.wall_now();
  const auto interval = to_wall_duration(reconcile_interval(registry_.settings()));
  if (!last_reconcile_ || now >= *last_reconcile_ + interval) {
    controller_.reconcile();
    last_reconcile_ = now;
  }

  const Snapshot snapshot = registry_.snapshot();
  Decision decision = decide(snapshot, now);
  for (const Action& action : decision.actions) {
    switch (action.kind) {
      case ActionKind::kSleepService:
        if (controller_.claim_sleep(action.name)) {
          executor_.post([this, name = action.name] { controller_.finish_sleep(name); });
        }
        break;
      case ActionKind::kLightSleep:
        if (controller_.claim_light_sleep(action.name, action.tier)) {
          executor_.post([this, name = action.name, tier = action.tier] {
            controller_.finish_light_sleep(name, tier);
          });
        }
        break;
      case ActionKind::kUnloadModel:
        if (const ModelKey key{action.name, action.service}; controller_.claim_unload(key)) {
          executor_.post(
              [this, key, reason = action.reason] { controller_.finish_unload(key, reason); });
        }
        break;
      case ActionKind::kStartService:
        // wake() shares a start already in progress, so a repeated action is harmless.
        executor_.post([this, name = action.name, reason = action.reason] {
          (void)controller_.wake(name, reason);
        });
        break;
    }
  }
  // Samples run on the executor; a busy one is a use, which the next decision sees.
  std::optional<WallTime> sample_due;
  if (activity_ != nullptr) sample_due = activity_->run_due(snapshot, now, executor_);
  if (power_ != nullptr) {
    if (auto due = power_->run_due(snapshot, now, executor_)) {
      sample_due = sample_due ? std::min(*sample_due, *due) : *due;
    }
  }
  {
    std::lock_guard lock(mu_);
    last_run_ = now;
  }
  recorder_.monitor_ran(now, clock_.mono_now() - began);

  WallTime next = *last_reconcile_ + interval;
  if (decision.next_deadline) next = std::min(next, *decision.next_deadline);
  if (sample_due) next = std::min(next, *sample_due);
  return next;
}

void Monitor::start() {
  if (thread_.joinable()) return;
  stop_requested_ = false;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
  spdlog::info("Idle monitor task started");
}

void Monitor::stop() {
  if (!thread_.joinable()) return;
  stop_requested_ = true;
  registry_.changes().notify();
  thread_.join();
  spdlog::info("Idle monitor task stopped");
}

std::optional<WallTime> Monitor::last_run() const {
  std::lock_guard lock(mu_);
  return last_run_;
}

void Monitor::loop() {
  while (!stop_requested_) {
    const std::uint64_t seen = registry_.changes().generation();
    registry_.changes().plan_wake(std::nullopt);  // awake: every deadline change must signal
    WallTime next;
    try {
      next = step();
    } catch (const std::exception& e) {
      // The monitor never dies: log, and try again shortly.
      spdlog::error("Error in idle monitor task: {}", e.what());
      next = clock_.wall_now() + std::chrono::seconds(1);
    }
    if (stop_requested_) break;
    auto wait = std::clamp(next - clock_.wall_now(), WallTime::duration::zero(),
                           to_wall_duration(kMaxWait));
    registry_.changes().plan_wake(clock_.wall_now() + wait);
    registry_.changes().wait(seen, clock_.mono_now() + wait);
  }
  running_ = false;
}

}  // namespace siesta
