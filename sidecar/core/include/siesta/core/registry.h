// Registry: every service and model siesta knows, the settings, and a change signal. It holds
// state only; decisions are made by decide() on a Snapshot, actions by the Controller.
// Thread-safe: every method takes the registry's one mutex; callbacks run under it and must not
// call back into the registry.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/model.h"
#include "siesta/core/service.h"
#include "siesta/core/settings.h"

namespace siesta {

// Wakes waiters when anything changed. Thread-safe.
class ChangeSignal {
 public:
  void notify();
  std::uint64_t generation() const;
  // Waits until the generation differs from `seen` or `deadline` passes; returns the generation.
  std::uint64_t wait(std::uint64_t seen, MonoTime deadline) const;

  // For changes that only ever create a new deadline (a request ended): the waiter says when it
  // plans to wake (nullopt while it is awake and deciding), and notify_if_before() signals only
  // when the new deadline is earlier. So a steady stream of requests does not wake the monitor.
  void plan_wake(std::optional<WallTime> at);
  void notify_if_before(WallTime deadline);

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::uint64_t generation_ = 0;
  std::optional<WallTime> planned_wake_;  // nullopt: awake
};

struct ServiceView {
  std::shared_ptr<const ServiceSpec> spec;
  ServiceRuntime runtime;
};

struct ModelView {
  std::shared_ptr<const ModelSpec> spec;
  ModelRuntime runtime;
};

// A consistent copy of the registry at one instant, sorted by name (models: then by service).
struct Snapshot {
  Settings settings;
  std::vector<ServiceView> services;
  std::vector<ModelView> models;
};

void set_state(ServiceRuntime& runtime, ServiceState state, WallTime now);
// Records an error for the operator: its text in last_error, what it is about and its cause's
// code beside it (what decisions compare), and when.
void set_error(ServiceRuntime& runtime, ServiceErrorKind kind, ErrorCode code, std::string text,
               WallTime now);

class Registry {
 public:
  using ServiceFn = std::function<void(const ServiceSpec&, ServiceRuntime&)>;
  using ModelFn = std::function<void(const ModelSpec&, ModelRuntime&)>;

  Registry(Settings settings, const std::vector<ServiceSpec>& services,
           const std::vector<ModelSpec>& models);

  Snapshot snapshot() const;
  Settings settings() const;
  void set_settings(const Settings& settings);
  // Read-modify-write of the settings under the lock, so concurrent partial updates compose.
  void update_settings(const std::function<void(Settings&)>& fn);

  std::optional<ServiceView> service(const std::string& name) const;
  std::optional<ModelView> model(const ModelKey& key) const;
  std::vector<std::string> service_names() const;
  std::vector<ModelKey> model_keys() const;
  // The services that serve a model of this name (sorted): more than one makes the bare name
  // ambiguous (the admin API then asks for a service).
  std::vector<std::string> services_of_model(const std::string& name) const;

  // Runs fn on the named entry under the lock and signals a change. False if unknown.
  bool update_service(const std::string& name, const ServiceFn& fn);
  // The same without signalling a change: for the proxy's per-request bookkeeping, which
  // signals itself only when needed (ChangeSignal::notify_if_before).
  bool update_service_quiet(const std::string& name, const ServiceFn& fn);
  bool update_model(const ModelKey& key, const ModelFn& fn);
  // Adds a service the config did not name (e.g. a labelled container). False if known.
  bool add_service(const ServiceSpec& spec, const ServiceRuntime& runtime);
  // Replaces the spec of the service named spec.name, its runtime kept (a discovered service's
  // annotations edited). False if unknown.
  bool replace_spec(const ServiceSpec& spec);
  // Adds a model the config did not name (e.g. found loaded on its provider). No-op if its
  // service already has a model of that name.
  // A model added here or by add_learned_model without a keep_alive_hours of its own takes its
  // provider service's model_keep_alive_hours.
  void add_model(const ModelSpec& spec, const ModelRuntime& runtime);
  // Adds a learned model (marked spec.learned) unless known, keeping at most `limit` learned
  // models: the oldest idle ones (not loaded, nothing in flight, least recently used first) are
  // forgotten to make room. Loaded or busy models are never forgotten, so the limit may be
  // exceeded by those alone. With an empty spec.name, only trims. Atomic under the lock.
  struct Learned {
    bool added = false;
    std::vector<ModelKey> forgotten;
  };
  Learned add_learned_model(const ModelSpec& spec, const ModelRuntime& runtime, std::size_t limit);
  // Forgets the model when `keep_not` holds for it, under the lock. True if it was removed.
  bool remove_model_if(const ModelKey& key,
                       const std::function<bool(const ModelSpec&, const ModelRuntime&)>& keep_not);

  ChangeSignal& changes() const { return changes_; }

 private:
  struct ServiceEntry {
    std::shared_ptr<const ServiceSpec> spec;
    ServiceRuntime runtime;
  };
  struct ModelEntry {
    std::shared_ptr<const ModelSpec> spec;
    ModelRuntime runtime;
  };

  mutable std::mutex mu_;
  Settings settings_;
  // `spec` with its provider's default keep-alive when it has none, and (learned) the provider's
  // model_policy. Called under mu_.
  ModelSpec with_server_defaults(ModelSpec spec) const;

  std::map<std::string, ServiceEntry> services_;
  std::map<ModelKey, ModelEntry> models_;  // per service: two may serve the same name
  mutable ChangeSignal changes_;
};

}  // namespace siesta
