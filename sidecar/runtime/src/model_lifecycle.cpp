#include "siesta/runtime/model_lifecycle.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "saved.h"

namespace siesta {

namespace {
// An unloaded model's next keep-alive is its next request's, or its policy's.
void forget_request_keep_alive(ModelRuntime& rt) {
  rt.keep_alive_seconds.reset();
  rt.keep_alive_policy.clear();
  rt.keep_alive_reason.clear();
}
}  // namespace

ModelLifecycle::ModelLifecycle(Registry& registry, ProviderLookup providers, const Clock& clock,
                               Recorder& recorder, SaveFn save, WakeFn wake,
                               std::size_t max_learned_models)
    : registry_(registry),
      providers_(std::move(providers)),
      clock_(clock),
      recorder_(recorder),
      save_(std::move(save)),
      wake_(std::move(wake)),
      max_learned_models_(max_learned_models) {
  auto trimmed = registry_.add_learned_model(ModelSpec{}, ModelRuntime{}, max_learned_models_);
  if (!trimmed.forgotten.empty()) {
    spdlog::info("Forgot {} learned models never or no longer loaded (max_learned_models {})",
                 trimmed.forgotten.size(), max_learned_models_);
  }
}

ModelProvider* ModelLifecycle::provider_of(const std::string& provider_service) {
  return providers_ ? providers_(provider_service) : nullptr;
}

Status ModelLifecycle::save() { return save_ ? save_() : Status::ok(); }

bool ModelLifecycle::learn_model(const ModelKey& model, const ModelRuntime& runtime,
                                 const char* how) {
  ModelSpec spec;
  spec.name = model.name;
  spec.provider = model.service;
  ModelRuntime rt = runtime;
  if (!rt.first_seen) rt.first_seen = clock_.wall_now();
  auto learned = registry_.add_learned_model(spec, rt, max_learned_models_);
  forget_loads(learned.forgotten);  // idle: nothing in flight
  for (const auto& key : learned.forgotten) {
    spdlog::info("Model {} of {} forgotten: not loaded, the oldest of more than {} learned models",
                 key.name, key.service, max_learned_models_);
  }
  if (learned.added) spdlog::info("Model {} {} {}; tracking it", model.name, how, model.service);
  return learned.added;
}

void ModelLifecycle::record_unload(const ModelKey& model, Reason reason,
                                   std::optional<double> vram_bytes) {
  recorder_.model_unloaded(model, reason);
  if (vram_bytes && *vram_bytes > 0) recorder_.model_memory_freed(model, *vram_bytes);
}

void ModelLifecycle::mark_models_unloaded(const std::string& provider_service, Reason reason,
                                          const char* what) {
  if (what == nullptr) {
    what = reason == Reason::kSleepTier  ? "put its engine to sleep"
           : reason == Reason::kExternal ? "stopped outside siesta"
                                         : "stopped";
  }
  for (const auto& key : registry_.model_keys()) {
    if (key.service != provider_service) continue;
    bool unloaded = false;
    std::optional<double> freed;
    registry_.update_model(key, [&](const ModelSpec&, ModelRuntime& rt) {
      if (rt.loaded) {
        freed = std::exchange(rt.vram_bytes, std::nullopt);
        rt.loaded = false;
        forget_request_keep_alive(rt);
        unloaded = true;
      }
    });
    if (unloaded) {
      record_unload(key, reason, freed);
      spdlog::info("Model {} unloaded: its service {} {}", key.name, provider_service, what);
    }
  }
}

KeepAlivePolicy ModelLifecycle::keep_alive_policy(const ModelKey& model) {
  const Settings settings = registry_.settings();
  if (auto view = registry_.model(model)) {
    return siesta::keep_alive_policy(settings, view->spec.get(), nullptr, &view->runtime);
  }
  auto server = registry_.service(model.service);
  return siesta::keep_alive_policy(settings, nullptr, server ? server->spec.get() : nullptr);
}

std::optional<std::uint64_t> ModelLifecycle::begin_model_request(const ModelKey& model, bool& gap) {
  const WallTime now = clock_.wall_now();
  ModelRuntime first;
  first.in_flight = 1;
  bool loaded = false;
  gap = false;
  // An idle learned entry may be forgotten between the two steps: then learn it again.
  while (!registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
    // The idle gap this request ends (from the end of the last one, loaded or not): the
    // adaptive policy's history. Not while another request is in flight: no gap.
    if (rt.in_flight == 0) gap = record_idle_gap(rt.idle_gaps, rt.last_used, now);
    ++rt.in_flight;
    loaded = rt.loaded && !rt.unloading;  // being unloaded: this request loads it again
  })) {
    if (learn_model(model, first, "is used through")) break;
  }
  if (loaded) return std::nullopt;
  std::lock_guard lock(loads_mu_);
  return request_loads_[model];
}

