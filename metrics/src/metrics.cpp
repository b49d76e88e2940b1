#include "siesta/metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "exposition.h"
#include "process_metrics.h"
#include "siesta/core/settings_schema.h"
#include "siesta/version.h"

namespace siesta {

using prometheus::BuildCounter;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

// Reasons and operations are small fixed sets: pre-declared at zero per service or model, so
// that rate() sees a counter's first increment (the reasons: core/reason.h).

// One counter per label value (a reason, an operation, a status code: a handful), in label
// order for a stable exposition. Not a fixed array, so that a value outside the pre-declared
// set is counted too; not a map, so that a scrape walks contiguous memory.
struct Tally {
  std::vector<std::pair<std::string, double>> values;

  Tally() = default;
  template <std::size_t N>
  explicit Tally(const Reason (&reasons)[N]) {
    for (Reason r : reasons) add(to_string(r), 0);
  }
  void add(std::string_view label, double amount) {
    auto it = std::lower_bound(values.begin(), values.end(), label,
                               [](const auto& v, std::string_view l) { return v.first < l; });
    if (it == values.end() || it->first != label) it = values.emplace(it, label, 0.0);
    it->second += amount;
  }
};

}  // namespace

// The counters of one service or model: per family, label value -> count.
struct Metrics::Counters {
  std::mutex mu;
  Tally by[kFamilies];
  prometheus::Histogram* duration = nullptr;  // wake (service) or load (model) time
  prometheus::Histogram* proxy_duration = nullptr;
  // A model's counters carry its service too (two services may serve the same name).
  std::string model;
  std::string service;
};

namespace {
// A model's row in the model table: its name, then its service (so rows sort by name).
std::string model_row(const ModelKey& key) { return key.name + '\0' + key.service; }
}  // namespace

std::vector<double> Metrics::wake_buckets() {
  // Cold starts range from a local process ready in ~10 ms to a container with a large model
  // at several minutes. 0.1/1/5/30/60 are the thresholds the dashboards and the slow-wake
  // alert read; the rest keep the quantile estimate honest in between.
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

std::vector<double> Metrics::proxy_buckets() {
  // A warm request through a local proxy takes about a millisecond; a cold one the wake's time;
  // a token stream minutes.
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      monitor_runs_(&BuildCounter()
                         .Name("siesta_monitor_runs_total")
                         .Help("Passes of the idle monitor.")
                         .Register(*registry_)
                         .Add({})),
      monitor_pass_(
          &prometheus::BuildHistogram()
               .Name("siesta_monitor_pass_duration_seconds")
               .Help("Time one pass of the idle monitor took (reconcile included when "
                     "it was due).")
               .Register(*registry_)
               .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001,
                                                                0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                0.1, 0.25, 0.5, 1, 2.5, 5})),
      monitor_last_pass_(&prometheus::BuildGauge()
                              .Name("siesta_monitor_last_pass_duration_seconds")
                              .Help("Time the idle monitor's last pass took.")
                              .Register(*registry_)
                              .Add({})),
      wake_duration_(&prometheus::BuildHistogram()
                          .Name("siesta_service_wake_duration_seconds")
                          .Help("Time from the start of a wake to the service being ready.")
                          .Register(*registry_)),
      proxy_duration_(&prometheus::BuildHistogram()
                           .Name("siesta_proxy_request_duration_seconds")
                           .Help("HTTP requests through the proxy, from arrival until the "
                                 "response (stream included) ended; cold starts included.")
                           .Register(*registry_)),
      load_duration_(&prometheus::BuildHistogram()
                          .Name("siesta_model_load_duration_seconds")
                          .Help("Time to load a model: the cold-start price of unloading it.")
                          .Register(*registry_)),
      gpu_evictions_(&BuildCounter()
                          .Name("siesta_gpu_evictions_total")
                          .Help("Services stopped and models unloaded to make room in the GPU "
                                "budget, by reason (make_room).")
                          .Register(*registry_)),
      gpu_waits_(&BuildCounter()
                      .Name("siesta_gpu_waits_total")
                      .Help("Wakes and loads that waited for room in the GPU budget, by outcome "
                            "(fitted, timed_out, cannot_fit); a refusal without a wait counts "
                            "as cannot_fit.")
                      .Register(*registry_)),
      gpu_waiting_(&prometheus::BuildGauge()
                        .Name("siesta_gpu_waiting")
                        .Help("Wakes and loads waiting for room in the GPU budget now.")
                        .Register(*registry_)
                        .Add({})) {}

