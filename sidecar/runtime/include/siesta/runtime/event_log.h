// EventLog: siesta's own recent history — the last wakes, sleeps, pauses, loads, unloads and
// failures — for the admin page's chart (GET /admin/events) and the waking page's "usually N s".
// A Recorder that keeps each event in a bounded ring and passes every call on to `next` (the
// metrics), so it sits where the metrics sat and nothing else changes.
//
// Thread-safe: one mutex around the ring; recording costs a copy of a few strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/recorder.h"

namespace siesta {

struct Event {
  std::uint64_t id = 0;  // increasing from 1: a client's cursor
  double at = 0;         // Unix seconds
  std::string kind;      // "wake", "sleep", "pause", "resume", "load", "unload", "failed"
  std::string subject;   // "service" or "model"
  std::string name;
  std::string reason;              // e.g. "idle", "manual", "request"; the failed operation
  std::optional<double> duration;  // wake, resume and load: seconds until ready
};

// One use through the proxy, as GET /admin/trace writes it (the simulator's trace format).
struct TracedUse {
  double at = 0;  // Unix seconds: when it arrived
  std::string service;
  std::string model;    // empty: none named
  double duration = 0;  // seconds it ran once the service was up
};

class EventLog final : public Recorder {
 public:
  static constexpr std::size_t kDefaultCapacity = 1000;
  // Uses kept for GET /admin/trace: the last ones, the oldest dropped first.
  static constexpr std::size_t kTraceCapacity = 10000;
  // Cold starts kept per service for expected_wake_seconds().
  static constexpr std::size_t kColdStartsKept = 5;

  EventLog(Recorder& next, const Clock& clock, std::size_t capacity = kDefaultCapacity,
           std::size_t trace_capacity = kTraceCapacity);

  // Events with id > after_id and at >= since, oldest first.
  std::vector<Event> since(double since_unix, std::uint64_t after_id = 0) const;
  std::size_t capacity() const { return capacity_; }
  // The median of the service's last cold starts (start to ready); nullopt before the first.
  std::optional<double> expected_wake_seconds(const std::string& service) const;
  // The uses kept, as a CSV trace `siesta simulate --trace` reads: a comment line (how many
  // are kept and were dropped), the header time,service,model,duration, then one line per use
  // in order of arrival (times in Unix seconds, to the millisecond; RFC 4180 quoting).
  std::string trace_csv() const;
  std::size_t trace_capacity() const { return trace_capacity_; }

  void service_slept(const std::string& service, Reason reason) override;
  void service_woke(const std::string& service, Reason reason, Seconds duration) override;
  void service_failed(const std::string& service, ServiceOperation operation) override;
  void model_unloaded(const ModelKey& model, Reason reason) override;
  void model_unload_failed(const ModelKey& model) override;
  void monitor_ran(WallTime at, Seconds took) override;
  void service_tier_entered(const std::string& service, const std::string& tier) override;
  void service_woke_from_tier(const std::string& service, const std::string& tier,
                              Seconds duration) override;
  void service_added(const std::string& service) override;
  void proxy_request(const std::string& service, int status, Seconds duration) override;
  void model_loaded(const ModelKey& model, Reason reason, Seconds duration) override;
  void service_memory_freed(const std::string& service, double bytes) override;
  void model_memory_freed(const ModelKey& model, double bytes) override;
  void model_added(const ModelKey& model) override;
  void proxy_use(const std::string& service, const std::string& model, WallTime arrived,
                 Seconds duration) override;
  void proxy_connection(const std::string& service) override;
  void proxy_connection_opened(const std::string& service) override;
  void proxy_connection_closed(const std::string& service) override;
  void proxy_connection_refused(const std::string& service, const std::string& reason) override;
  void proxy_upstream_connection(const std::string& service, bool reused) override;
  void proxy_idle_closed(const std::string& service, const char* kind) override;
  void gpu_evicted(Reason reason) override;
  void gpu_wait(bool began, const char* outcome) override;

 private:
  void add(std::string kind, std::string subject, std::string name, std::string reason,
           std::optional<double> duration = std::nullopt);

  Recorder& next_;
  const Clock& clock_;
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::deque<Event> events_;                               // guarded by mu_
  std::uint64_t next_id_ = 1;                              // guarded by mu_
  std::map<std::string, std::deque<double>> cold_starts_;  // guarded by mu_
  const std::size_t trace_capacity_;
  std::deque<TracedUse> uses_;  // guarded by mu_
  std::uint64_t dropped_ = 0;   // guarded by mu_: uses pushed out of uses_
};

}  // namespace siesta