bool ModelLifecycle::model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                                    std::optional<std::uint64_t> ticket) {
  const WallTime now = clock_.wall_now();
  bool paid = false;
  if (ticket) {
    // Not `!rt.loaded`: /api/ps may have shown the model while this request was loading it.
    std::lock_guard lock(loads_mu_);
    auto& loads = request_loads_[model];
    paid = *ticket == loads;
    if (paid) ++loads;
  }
  registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = now;
    rt.keep_alive_seconds = keep_alive.seconds;
    rt.keep_alive_policy = keep_alive.policy;
    rt.keep_alive_reason = keep_alive.reason;
  });
  if (paid) recorder_.model_added(model);  // its counters start at zero
  return paid;
}

void ModelLifecycle::model_load_measured(const ModelKey& model, Seconds took) {
  registry_.update_model(
      model, [&](const ModelSpec&, ModelRuntime& rt) { rt.load_seconds = took.count(); });
}

void ModelLifecycle::end_model_request(const ModelKey& model, bool accepted) {
  const WallTime now = clock_.wall_now();
  std::optional<WallTime> deadline;
  const Settings settings = registry_.settings();
  registry_.update_model(model, [&](const ModelSpec& spec, ModelRuntime& rt) {
    rt.in_flight = std::max(0, rt.in_flight - 1);
    rt.last_used = now;  // the keep-alive runs from the end of the last request
    if (rt.in_flight == 0) {
      if (rt.admin_loads == 0) rt.load_room = false;
      deadline = keep_alive_ends(settings, spec, rt);
    }
  });
  // A name its server refused (e.g. 404: not installed) is not kept: it was never loaded.
  if (!accepted && forget_if_unused(model)) {
    spdlog::info("Model {} forgotten: its request failed and it was never loaded", model.name);
    return;
  }
  if (deadline) registry_.changes().notify_if_before(*deadline);
}

Result<std::string> ModelLifecycle::find_installed(const std::string& model) {
  std::vector<std::string> servers;
  for (const auto& name : registry_.service_names()) {
    if (provider_of(name) != nullptr) servers.push_back(name);
  }
  const Status none{ErrorCode::kNotFound, "unknown model: " + model + " (no model server has it)"};
  if (servers.empty()) return none;
  if (servers.size() == 1) return servers.front();  // its load says whether it has the model
  // Running servers are asked first: waking one only to ask costs a start.
  std::stable_partition(servers.begin(), servers.end(), [&](const std::string& name) {
    auto view = registry_.service(name);
    return view && view->runtime.state == ServiceState::kRunning;
  });
  for (const auto& name : servers) {
    if (Status st = wake_(name); !st) {
      spdlog::warn("Model {}: cannot ask {} whether it has it: {}", model, name, st.message());
      continue;
    }
    auto installed = provider_of(name)->list_installed();
    if (!installed) {
      spdlog::warn("Model {}: cannot list the models of {}: {}", model, name,
                   installed.status().message());
      continue;
    }
    if (std::find(installed->begin(), installed->end(), model) != installed->end()) return name;
  }
  return none;
}

bool ModelLifecycle::forget_if_unused(const ModelKey& model) {
  const bool forgotten =
      registry_.remove_model_if(model, [](const ModelSpec& spec, const ModelRuntime& rt) {
        return spec.learned && !rt.loaded && rt.in_flight == 0 && !rt.unloading;
      });
  if (forgotten) forget_loads({model});  // no request holds a ticket: none is in flight
  return forgotten;
}

void ModelLifecycle::forget_loads(const std::vector<ModelKey>& models) {
  std::lock_guard lock(loads_mu_);
  for (const auto& m : models) request_loads_.erase(m);
}

