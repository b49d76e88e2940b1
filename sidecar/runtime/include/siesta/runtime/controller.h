// Controller: performs every state change of a service — wake, sleep, light sleep, touch,
// reconcile, shutdown — through the backends, and keeps the registry, the recorder and the state
// file in step. The monitor decides when; the admin API (AdminActions), discovery
// (DiscoveryActions) and the proxy ask directly. A model's state changes are ModelLifecycle's
// (model_lifecycle.h): the Controller owns one and forwards its model methods to it, and tells it
// when a model server stopped or slept.
//
// Thread-safe. Operations on one service are serialised by a per-service mutex, so concurrent
// wakes share one start and a wake that arrives during a stop waits for it, then starts.
#pragma once

#include <atomic>
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
#include "siesta/core/decide.h"
#include "siesta/core/gpu.h"
#include "siesta/core/model_provider.h"
#include "siesta/core/proxy_control.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"
#include "siesta/core/service_backend.h"
#include "siesta/core/status.h"
#include "siesta/runtime/admin_actions.h"
#include "siesta/runtime/discovery_actions.h"
#include "siesta/runtime/model_lifecycle.h"
#include "siesta/runtime/monitor_actions.h"

namespace siesta {

// The proxy sees it as a ProxyControl (core/proxy_control.h), the admin API as AdminActions,
// discovery as DiscoveryActions, the monitor as MonitorActions: each through the overrides below.
class Controller : public ProxyControl,
                   public AdminActions,
                   public DiscoveryActions,
                   public MonitorActions {
 public:
  using BackendMap = std::map<std::string, ServiceBackend*>;  // backend name -> backend
  // The provider for models served by the named service; nullptr when there is none.
  using ProviderLookup = std::function<ModelProvider*(const std::string& provider_service)>;
  // Saves the registry to the state file; an error means an acknowledged change could be lost.
  using SaveFn = std::function<Status()>;

  // At most `max_learned_models` models not in the config are kept (Registry::add_learned_model);
  // the state file's are trimmed to that at once.
  Controller(Registry& registry, BackendMap backends, ProviderLookup providers, const Clock& clock,
             Recorder& recorder, SaveFn save,
             std::size_t max_learned_models = kDefaultMaxLearnedModels);

  // Starts the service if needed and returns once it is ready (or the start failed). Counts as a
  // use. reason: kManual, kDesired, kRequest, kSchedule, kPrewarm. `report`, if given, says what
  // the wake undid and how long it took (WakeReport).
  Status wake(const std::string& service, Reason reason, WakeReport* report) override;
  Status wake(const std::string& service, Reason reason) override {
    return wake(service, reason, nullptr);
  }
  // Stops the service now (Reason::kManual). A desired-on service is refused (kConflict).
  Status sleep(const std::string& service) override;
  // Records a use of the service now, without waking it.
  Status touch_service(const std::string& service) override;
  // A request or connection through the proxy begins: it is in flight (the service will not be
  // put to sleep) until end_request(). Returns the service's state, so the caller knows whether
  // to wake it first. Cheap: no state-file save, no monitor wake-up. `use` false: a probe
  // (ModelApi::is_probe), in flight all the same but no use: the idle time and tier run on.
  Result<ServiceState> begin_request(const std::string& service, bool use = true) override;
  // It ended: idle time starts now if nothing else is in flight (for a use).
  void end_request(const std::string& service, bool use = true) override;
  // A request in flight became an upgraded connection (`open`, e.g. a WebSocket) or that
  // connection ended: counted for idle-status and /metrics. It stays in flight until
  // end_request() either way.
  void count_upgraded(const std::string& service, bool open) override;
  // Runtime changes from the admin API; each is saved before it returns.
  Status set_idle_sleep(const std::string& service, bool enabled) override;
  Status set_desired(const std::string& service, Desired desired) override;
  Status update_settings(const std::function<void(Settings&)>& change) override;

  // Model lifecycle, done by ModelLifecycle (model_lifecycle.h).
  // Records a use of the model now: it counts as loaded, its keep-alive restarts, and its
  // provider service is used too.
  Status touch_model(const ModelKey& model) override;
  // Unloads now through the provider (Reason::kForced).
  Status unload_model(const ModelKey& model) override;
  // Loads now through the provider with the model's keep-alive (admin API). A model siesta has
  // not seen (empty model.service) is looked for on the model servers (find_installed) and
  // learned; kNotFound when none has it.
  Status load_model(const ModelKey& model) override;
  Status make_room_for_model(const ModelKey& model) override;
  Status model_request_gives_way(const ModelKey& model) override;
  // A runtime value the state file keeps changed outside a state change (a measurement): the
  // next reconcile pass saves it.
  void save_at_next_pass() { kept_unsaved_.store(true); }
  // Unloads every loaded model of a provider service (Reason::kForced).
  Status unload_models_of(const std::string& provider_service) override;
  // The monitor's two steps for an expired keep-alive (as claim_sleep/finish_sleep below).
  bool claim_unload(const ModelKey& model) override;
  void finish_unload(const ModelKey& model, Reason reason) override;
  // A proxied request names a model on its service: the model is in flight (never unloaded)
  // until end_model_request(). A model siesta did not know is learned now, not loaded. A
  // request on an idle model records the idle gap it ends (its adaptive policy's history, saved
  // at the next reconcile).
  // Returns a ticket when the model is not loaded: the request may be the one to pay its load.
  std::optional<std::uint64_t> begin_model_request(const ModelKey& model) override;
  // Its model server accepted the request (a 2xx answer): the model is loaded, and keeps
  // `keep_alive.seconds` from the request's end. Returns whether this request paid the load: it
  // began with the model not loaded (`ticket`) and no other request's answer loaded it since.
  bool model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                      std::optional<std::uint64_t> ticket) override;
  // The model's load took `took`: its cold start (ModelRuntime::load_seconds).
  void model_load_measured(const ModelKey& model, Seconds took) override;
  // The request ended; `accepted`: model_accepted() was called for it. A learned model that was
  // never loaded and has no other request in flight is forgotten after a failed request.
  void end_model_request(const ModelKey& model, bool accepted) override;
  // The bounds and default for a request's keep-alive on `model`; for one not known yet, those
  // it would be learned with on its service (its model_keep_alive_hours). The rule is
  // siesta::keep_alive_policy (decide.h); the type is ProxyControl's alias of it.
  KeepAlivePolicy keep_alive_policy(const ModelKey& model) override;
  ModelProvider* provider_of(const std::string& provider_service) override;

