// Hand-written fakes that record calls: FakeClock, FakeBackend, FakeProvider, RecordingRecorder.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/model_provider.h"
#include "siesta/core/recorder.h"
#include "siesta/core/service_backend.h"

namespace siesta::testing {

// Time moves only when a test says so; sleep_for advances it instead of blocking.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime start = from_unix_seconds(1'700'000'000)) : wall_(start) {}
  WallTime wall_now() const override {
    std::lock_guard lock(mu_);
    return wall_;
  }
  MonoTime mono_now() const override {
    std::lock_guard lock(mu_);
    return MonoTime(std::chrono::duration_cast<MonoTime::duration>(wall_.time_since_epoch()));
  }
  void sleep_for(std::chrono::nanoseconds d) const override { advance(d); }
  template <typename D>
  void advance(D d) const {
    std::lock_guard lock(mu_);
    wall_ += std::chrono::duration_cast<WallTime::duration>(d);
  }
  void advance_minutes(double m) const { advance(Seconds(m * 60)); }

 private:
  mutable std::mutex mu_;
  mutable WallTime wall_;
};

class FakeBackend final : public ServiceBackend {
 public:
  Status start(const ServiceSpec& spec) override {
    std::function<void()> hook;
    {
      std::lock_guard lock(mu_);
      calls.push_back("start " + spec.name);
      hook = on_start;
    }
    if (hook) hook();
    std::lock_guard lock(mu_);
    if (fail_start.count(spec.name)) return {ErrorCode::kFailed, "start refused"};
    running.insert(spec.name);
    return Status::ok();
  }
  Result<Readiness> check_ready(const ServiceSpec& spec) override {
    if (on_probe) on_probe();
    std::lock_guard lock(mu_);
    if (never_ready.count(spec.name)) return Readiness::kNotYet;
    return Readiness::kReady;
  }
  Status stop(const ServiceSpec& spec) override {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(mu_);
      hook = on_stop;
    }
    if (hook) hook(spec.name);
    std::lock_guard lock(mu_);
    calls.push_back("stop " + spec.name);
    if (fail_stop.count(spec.name)) return {ErrorCode::kFailed, "stop refused"};
    running.erase(spec.name);
    paused.erase(spec.name);  // as the real backends: a paused service is stopped too
    return Status::ok();
  }
  bool supports_pause() const override { return true; }
  Status pause(const ServiceSpec& spec) override {
    std::lock_guard lock(mu_);
    calls.push_back("pause " + spec.name);
    if (running.count(spec.name) == 0) return {ErrorCode::kFailed, "not running"};
    paused.insert(spec.name);
    return Status::ok();
  }
  Status resume(const ServiceSpec& spec) override {
    std::lock_guard lock(mu_);
    calls.push_back("resume " + spec.name);
    if (fail_resume.count(spec.name) != 0) return {ErrorCode::kFailed, "cannot resume"};
    paused.erase(spec.name);
    return Status::ok();
  }
  Result<Inspection> inspect(const ServiceSpec& spec) override {
    std::lock_guard lock(mu_);
    if (fail_inspect) return inspect_error;
    auto failure = start_failures.find(spec.name);
    return Inspection{running.count(spec.name) != 0, "", paused.count(spec.name) != 0,
                      failure == start_failures.end() ? std::string() : failure->second};
  }
  nlohmann::json save_handle(const ServiceSpec& spec) override {
    std::lock_guard lock(mu_);
    auto it = handles.find(spec.name);
    return it == handles.end() ? nlohmann::json(nullptr) : it->second;
  }
  void restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) override {
    std::lock_guard lock(mu_);
    handles[spec.name] = handle;
  }

  std::vector<std::string> take_calls() {
    std::lock_guard lock(mu_);
    return std::exchange(calls, {});
  }
  int count(const std::string& call) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& c : calls) n += c == call;
    return n;
  }

  std::mutex mu_;
  std::vector<std::string> calls;
  std::set<std::string> running;
  std::set<std::string> fail_start, fail_stop, never_ready, fail_resume;
  std::set<std::string> paused;
  bool fail_inspect = false;
  Status inspect_error{ErrorCode::kUnavailable, "backend unreachable"};  // with fail_inspect
  std::map<std::string, nlohmann::json> handles;      // what save_handle answers, per service
  std::map<std::string, std::string> start_failures;  // what inspect says of a stopped service
  std::function<void()> on_start;  // runs after a start is recorded, outside the lock
  std::function<void()> on_probe;  // runs at each readiness probe, outside the lock
  std::function<void(const std::string&)> on_stop;  // runs before a stop, outside the lock
};