Status ModelLifecycle::load_model(const ModelKey& asked) {
  ModelKey key = asked;
  if (key.service.empty()) {  // one siesta has not seen: which server has it
    auto server = find_installed(key.name);
    if (!server) return server.status();
    key.service = *server;
  } else if (!registry_.service(key.service)) {
    return {ErrorCode::kNotFound, "unknown service: " + key.service};
  }
  if (Status st = refuse_if_model_is_process(key, "load", "a request to it wakes the service");
      !st) {
    return st;
  }
  const std::string& model = key.name;
  auto view = registry_.model(key);
  if (!view) {
    if (provider_of(key.service) == nullptr) {
      return {ErrorCode::kUnavailable, "service " + key.service + " has no model API"};
    }
    learn_model(key, ModelRuntime{}, "is loaded by the admin API on");
    view = registry_.model(key);
    if (!view) return {ErrorCode::kConflict, "model " + model + " was forgotten meanwhile"};
  }
  ModelProvider* provider = provider_of(view->spec->provider);
  if (provider == nullptr) {
    return {ErrorCode::kUnavailable, "service " + view->spec->provider + " has no model API"};
  }
  // The provider service must be up first.
  if (Status st = wake_(view->spec->provider); !st) return st;
  const double keep_alive =
      effective_keep_alive(registry_.settings(), *view->spec, view->runtime).count();
  // Loaded already (and not being unloaded): the request only renews its keep-alive at its
  // server. No load happens, so none is counted nor timed (a new user's trial: a 2 ms "load"
  // became the adaptive keep-alive's cold-start price and the load metrics' sample).
  const bool was_loaded = view->runtime.loaded && !view->runtime.unloading;
  // A load that overlaps a request's (or another admin load's) is one load at the server: the
  // first to finish pays it, as among requests (request_loads_; a new user's re-trial counted
  // one load twice, and the later finisher's partial wait became its load time).
  std::optional<std::uint64_t> ticket;
  if (!was_loaded) {
    std::lock_guard lock(loads_mu_);
    ticket = request_loads_[key];
  }
  spdlog::info("{} model {} on {}...", was_loaded ? "Renewing loaded" : "Loading", model,
               view->spec->provider);
  const MonoTime t0 = clock_.mono_now();
  Status st = provider->load(model, model_server_keep_alive(keep_alive));
  const Seconds took = clock_.mono_now() - t0;
  if (!st) {
    spdlog::error("Model {}: load failed: {}", model, st.message());
    if (forget_if_unused(key)) spdlog::info("Model {} forgotten: it was never loaded", model);
    return st;
  }
  bool paid = false;
  if (ticket) {
    std::lock_guard lock(loads_mu_);
    auto& loads = request_loads_[key];
    paid = *ticket == loads;
    if (paid) ++loads;
  }
  const WallTime now = clock_.wall_now();
  registry_.update_model(key, [&](const ModelSpec&, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = now;
    if (paid) rt.load_seconds = took.count();
  });
  if (was_loaded) {
    spdlog::info("Model {} was loaded already; its keep-alive runs from now", model);
  } else if (!paid) {
    spdlog::info("Model {} loaded by a request meanwhile (its load counted there)", model);
  } else {
    recorder_.model_loaded(key, Reason::kManual, took);
    spdlog::info("Model {} loaded in {:.3f} s", model, took.count());
  }
  return saved(Status::ok(), save());
}

Status ModelLifecycle::unload_models_of(const std::string& provider_service) {
  if (!registry_.service(provider_service)) {
    return {ErrorCode::kNotFound, "unknown service: " + provider_service};
  }
  Status first = Status::ok();
  for (const auto& key : registry_.model_keys()) {
    if (key.service != provider_service) continue;
    auto view = registry_.model(key);
    if (!view || !view->runtime.loaded) continue;
    if (Status st = unload_model(key); !st && first) first = st;
  }
  return first;
}

Status ModelLifecycle::touch_model(const ModelKey& model) {
  const WallTime now = clock_.wall_now();
  std::string provider;
  bool known = registry_.update_model(model, [&](const ModelSpec& spec, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = now;
    provider = spec.provider;
  });
  if (!known) return {ErrorCode::kNotFound, "unknown model: " + model.name};
  registry_.update_service(provider,
                           [&](const ServiceSpec&, ServiceRuntime& rt) { rt.last_used = now; });
  return saved(Status::ok(), save());
}

