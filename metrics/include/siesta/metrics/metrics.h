// Metrics: siesta's Prometheus exposition. Gauges are rendered at scrape time from the same
// Decision the monitor acts on (so dashboards show exactly what the monitor does); counters and
// the wake histogram are kept in a prometheus-cpp registry fed through the Recorder interface.
// The catalogue of every name is CATALOGUE.md beside this file's module.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/decide.h"
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

  void service_slept(const std::string& service, const std::string& reason) override;
  void service_woke(const std::string& service, const std::string& reason,
                    Seconds duration) override;
  void service_failed(const std::string& service, const std::string& operation) override;
  void model_unloaded(const std::string& model, const std::string& reason) override;
  void model_unload_failed(const std::string& model) override;
  void monitor_ran(WallTime at) override;
  void service_added(const std::string& service) override;
  void proxy_request(const std::string& service, int status, Seconds duration) override;
  void proxy_connection(const std::string& service) override;
  void model_added(const std::string& model) override;
  void model_memory_freed(const std::string& model, double bytes) override;
  void service_memory_freed(const std::string& service, double bytes) override;
  void model_loaded(const std::string& model, const std::string& reason, Seconds duration) override;

  // The text exposition format (version 0.0.4).
  std::string render(const Snapshot& snapshot, const Decision& decision,
                     const MonitorStatus& monitor) const;

  // Wake-duration histogram bucket bounds, in seconds.
  static std::vector<double> wake_buckets();
  static std::vector<double> proxy_buckets();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* sleeps_;
  prometheus::Family<prometheus::Counter>* wakes_;
  prometheus::Family<prometheus::Counter>* failures_;
  prometheus::Family<prometheus::Counter>* unloads_;
  prometheus::Family<prometheus::Counter>* unload_failures_;
  prometheus::Family<prometheus::Counter>* monitor_runs_;
  prometheus::Family<prometheus::Histogram>* wake_duration_;
  prometheus::Family<prometheus::Counter>* proxy_requests_;
  prometheus::Family<prometheus::Histogram>* proxy_duration_;
  prometheus::Family<prometheus::Counter>* loads_;
  prometheus::Family<prometheus::Histogram>* load_duration_;
  prometheus::Family<prometheus::Counter>* proxy_connections_;
  prometheus::Family<prometheus::Counter>* vram_freed_;
  prometheus::Family<prometheus::Counter>* memory_freed_;
};

}  // namespace siesta
