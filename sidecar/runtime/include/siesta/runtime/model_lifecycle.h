// ModelLifecycle: every state change of a model — a proxied request's use of it, loads and
// unloads (admin API, keep-alive expiry, a service's sleep tier), models siesta was not told
// about (learned, bounded, forgotten) and what a model server reports loaded — through the
// model providers, keeping the registry, the recorder and the state file in step.
//
// The Controller owns one and forwards its model methods to it; it hands it `wake`, the start of
// a model server (a load needs its server up; finding which server has a model may wake one),
// and tells it when a server's models went with it (mark_models_unloaded). Service state it only
// reads, except a model's use, which is its server's use too (touch_model). Timers come from
// decide.h. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/decide.h"
#include "siesta/core/model_provider.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"
#include "siesta/core/status.h"

namespace siesta {

class ModelLifecycle {
 public:
  // The provider for models served by the named service; nullptr when there is none.
  using ProviderLookup = std::function<ModelProvider*(const std::string& provider_service)>;
  // Saves the registry to the state file (the Controller's save, which logs a failure).
  using SaveFn = std::function<Status()>;
  // Wakes a model server (Reason::kManual) and returns once it is ready or the start failed.
  using WakeFn = std::function<Status(const std::string& service)>;

  // At most `max_learned_models` models not in the config are kept (Registry::add_learned_model);
  // the state file's are trimmed to that at once.
  ModelLifecycle(Registry& registry, ProviderLookup providers, const Clock& clock,
                 Recorder& recorder, SaveFn save, WakeFn wake, std::size_t max_learned_models);

  // A proxied request (Controller::begin_model_request, model_accepted, end_model_request and
  // keep_alive_policy say what each does).
  // Models are per service: `model.service` is the server the model is used on.
  // `gap`: set when the request ended an idle gap that joined the model's history.
  std::optional<std::uint64_t> begin_model_request(const ModelKey& model, bool& gap);
  bool model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                      std::optional<std::uint64_t> ticket);
  void model_load_measured(const ModelKey& model, Seconds took);
  void end_model_request(const ModelKey& model, bool accepted);
  KeepAlivePolicy keep_alive_policy(const ModelKey& model);

  // The admin API's (Controller's AdminActions). A load's empty service: looked for
  // (find_installed).
  Status touch_model(const ModelKey& model);
  Status load_model(const ModelKey& model);
  Status unload_model(const ModelKey& model);  // Reason::kForced
  // kUnavailable for a load or unload on a server whose model is the process (vLLM,
  // OpenAI-compatible): `verb` it cannot, do `instead`. Ok for one that can.
  Status refuse_if_model_is_process(const ModelKey& model, const char* verb,
                                    const char* instead) const;
  Status unload_models_of(const std::string& provider_service);

  // The monitor's two steps for an expired keep-alive (claim under the registry lock, then the
  // slow unload).
  bool claim_unload(const ModelKey& model);
  void finish_unload(const ModelKey& model, Reason reason);

  // For the service side. Claims and unloads a loaded model now; OK when it was not loaded.
  // `only_unused`: not claimed (kConflict, nothing done) while a request or an admin load uses it,
  // read under the same lock as the claim (an eviction for room: a new user's re-trial saw one
  // unload a model an admin load had just found loaded, and the budget went over).
  Status unload_now(const ModelKey& model, Reason reason, bool only_unused = false);
  // The server stopped or its engine slept: its models are no longer loaded (counted with
  // `reason`, logged as "its service S <what>"; by default what the reason says).
  void mark_models_unloaded(const std::string& provider_service, Reason reason,
                            const char* what = nullptr);
  // What a running server reports loaded (ModelProvider::loaded): models loaded or unloaded
  // outside siesta are marked so, unknown ones learned. True when anything changed (the caller
  // saves).
  bool sync_loaded(const std::string& service, const std::vector<LoadedModel>& loaded);

 private:
  ModelProvider* provider_of(const std::string& provider_service);
  Status save();
  void record_unload(const ModelKey& model, Reason reason, std::optional<double> vram_bytes);
  Status unload_claimed(const ModelKey& model, Reason reason);
  // The model server that has `model` installed: the only one there is, else the first (running
  // ones asked first, then stopped ones woken) whose list has it. kNotFound when none has it.
  Result<std::string> find_installed(const std::string& model);
  // Forgets a learned model that was never loaded and is not in use.
  bool forget_if_unused(const ModelKey& model);
  void forget_loads(const std::vector<ModelKey>& models);
  // Adds a model not in the config (Registry::add_learned_model); false if it was known.
  bool learn_model(const ModelKey& model, const ModelRuntime& runtime, const char* how);

  Registry& registry_;
  ProviderLookup providers_;
  const Clock& clock_;
  Recorder& recorder_;
  SaveFn save_;
  WakeFn wake_;
  std::size_t max_learned_models_;
  // Per model, the loads paid by a request (its answer found the model not loaded), so that a
  // request that began before the latest load does not count it again (model_accepted).
  std::mutex loads_mu_;
  std::map<ModelKey, std::uint64_t> request_loads_;  // guarded by loads_mu_
  // Models whose measured size_vram was found above their gpu_memory_mib estimate: warned once.
  std::set<ModelKey> warned_over_estimate_;  // guarded by loads_mu_
  void warn_over_estimate(const ModelKey& model, double vram_bytes, double estimate_mib);
};

}  // namespace siesta