bool ModelLifecycle::claim_unload(const ModelKey& model) {
  const WallTime now = clock_.wall_now();
  const Settings settings = registry_.settings();
  bool claimed = false;
  registry_.update_model(model, [&](const ModelSpec& spec, ModelRuntime& rt) {
    if (unload_due(settings, spec, rt, now)) {
      rt.unloading = true;
      claimed = true;
    }
  });
  if (claimed) spdlog::info("Model {} keep-alive expired, unloading...", model.name);
  return claimed;
}

void ModelLifecycle::finish_unload(const ModelKey& model, Reason reason) {
  if (unload_claimed(model, reason)) {
    spdlog::info("Successfully unloaded idle model {}", model.name);
  }
}

// A server whose model is the process (vLLM, OpenAI-compatible servers) has no load or unload to
// ask for: an admin load or unload is refused, not failed (no failure counted, no error on the
// model, no retry, no load time). Ok for a server that has them.
Status ModelLifecycle::refuse_if_model_is_process(const ModelKey& key, const char* verb,
                                                  const char* instead) const {
  auto server = registry_.service(key.service);  // the provider service
  if (!server || server->spec->model_api == ServiceSpec::ModelApi::kNone ||
      can_unload_models(server->spec->model_api)) {
    return Status::ok();
  }
  // Final: no later try can do it (no Retry-After on its 503).
  return Status::final_error(ErrorCode::kUnavailable, "service " + key.service + " cannot " + verb +
                                                          " model " + key.name +
                                                          ": the model is the process; " + instead);
}

Status ModelLifecycle::unload_model(const ModelKey& key) {
  auto view = registry_.model(key);
  if (!view) return {ErrorCode::kNotFound, "unknown model: " + key.name};
  if (Status st = refuse_if_model_is_process({key.name, view->spec->provider}, "unload",
                                             "put the service to sleep (its sleep tiers) instead");
      !st) {
    return st;
  }
  return unload_now(key, Reason::kForced);
}

Status ModelLifecycle::unload_now(const ModelKey& model, Reason reason, bool only_unused) {
  bool claimed = false;
  bool busy = false;
  bool used = false;
  registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
    busy = rt.unloading;
    used = only_unused && rt.loaded && (rt.in_flight > 0 || rt.admin_loads > 0);
    if (rt.loaded && !rt.unloading && !used) rt.unloading = claimed = true;
  });
  if (busy) return {ErrorCode::kConflict, "an unload of model " + model.name + " is in progress"};
  if (used) return {ErrorCode::kConflict, "model " + model.name + " is in use"};
  if (!claimed) return Status::ok();  // not loaded (or forgotten): nothing to do
  spdlog::info("Unloading model {} ({})...", model.name, to_string(reason));
  Status st = unload_claimed(model, reason);
  if (st) spdlog::info("Successfully unloaded model {}", model.name);
  return st;
}

Status ModelLifecycle::unload_claimed(const ModelKey& model, Reason reason) {
  auto view = registry_.model(model);
  ModelProvider* provider = providers_ ? providers_(view->spec->provider) : nullptr;
  auto service = registry_.service(view->spec->provider);
  const bool service_up = service && service->runtime.state != ServiceState::kStopped;
  if (provider != nullptr && service && service->runtime.paused && reason == Reason::kForced) {
    // Asked for now (the admin API): refused, saying why; nothing failed, nothing is retried.
    registry_.update_model(model,
                           [&](const ModelSpec&, ModelRuntime& rt) { rt.unloading = false; });
    return {ErrorCode::kConflict,
            "model " + model.name + " was not unloaded: its service " + view->spec->provider +
                " is paused (a frozen server answers nothing); a request resumes it, and its "
                "unload_models tier or its stop frees the model"};
  }
  if (provider != nullptr && service && service->runtime.paused) {
    // A frozen model server answers nothing; its unload_models tier or its stop frees the model.
    const WallTime later = retry_at(registry_.settings(), clock_.wall_now());
    registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
      rt.unloading = false;
      rt.retry_at = later;
    });
    spdlog::info("Model {}: not unloaded now, its service {} is paused", model.name,
                 view->spec->provider);
    return Status::ok();
  }
  Status st = Status::ok();
  if (provider != nullptr && !service_up) {
    // A stopped model server holds no models: nothing to ask it.
    spdlog::info("Model {}: its service {} is stopped, so it is not loaded", model.name,
                 view->spec->provider);
  } else if (provider != nullptr) {
    st = provider->unload(model.name);
  } else {
    spdlog::warn(
        "Model {}: no model provider for service {}; marking it unloaded without "
        "contacting the service",
        model.name, view->spec->provider);
  }
  const WallTime now = clock_.wall_now();
  const Settings settings = registry_.settings();
  std::optional<double> freed;
  registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
    rt.unloading = false;
    if (st) {
      freed = std::exchange(rt.vram_bytes, std::nullopt);
      rt.loaded = false;
      forget_request_keep_alive(rt);
      rt.retry_at.reset();
    } else {
      rt.last_error = "unload failed: " + st.message();
      rt.last_error_at = now;
      rt.retry_at = retry_at(settings, now);
    }
  });
  if (st) {
    record_unload(model, reason, freed);
  } else {
    recorder_.model_unload_failed(model);
    spdlog::error("Model {}: unload failed: {} (retrying in {:g} s)", model.name, st.message(),
                  retry_delay(settings).count());
  }
  return saved(st, save());
}