// vLLM's sleep mode: sleep/wake_up/is_sleeping recorded; is_sleeping stays true for
// `lag_polls` polls after a wake_up (the engine still waking).
class FakeEngineSleep final : public EngineSleep {
 public:
  Status sleep(int level) override {
    std::lock_guard lock(mu_);
    calls.push_back("sleep " + std::to_string(level));
    if (no_dev_mode) return {ErrorCode::kNotFound, "404 (no dev mode)"};
    asleep = true;
    return Status::ok();
  }
  Status wake_up(double timeout_seconds) override {
    if (during_wake_up) during_wake_up();  // e.g. the fake clock advanced: a slow /wake_up
    std::lock_guard lock(mu_);
    calls.push_back("wake_up");
    wake_up_timeouts.push_back(timeout_seconds);
    if (no_dev_mode) return {ErrorCode::kNotFound, "404 (no dev mode)"};
    if (fail_wake_up) return {ErrorCode::kFailed, "500: CUDA error: out of memory"};
    asleep = false;
    lag_left = lag_polls;
    return Status::ok();
  }
  Result<bool> is_sleeping() override {
    std::lock_guard lock(mu_);
    calls.push_back("is_sleeping");
    if (no_dev_mode) return Status{ErrorCode::kNotFound, "404 (no dev mode)"};
    if (lag_left > 0) {
      --lag_left;
      return true;
    }
    return asleep;
  }
  std::vector<std::string> take_calls() {
    std::lock_guard lock(mu_);
    return std::exchange(calls, {});
  }
  std::mutex mu_;
  std::vector<std::string> calls;
  bool asleep = false;
  bool no_dev_mode = false;
  bool fail_wake_up = false;
  int lag_polls = 0;
  int lag_left = 0;
  std::vector<double> wake_up_timeouts;
  std::function<void()> during_wake_up;
};

class FakeProvider final : public ModelProvider {
 public:
  // Set: the provider has a sleep mode (a vLLM server).
  FakeEngineSleep* sleep_mode = nullptr;
  EngineSleep* engine_sleep() override { return sleep_mode; }

  Status load(const std::string& model, double keep_alive_seconds) override {
    if (during_load) during_load(model);  // the load in progress, before it is done
    std::lock_guard lock(mu_);
    calls.push_back("load " + model);
    load_keep_alives.push_back(keep_alive_seconds);
    if (!installed.empty() && installed.count(model) == 0) {
      return {ErrorCode::kNotFound, "model '" + model + "' not found"};
    }
    loaded_models.insert(model);
    return Status::ok();
  }
  Status unload(const std::string& model) override {
    std::lock_guard lock(mu_);
    calls.push_back("unload " + model);
    if (fail_unload) return {ErrorCode::kUnavailable, "ollama did not answer"};
    loaded_models.erase(model);
    return Status::ok();
  }
  Result<std::vector<LoadedModel>> loaded() override {
    std::lock_guard lock(mu_);
    std::vector<LoadedModel> out;
    for (const auto& m : loaded_models) {
      auto card = cards.find(m);
      out.push_back({m, 3e9, 3e9, card == cards.end() ? std::string() : card->second});
    }
    return out;
  }
  Result<std::vector<std::string>> list_installed() override {
    std::lock_guard lock(mu_);
    calls.push_back("list_installed");
    return std::vector<std::string>(installed.begin(), installed.end());
  }
  std::mutex mu_;
  std::vector<std::string> calls;
  std::set<std::string> loaded_models;
  std::map<std::string, std::string> cards;  // per model, its entry in the server's list
  std::set<std::string> installed;
  std::vector<double> load_keep_alives;  // the keep-alive each load() asked for
  bool fail_unload = false;
  std::function<void(const std::string&)> during_load;  // called while load() runs
};

class RecordingRecorder final : public Recorder {
 public:
  void service_slept(const std::string& s, Reason r) override {
    add("slept " + s + " " + to_string(r));
  }
  void service_woke(const std::string& s, Reason r, Seconds) override {
    add("woke " + s + " " + to_string(r));
  }
  void service_added(const std::string& s) override { add("added " + s); }
  void service_failed(const std::string& s, ServiceOperation op) override {
    add("failed " + s + " " + to_string(op));
  }
  void model_unloaded(const ModelKey& m, Reason r) override {
    add("unloaded " + m.name + " " + to_string(r));
  }
  void model_unload_failed(const ModelKey& m) override { add("unload_failed " + m.name); }
  void monitor_ran(WallTime, Seconds) override {}
  // Graduated sleep, apart from events() so that the one-tier tests read as before.
  void service_tier_entered(const std::string& s, const std::string& t) override {
    std::lock_guard lock(mu_);
    tiers_.push_back("entered " + s + " " + t);
  }
  void service_woke_from_tier(const std::string& s, const std::string& t, Seconds d) override {
    std::lock_guard lock(mu_);
    tiers_.push_back("woke " + s + " from " + t);
    tier_wake_seconds_.push_back(d.count());
  }
  // The duration of each wake from a tier, in the order of tier_events()' wakes.
  std::vector<double> tier_wake_seconds() {
    std::lock_guard lock(mu_);
    return tier_wake_seconds_;
  }

  std::vector<std::string> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<std::string> tier_events() {
    std::lock_guard lock(mu_);
    return tiers_;
  }

 private:
  void add(std::string e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
  }
  std::mutex mu_;
  std::vector<std::string> events_;
  std::vector<std::string> tiers_;
  std::vector<double> tier_wake_seconds_;
};

}  // namespace siesta::testing