void Metrics::set_currency(const std::string& currency) { currency_ = currency; }

void Metrics::set_gpu(const GpuConfig& gpu) {
  gpu_ = gpu;
  if (!gpu_.enabled()) return;
  gpu_evictions_->Add({{"reason", to_string(Reason::kMakeRoom)}});
  for (const char* outcome : {"fitted", "timed_out", "cannot_fit"}) {
    gpu_waits_->Add({{"outcome", outcome}});
  }
}

void Metrics::gpu_evicted(Reason reason) {
  gpu_evictions_->Add({{"reason", to_string(reason)}}).Increment();
}

void Metrics::gpu_wait(bool began, const char* outcome) {
  if (began) {
    gpu_waiting_->Increment();
    return;
  }
  gpu_waiting_->Decrement();
  gpu_waits_->Add({{"outcome", outcome}}).Increment();
}

Metrics::~Metrics() = default;

Metrics::Counters& Metrics::counters(Table& table, const std::string& name, bool is_service) {
  {
    std::shared_lock lock(table.mu);
    if (auto it = table.by_name.find(name); it != table.by_name.end()) return *it->second;
  }
  std::unique_lock lock(table.mu);
  auto& slot = table.by_name[name];
  if (!slot) {
    slot = std::make_unique<Counters>();
    if (is_service) {
      slot->by[kSleeps] = Tally(kSleepReasons);
      slot->by[kWakes] = Tally(kWakeReasons);
      for (ServiceOperation op : kAllServiceOperations) slot->by[kFailures].add(to_string(op), 0);
      slot->by[kServiceMemoryFreed].add("", 0);
      for (TierAction tier : kAllTierActions) {
        for (int family : {kTiersEntered, kTierWakes, kTierWakeSeconds}) {
          slot->by[family].add(to_string(tier), 0);
        }
      }
    } else {
      const auto split = name.find('\0');
      slot->model = name.substr(0, split);
      if (split != std::string::npos) slot->service = name.substr(split + 1);
      slot->by[kUnloads] = Tally(kUnloadReasons);
      slot->by[kLoads] = Tally(kLoadReasons);
      slot->by[kUnloadFailures].add("", 0);
      slot->by[kVramFreed].add("", 0);
    }
  }
  return *slot;
}

void Metrics::count(Table& table, const std::string& name, bool is_service, int family,
                    std::string_view label, double amount) {
  Counters& c = counters(table, name, is_service);
  std::lock_guard lock(c.mu);
  c.by[family].add(label, amount);
}

void Metrics::count_timed(Table& table, const std::string& name, bool is_service, int family,
                          std::string_view label,
                          prometheus::Family<prometheus::Histogram>& histograms,
                          prometheus::Histogram* Counters::*histogram,
                          std::vector<double> (*buckets)(), Seconds duration) {
  Counters& c = counters(table, name, is_service);
  std::lock_guard lock(c.mu);
  c.by[family].add(label, 1);
  prometheus::Histogram*& h = c.*histogram;
  if (!h) {
    h = is_service ? &histograms.Add({{"service", name}}, buckets())
                   : &histograms.Add({{"model", c.model}, {"service", c.service}}, buckets());
  }
  h->Observe(duration.count());
}

void Metrics::declare(const Snapshot& snapshot) {
  for (const auto& view : snapshot.services) service_added(view.spec->name);
  for (const auto& view : snapshot.models) model_added(view.spec->key());
}