  // The monitor's two-step actions: claim() re-checks under the registry lock that the action
  // is still due and marks it in progress; finish() does the slow part. A claim cancelled in
  // between (a wake arrived) makes finish() a no-op.
  bool claim_sleep(const std::string& service) override;
  void finish_sleep(const std::string& service) override;
  // Graduated sleep, the same two steps for a light tier (Action::tier, 1-based): the claim
  // marks the tier in force, and a pause tier makes the service kPaused at once, so that a
  // request arriving before the pause is done waits for the wake (which resumes it) instead of
  // reaching a frozen service. A use in between makes finish_light_sleep() a no-op.
  bool claim_light_sleep(const std::string& service, std::size_t tier) override;
  void finish_light_sleep(const std::string& service, std::size_t tier) override;

  // Adds a service found after start-up (a labelled container) and reads its real state. A
  // running one gets its idle timer started like any other. kConflict if the name is taken.
  Status add_service(const ServiceSpec& spec, bool idle_sleep_enabled, Desired desired) override;
  // Its new spec applies from the next decision; a start or stop in progress goes on with the
  // spec it began with (no operation lock: the watch thread calling it must not wait).
  Status update_spec(const ServiceSpec& spec, std::optional<bool> idle_sleep_enabled) override;
  void set_config_error(const std::string& service, const std::string& error) override;

  // Re-reads every service's real state from its backend and every provider's loaded models.
  // Services with a start or stop in progress are skipped: that operation sets their state.
  void reconcile() override;
  // Re-reads one service's real state (e.g. on a Docker event); waits for a start or stop in
  // progress to finish first, so the event is never lost.
  void refresh(const std::string& service) override;
  // On shutdown with on_exit "stop": stops every running service.
  void stop_all();
  // On shutdown with on_exit "leave": resumes the paused services whose backend cannot keep
  // them paused without siesta (ServiceBackend::pause_outlives_siesta), so they are left running.
  void leave_all();