void ModelLifecycle::warn_over_estimate(const ModelKey& model, double vram_bytes,
                                        double estimate_mib) {
  const double measured = vram_bytes / (1024.0 * 1024.0);
  if (measured <= estimate_mib + 0.5) return;
  {
    std::lock_guard lock(loads_mu_);
    if (!warned_over_estimate_.insert(model).second) return;
  }
  // The budget already counts size_vram before the estimate (model_gpu_mib); the estimate only
  // counts until the size is measured, e.g. for a load after a restart.
  spdlog::warn(
      "Model {} (on {}): its server reports a size_vram of {:.0f} MiB, more than its "
      "gpu_memory_mib estimate of {:g} MiB; the GPU budget counts the measured {:.0f} MiB from now "
      "on. Raise models.{}.gpu_memory_mib to at least {:.0f}: until a size is measured (a load "
      "after siesta restarts) the estimate is what makes room",
      model.name, model.service, measured, estimate_mib, measured, model.name, std::ceil(measured));
}

bool ModelLifecycle::sync_loaded(const std::string& service,
                                 const std::vector<LoadedModel>& loaded) {
  const WallTime now = clock_.wall_now();
  bool changed = false;
  for (const auto& m : loaded) {
    ModelRuntime rt;
    rt.loaded = true;
    rt.last_used = now;
    rt.size_bytes = m.size_bytes;
    rt.vram_bytes = rt.vram_bytes_seen = m.vram_bytes;
    rt.card = m.card;
    const ModelKey key{m.name, service};
    if (!registry_.model(key) && learn_model(key, rt, "found loaded on")) {
      recorder_.model_added(key);
      changed = true;
    }
    std::optional<double> estimate_mib;
    registry_.update_model(key, [&](const ModelSpec& spec, ModelRuntime& cur) {
      estimate_mib = spec.gpu_memory_mib;
      cur.size_bytes = m.size_bytes;
      cur.vram_bytes = m.vram_bytes;
      if (!m.card.empty()) cur.card = m.card;                // the server's latest word on it
      if (m.vram_bytes) cur.vram_bytes_seen = m.vram_bytes;  // kept after an unload (GPU budget)
      if (!cur.loaded) {
        cur.loaded = true;
        cur.last_used = now;
        changed = true;
      }
    });
    if (m.vram_bytes && estimate_mib) warn_over_estimate(key, *m.vram_bytes, *estimate_mib);
  }
  for (const auto& key : registry_.model_keys()) {
    if (key.service != service) continue;
    bool gone = false;
    std::optional<double> freed;
    registry_.update_model(key, [&](const ModelSpec&, ModelRuntime& cur) {
      // A model with a request running may still be loading: Ollama lists it only then.
      if (!cur.loaded || cur.unloading || cur.in_flight > 0) return;
      bool listed = std::any_of(loaded.begin(), loaded.end(),
                                [&](const LoadedModel& m) { return m.name == key.name; });
      if (!listed) {
        freed = std::exchange(cur.vram_bytes, std::nullopt);
        cur.loaded = false;
        forget_request_keep_alive(cur);
        gone = true;
      }
    });
    if (gone) {
      record_unload(key, Reason::kExternal, freed);
      spdlog::info("Model {} was unloaded outside siesta (on {})", key.name, service);
      changed = true;
    }
  }
  return changed;
}

}  // namespace siesta