void Metrics::service_added(const std::string& s) { counters(services_, s, true); }
void Metrics::model_added(const ModelKey& m) { counters(models_, model_row(m), false); }

void Metrics::proxy_request(const std::string& service, int status, Seconds duration) {
  char code[12];
  const auto end = std::to_chars(code, code + sizeof code, status).ptr;
  count_timed(services_, service, true, kProxyRequests,
              std::string_view(code, static_cast<std::size_t>(end - code)), *proxy_duration_,
              &Counters::proxy_duration, &proxy_buckets, duration);
}

void Metrics::proxy_connection(const std::string& service) {
  count(services_, service, true, kProxyConnections, "", 1);
}

void Metrics::proxy_connection_opened(const std::string& service) {
  count(services_, service, true, kProxyConnectionsOpen, "", 1);
}

void Metrics::proxy_connection_closed(const std::string& service) {
  count(services_, service, true, kProxyConnectionsOpen, "", -1);
}

void Metrics::proxy_connection_refused(const std::string& service, const std::string& reason) {
  count(services_, service, true, kProxyConnectionsRefused, reason, 1);
}

void Metrics::proxy_upstream_connection(const std::string& service, bool reused) {
  count(services_, service, true, kProxyUpstreamConnections, reused ? "reused" : "opened", 1);
}

void Metrics::proxy_idle_closed(const std::string& service, const char* kind) {
  count(services_, service, true, kProxyIdleCloses, kind, 1);
}

void Metrics::service_memory_freed(const std::string& service, double bytes) {
  count(services_, service, true, kServiceMemoryFreed, "", bytes);
}

void Metrics::model_memory_freed(const ModelKey& model, double bytes) {
  count(models_, model_row(model), false, kVramFreed, "", bytes);
}

void Metrics::model_loaded(const ModelKey& model, Reason reason, Seconds duration) {
  count_timed(models_, model_row(model), false, kLoads, to_string(reason), *load_duration_,
              &Counters::duration, &wake_buckets, duration);
}

void Metrics::service_tier_entered(const std::string& service, const std::string& tier) {
  count(services_, service, true, kTiersEntered, tier, 1);
}

void Metrics::service_woke_from_tier(const std::string& service, const std::string& tier,
                                     Seconds duration) {
  Counters& c = counters(services_, service, true);
  std::lock_guard lock(c.mu);
  c.by[kTierWakes].add(tier, 1);
  c.by[kTierWakeSeconds].add(tier, duration.count());
}

void Metrics::service_slept(const std::string& service, Reason reason) {
  count(services_, service, true, kSleeps, to_string(reason), 1);
}

void Metrics::service_woke(const std::string& service, Reason reason, Seconds duration) {
  count_timed(services_, service, true, kWakes, to_string(reason), *wake_duration_,
              &Counters::duration, &wake_buckets, duration);
}

void Metrics::service_failed(const std::string& service, ServiceOperation operation) {
  count(services_, service, true, kFailures, to_string(operation), 1);
}

void Metrics::model_unloaded(const ModelKey& model, Reason reason) {
  count(models_, model_row(model), false, kUnloads, to_string(reason), 1);
}

void Metrics::model_unload_failed(const ModelKey& model) {
  count(models_, model_row(model), false, kUnloadFailures, "", 1);
}

void Metrics::monitor_ran(WallTime, Seconds took) {
  monitor_runs_->Increment();
  monitor_pass_->Observe(took.count());
  monitor_last_pass_->Set(took.count());
}

void Metrics::render_counters(Exposition& out, const Rows& rows, const char* entity, int family,
                              const char* name, const char* help, const char* label,
                              const char* type) {
  out.family(name, help, type);
  for (const auto& [entity_name, c] : rows) {
    std::lock_guard entry(c->mu);
    for (const auto& [value, n] : c->by[family].values) {
      // A model's: model, then the family's label, then service (labels in name order).
      if (std::string_view(entity) == "model" && label == nullptr) {
        out.sample(name, "model", c->model, "service", c->service, n);
      } else if (std::string_view(entity) == "model") {
        out.sample(name, "model", c->model, label, value, "service", c->service, n);
      } else if (label == nullptr) {
        out.sample(name, entity, *entity_name, n);
      } else if (std::string_view(label) < entity) {  // labels in name order, as prometheus-cpp
        out.sample(name, label, value, entity, *entity_name, n);
      } else {
        out.sample(name, entity, *entity_name, label, value, n);
      }
    }
  }
}