  // Callers waiting for the service's operation lock (a start or stop in progress).
  int waiters(const std::string& service);

  // The GPU budget (gpu.h, docs/gpu.md), set once before any wake. A cold start of a service that
  // declares gpu_memory_mib (or is in an exclusive group) and an admin load of a sized model first
  // make room: they evict in plan_room's order (Reason::kMakeRoom), wait in FIFO order at most
  // gpu.wait_seconds for in-flight work on the holders to end, else fail kUnavailable (503)
  // naming what holds the memory. A later request that fits now goes ahead of waiting ones when
  // it takes none of the room they wait for (may_go_ahead).
  void set_gpu(GpuConfig gpu);
  const GpuConfig& gpu() const override { return gpu_; }
  int gpu_waiting() const override { return gpu_waiting_.load(); }

 private:
  struct Slot {
    std::mutex op;                         // held for the whole of a start or stop
    std::atomic<std::uint64_t> starts{0};  // start attempts finished
    std::atomic<int> waiting{0};           // callers queued for `op`
    Status last_start;                     // guarded by op
    // A light tier claimed whose finish has not begun (0: none): a wake in between has nothing
    // of it to undo (no /wake_up to an engine never put to sleep, no unpause of a running one).
    std::atomic<std::size_t> light_pending{0};
    double warned_measured_mib = 0;  // guarded by op: a measured size over a budget, said once
    // Starts that failed in a row (at once, or found failed when the process exited on a taken
    // port), and when the last did (guarded by op): a request's wake waits out start_backoff()
    // (decide.h) before it tries again. Back to 0 once siesta stops it or finds it serving.
    int failed_starts = 0;
    MonoTime last_failed_start{};
  };

  Slot* slot(const std::string& service);
  ServiceBackend* backend_for(const ServiceSpec& spec);
  Status start_and_wait(const ServiceSpec& spec, ServiceBackend& backend);
  Status stop_locked(const std::string& service, Reason reason);
  void fail_service(const std::string& service, ServiceOperation operation, const Status& st,
                    bool schedule_retry);
  void unload_models_before_stop(const std::string& service);
  // ModelLifecycle::mark_models_unloaded.
  void mark_models_unloaded(const std::string& provider_service, Reason reason,
                            const char* what = nullptr);
  // The unload_models tier: every loaded model of the service, through its provider; a paused
  // service is resumed for it and paused again. Holds the service's op lock.
  Status unload_models_for_tier(const ServiceSpec& spec, ServiceBackend& backend);
  // The vllm_sleep tier: the engine to sleep at `level`; a paused service is thawed for it and
  // frozen again. Holds the service's op lock.
  Status sleep_engine_for_tier(const ServiceSpec& spec, ServiceBackend& backend, int level);
  EngineSleep* engine_sleep_of(const std::string& service);
  // After a wake that made a server whose model is the process (vLLM, OpenAI-compatible) serve
  // again (a start, or its engine woken): its served models are loaded from that moment, so
  // they are read now (ModelLifecycle::sync_loaded), not at the next reconcile. The caller
  // holds the service's op lock.
  void read_served_models(const std::string& service);
  // POST /wake_up, then is_sleeping() polled until false (within start_timeout_seconds).
  Status wake_engine(const ServiceSpec& spec);
  // A running server with a sleep mode: whether its engine is asleep (marked so, out of
  // service); an absent sleep route when a vllm_sleep tier needs it is shown as last_error.
  // The caller holds the service's op lock.
  bool check_engine_sleep(const std::string& service, ModelProvider& provider);
  // A wake of a paused service or one whose engine is asleep: resumes it and wakes its engine;
  // on failure it is stopped, for a cold start.
  Status resume_locked(const ServiceSpec& spec, ServiceBackend& backend, const std::string& from);
  // Reads the backend's real state into the registry; true when anything changed (the caller
  // saves).
  bool reconcile_service(const std::string& service, bool wait_for_op);
  bool reconcile_locked(const std::string& service);  // holds the service's op lock
  // Every running model server's loaded models (ModelLifecycle::sync_loaded), unless its engine
  // is asleep.
  void reconcile_models();
  Status save();
  // The GPU budget: room for `request` (see set_gpu). Called before a start, without the
  // registry lock; may hold other services' operation locks while it stops them. `on_fit` runs
  // while the room is still the request's alone (before the next in the queue plans): a wake
  // marks its service starting there, so that it counts as a holder from then on. `in_flight`: a
  // request the proxy counts in flight on its model and its server while it waits here (a model
  // request); a head that waits for that server's requests to end lets it go first.
  Status make_room(const GpuRequest& request, const std::function<void()>& on_fit = {},
                   bool in_flight = false);
  // Stops or unloads `h` for room if it is still idle and not pinned (re-checked under the
  // registry lock): ok when done or no longer to do; the failure when its stop or unload failed
  // (or left it loaded).
  Status evict(const GpuHolder& h);
  // Room for a sized model of a server in the budget (make_room), before a load; ok otherwise.
  // `in_flight`: asked by a request in flight on it (the proxy's), not an admin load; an admin
  // load that got room is counted in admin_loads (undone by the caller once the load ends:
  // *counted is set). A model whose room is held by a load in progress needs none.
  Status room_for_model(const ModelKey& model, bool in_flight, bool* counted = nullptr);
  // Once, at the first reconcile: a warning for each device whose holders (adopted services,
  // models found loaded) hold more than its budget.
  void warn_gpu_over_budget();
  std::atomic<bool> gpu_checked_{false};
  // A gap joined a service's or a model's idle history since the last save (begin_request,
  // begin_model_request), or another kept value changed (save_at_next_pass): reconcile saves.
  std::atomic<bool> kept_unsaved_{false};

