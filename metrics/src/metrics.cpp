#include "siesta/metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "process_metrics.h"
#include "siesta/version.h"

namespace siesta {

using prometheus::BuildCounter;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

// Reasons and operations are small fixed sets: pre-declared at zero per service or model.
constexpr const char* kSleepReasons[] = {"idle", "manual"};
constexpr const char* kWakeReasons[] = {"manual", "desired", "request"};
constexpr const char* kOperations[] = {"start", "stop", "inspect"};
constexpr const char* kUnloadReasons[] = {"expired", "forced", "service_sleep", "external"};
constexpr const char* kLoadReasons[] = {"request", "manual"};

// Builds one gauge family sample by sample.
class GaugeFamily {
 public:
  GaugeFamily(const char* name, const char* help) : family_{name, help, MetricType::Gauge, {}} {}
  void add(std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric metric;
    metric.label = std::move(labels);
    metric.gauge.value = value;
    family_.metric.push_back(std::move(metric));
  }
  MetricFamily take() { return std::move(family_); }

 private:
  MetricFamily family_;
};

}  // namespace

std::vector<double> Metrics::wake_buckets() {
  // Cold starts range from a local process ready in ~10 ms to a container with a large model
  // at several minutes. 0.1/1/5/30/60 are the thresholds the dashboards and the slow-wake
  // alert read; the rest keep the quantile estimate honest in between.
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      sleeps_(&BuildCounter()
                   .Name("siesta_service_sleeps_total")
                   .Help("Services put to sleep (stopped), by reason: idle or manual.")
                   .Register(*registry_)),
      wakes_(&BuildCounter()
                  .Name("siesta_service_wakes_total")
                  .Help("Services woken (started and ready), by reason.")
                  .Register(*registry_)),
      failures_(&BuildCounter()
                     .Name("siesta_service_failures_total")
                     .Help("Failed backend operations on a service, by operation.")
                     .Register(*registry_)),
      unloads_(&BuildCounter()
                    .Name("siesta_model_unloads_total")
                    .Help("Models unloaded, by reason: expired, forced, service_sleep, external.")
                    .Register(*registry_)),
      unload_failures_(&BuildCounter()
                            .Name("siesta_model_unload_failures_total")
                            .Help("Model unloads that the provider failed.")
                            .Register(*registry_)),
      monitor_runs_(&BuildCounter()
                         .Name("siesta_monitor_runs_total")
                         .Help("Passes of the idle monitor.")
                         .Register(*registry_)),
      wake_duration_(&prometheus::BuildHistogram()
                          .Name("siesta_service_wake_duration_seconds")
                          .Help("Time from the start of a wake to the service being ready.")
                          .Register(*registry_)),
      proxy_requests_(&BuildCounter()
                           .Name("siesta_proxy_requests_total")
                           .Help("HTTP requests through the proxy, by service and status code "
                                 "(0: the client went away before an answer).")
                           .Register(*registry_)),
      proxy_duration_(&prometheus::BuildHistogram()
                           .Name("siesta_proxy_request_duration_seconds")
                           .Help("HTTP requests through the proxy, from arrival until the "
                                 "response (stream included) ended; cold starts included.")
                           .Register(*registry_)),
      loads_(&BuildCounter()
                  .Name("siesta_model_loads_total")
                  .Help("Models loaded, by reason: request (a proxied request) or manual.")
                  .Register(*registry_)),
      load_duration_(&prometheus::BuildHistogram()
                          .Name("siesta_model_load_duration_seconds")
                          .Help("Time to load a model: the cold-start price of unloading it.")
                          .Register(*registry_)),
      proxy_connections_(&BuildCounter()
                              .Name("siesta_proxy_tcp_connections_total")
                              .Help("TCP connections through the proxy that have ended.")
                              .Register(*registry_)),
      vram_freed_(&BuildCounter()
                       .Name("siesta_model_vram_freed_bytes_total")
                       .Help("VRAM freed by unloading models (as their provider last reported it).")
                       .Register(*registry_)),
      memory_freed_(&BuildCounter()
                         .Name("siesta_service_memory_freed_bytes_total")
                         .Help("Memory freed by putting services to sleep (their resident set "
                               "just before each stop).")
                         .Register(*registry_)) {
  monitor_runs_->Add({});
}

Metrics::~Metrics() = default;

void Metrics::declare(const Snapshot& snapshot) {
  for (const auto& view : snapshot.services) service_added(view.spec->name);
  for (const auto& view : snapshot.models) model_added(view.spec->name);
}

void Metrics::service_added(const std::string& s) {
  for (const char* r : kSleepReasons) sleeps_->Add({{"service", s}, {"reason", r}});
  for (const char* r : kWakeReasons) wakes_->Add({{"service", s}, {"reason", r}});
  for (const char* op : kOperations) failures_->Add({{"service", s}, {"operation", op}});
  wake_duration_->Add({{"service", s}}, wake_buckets());
  memory_freed_->Add({{"service", s}});
}

std::vector<double> Metrics::proxy_buckets() {
  // A warm request through a local proxy takes about a millisecond; a cold one the wake's time;
  // a token stream minutes.
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

void Metrics::proxy_request(const std::string& service, int status, Seconds duration) {
  proxy_requests_->Add({{"service", service}, {"code", std::to_string(status)}}).Increment();
  proxy_duration_->Add({{"service", service}}, proxy_buckets()).Observe(duration.count());
}

void Metrics::model_added(const std::string& m) {
  for (const char* r : kUnloadReasons) unloads_->Add({{"model", m}, {"reason", r}});
  for (const char* r : kLoadReasons) loads_->Add({{"model", m}, {"reason", r}});
  unload_failures_->Add({{"model", m}});
  vram_freed_->Add({{"model", m}});
  load_duration_->Add({{"model", m}}, wake_buckets());
}

void Metrics::service_memory_freed(const std::string& service, double bytes) {
  memory_freed_->Add({{"service", service}}).Increment(bytes);
}

void Metrics::model_memory_freed(const std::string& model, double bytes) {
  vram_freed_->Add({{"model", model}}).Increment(bytes);
}

void Metrics::model_loaded(const std::string& model, const std::string& reason, Seconds duration) {
  loads_->Add({{"model", model}, {"reason", reason}}).Increment();
  load_duration_->Add({{"model", model}}, wake_buckets()).Observe(duration.count());
}

void Metrics::proxy_connection(const std::string& service) {
  proxy_connections_->Add({{"service", service}}).Increment();
}

void Metrics::service_slept(const std::string& service, const std::string& reason) {
  sleeps_->Add({{"service", service}, {"reason", reason}}).Increment();
}

void Metrics::service_woke(const std::string& service, const std::string& reason,
                           Seconds duration) {
  wakes_->Add({{"service", service}, {"reason", reason}}).Increment();
  wake_duration_->Add({{"service", service}}, wake_buckets()).Observe(duration.count());
}

void Metrics::service_failed(const std::string& service, const std::string& operation) {
  failures_->Add({{"service", service}, {"operation", operation}}).Increment();
}

void Metrics::model_unloaded(const std::string& model, const std::string& reason) {
  unloads_->Add({{"model", model}, {"reason", reason}}).Increment();
}

void Metrics::model_unload_failed(const std::string& model) {
  unload_failures_->Add({{"model", model}}).Increment();
}

void Metrics::monitor_ran(WallTime) { monitor_runs_->Add({}).Increment(); }

std::string Metrics::render(const Snapshot& snapshot, const Decision& decision,
                            const MonitorStatus& monitor) const {
  std::vector<MetricFamily> out;
  const Settings& settings = snapshot.settings;

  GaugeFamily state("siesta_service_state",
                    "1 for the state the service is in (stopped, starting, running, stopping, "
                    "error), 0 for the others.");
  GaugeFamily idle("siesta_service_idle_seconds", "Seconds since the service was last used.");
  GaugeFamily timeout("siesta_service_idle_timeout_seconds",
                      "The idle timeout in force for the service.");
  GaugeFamily sleep_in("siesta_service_sleep_in_seconds",
                       "Seconds until the service is put to sleep; absent when it will not sleep.");
  GaugeFamily sleep_at("siesta_service_sleep_deadline_timestamp_seconds",
                       "When the service will be put to sleep; absent when it will not sleep.");
  GaugeFamily blocked("siesta_service_sleep_blocked",
                      "1 with the reason the service will not be put to sleep; absent when it "
                      "will.");
  GaugeFamily enabled("siesta_service_idle_sleep_enabled",
                      "1 when idle sleep is enabled for the service.");
  GaugeFamily desired("siesta_service_desired_on", "1 when the service's desired state is on.");
  GaugeFamily last_used("siesta_service_last_used_timestamp_seconds",
                        "When the service was last used; absent if never.");
  GaugeFamily in_flight("siesta_service_in_flight_requests",
                        "Requests or connections open through siesta to the service.");
  for (size_t i = 0; i < decision.services.size(); ++i) {
    const ServiceTimer& t = decision.services[i];
    const ServiceRuntime& rt = snapshot.services[i].runtime;
    for (ServiceState s : kAllServiceStates) {
      state.add({{"service", t.name}, {"state", to_string(s)}}, t.state == s ? 1 : 0);
    }
    if (t.idle_for) idle.add({{"service", t.name}}, t.idle_for->count());
    timeout.add({{"service", t.name}}, t.timeout.count());
    if (t.sleeps_in) sleep_in.add({{"service", t.name}}, t.sleeps_in->count());
    if (t.sleeps_at) sleep_at.add({{"service", t.name}}, to_unix_seconds(*t.sleeps_at));
    if (t.blocker != SleepBlocker::kNone) {
      blocked.add({{"service", t.name}, {"reason", to_string(t.blocker)}}, 1);
    }
    enabled.add({{"service", t.name}}, rt.idle_sleep_enabled ? 1 : 0);
    desired.add({{"service", t.name}}, rt.desired == Desired::kOn ? 1 : 0);
    if (rt.last_used) last_used.add({{"service", t.name}}, to_unix_seconds(*rt.last_used));
    in_flight.add({{"service", t.name}}, rt.in_flight);
  }
  for (GaugeFamily* f : {&state, &idle, &timeout, &sleep_in, &sleep_at, &blocked, &enabled,
                         &desired, &last_used, &in_flight}) {
    out.push_back(f->take());
  }

  GaugeFamily loaded("siesta_model_loaded", "1 when the model is loaded (in VRAM).");
  GaugeFamily remaining("siesta_model_keep_alive_remaining_seconds",
                        "Seconds until the model is unloaded; absent when not loaded.");
  GaugeFamily keep_alive("siesta_model_keep_alive_seconds",
                         "The keep-alive in force for the model.");
  GaugeFamily model_used("siesta_model_last_used_timestamp_seconds",
                         "When the model was last used; absent if never.");
  GaugeFamily vram("siesta_model_vram_bytes",
                   "VRAM the loaded model holds, as its provider reports (Ollama's size_vram); "
                   "absent when not loaded or not reported.");
  GaugeFamily model_in_flight("siesta_model_in_flight_requests",
                              "Requests on the model through siesta's proxy.");
  for (size_t i = 0; i < decision.models.size(); ++i) {
    const ModelTimer& t = decision.models[i];
    const ModelRuntime& rt = snapshot.models[i].runtime;
    std::vector<ClientMetric::Label> labels{{"model", t.name}, {"provider", t.provider}};
    loaded.add(labels, t.loaded ? 1 : 0);
    if (t.unloads_in) remaining.add(labels, t.unloads_in->count());
    keep_alive.add(labels, t.keep_alive.count());
    if (rt.last_used) model_used.add(labels, to_unix_seconds(*rt.last_used));
    if (t.loaded && rt.vram_bytes) vram.add(labels, *rt.vram_bytes);
    model_in_flight.add(labels, rt.in_flight);
  }
  for (GaugeFamily* f : {&loaded, &remaining, &keep_alive, &model_used, &vram, &model_in_flight}) {
    out.push_back(f->take());
  }

  GaugeFamily s_enabled("siesta_settings_idle_sleep_enabled", "1 when idle sleep is on globally.");
  s_enabled.add({}, settings.idle_sleep_enabled ? 1 : 0);
  GaugeFamily s_timeout("siesta_settings_idle_timeout_seconds", "The global idle timeout.");
  s_timeout.add({}, settings.idle_timeout_minutes * 60.0);
  GaugeFamily s_keep("siesta_settings_model_keep_alive_seconds", "The global model keep-alive.");
  s_keep.add({}, settings.model_keep_alive_hours * 3600.0);
  GaugeFamily s_interval("siesta_settings_idle_check_interval_seconds",
                         "How often backends are reconciled.");
  s_interval.add({}, settings.idle_check_interval_minutes * 60.0);
  GaugeFamily m_running("siesta_monitor_running", "1 while the idle monitor task runs.");
  m_running.add({}, monitor.running ? 1 : 0);
  GaugeFamily m_last("siesta_monitor_last_run_timestamp_seconds",
                     "When the idle monitor last made a pass.");
  if (monitor.last_run) m_last.add({}, to_unix_seconds(*monitor.last_run));
  GaugeFamily m_next("siesta_monitor_next_deadline_timestamp_seconds",
                     "The earliest instant something is due; absent when nothing is.");
  if (decision.next_deadline) m_next.add({}, to_unix_seconds(*decision.next_deadline));
  GaugeFamily build("siesta_build_info", "Always 1; the labels describe the build.");
  build.add({{"version", kVersion}}, 1);
  for (GaugeFamily* f :
       {&s_enabled, &s_timeout, &s_keep, &s_interval, &m_running, &m_last, &m_next, &build}) {
    out.push_back(f->take());
  }

  for (auto& family : registry_->Collect()) out.push_back(std::move(family));
  append_process_metrics(out);
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace siesta
