// Metrics: siesta's Prometheus exposition. Gauges are rendered at scrape time from the same
// Decision the monitor acts on (so dashboards show exactly what the monitor does); counters and
// the wake histogram are kept in a prometheus-cpp registry fed through the Recorder interface.
// The catalogue of every name is CATALOGUE.md beside this file's module.
// Thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "siesta/core/decide.h"
#include "siesta/core/gpu.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
class Gauge;
}  // namespace prometheus

namespace siesta {

class Exposition;

struct MonitorStatus {
  bool running = false;
  std::optional<WallTime> last_run;
};

class Metrics final : public Recorder {
 public:
  Metrics();
  ~Metrics() override;

  // Creates the counters of known services and models at zero, so rate() sees their start.
  void declare(const Snapshot& snapshot);

  void service_slept(const std::string& service, Reason reason) override;
  void service_woke(const std::string& service, Reason reason, Seconds duration) override;
  void service_failed(const std::string& service, ServiceOperation operation) override;
  void model_unloaded(const ModelKey& model, Reason reason) override;
  void model_unload_failed(const ModelKey& model) override;
  void monitor_ran(WallTime at, Seconds took) override;
  void service_added(const std::string& service) override;
  void proxy_request(const std::string& service, int status, Seconds duration) override;
  void proxy_connection(const std::string& service) override;
  void proxy_connection_opened(const std::string& service) override;
  void proxy_connection_closed(const std::string& service) override;
  void proxy_connection_refused(const std::string& service, const std::string& reason) override;
  void proxy_upstream_connection(const std::string& service, bool reused) override;
  void proxy_idle_closed(const std::string& service, const char* kind) override;
  void model_added(const ModelKey& model) override;
  void model_memory_freed(const ModelKey& model, double bytes) override;
  void service_memory_freed(const std::string& service, double bytes) override;
  void model_loaded(const ModelKey& model, Reason reason, Seconds duration) override;
  void service_tier_entered(const std::string& service, const std::string& tier) override;
  void service_woke_from_tier(const std::string& service, const std::string& tier,
                              Seconds duration) override;

  void gpu_evicted(Reason reason) override;
  void gpu_wait(bool began, const char* outcome) override;
  // The GPU budget whose gauges /metrics shows (none: no siesta_gpu_* at all). Set before use.
  void set_gpu(const GpuConfig& gpu);
  // The currency label of the cost counters (the config's "currency"). Set before use.
  void set_currency(const std::string& currency);
  // The text exposition format (version 0.0.4).
  std::string render(const Snapshot& snapshot, const Decision& decision,
                     const MonitorStatus& monitor) const;

  // Wake-duration histogram bucket bounds, in seconds.
  static std::vector<double> wake_buckets();
  static std::vector<double> proxy_buckets();

 private:
  // Counter families kept per service and per model (Counters::by), by index.
  enum ServiceFamily : int {
    kSleeps,
    kWakes,
    kFailures,
    kProxyRequests,
    kProxyConnections,
    kServiceMemoryFreed,
    kProxyConnectionsOpen,  // a gauge kept as +1/-1
    kProxyConnectionsRefused,
    kProxyUpstreamConnections,
    kProxyIdleCloses,
    kTiersEntered,
    kTierWakes,
    kTierWakeSeconds,
    kServiceFamilies
  };
  enum ModelFamily : int { kUnloads, kLoads, kUnloadFailures, kVramFreed, kModelFamilies };
  static constexpr int kFamilies = std::max<int>(kServiceFamilies, kModelFamilies);
  struct Counters;
  using Rows = std::vector<std::pair<const std::string*, Counters*>>;
  struct Table {
    mutable std::shared_mutex mu;
    std::map<std::string, std::unique_ptr<Counters>> by_name;  // sorted: a stable exposition
  };

  Counters& counters(Table& table, const std::string& name, bool is_service);
  void count(Table& table, const std::string& name, bool is_service, int family,
             std::string_view label, double amount);
  // Counts one timed event and observes its duration in the entity's histogram of `histograms`,
  // which is created on the entity's first observation.
  void count_timed(Table& table, const std::string& name, bool is_service, int family,
                   std::string_view label, prometheus::Family<prometheus::Histogram>& histograms,
                   prometheus::Histogram* Counters::*histogram, std::vector<double> (*buckets)(),
                   Seconds duration);
  static void render_counters(Exposition& out, const Rows& rows, const char* entity, int family,
                              const char* name, const char* help, const char* label,
                              const char* type = "counter");

  Table services_;
  Table models_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* monitor_runs_;
  prometheus::Histogram* monitor_pass_;
  prometheus::Gauge* monitor_last_pass_;
  prometheus::Family<prometheus::Histogram>* wake_duration_;
  prometheus::Family<prometheus::Histogram>* proxy_duration_;
  prometheus::Family<prometheus::Histogram>* load_duration_;
  GpuConfig gpu_;
  std::string currency_;
  prometheus::Family<prometheus::Counter>* gpu_evictions_;
  prometheus::Family<prometheus::Counter>* gpu_waits_;
  prometheus::Gauge* gpu_waiting_;
  mutable std::atomic<std::size_t> last_size_{0};  // the last exposition's size: one allocation
};

}  // namespace siesta