  Registry& registry_;
  BackendMap backends_;
  ProviderLookup providers_;
  const Clock& clock_;
  Recorder& recorder_;
  SaveFn save_;
  ModelLifecycle models_;
  std::mutex slots_mu_;
  std::map<std::string, std::unique_ptr<Slot>> slots_;  // guarded by slots_mu_; never erased
  GpuConfig gpu_;                                       // set before use, then read only
  // Room is made for one request at a time, in the order they asked: the head of the queue
  // plans and evicts; a later one goes ahead only as may_go_ahead() allows.
  struct GpuQueued {
    std::uint64_t ticket = 0;
    GpuRequest request;
    bool making_room = false;  // its evictions run: the room they free is its own
    bool in_flight = false;    // counted in flight on its model and server (make_room)
    MonoTime queued_at{};      // when it asked
    // Requests served before it while it was queued (may_go_ahead): evicted for it last.
    std::vector<std::pair<GpuHolder::Kind, std::string>> went_ahead;
    int gave_way = 0;  // requests it waited for that gave way to it (logged once, then counted)
  };
  std::mutex gpu_mu_;
  std::condition_variable gpu_cv_;
  std::uint64_t gpu_next_ticket_ = 0;  // guarded by gpu_mu_
  std::vector<GpuQueued> gpu_queue_;   // guarded by gpu_mu_; in arrival order
  std::atomic<int> gpu_waiting_{0};    // requests queued or waiting for in-flight work
  // Whether the queued request `self` (in flight on its server, queued behind the head) is what
  // the head waits for: the head's plan waits only because of requests on that server that are
  // queued here. Holds gpu_mu_.
  bool head_waits_for(const GpuQueued& self) const;
  // Whether the head's plan waits, and would not without `requests` of the requests in flight on
  // `server` (nullopt: all of them, and those on its models). Holds gpu_mu_.
  bool head_waits_only_for(const std::string& server, std::optional<int> requests) const;
  // The warning that `what` gives way to the head, the first time for this head; later ones at
  // debug level, counted and summed up when the head leaves the queue. Holds gpu_mu_.
  void say_gives_way(GpuQueued& head, const std::string& what, const std::string& server);
};

}  // namespace siesta