std::string Metrics::render(const Snapshot& snapshot, const Decision& decision,
                            const MonitorStatus& monitor) const {
  std::string text;
  text.reserve(last_size_.load(std::memory_order_relaxed) + 4096);
  Exposition out(text);
  const Settings& settings = snapshot.settings;
  const auto& services = decision.services;
  const auto& models = decision.models;

  // Per-service gauges, one family at a time (a family's samples must be contiguous).
  out.family("siesta_service_state",
             "1 for the state the service is in (stopped, starting, running, stopping, error), 0 "
             "for the others.",
             "gauge");
  for (const ServiceTimer& t : services) {
    for (ServiceState st : kAllServiceStates) {
      out.sample("siesta_service_state", "service", t.name, "state", to_string(st),
                 t.state == st ? 1 : 0);
    }
  }
  out.family("siesta_service_tier",
             "1 for the sleep tier the service is in (awake, then each of its tiers' actions: "
             "pause, unload_models, stop), 0 for its others (all 0 in error after a failed "
             "start).",
             "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    const ServiceTimer& t = services[i];
    // None (a service in error after a failed start): every tier 0.
    const std::string_view in = t.tier != nullptr ? t.tier : "";
    out.sample("siesta_service_tier", "service", t.name, "tier", "awake", in == "awake" ? 1 : 0);
    bool stop_listed = false;
    for (const SleepTier& tier : effective_tiers(settings, *snapshot.services[i].spec)) {
      const char* name = to_string(tier.action);
      stop_listed = stop_listed || tier.action == TierAction::kStop;
      out.sample("siesta_service_tier", "service", t.name, "tier", name, in == name ? 1 : 0);
    }
    // A service without a stop tier is still stopped before its first wake.
    if (!stop_listed) {
      out.sample("siesta_service_tier", "service", t.name, "tier", "stop", in == "stop" ? 1 : 0);
    }
  }
  out.family("siesta_service_idle_seconds", "Seconds since the service was last used.", "gauge");
  for (const ServiceTimer& t : services) {
    if (t.idle_for)
      out.sample("siesta_service_idle_seconds", "service", t.name, t.idle_for->count());
  }
  out.family("siesta_service_idle_timeout_seconds", "The idle timeout in force for the service.",
             "gauge");
  for (const ServiceTimer& t : services) {
    out.sample("siesta_service_idle_timeout_seconds", "service", t.name, t.timeout.count());
  }
  out.family("siesta_service_sleep_in_seconds",
             "Seconds until the service is put to sleep; absent when it will not sleep.", "gauge");
  for (const ServiceTimer& t : services) {
    if (t.sleeps_in) {
      out.sample("siesta_service_sleep_in_seconds", "service", t.name, t.sleeps_in->count());
    }
  }
  out.family("siesta_service_sleep_deadline_timestamp_seconds",
             "When the service will be put to sleep; absent when it will not sleep.", "gauge");
  for (const ServiceTimer& t : services) {
    if (t.sleeps_at) {
      out.sample("siesta_service_sleep_deadline_timestamp_seconds", "service", t.name,
                 to_unix_seconds(*t.sleeps_at));
    }
  }
  out.family("siesta_service_sleep_blocked",
             "1 with the reason the service will not be put to sleep; absent when it will.",
             "gauge");
  for (const ServiceTimer& t : services) {
    if (t.blocker != SleepBlocker::kNone) {
      out.sample("siesta_service_sleep_blocked", "service", t.name, "reason", to_string(t.blocker),
                 1);
    }
  }
  out.family("siesta_service_idle_sleep_enabled", "1 when idle sleep is enabled for the service.",
             "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    out.sample("siesta_service_idle_sleep_enabled", "service", services[i].name,
               snapshot.services[i].runtime.idle_sleep_enabled ? 1 : 0);
  }
  out.family("siesta_service_desired_on", "1 when the service's desired state is on.", "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    out.sample("siesta_service_desired_on", "service", services[i].name,
               snapshot.services[i].runtime.desired == Desired::kOn ? 1 : 0);
  }
  out.family("siesta_service_last_used_timestamp_seconds",
             "When the service was last used; absent if never.", "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    if (const auto& used = snapshot.services[i].runtime.last_used) {
      out.sample("siesta_service_last_used_timestamp_seconds", "service", services[i].name,
                 to_unix_seconds(*used));
    }
  }
  out.family("siesta_service_in_flight_requests",
             "Requests or connections open through siesta to the service.", "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    out.sample("siesta_service_in_flight_requests", "service", services[i].name,
               snapshot.services[i].runtime.in_flight);
  }
  out.family("siesta_proxy_upgraded_connections_open",
             "Upgraded connections (WebSockets) open through siesta to the service; each is also "
             "in flight.",
             "gauge");
  for (size_t i = 0; i < services.size(); ++i) {
    out.sample("siesta_proxy_upgraded_connections_open", "service", services[i].name,
               snapshot.services[i].runtime.upgraded);
  }

  // Energy and cost (docs/policies.md#energy-and-cost): counted on the registry's clock, so
  // written from the decision's accounts; only for services that declare an idle power.
  out.family("siesta_service_idle_power_watts",
             "The power the service draws while up and idle (source: configured, or measured "
             "from nvidia-smi's power.draw at its stops).",
             "gauge");
  for (const ServiceTimer& t : services) {
    if (t.energy) {
      out.sample("siesta_service_idle_power_watts", "service", t.name, "source", t.energy->source,
                 t.energy->watts);
    }
  }
  out.family("siesta_service_energy_saved_joules_total",
             "Energy saved by sleeping: the time stopped times the idle power.", "counter");
  for (const ServiceTimer& t : services) {
    if (t.energy) {
      out.sample("siesta_service_energy_saved_joules_total", "service", t.name,
                 t.energy->saved_joules);
    }
  }
  out.family("siesta_service_cold_start_energy_joules_total",
             "Energy spent on cold starts: their time, start to ready, times the idle power.",
             "counter");
  for (const ServiceTimer& t : services) {
    if (t.energy) {
      out.sample("siesta_service_cold_start_energy_joules_total", "service", t.name,
                 t.energy->cold_start_joules);
    }
  }
  out.family("siesta_service_cost_saved_total",
             "The energy saved by sleeping at price_per_kwh; absent without a price.", "counter");
  for (const ServiceTimer& t : services) {
    if (t.energy && t.energy->cost_saved) {
      out.sample("siesta_service_cost_saved_total", "service", t.name, "currency", currency_,
                 *t.energy->cost_saved);
    }
  }
  out.family("siesta_service_cold_start_cost_total",
             "The energy spent on cold starts at price_per_kwh; absent without a price.",
             "counter");
  for (const ServiceTimer& t : services) {
    if (t.energy && t.energy->cold_start_cost) {
      out.sample("siesta_service_cold_start_cost_total", "service", t.name, "currency", currency_,
                 *t.energy->cold_start_cost);
    }
  }

  // Activity signals (docs/activity.md): each one's last sample, from the service's runtime.
  auto each_signal = [&](const auto& fn) {
    for (size_t i = 0; i < services.size(); ++i) {
      for (const SignalState& sig : snapshot.services[i].runtime.activity)
        fn(services[i].name, sig);
    }
  };
  out.family("siesta_activity_value",
             "The activity signal's last sampled value; absent before its first good sample or "
             "after a failed one.",
             "gauge");
  each_signal([&](const std::string& service, const SignalState& sig) {
    if (sig.sampled_at && sig.error.empty()) {
      out.sample("siesta_activity_value", "service", service, "signal", sig.name, sig.value);
    }
  });
  out.family("siesta_activity_threshold", "The signal is busy when its value is above this.",
             "gauge");
  each_signal([&](const std::string& service, const SignalState& sig) {
    out.sample("siesta_activity_threshold", "service", service, "signal", sig.name, sig.threshold);
  });
  out.family("siesta_activity_busy", "1 when the signal's last sample was busy (a use).", "gauge");
  each_signal([&](const std::string& service, const SignalState& sig) {
    out.sample("siesta_activity_busy", "service", service, "signal", sig.name, sig.busy ? 1 : 0);
  });
  out.family("siesta_activity_up", "1 when the signal's last sample succeeded.", "gauge");
  each_signal([&](const std::string& service, const SignalState& sig) {
    out.sample("siesta_activity_up", "service", service, "signal", sig.name,
               sig.sampled_at && sig.error.empty() ? 1 : 0);
  });
  out.family("siesta_activity_last_busy_timestamp_seconds",
             "When the signal last saw activity; absent if never.", "gauge");
  each_signal([&](const std::string& service, const SignalState& sig) {
    if (sig.last_busy_at) {
      out.sample("siesta_activity_last_busy_timestamp_seconds", "service", service, "signal",
                 sig.name, to_unix_seconds(*sig.last_busy_at));
    }
  });
  out.family("siesta_activity_errors_total",
             "Failed samples of the signal (error, timeout, source unavailable).", "counter");
  each_signal([&](const std::string& service, const SignalState& sig) {
    out.sample("siesta_activity_errors_total", "service", service, "signal", sig.name,
               static_cast<double>(sig.errors));
  });

  // Per-model gauges.
  out.family("siesta_model_loaded", "1 when the model is loaded (in VRAM).", "gauge");
  for (const ModelTimer& t : models) {
    out.sample("siesta_model_loaded", "model", t.name, "provider", t.provider, t.loaded ? 1 : 0);
  }
  out.family("siesta_model_offloaded",
             "1 when the model is not loaded but its weights wait in CPU RAM (its vLLM engine "
             "sleeps at level 1).",
             "gauge");
  for (const ModelTimer& t : models) {
    out.sample("siesta_model_offloaded", "model", t.name, "provider", t.provider,
               t.offloaded ? 1 : 0);
  }
  out.family("siesta_model_keep_alive_remaining_seconds",
             "Seconds until the model is unloaded: its keep-alive, or its service's next tier "
             "that frees it when that comes first (always for a server whose model is the "
             "process: vLLM, OpenAI-compatible); absent when not loaded or nothing will unload "
             "it.",
             "gauge");
  for (const ModelTimer& t : models) {
    if (t.unloads_in) {
      out.sample("siesta_model_keep_alive_remaining_seconds", "model", t.name, "provider",
                 t.provider, t.unloads_in->count());
    }
  }
  out.family("siesta_model_keep_alive_seconds",
             "The keep-alive in force for the model; absent when none applies (its server's "
             "model is the process: its service's idle timeout or sleep tiers free it).",
             "gauge");
  for (const ModelTimer& t : models) {
    if (!t.keep_alive_applies) continue;
    out.sample("siesta_model_keep_alive_seconds", "model", t.name, "provider", t.provider,
               t.keep_alive.count());
  }
  out.family("siesta_model_last_used_timestamp_seconds",
             "When the model was last used; absent if never.", "gauge");
  for (size_t i = 0; i < models.size(); ++i) {
    if (const auto& used = snapshot.models[i].runtime.last_used) {
      out.sample("siesta_model_last_used_timestamp_seconds", "model", models[i].name, "provider",
                 models[i].provider, to_unix_seconds(*used));
    }
  }
  out.family("siesta_model_vram_bytes",
             "VRAM the loaded model holds, as its provider reports (Ollama's size_vram); absent "
             "when not loaded or not reported.",
             "gauge");
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& vram = snapshot.models[i].runtime.vram_bytes;
    if (models[i].loaded && vram) {
      out.sample("siesta_model_vram_bytes", "model", models[i].name, "provider", models[i].provider,
                 static_cast<double>(*vram));
    }
  }
  out.family("siesta_model_in_flight_requests", "Requests on the model through siesta's proxy.",
             "gauge");
  for (size_t i = 0; i < models.size(); ++i) {
    out.sample("siesta_model_in_flight_requests", "model", models[i].name, "provider",
               models[i].provider, snapshot.models[i].runtime.in_flight);
  }

  // Per-service and per-model counters: each table walked once into rows (a scrape of 10,000
  // services reads them ten times), held against removal while they are written.
  auto rows_of = [](const Table& table) {
    Rows rows;
    rows.reserve(table.by_name.size());
    for (const auto& [name, c] : table.by_name) rows.emplace_back(&name, c.get());
    return rows;
  };
  std::shared_lock service_lock(services_.mu);
  std::shared_lock model_lock(models_.mu);
  const Rows service_rows = rows_of(services_);
  const Rows model_rows = rows_of(models_);
  render_counters(out, service_rows, "service", kSleeps, "siesta_service_sleeps_total",
                  "Services put to sleep (stopped), by reason: idle, manual or make_room.",
                  "reason");
  render_counters(
      out, service_rows, "service", kWakes, "siesta_service_wakes_total",
      "Services woken (started and ready), by reason: manual, desired, request, schedule or "
      "prewarm.",
      "reason");
  render_counters(out, service_rows, "service", kTiersEntered, "siesta_service_tier_entries_total",
                  "Sleep tiers entered by idle services, by tier: pause, unload_models, stop.",
                  "tier");
  render_counters(out, service_rows, "service", kTierWakes, "siesta_service_tier_wakes_total",
                  "Uses that woke a service, by the tier it was in (stop: a cold start).", "tier");
  render_counters(out, service_rows, "service", kTierWakeSeconds,
                  "siesta_service_tier_wake_seconds_total",
                  "Time those wakes took, whole as the waking request waited (X-Siesta-Wake's "
                  "dur), by tier (divide by siesta_service_tier_wakes_total for the mean; "
                  "unload_models: 0, its models reload on their next request).",
                  "tier");
  render_counters(out, service_rows, "service", kFailures, "siesta_service_failures_total",
                  "Failed backend operations on a service, by operation.", "operation");
  render_counters(out, service_rows, "service", kServiceMemoryFreed,
                  "siesta_service_memory_freed_bytes_total",
                  "Memory freed by putting services to sleep (their resident set just before each "
                  "stop).",
                  nullptr);
  render_counters(out, service_rows, "service", kProxyRequests, "siesta_proxy_requests_total",
                  "HTTP requests through the proxy, by service and status code (0: the client "
                  "went away before an answer).",
                  "code");
  render_counters(out, service_rows, "service", kProxyConnections,
                  "siesta_proxy_tcp_connections_total",
                  "TCP connections through the proxy that have ended.", nullptr);
  render_counters(out, service_rows, "service", kProxyConnectionsOpen,
                  "siesta_proxy_connections_open",
                  "Client connections open on the service's proxy port.", nullptr, "gauge");
  render_counters(out, service_rows, "service", kProxyConnectionsRefused,
                  "siesta_proxy_connections_refused_total",
                  "Client connections refused on the service's proxy port, by reason: "
                  "service_limit (its max_connections) or global_limit (proxy.max_connections).",
                  "reason");
  render_counters(out, service_rows, "service", kProxyUpstreamConnections,
                  "siesta_proxy_upstream_connections_total",
                  "Connections to the service's upstream that carried a request: opened for it, "
                  "or reused (kept alive from an earlier request).",
                  "kind");
  render_counters(out, service_rows, "service", kProxyIdleCloses, "siesta_proxy_idle_closes_total",
                  "Relayed connections siesta closed because nothing moved either way for their "
                  "idle timeout: upgraded (a WebSocket) or tcp.",
                  "kind");
  render_counters(
      out, model_rows, "model", kUnloads, "siesta_model_unloads_total",
      "Models unloaded, by reason: expired, forced, service_sleep, external, sleep_tier, "
      "make_room.",
      "reason");
  render_counters(out, model_rows, "model", kLoads, "siesta_model_loads_total",
                  "Models loaded, by reason: request (a proxied request) or manual.", "reason");
  render_counters(out, model_rows, "model", kUnloadFailures, "siesta_model_unload_failures_total",
                  "Model unloads that the provider failed.", nullptr);
  render_counters(out, model_rows, "model", kVramFreed, "siesta_model_vram_freed_bytes_total",
                  "VRAM freed by unloading models (as their provider last reported it).", nullptr);

  // Process-wide gauges.
  for (const auto& field : kSettingFields) {  // settings_schema.h
    out.family(field.metric, field.metric_help, "gauge");
    out.sample(field.metric, setting_gauge(field, settings));
  }
  out.family("siesta_monitor_running", "1 while the idle monitor task runs.", "gauge");
  out.sample("siesta_monitor_running", monitor.running ? 1 : 0);
  out.family("siesta_monitor_last_run_timestamp_seconds", "When the idle monitor last made a pass.",
             "gauge");
  if (monitor.last_run) {
    out.sample("siesta_monitor_last_run_timestamp_seconds", to_unix_seconds(*monitor.last_run));
  }
  out.family("siesta_monitor_next_deadline_timestamp_seconds",
             "The earliest instant something is due; absent when nothing is.", "gauge");
  if (decision.next_deadline) {
    out.sample("siesta_monitor_next_deadline_timestamp_seconds",
               to_unix_seconds(*decision.next_deadline));
  }
  if (gpu_.enabled()) {
    constexpr double kMiB = 1024.0 * 1024.0;
    const std::vector<GpuHolder> holders = gpu_holders(gpu_, snapshot);
    const std::vector<GpuDeviceUse> use = gpu_use(gpu_, holders);
    out.family("siesta_gpu_memory_budget_bytes", "The GPU budget of the device (docs/gpu.md).",
               "gauge");
    for (const auto& d : use) {
      out.sample("siesta_gpu_memory_budget_bytes", "device", std::to_string(d.id),
                 d.budget_mib * kMiB);
    }
    out.family("siesta_gpu_memory_free_bytes",
               "The budget less what its holders hold (never negative).", "gauge");
    for (const auto& d : use) {
      out.sample("siesta_gpu_memory_free_bytes", "device", std::to_string(d.id), d.free_mib * kMiB);
    }
    for (const auto kind : {GpuHolder::Kind::kService, GpuHolder::Kind::kModel}) {
      const bool svc = kind == GpuHolder::Kind::kService;
      const char* name = svc ? "siesta_gpu_service_memory_bytes" : "siesta_gpu_model_memory_bytes";
      out.family(name,
                 svc ? "GPU memory a running service holds on the device (its gpu_memory_mib)."
                     : "GPU memory a loaded model holds on the device (its size_vram, else its "
                       "gpu_memory_mib).",
                 "gauge");
      for (const GpuHolder& h : holders) {
        if (h.kind != kind) continue;
        for (int d : h.devices) {
          out.sample(name, svc ? "service" : "model", h.name, "device", std::to_string(d),
                     h.mib * kMiB);
        }
      }
    }
  }
  out.family("siesta_build_info", "Always 1; the labels describe the build.", "gauge");
  out.sample("siesta_build_info", "version", kVersion, 1);

  // Histograms and the monitor's own metrics (prometheus-cpp), then process_*.
  std::vector<MetricFamily> rest = registry_->Collect();
  append_process_metrics(rest);
  text += prometheus::TextSerializer().Serialize(rest);
  last_size_.store(text.size(), std::memory_order_relaxed);
  return text;
}

}  // namespace siesta
