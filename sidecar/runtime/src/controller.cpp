#include "siesta/runtime/controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>
#include <utility>

#include "saved.h"
#include "siesta/core/decide.h"
#include "siesta/core/settings_schema.h"

namespace siesta {

namespace {

// A service whose backend this build does not have (e.g. "docker" before it lands).
Status no_backend(const ServiceSpec& spec) {
  return {ErrorCode::kUnavailable,
          "backend \"" + spec.backend + "\" is not available in this build"};
}

// The service is up and serving, or down: either way no light tier holds it any more.
// Whether a wake for `reason` is a use of the service (restarts its idle timer): not a start
// the monitor makes on its own, ahead of a predicted use or for a schedule window.
bool is_use(Reason reason) { return reason != Reason::kPrewarm && reason != Reason::kSchedule; }

void set_awake(ServiceRuntime& rt, WallTime now) {
  set_state(rt, ServiceState::kRunning, now);
  rt.paused = false;
  rt.engine_asleep = false;
  rt.tier = 0;
  rt.tier_pending = false;
}
void set_stopped(ServiceRuntime& rt, WallTime now) {
  set_state(rt, ServiceState::kStopped, now);
  rt.paused = false;
  rt.engine_asleep = false;
  rt.tier = 0;
  rt.tier_pending = false;
}

// A light tier that takes the service out of service until a wake undoes it.
bool holds_service(TierAction action) {
  return action == TierAction::kPause || action == TierAction::kVllmSleep;
}

// Minutes for log lines: whole numbers stay whole ("60"), short test timeouts stay readable.
std::string minutes_text(Seconds s) {
  double minutes = std::round(s.count() / 60.0 * 100.0) / 100.0;
  return fmt::format("{:g}", minutes);
}

}  // namespace

Controller::Controller(Registry& registry, BackendMap backends, ProviderLookup providers,
                       const Clock& clock, Recorder& recorder, SaveFn save,
                       std::size_t max_learned_models)
    : registry_(registry),
      backends_(std::move(backends)),
      providers_(std::move(providers)),
      clock_(clock),
      recorder_(recorder),
      save_(std::move(save)),
      models_(
          registry, providers_, clock, recorder, [this] { return this->save(); },
          [this](const std::string& service) { return wake(service, Reason::kManual); },
          max_learned_models) {
  for (const auto& name : registry_.service_names()) slots_[name] = std::make_unique<Slot>();
}

Controller::Slot* Controller::slot(const std::string& service) {
  std::lock_guard lock(slots_mu_);
  auto it = slots_.find(service);
  return it == slots_.end() ? nullptr : it->second.get();
}

ServiceBackend* Controller::backend_for(const ServiceSpec& spec) {
  auto it = backends_.find(spec.backend);
  return it == backends_.end() ? nullptr : it->second;
}

Status Controller::save() {
  if (!save_) return Status::ok();
  kept_unsaved_.store(false);  // the snapshot this save takes holds it
  Status st = save_();
  if (!st) spdlog::error("Cannot save the state file: {}", st.message());
  return st;
}

namespace {
// A failed operation as last_error shows it: "inspect failed: backend unreachable".
std::string failure_text(ServiceOperation operation, const Status& st) {
  return std::string(to_string(operation)) + " failed: " + st.message();
}

// A start that succeeded clears the error of a failed start (its port was taken, it was not
// ready in time, no room in the GPU budget): it no longer holds. Any other stays, for the
// operator: a failed resume (the cold start that follows it is this start), a tier that failed
// (pause, vllm_sleep: it fails again at the next idle period), vllm_sleep unavailable (dev mode
// off), a stop or an inspect that failed, a bad label (config_error), a listen port siesta
// could not bind.
void clear_error(ServiceRuntime& rt) {
  rt.last_error.clear();
  rt.last_error_kind = ServiceErrorKind::kNone;
  rt.last_error_code = ErrorCode::kOk;
  rt.last_error_at.reset();
}
void clear_start_failure(ServiceRuntime& rt) {
  if (rt.last_error_kind == ServiceErrorKind::kOperation &&
      rt.failed_operation == ServiceOperation::kStart) {
    clear_error(rt);
  }
}
}  // namespace

void Controller::fail_service(const std::string& service, ServiceOperation operation,
                              const Status& st, bool schedule_retry) {
  const WallTime now = clock_.wall_now();
  const WallTime retry = retry_at(registry_.settings(), now);
  // Counted before it shows: whoever sees the service in error sees its failure counted (CI: a
  // test read the counter between the two).
  recorder_.service_failed(service, operation);
  registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    // Its backend did not answer a read or a stop while it ran (or since): as far as siesta
    // knows it still runs, so it stays reachable through the proxy.
    const bool serving = rt.state == ServiceState::kRunning ||
                         rt.state == ServiceState::kStopping ||
                         (rt.state == ServiceState::kError && rt.serving_in_error);
    set_state(rt, ServiceState::kError, now);
    rt.serving_in_error = serving && (operation == ServiceOperation::kInspect ||
                                      operation == ServiceOperation::kStop);
    set_error(rt, ServiceErrorKind::kOperation, st.code(), failure_text(operation, st), now);
    rt.failed_operation = operation;
    if (schedule_retry) rt.retry_at = retry;
  });
  spdlog::error("Service {}: {} failed: {}", service, to_string(operation), st.message());
}

Status Controller::start_and_wait(const ServiceSpec& spec, ServiceBackend& backend) {
  if (Status st = backend.start(spec); !st) return st;
  const MonoTime deadline =
      clock_.mono_now() +
      std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(spec.start_timeout_seconds));
  // Poll from 10 ms, backing off to 25 ms: the first request follows readiness by at most 25 ms
  // (llama-swap polls every 5 s). A probe is one connect or GET: cheap at 40 a second.
  auto delay = std::chrono::milliseconds(10);
  while (true) {
    Result<Readiness> ready = backend.check_ready(spec);
    if (!ready) {
      (void)backend.stop(spec);
      return ready.status();
    }
    if (*ready == Readiness::kReady) return Status::ok();
    if (clock_.mono_now() >= deadline) {
      (void)backend.stop(spec);
      return {ErrorCode::kTimeout, fmt::format("not ready within {:g} s (start_timeout_seconds)",
                                               spec.start_timeout_seconds)};
    }
    clock_.sleep_for(delay);
    delay = std::min(delay * 3 / 2, std::chrono::milliseconds(25));
  }
}

Status Controller::wake(const std::string& service, Reason reason, WakeReport* report) {
  WakeReport ignored;
  WakeReport& told = report != nullptr ? *report : ignored;
  told = {};
  std::string& woke = told.from;
  Slot* s = slot(service);
  auto view = registry_.service(service);
  if (s == nullptr || !view) return {ErrorCode::kNotFound, "unknown service: " + service};
  ServiceBackend* backend = backend_for(*view->spec);
  if (backend == nullptr) return no_backend(*view->spec);

  // A wake from a tier is timed whole, as the request that waits for it sees it (X-Siesta-Wake's
  // dur): the wait for the operation lock, a failed resume before a cold start, the state file's
  // save. The resume alone (a SIGCONT: well under a millisecond) is not what a client pays.
  const MonoTime began = clock_.mono_now();
  const auto woke_from_tier = [&](const std::string& tier) {
    const Seconds took = clock_.mono_now() - began;
    recorder_.service_woke_from_tier(service, tier, took);
    told.took = took;
    return took;
  };
  const std::uint64_t starts_seen = s->starts.load();
  s->waiting.fetch_add(1);
  std::unique_lock op(s->op);
  s->waiting.fetch_sub(1);
  // Served in error (its control plane was out): the backend may answer again before the
  // monitor's next look, and the service may have died meanwhile. Look now, so that a wake
  // starts what is down instead of calling it up.
  if (view->runtime.state == ServiceState::kError && view->runtime.serving_in_error) {
    if (reconcile_locked(service)) (void)save();
  }
  const WallTime now = clock_.wall_now();
  bool already_up = false;
  bool paused = false;
  std::string from;  // the light tier woken from, if any
  const std::size_t pending = s->light_pending.exchange(0);
  registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    if (pending != 0 && rt.tier == pending && pending <= spec.sleep_tiers.size()) {
      // Claimed, not done (its finish waits for this lock, then finds it cancelled): only what
      // lighter tiers did is undone.
      const TierAction a = spec.sleep_tiers[pending - 1].action;
      if (a == TierAction::kPause) rt.paused = false;
      if (a == TierAction::kVllmSleep) rt.engine_asleep = false;
      rt.tier = 0;
      rt.tier_pending = false;
      for (std::size_t i = pending - 1; i >= 1 && rt.tier == 0; --i) {
        const TierAction done = spec.sleep_tiers[i - 1].action;
        if ((done == TierAction::kPause && rt.paused) ||
            (done == TierAction::kVllmSleep && rt.engine_asleep)) {
          rt.tier = i;
        }
      }
      if (rt.state == ServiceState::kPaused && !light_asleep(rt)) {
        set_state(rt, ServiceState::kRunning, now);
      }
    }
    if (light_asleep(rt) &&
        (rt.state == ServiceState::kPaused || rt.state == ServiceState::kStopping)) {
      // Held paused or its engine asleep (a stop may be claimed, not begun): a resume wakes it.
      paused = true;
      from = tier_name(spec, rt);
      return;
    }
    // kStopping while we hold the op lock means a stop was claimed but has not begun: the
    // process is still up, so cancelling the stop is the fastest wake there is.
    if (rt.state == ServiceState::kError && rt.serving_in_error) {
      // Its control plane is out, not the service: nothing to start (the start would fail on
      // the same outage); the error stays until the backend answers again.
      if (is_use(reason)) rt.last_used = now;
      already_up = true;
      return;
    }
    if (rt.state == ServiceState::kRunning || rt.state == ServiceState::kStopping) {
      if (std::string_view in = tier_name(spec, rt); in != "awake") from = in;
      set_state(rt, ServiceState::kRunning, now);
      // A wake is a use, but a pre-warm or a schedule's start is none: the monitor's action can
      // come again once its start is done, and must not restart the timer counted from the last
      // real use.
      if (is_use(reason)) rt.last_used = now;
      rt.tier = 0;
      already_up = true;
    }
  });
  if (already_up) {
    s->failed_starts = 0;  // up after all (started outside siesta, or seen serving)
    // A light tier that left it serving (unload_models): nothing to undo.
    if (!from.empty()) (void)woke_from_tier(from);
    woke = from;
    return saved(Status::ok(), save());
  }
  if (paused) {
    if (Status st = resume_locked(*view->spec, *backend, from); st) {
      woke = from;
      st = saved(st, save());
      const Seconds took = woke_from_tier(from);
      spdlog::info("Service {} resumed from light sleep ({}) in {:.3f} s", service, from,
                   took.count());
      return st;
    }
  }
  // From here it takes a start (after a failed resume too: that is a cold start, not a warm one).
  woke = to_string(TierAction::kStop);
  // Someone else finished a start while we waited for the lock: share its outcome (a use, as
  // the start was, unless this wake is a pre-warm: the monitor's repeated pre-warm action while
  // the start runs must not restart the idle timer the policy counts from the last real use).
  if (s->starts.load() != starts_seen) {
    if (s->last_start && is_use(reason)) (void)touch_service(service);
    return s->last_start;
  }

  // A start that keeps failing is not run again at every request (a command that cannot start,
  // a broken image): after two in a row, requests wait out a growing backoff, answered at once.
  if (reason == Reason::kRequest && s->failed_starts >= 2) {
    const Seconds backoff = start_backoff(s->failed_starts);
    const Seconds since = clock_.mono_now() - s->last_failed_start;
    if (since < backoff) {
      auto failed = registry_.service(service);
      const std::string last = failed ? failed->runtime.last_error : std::string();
      const Seconds left = backoff - since;
      return Status(ErrorCode::kUnavailable,
                    fmt::format("not started: its last {} starts failed, the last {:.1f} s ago{}; "
                                "a request tries again in {:.1f} s (an admin wake, POST "
                                "/admin/services/{}/wake, at once)",
                                s->failed_starts, since.count(),
                                last.empty() ? "" : " (" + last + ")", left.count(), service))
          .with_retry_after(static_cast<int>(std::ceil(left.count())));
    }
  }

  const auto mark_starting = [&] {
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      if (rt.state != ServiceState::kStarting) set_state(rt, ServiceState::kStarting, now);
    });
  };
  // The GPU budget: room before the start (a service that declares its size, or is in an
  // exclusive group).
  if (gpu_.enabled()) {
    const ServiceSpec& spec = *view->spec;
    bool grouped = false;
    for (const auto& g : gpu_.exclusive) {
      grouped = grouped || std::find(g.begin(), g.end(), service) != g.end();
    }
    std::optional<double> mib = service_gpu_mib(spec, view->runtime);
    if (mib && spec.gpu_memory_measured) {
      // Measured past a device's budget (the budget is too small, or the peak caught something
      // else): its wake makes room for the whole budget rather than being refused for good.
      for (int d : gpu_devices_of(gpu_, spec)) {
        const auto dev = std::find_if(gpu_.devices.begin(), gpu_.devices.end(),
                                      [d](const GpuDevice& g) { return g.id == d; });
        if (dev == gpu_.devices.end() || *mib <= dev->memory_mib) continue;
        if (s->warned_measured_mib != *mib) {
          spdlog::warn(
              "Service {}: measured at {:g} MiB of GPU memory, more than GPU {}'s budget of {:g} "
              "MiB: its wakes make room for the whole budget. Raise gpu.devices[].memory_mib if "
              "the card has the room, or give its gpu_memory_mib as a number",
              service, *mib, d, dev->memory_mib);
          s->warned_measured_mib = *mib;
        }
        mib = dev->memory_mib;
      }
    }
    if (mib || grouped) {
      // Starting (a holder) before the next request in the queue plans: else it sees this
      // room as free too, and both start (over the budget).
      Status room = make_room({GpuHolder::Kind::kService, service, service, mib.value_or(0),
                               gpu_devices_of(gpu_, spec)},
                              mark_starting);
      if (!room) {
        s->last_start = room;
        s->starts.fetch_add(1);
        // A start the monitor asked for (desired on, a schedule, a pre-warm) is retried once per
        // check interval, as a failed start is: not at the next pass, at once.
        if (reason != Reason::kRequest && reason != Reason::kManual) {
          fail_service(service, ServiceOperation::kStart, room, /*schedule_retry=*/true);
        }
        return room;
      }
    }
  }
  mark_starting();
  spdlog::info("Waking service {} ({})...", service, to_string(reason));
  const MonoTime t0 = clock_.mono_now();
  Status st = start_and_wait(*view->spec, *backend);
  const Seconds took = clock_.mono_now() - t0;
  s->last_start = st;
  s->starts.fetch_add(1);
  // Counted until it proves itself (siesta stops it, or finds it up): a start that passed its
  // readiness probe may still be a failed start, found when its process exits (another process
  // answered the probe on its port), and those must add up too.
  if (!st) {
    ++s->failed_starts;
    s->last_failed_start = clock_.mono_now();
  }
  if (st) {
    const WallTime ready_at = clock_.wall_now();
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_awake(rt, ready_at);
      // A pre-warm is no use: the adaptive policy counts its keep-alive from the last one; nor
      // is a schedule's start: at the window's end the normal rules apply as if it had not been.
      if (is_use(reason) || !rt.last_used) rt.last_used = ready_at;
      rt.cold_start_seconds = took.count();
      rt.start_seconds += took.count();  // energy.h: spent at its idle power
      rt.retry_at.reset();
      clear_start_failure(rt);
    });
    recorder_.service_woke(service, reason, took);
    spdlog::info("Service {} is ready after {:.3f} s", service, took.count());
    read_served_models(service);
  } else {
    fail_service(service, ServiceOperation::kStart, st, /*schedule_retry=*/true);
  }
  st = saved(st, save());
  if (s->last_start) (void)woke_from_tier(to_string(TierAction::kStop));
  return st;
}

void Controller::read_served_models(const std::string& service) {
  ModelProvider* provider = provider_of(service);
  auto view = registry_.service(service);
  // Ollama loads a model on its first request: a fresh server holds none, nothing to read.
  if (provider == nullptr || !view || can_unload_models(view->spec->model_api)) return;
  Result<std::vector<LoadedModel>> loaded = provider->loaded();
  if (!loaded) {
    // The next reconcile reads them; until then they show as they were.
    spdlog::warn("Service {}: cannot list its models after its wake: {}", service,
                 loaded.status().message());
    return;
  }
  models_.sync_loaded(service, *loaded);  // saved with the wake
}

EngineSleep* Controller::engine_sleep_of(const std::string& service) {
  ModelProvider* provider = provider_of(service);
  return provider == nullptr ? nullptr : provider->engine_sleep();
}

Status Controller::wake_engine(const ServiceSpec& spec) {
  EngineSleep* engine = engine_sleep_of(spec.name);
  if (engine == nullptr) {
    return {ErrorCode::kUnavailable, "service " + spec.name + " has no engine sleep mode"};
  }
  // /wake_up and the polls after it share start_timeout_seconds: a wake that fails takes at most
  // that before the cold start (the proxy's backstop counts on it).
  const MonoTime deadline =
      clock_.mono_now() +
      std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(spec.start_timeout_seconds));
  if (Status st = engine->wake_up(spec.start_timeout_seconds); !st) return st;
  // /wake_up may answer before the engine is awake (vLLM's own comment): no request goes through
  // until it says it is not sleeping.
  auto delay = std::chrono::milliseconds(2);
  while (true) {
    Result<bool> sleeping = engine->is_sleeping();
    if (!sleeping) return sleeping.status();
    if (!*sleeping) return Status::ok();
    if (clock_.mono_now() >= deadline) {
      return {ErrorCode::kTimeout,
              fmt::format("the engine still reports is_sleeping: true {:g} s after /wake_up "
                          "(start_timeout_seconds)",
                          spec.start_timeout_seconds)};
    }
    clock_.sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(25));
  }
}

Status Controller::resume_locked(const ServiceSpec& spec, ServiceBackend& backend,
                                 const std::string& from) {
  const MonoTime t0 = clock_.mono_now();
  const ServiceRuntime before = registry_.service(spec.name)->runtime;
  Status st = before.paused ? backend.resume(spec) : Status::ok();
  if (st && before.engine_asleep) st = wake_engine(spec);
  const Seconds took = clock_.mono_now() - t0;
  const WallTime now = clock_.wall_now();
  if (st) {
    registry_.update_service(spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_awake(rt, now);
      rt.last_used = now;
    });
    spdlog::debug("Service {}: its resume from {} itself took {:.6f} s", spec.name, from,
                  took.count());
    if (before.engine_asleep) read_served_models(spec.name);  // its weights are back
    return st;
  }
  // It cannot be thawed or its engine woken: the next deeper state is stopped, from which a
  // cold start wakes it.
  recorder_.service_failed(spec.name, ServiceOperation::kResume);
  spdlog::error("Service {}: resume from {} failed: {}; stopping it for a cold start", spec.name,
                from, st.message());
  if (Status stopped = backend.stop(spec); !stopped) {
    spdlog::error("Service {}: stop failed: {}", spec.name, stopped.message());
  }
  registry_.update_service(spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
    set_stopped(rt, now);
    set_error(rt, ServiceErrorKind::kOperation, st.code(),
              failure_text(ServiceOperation::kResume, st), now);
    rt.failed_operation = ServiceOperation::kResume;  // the operation last_error is about
  });
  mark_models_unloaded(spec.name, Reason::kServiceSleep);
  return st;
}

bool Controller::claim_light_sleep(const std::string& service, std::size_t tier) {
  const WallTime now = clock_.wall_now();
  const Settings settings = registry_.settings();
  bool claimed = false;
  Seconds idle{0};
  std::string action;
  Slot* s = slot(service);
  registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    if (tier == 0 || tier > spec.sleep_tiers.size() || tier_due(settings, spec, rt, now) != tier ||
        spec.sleep_tiers[tier - 1].action == TierAction::kStop) {
      return;
    }
    idle = now - rt.last_used.value_or(rt.state_since);
    // The idle time runs on from the same instant: a pause changes state_since.
    if (!rt.last_used) rt.last_used = rt.state_since;
    const TierAction a = spec.sleep_tiers[tier - 1].action;
    if (a == TierAction::kPause) {
      set_state(rt, ServiceState::kPaused, now);
      rt.paused = true;
    } else if (a == TierAction::kVllmSleep) {
      // Out of service from now: a request waits for the wake, which wakes the engine.
      set_state(rt, ServiceState::kPaused, now);
      rt.engine_asleep = true;
    }
    rt.tier = tier;
    rt.tier_pending = true;  // shown once finish_light_sleep has done it
    action = to_string(a);
    claimed = true;
    // Before the registry lock is let go: a wake from here on sees the tier as not done.
    if (s != nullptr) s->light_pending.store(tier);
  });
  if (claimed) {
    spdlog::info("Service {} has been idle for {} minutes: light sleep ({})...", service,
                 minutes_text(idle), action);
  }
  return claimed;
}

void Controller::finish_light_sleep(const std::string& service, std::size_t tier) {
  Slot* s = slot(service);
  if (s == nullptr) return;
  std::lock_guard op(s->op);
  s->light_pending.store(0);  // from here a wake waits for the tier to be done, then undoes it
  auto view = registry_.service(service);
  const bool in_range = view && tier >= 1 && tier <= view->spec->sleep_tiers.size();
  const bool holds = in_range && holds_service(view->spec->sleep_tiers[tier - 1].action);
  if (!in_range || view->runtime.tier != tier ||
      (holds && view->runtime.state != ServiceState::kPaused)) {
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      if (rt.tier == tier) rt.tier_pending = false;
    });
    spdlog::info("Light sleep of service {} cancelled: it was used again", service);
    return;
  }
  const SleepTier& entered = view->spec->sleep_tiers[tier - 1];
  const TierAction action = entered.action;
  ServiceBackend* backend = backend_for(*view->spec);
  Status st = backend == nullptr             ? no_backend(*view->spec)
              : action == TierAction::kPause ? backend->pause(*view->spec)
              : action == TierAction::kVllmSleep
                  ? sleep_engine_for_tier(*view->spec, *backend, entered.level)
                  : unload_models_for_tier(*view->spec, *backend);
  if (st) {
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      if (rt.tier == tier) rt.tier_pending = false;  // done: from now on it is the tier shown
    });
    recorder_.service_tier_entered(service, to_string(action));
    spdlog::info("Service {} is in light sleep: {}", service, to_string(action));
    // Its weights left the GPU: its models are not loaded until the wake.
    if (action == TierAction::kVllmSleep) mark_models_unloaded(service, Reason::kSleepTier);
  } else {
    // It keeps serving (or stays in the lighter tier that holds it, a pause), and the tier counts
    // as passed: the next comes at its time rather than this one being retried in a loop.
    const WallTime now = clock_.wall_now();
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      rt.tier_pending = false;
      if (action == TierAction::kPause) rt.paused = false;
      if (action == TierAction::kVllmSleep) rt.engine_asleep = false;
      if (holds && !light_asleep(rt)) set_state(rt, ServiceState::kRunning, now);
      set_error(rt, ServiceErrorKind::kTier, st.code(),
                std::string(to_string(action)) + " failed: " + st.message(), now);
      // No sleep routes (EngineSleep: kNotFound): this error says so, and the next reconcile's
      // check finds the same 404 without replacing it.
      if (action == TierAction::kVllmSleep && st.code() == ErrorCode::kNotFound) {
        rt.engine_sleep_unavailable = true;
      }
    });
    // A failed pause or engine sleep is a failed pause, as a failed unpause or /wake_up is a
    // failed resume; a failed unload_models tier is counted per model
    // (siesta_model_unload_failures_total).
    if (holds) recorder_.service_failed(service, ServiceOperation::kPause);
    spdlog::error("Service {}: light sleep ({}) failed: {}", service, to_string(action),
                  st.message());
    // The failure may be news of the service itself (its process is gone): looked at now, not
    // at the next check.
    (void)reconcile_locked(service);
  }
  (void)save();
}

Status Controller::sleep_engine_for_tier(const ServiceSpec& spec, ServiceBackend& backend,
                                         int level) {
  EngineSleep* engine = engine_sleep_of(spec.name);
  if (engine == nullptr) {
    return {ErrorCode::kUnavailable, "service " + spec.name + " has no engine sleep mode"};
  }
  const bool paused = registry_.service(spec.name)->runtime.paused;
  if (paused) {
    // A frozen server answers nothing: thawed for the sleep, frozen again after (it stays out
    // of service: its engine is asleep, or the pause still holds it).
    if (Status st = backend.resume(spec); !st) return st;
    registry_.update_service(spec.name,
                             [](const ServiceSpec&, ServiceRuntime& rt) { rt.paused = false; });
  }
  Status st = engine->sleep(level);
  if (paused) {
    if (Status again = backend.pause(spec); !again) {
      spdlog::error("Service {}: pausing it again after its engine sleep failed: {}", spec.name,
                    again.message());
    } else {
      registry_.update_service(spec.name,
                               [](const ServiceSpec&, ServiceRuntime& rt) { rt.paused = true; });
    }
  }
  return st;
}

Status Controller::unload_models_for_tier(const ServiceSpec& spec, ServiceBackend& backend) {
  const bool paused = registry_.service(spec.name)->runtime.paused;
  if (paused) {
    // A frozen model server answers nothing: thawed for the unloads, frozen again after.
    if (Status st = backend.resume(spec); !st) return st;
    registry_.update_service(spec.name,
                             [](const ServiceSpec&, ServiceRuntime& rt) { rt.paused = false; });
  }
  Status first = Status::ok();
  for (const auto& key : registry_.model_keys()) {
    if (key.service != spec.name) continue;
    auto m = registry_.model(key);
    if (!m || !m->runtime.loaded) continue;
    if (Status st = models_.unload_now(key, Reason::kSleepTier); !st && first) first = st;
  }
  if (paused) {
    Status st = backend.pause(spec);
    if (!st) {
      // Left running: it serves again, at this tier.
      registry_.update_service(spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
        set_state(rt, ServiceState::kRunning, clock_.wall_now());
      });
      return st;
    }
    registry_.update_service(spec.name,
                             [](const ServiceSpec&, ServiceRuntime& rt) { rt.paused = true; });
  }
  return first;
}

bool Controller::claim_sleep(const std::string& service) {
  const WallTime now = clock_.wall_now();
  const Settings settings = registry_.settings();
  bool claimed = false;
  Seconds idle{0};
  registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    if (sleep_due(settings, spec, rt, now)) {
      idle = now - rt.last_used.value_or(rt.state_since);
      set_state(rt, ServiceState::kStopping, now);
      claimed = true;
    }
  });
  if (claimed) {
    spdlog::info("Service {} has been idle for {} minutes, stopping...", service,
                 minutes_text(idle));
  }
  return claimed;
}

void Controller::finish_sleep(const std::string& service) {
  Slot* s = slot(service);
  if (s == nullptr) return;
  std::lock_guard op(s->op);
  auto view = registry_.service(service);
  if (!view || view->runtime.state != ServiceState::kStopping) {
    spdlog::info("Stop of idle service {} cancelled: it was used again", service);
    return;
  }
  if (stop_locked(service, Reason::kIdle))
    spdlog::info("Successfully stopped idle service {}", service);
}

Status Controller::sleep(const std::string& service) {
  Slot* s = slot(service);
  auto view = registry_.service(service);
  if (s == nullptr || !view) return {ErrorCode::kNotFound, "unknown service: " + service};
  if (view->runtime.desired == Desired::kOn) {
    return {ErrorCode::kConflict, "service " + service +
                                      " has desired \"on\"; set desired \"off\" before putting it "
                                      "to sleep"};
  }
  std::lock_guard op(s->op);
  view = registry_.service(service);
  if (view->runtime.state == ServiceState::kStopped) return Status::ok();
  registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    set_state(rt, ServiceState::kStopping, clock_.wall_now());
  });
  spdlog::info("Stopping service {} (manual)...", service);
  Status st = stop_locked(service, Reason::kManual);
  if (st) spdlog::info("Successfully stopped service {}", service);
  return st;
}

Status Controller::stop_locked(const std::string& service, Reason reason) {
  auto view = registry_.service(service);
  unload_models_before_stop(service);
  ServiceBackend* backend = backend_for(*view->spec);
  const double memory = backend != nullptr ? backend->memory_bytes(*view->spec).value_or(0.0) : 0.0;
  Status st = backend != nullptr ? backend->stop(*view->spec) : no_backend(*view->spec);
  if (st && memory > 0) recorder_.service_memory_freed(service, memory);
  if (st) {
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_stopped(rt, clock_.wall_now());
    });
    if (Slot* s = slot(service)) s->failed_starts = 0;  // it ran until siesta stopped it
    recorder_.service_slept(service, reason);
    if (reason == Reason::kIdle)
      recorder_.service_tier_entered(service, to_string(TierAction::kStop));
    mark_models_unloaded(service, Reason::kServiceSleep);
  } else {
    fail_service(service, ServiceOperation::kStop, st, /*schedule_retry=*/false);
  }
  return saved(st, save());
}

// A model server's models are unloaded first, so VRAM is freed in order even if the stop itself
// is slow or fails.
void Controller::unload_models_before_stop(const std::string& service) {
  ModelProvider* provider = provider_of(service);
  if (provider == nullptr) return;
  // A server that holds its model as long as it runs frees it by stopping.
  if (auto view = registry_.service(service); view && !can_unload_models(view->spec->model_api)) {
    return;
  }
  // A paused model server answers nothing; its models go with the stop.
  if (auto view = registry_.service(service); view && view->runtime.paused) return;
  for (const auto& key : registry_.model_keys()) {
    if (key.service != service) continue;
    auto m = registry_.model(key);
    if (!m || !m->runtime.loaded) continue;
    if (Status st = provider->unload(key.name); !st) {
      spdlog::warn("Model {}: unload before stopping {} failed: {}", key.name, service,
                   st.message());
    }
  }
}

Status Controller::touch_service(const std::string& service) {
  const WallTime now = clock_.wall_now();
  bool known = registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.last_used = now;
    if (rt.state == ServiceState::kRunning) rt.tier = 0;  // a paused one stays so until woken
  });
  if (!known) return {ErrorCode::kNotFound, "unknown service: " + service};
  return saved(Status::ok(), save());
}

Result<ServiceState> Controller::begin_request(const std::string& service, bool use) {
  ServiceState state = ServiceState::kStopped;
  const char* from = nullptr;
  bool gap = false;  // a gap joined the adaptive policy's history
  const WallTime now = clock_.wall_now();
  bool known =
      registry_.update_service_quiet(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
        // The idle gap this use ends: the adaptive policy's history.
        if (use && rt.in_flight == 0) gap = record_idle_gap(rt.idle_gaps, rt.last_used, now);
        ++rt.in_flight;
        // In error through a control-plane outage while it ran: the proxy forwards as to a
        // running one (Controller::fail_service).
        state = rt.state == ServiceState::kError && rt.serving_in_error ? ServiceState::kRunning
                                                                        : rt.state;
        // A light tier that left it serving (unload_models) ends with this use; a paused one
        // ends in the wake.
        // (A tier that failed left it awake: nothing is woken from it.)
        if (use && rt.state == ServiceState::kRunning && rt.tier > 0) {
          if (std::string_view(tier_name(spec, rt)) != "awake") from = tier_name(spec, rt);
          rt.tier = 0;
        }
      });
  if (!known) return Status{ErrorCode::kNotFound, "unknown service: " + service};
  // Saved by the monitor's next pass, not here: a request does not wait for the disk.
  if (gap) kept_unsaved_.store(true);
  if (from != nullptr) recorder_.service_woke_from_tier(service, from, Seconds(0));
  return state;
}

void Controller::end_request(const std::string& service, bool use) {
  const WallTime now = clock_.wall_now();
  const Settings settings = registry_.settings();
  std::optional<WallTime> deadline;
  bool idle = false;
  registry_.update_service_quiet(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    rt.in_flight = std::max(0, rt.in_flight - 1);
    idle = rt.in_flight == 0;
    if (!use) return;
    rt.last_used = now;
    if (idle) deadline = first_tier_at(settings, spec, rt, now);
  });
  // Its last use is kept in the state file from the monitor's next pass (a new user's trial: it
  // was written only at the next state change, so a crash lost every use since).
  if (use) kept_unsaved_.store(true);
  if (idle && !use) {
    // A probe is no use, but it held back a sleep that may be due now.
    registry_.changes().notify_if_before(now);
    return;
  }
  // The service now has a sleep deadline; wake the monitor only if it would sleep past it.
  if (deadline) registry_.changes().notify_if_before(*deadline);
}

void Controller::count_upgraded(const std::string& service, bool open) {
  registry_.update_service_quiet(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.upgraded = std::max(0, rt.upgraded + (open ? 1 : -1));
  });
}

ModelProvider* Controller::provider_of(const std::string& provider_service) {
  return providers_ ? providers_(provider_service) : nullptr;
}

// Model lifecycle: ModelLifecycle does it (model_lifecycle.h).
void Controller::mark_models_unloaded(const std::string& provider_service, Reason reason,
                                      const char* what) {
  models_.mark_models_unloaded(provider_service, reason, what);
}
KeepAlivePolicy Controller::keep_alive_policy(const ModelKey& model) {
  return models_.keep_alive_policy(model);
}
std::optional<std::uint64_t> Controller::begin_model_request(const ModelKey& model) {
  bool gap = false;
  auto ticket = models_.begin_model_request(model, gap);
  // Saved by the monitor's next pass, as a service's gap (begin_request).
  if (gap) kept_unsaved_.store(true);
  return ticket;
}
bool Controller::model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                                std::optional<std::uint64_t> ticket) {
  return models_.model_accepted(model, keep_alive, ticket);
}
void Controller::model_load_measured(const ModelKey& model, Seconds took) {
  models_.model_load_measured(model, took);
}
void Controller::end_model_request(const ModelKey& model, bool accepted) {
  models_.end_model_request(model, accepted);
  kept_unsaved_.store(true);  // its use (learned, loaded, last used): saved at the next pass
}
Status Controller::room_for_model(const ModelKey& model, bool in_flight, bool* counted) {
  auto m = registry_.model(model);
  if (!m || !gpu_.enabled()) return Status::ok();
  // Loaded: no room to make; being unloaded: loaded again, so room first. An admin load of a
  // loaded model holds it from this look on, under the same lock as an eviction's claim (else an
  // eviction for room could unload it between this look and the load, which loads it again
  // without room: a new user's re-trial, the budget over).
  const bool admin_load = !in_flight && counted != nullptr;
  bool loaded = false;
  registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
    loaded = rt.loaded && !rt.unloading;
    if (loaded && admin_load) ++rt.admin_loads;
  });
  if (loaded) {
    if (admin_load) *counted = true;
    return Status::ok();
  }
  // Being loaded by another request or an admin load, which made its room: this request waits for
  // that load at its server, not in the queue (queued, it held the room a request ahead of it
  // waited for: a new user's re-trial, an admin load then requests for two models at once).
  if (m->runtime.load_room && !m->runtime.unloading &&
      (m->runtime.admin_loads > 0 || m->runtime.in_flight > (in_flight ? 1 : 0))) {
    return Status::ok();
  }
  auto server = registry_.service(m->spec->provider);
  if (!server) return Status::ok();
  const ServiceSpec& sspec = *server->spec;
  const std::optional<double> mib = model_gpu_mib(*m->spec, m->runtime);
  if (!mib || !in_gpu_budget(sspec)) return Status::ok();
  return make_room(
      {GpuHolder::Kind::kModel, model.name, sspec.name, *mib, gpu_devices_of(gpu_, sspec)},
      [&] {
        // It holds its room from now on, before the next in the queue plans.
        registry_.update_model(model, [&](const ModelSpec&, ModelRuntime& rt) {
          rt.load_room = true;
          if (!in_flight) ++rt.admin_loads;
        });
        if (!in_flight && counted != nullptr) *counted = true;
      },
      in_flight);
}

Status Controller::load_model(const ModelKey& model) {
  // A sized model of a server in the budget makes room first (its server's own size counts
  // once the server is up; the load itself wakes it if needed).
  bool counted = false;
  if (Status st = room_for_model(model, false, &counted); !st) return st;
  Status st = models_.load_model(model);
  if (counted) {  // loaded (its size counts as such) or failed: the room is no longer held for it
    registry_.update_model(model, [](const ModelSpec&, ModelRuntime& rt) {
      rt.admin_loads = std::max(0, rt.admin_loads - 1);
      if (rt.in_flight == 0 && rt.admin_loads == 0) rt.load_room = false;
    });
  }
  return st;
}

Status Controller::make_room_for_model(const ModelKey& model) {
  // The request is in flight on the model already: the budget counts it from now on (gpu_holders),
  // and its own plan leaves it out.
  return room_for_model(model, true);
}
Status Controller::unload_model(const ModelKey& model) { return models_.unload_model(model); }
Status Controller::unload_models_of(const std::string& provider_service) {
  return models_.unload_models_of(provider_service);
}
Status Controller::touch_model(const ModelKey& model) { return models_.touch_model(model); }
bool Controller::claim_unload(const ModelKey& model) { return models_.claim_unload(model); }
void Controller::finish_unload(const ModelKey& model, Reason reason) {
  models_.finish_unload(model, reason);
}

Status Controller::set_idle_sleep(const std::string& service, bool enabled) {
  bool known = registry_.update_service(
      service, [&](const ServiceSpec&, ServiceRuntime& rt) { rt.idle_sleep_enabled = enabled; });
  if (!known) return {ErrorCode::kNotFound, "unknown service: " + service};
  spdlog::info("Idle sleep {} for service {}", enabled ? "enabled" : "disabled", service);
  return saved(Status::ok(), save());
}

Status Controller::set_desired(const std::string& service, Desired desired) {
  bool known = registry_.update_service(
      service, [&](const ServiceSpec&, ServiceRuntime& rt) { rt.desired = desired; });
  if (!known) return {ErrorCode::kNotFound, "unknown service: " + service};
  spdlog::info("Service {} desired \"{}\"", service, to_string(desired));
  return saved(Status::ok(), save());
}

Status Controller::update_settings(const std::function<void(Settings&)>& change) {
  Settings after;
  registry_.update_settings([&](Settings& s) {
    change(s);
    after = s;
  });
  spdlog::info("Settings changed: {}", settings_text(after));
  return saved(Status::ok(), save());
}

Status Controller::add_service(const ServiceSpec& spec, bool idle_sleep_enabled, Desired desired) {
  ServiceRuntime rt;
  rt.idle_sleep_enabled = idle_sleep_enabled;
  rt.desired = desired;
  rt.state_since = clock_.wall_now();
  {
    std::lock_guard lock(slots_mu_);
    if (slots_.count(spec.name) != 0 || !registry_.add_service(spec, rt)) {
      return {ErrorCode::kConflict, "service " + spec.name + " already exists"};
    }
    slots_[spec.name] = std::make_unique<Slot>();
  }
  recorder_.service_added(spec.name);
  reconcile_service(spec.name, /*wait_for_op=*/true);
  return saved(Status::ok(), save());
}

Status Controller::update_spec(const ServiceSpec& spec, std::optional<bool> idle_sleep_enabled) {
  // No operation lock: a start or stop in progress keeps the spec it began with (a shared
  // copy), and the watch thread that calls this must not wait for one.
  if (!registry_.replace_spec(spec)) {
    return {ErrorCode::kNotFound, "unknown service: " + spec.name};
  }
  if (idle_sleep_enabled) {
    registry_.update_service(spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      rt.idle_sleep_enabled = *idle_sleep_enabled;
    });
  }
  return saved(Status::ok(), save());
}

void Controller::set_config_error(const std::string& service, const std::string& error) {
  const WallTime now = clock_.wall_now();
  registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
    if (rt.config_error == error) return;
    rt.config_error = error;
    if (!error.empty()) {
      set_error(rt, ServiceErrorKind::kConfig, ErrorCode::kInvalidArgument, error, now);
    }
  });
}

void Controller::reconcile() {
  // One save for the whole pass: saving per changed service is quadratic with many services.
  bool changed = false;
  for (const auto& name : registry_.service_names()) {
    changed = reconcile_service(name, false) || changed;
  }
  // The adaptive policy's history grows at each use after a gap, between state changes: kept in
  // the state file at each pass (a new user's trial: a restart lost the gaps since the last
  // start or stop).
  if (changed || kept_unsaved_.load()) (void)save();
  reconcile_models();
  warn_gpu_over_budget();
}

void Controller::refresh(const std::string& service) {
  if (reconcile_service(service, true)) (void)save();
}

bool Controller::reconcile_service(const std::string& service, bool wait_for_op) {
  Slot* s = slot(service);
  if (s == nullptr) return false;
  std::unique_lock op(s->op, std::defer_lock);
  if (wait_for_op) {
    op.lock();
  } else if (!op.try_lock()) {
    return false;  // a start or stop is in progress; it sets the state itself
  }
  return reconcile_locked(service);
}

bool Controller::reconcile_locked(const std::string& service) {
  auto view = registry_.service(service);
  if (!view) return false;
  ServiceBackend* backend = backend_for(*view->spec);
  Result<Inspection> seen = backend != nullptr ? backend->inspect(*view->spec)
                                               : Result<Inspection>(no_backend(*view->spec));
  const WallTime now = clock_.wall_now();
  const ServiceState before = view->runtime.state;
  // The first inspection since start-up: a last use restored from the state file holds for a
  // service found running (left by an earlier siesta); from then on, one seen running again was
  // started outside siesta and its timer starts.
  const bool restored_use = view->runtime.last_used_restored && view->runtime.last_used &&
                            *view->runtime.last_used <= now;
  if (view->runtime.last_used_restored) {
    registry_.update_service(
        service, [](const ServiceSpec&, ServiceRuntime& rt) { rt.last_used_restored = false; });
  }
  if (!seen) {
    // A new failure, or another kind of cause: recorded (the same one, however the backend
    // words it this time, is not counted again).
    if (before != ServiceState::kError ||
        view->runtime.failed_operation != ServiceOperation::kInspect ||
        view->runtime.last_error_kind != ServiceErrorKind::kOperation ||
        view->runtime.last_error_code != seen.status().code()) {
      fail_service(service, ServiceOperation::kInspect, seen.status(), /*schedule_retry=*/false);
      return true;
    }
    // The same failure in other words: not counted again, but last_error says what the backend
    // says now (the cause may have moved on, e.g. from "not in a swarm" to "does not exist").
    const std::string text = failure_text(ServiceOperation::kInspect, seen.status());
    if (view->runtime.last_error == text) return false;
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_error(rt, rt.last_error_kind, rt.last_error_code, text, rt.last_error_at.value_or(now));
    });
    return true;
  }
  if (seen->running && seen->paused && before == ServiceState::kPaused) {
    return false;  // in its pause tier, as siesta left it
  } else if (seen->running && !seen->paused && before == ServiceState::kPaused &&
             view->runtime.engine_asleep) {
    if (!view->runtime.paused) return false;  // its engine asleep, as siesta left it
    // Thawed outside siesta: its engine is still asleep, so it stays out of service.
    registry_.update_service(service,
                             [&](const ServiceSpec&, ServiceRuntime& rt) { rt.paused = false; });
    return true;
  } else if (seen->running && seen->paused) {
    // Paused outside siesta, or left paused by an earlier siesta: not serving, so a request
    // must resume it first, and it is not "running" (nor dead). It counts as in its pause tier
    // when it has one; the state file's tier (a deeper one) is kept.
    registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
      if (!rt.last_used) rt.last_used = now;
      set_state(rt, ServiceState::kPaused, now);
      rt.paused = true;
      if (rt.tier == 0) {
        for (std::size_t i = 0; i < spec.sleep_tiers.size(); ++i) {
          if (spec.sleep_tiers[i].action == TierAction::kPause) rt.tier = i + 1;
        }
      }
    });
    spdlog::info("Service {} is paused ({}); a request resumes it", service, seen->detail);
    return true;
  } else if (seen->running && before == ServiceState::kPaused) {
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_awake(rt, now);
      rt.last_used = now;
    });
    spdlog::info("Service {} was resumed outside siesta; idle timer started", service);
    return true;
  } else if (seen->running && before != ServiceState::kRunning &&
             before != ServiceState::kStopping) {
    registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
      set_state(rt, ServiceState::kRunning, now);
      if (!restored_use) rt.last_used = now;  // its idle timer starts when siesta first sees it up
      rt.paused = false;
      // A tier restored from the state file holds while nothing contradicts it (its models
      // stay unloaded); one that paused it does not: it runs.
      for (std::size_t i = 0; i < std::min(rt.tier, spec.sleep_tiers.size()); ++i) {
        if (spec.sleep_tiers[i].action == TierAction::kPause) rt.tier = 0;
      }
    });
    if (restored_use) {
      spdlog::info("Service {} is running (left by an earlier siesta); idle since its last use",
                   service);
    } else if (before == ServiceState::kError) {
      spdlog::info("Service {} is running; idle timer started", service);
    } else {
      spdlog::info("Service {} is running (started outside siesta); idle timer started", service);
    }
    return true;
  } else if (!seen->running && before == ServiceState::kError &&
             view->runtime.failed_operation != ServiceOperation::kStart) {
    // The backend answers again (e.g. the engine is back) and the service is down: stopped,
    // ready to be woken. A failed start stays an error until the next wake retries it.
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_state(rt, ServiceState::kStopped, now);
    });
    spdlog::info("Service {} is stopped ({}); its backend answers again", service, seen->detail);
    return true;
  } else if (!seen->running && !seen->start_failure.empty() &&
             (before == ServiceState::kRunning || before == ServiceState::kPaused)) {
    // Its own process could not serve (e.g. its port was taken by another process, which
    // answered the readiness probe and the requests meanwhile): a failed start, not a stop.
    registry_.update_service(service,
                             [&](const ServiceSpec&, ServiceRuntime& rt) { set_stopped(rt, now); });
    // A failed start for the backoff too (it passed its readiness probe: counted only now).
    if (Slot* s = slot(service)) {
      ++s->failed_starts;
      s->last_failed_start = clock_.mono_now();
    }
    // It was taken for running until now: what siesta forwarded meanwhile went to the other.
    fail_service(service, ServiceOperation::kStart,
                 {ErrorCode::kFailed, seen->start_failure +
                                          "; siesta took the service for running until now: "
                                          "whatever it forwarded meanwhile reached that process"},
                 /*schedule_retry=*/true);
    mark_models_unloaded(service, Reason::kExternal);
    return true;
  } else if (!seen->running &&
             (before == ServiceState::kRunning || before == ServiceState::kPaused)) {
    registry_.update_service(service,
                             [&](const ServiceSpec&, ServiceRuntime& rt) { set_stopped(rt, now); });
    spdlog::warn("Service {} is no longer running ({})", service,
                 seen->detail.empty() ? "stopped outside siesta" : seen->detail);
    mark_models_unloaded(service, Reason::kExternal);
    return true;
  }
  return false;
}

void Controller::reconcile_models() {
  if (!providers_) return;
  for (const auto& service : registry_.service_names()) {
    ModelProvider* provider = providers_(service);
    Slot* s = slot(service);
    if (provider == nullptr || s == nullptr) continue;
    // Under the service's op lock, or not now: a wake, a light sleep or a stop in progress would
    // be undone by what is read here (an engine still saying is_sleeping: true as its wake ends
    // was marked asleep again; a model list read while the engine went to sleep marked its
    // models loaded). The next reconcile reads it.
    std::unique_lock op(s->op, std::try_to_lock);
    if (!op.owns_lock()) continue;
    auto view = registry_.service(service);
    if (!view || view->runtime.state != ServiceState::kRunning) continue;
    if (check_engine_sleep(service, *provider)) {  // asleep: it serves no model now
      // Requests forwarded before siesta knew (put to sleep outside siesta) wait inside the
      // engine for a wake_up: it comes now, not with the next request.
      auto asleep = registry_.service(service);
      if (asleep && asleep->runtime.engine_asleep && asleep->runtime.in_flight > 0) {
        op.unlock();
        spdlog::info("Service {}: {} request(s) in flight reached its sleeping engine; waking it",
                     service, asleep->runtime.in_flight);
        (void)wake(service, Reason::kRequest);
      }
      continue;
    }
    Result<std::vector<LoadedModel>> loaded = provider->loaded();
    if (!loaded) {
      spdlog::warn("Service {}: cannot list loaded models: {}", service, loaded.status().message());
      continue;
    }
    if (models_.sync_loaded(service, *loaded)) (void)save();
  }
}

bool Controller::check_engine_sleep(const std::string& service, ModelProvider& provider) {
  EngineSleep* engine = provider.engine_sleep();
  if (engine == nullptr) return false;
  auto view = registry_.service(service);
  if (!view) return false;
  Result<bool> sleeping = engine->is_sleeping();
  const WallTime now = clock_.wall_now();
  if (!sleeping) {
    // Without dev mode the sleep routes are absent: the vllm_sleep tier cannot work. Said once
    // per cause, in the log and in idle-status (last_error): a failed sleep that said it first
    // ("vllm_sleep failed: ... 404 ...", the more specific) is not overwritten by this.
    if (sleeping.status().code() != ErrorCode::kNotFound) return false;
    const bool needed =
        std::any_of(view->spec->sleep_tiers.begin(), view->spec->sleep_tiers.end(),
                    [](const SleepTier& t) { return t.action == TierAction::kVllmSleep; });
    const std::string text = "vllm_sleep unavailable: " + sleeping.status().message();
    bool first = false;
    registry_.update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      first = !rt.engine_sleep_unavailable;
      rt.engine_sleep_unavailable = true;
      if (first && needed) {
        set_error(rt, ServiceErrorKind::kVllmSleepUnavailable, ErrorCode::kNotFound, text, now);
      }
    });
    if (first && needed) {
      spdlog::error("Service {}: {}", service, text);
      (void)save();
    }
    return false;
  }
  if (view->runtime.engine_sleep_unavailable) {
    registry_.update_service(service, [](const ServiceSpec&, ServiceRuntime& rt) {
      rt.engine_sleep_unavailable = false;
      // Its error said the routes are absent (the check's, or a /sleep's 404): no longer so.
      const bool said_absent =
          rt.last_error_kind == ServiceErrorKind::kVllmSleepUnavailable ||
          (rt.last_error_kind == ServiceErrorKind::kTier &&
           rt.last_error_code == ErrorCode::kNotFound && rt.last_error.starts_with("vllm_sleep"));
      if (said_absent) clear_error(rt);
    });
    spdlog::info("Service {}: its engine answers GET /is_sleeping again (sleep mode on)", service);
  }
  if (!*sleeping) return false;
  // Asleep while siesta took it for serving (put to sleep by an earlier siesta or by hand): a
  // request must wake it first, never reach it.
  bool marked = false;
  registry_.update_service(service, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
    if (rt.state != ServiceState::kRunning) return;
    set_state(rt, ServiceState::kPaused, now);
    rt.engine_asleep = true;
    if (!rt.last_used) rt.last_used = now;
    for (std::size_t i = 0; i < spec.sleep_tiers.size() && rt.tier == 0; ++i) {
      if (spec.sleep_tiers[i].action == TierAction::kVllmSleep) rt.tier = i + 1;
    }
    marked = true;
  });
  if (marked) {
    spdlog::info("Service {}: its engine reports is_sleeping: true; a request wakes it", service);
    mark_models_unloaded(service, Reason::kExternal, "was found with its engine asleep");
    (void)save();
  }
  return true;
}

void Controller::set_gpu(GpuConfig gpu) { gpu_ = std::move(gpu); }

Status Controller::make_room(const GpuRequest& request, const std::function<void()>& on_fit,
                             bool in_flight) {
  std::unique_lock lock(gpu_mu_);
  const std::uint64_t ticket = gpu_next_ticket_++;
  gpu_queue_.push_back({ticket, request, false, in_flight, clock_.mono_now(), {}});
  // What holds memory now, but the request itself (a model being loaded through the proxy is in
  // flight, so counted already).
  // Holders whose unload or stop failed during this make_room, and why: left out of its plans
  // (as if pinned, saying why in a refusal), not tried again and again.
  std::map<std::pair<GpuHolder::Kind, std::string>, std::string> failed;
  const auto holders_now = [&] {
    std::vector<GpuHolder> holders = gpu_holders(gpu_, registry_.snapshot(), clock_.wall_now());
    std::erase_if(holders, [&](const GpuHolder& h) {
      return h.kind == request.kind && h.name == request.name;
    });
    const auto self = std::find_if(gpu_queue_.begin(), gpu_queue_.end(),
                                   [&](const GpuQueued& q) { return q.ticket == ticket; });
    for (GpuHolder& h : holders) {
      if (auto f = failed.find({h.kind, h.name}); f != failed.end()) {
        h.pinned = true;
        h.pinned_by = f->second;
      }
      // One that went ahead of it was served on the promise that it leaves this one room: it is
      // evicted for it last (as if just used), not first for having started before others' use.
      if (std::find(self->went_ahead.begin(), self->went_ahead.end(), std::pair{h.kind, h.name}) !=
          self->went_ahead.end()) {
        h.last_used = clock_.wall_now();
      }
    }
    return holders;
  };
  // What a refusal after a wait says of it: gpu.wait_seconds 0 waits for nothing.
  const std::string waited =
      gpu_.wait_seconds > 0
          ? fmt::format("after waiting {:g} s (gpu.wait_seconds)", gpu_.wait_seconds)
          : std::string("now, and no wait is configured (gpu.wait_seconds is 0)");
  const MonoTime t0 = clock_.mono_now();
  const MonoTime deadline =
      t0 + std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(gpu_.wait_seconds));
  bool waiting = false;
  const auto set_making_room = [&](std::uint64_t t, bool on) {
    for (GpuQueued& q : gpu_queue_) {
      if (q.ticket == t) q.making_room = on;
    }
  };
  const auto leave = [&](const char* outcome) {
    // A refusal is counted by its outcome even without a wait (the alert watches them).
    if (!waiting && std::string_view(outcome) == "cannot_fit") {
      waiting = true;
      gpu_waiting_.fetch_add(1);
      recorder_.gpu_wait(true, "");
    }
    if (waiting) {
      gpu_waiting_.fetch_sub(1);
      recorder_.gpu_wait(false, outcome);
    }
    const auto self = std::find_if(gpu_queue_.begin(), gpu_queue_.end(),
                                   [&](const GpuQueued& q) { return q.ticket == ticket; });
    if (self != gpu_queue_.end() && self->gave_way > 1) {
      spdlog::info("GPU: {} requests gave way to {} ({})", self->gave_way, request.name, outcome);
    }
    std::erase_if(gpu_queue_, [&](const GpuQueued& q) { return q.ticket == ticket; });
    gpu_cv_.notify_all();
  };
  const auto begin_wait = [&] {
    if (!waiting) {
      waiting = true;
      gpu_waiting_.fetch_add(1);
      recorder_.gpu_wait(true, "");
    }
  };
  // A model another request has loaded meanwhile needs no room: its waiting requests go on
  // (queued, they are in flight on it, and an earlier request waiting for that model's requests
  // to end would wait for them, and they for it, until the timeout).
  const auto loaded_meanwhile = [&] {
    if (request.kind != GpuHolder::Kind::kModel) return false;
    auto m = registry_.model({request.name, request.service});
    return m && m->runtime.loaded && !m->runtime.unloading;
  };
  const auto is_head = [&] { return gpu_queue_.front().ticket == ticket; };
  // Every earlier one, for a refusal: "a, m2 (3 requests)".
  const auto queued_ahead = [&] {
    std::vector<std::pair<std::string, int>> names;
    for (const GpuQueued& q : gpu_queue_) {
      if (q.ticket == ticket) break;
      auto seen = std::find_if(names.begin(), names.end(),
                               [&](const auto& n) { return n.first == q.request.name; });
      if (seen == names.end()) {
        names.emplace_back(q.request.name, 1);
      } else {
        ++seen->second;
      }
    }
    std::string text;
    for (const auto& [name, n] : names) {
      text += (text.empty() ? "" : ", ") + name + (n > 1 ? fmt::format(" ({} requests)", n) : "");
    }
    return text;
  };
  // Rounds of evictions (each planned again from what they really freed), not polls of a wait:
  // a wait may take many polls and still end in evictions.
  int evictions = 0;
  for (;;) {  // queued, then the head (again queued when one it waited for is moved ahead of it)
    // First come, first served: the head of the queue alone plans and evicts. A later request that
    // fits now, and takes none of the room the earlier ones wait for, goes ahead of them.
    while (!is_head()) {
      if (loaded_meanwhile()) {
        leave("fitted");
        return Status::ok();
      }
      std::vector<GpuRequest> earlier;
      std::vector<GpuHolder> holders = holders_now();
      for (const GpuQueued& q : gpu_queue_) {
        if (q.ticket == ticket) break;
        // Room being made for an earlier one is its own until it starts: counted as held by it.
        if (!q.making_room) {
          earlier.push_back(q.request);
        } else if (!(q.request.kind == request.kind && q.request.name == request.name)) {
          holders.push_back(as_holder(q.request));
        }
      }
      if (may_go_ahead(gpu_, holders, request, earlier)) {
        spdlog::info("GPU: {} fits now and goes ahead of those queued before it: {}", request.name,
                     queued_ahead());
        for (GpuQueued& q : gpu_queue_) {  // counted on by them: evicted for them last
          if (q.ticket == ticket) break;
          q.went_ahead.emplace_back(request.kind, request.name);
        }
        if (on_fit) on_fit();
        leave("fitted");
        return Status::ok();
      }
      begin_wait();
      if (clock_.mono_now() >= deadline) {
        const std::string ahead = queued_ahead();
        spdlog::warn("GPU: no room for {} {}: queued behind {}", request.name, waited, ahead);
        leave("timed_out");
        // Retry-After: the earlier ones will be served (or give up).
        return {ErrorCode::kUnavailable,
                fmt::format("no room in the GPU budget {}: {} needs {:g} MiB, queued behind "
                            "earlier requests for room: {}",
                            waited, request.name, request.mib, ahead)};
      }
      // The head waits for this server's requests to end, and they are queued here, this one first:
      // served first, or the head would wait for them and they for it until wait_seconds.
      const auto self = std::find_if(gpu_queue_.begin(), gpu_queue_.end(),
                                     [&](const GpuQueued& q) { return q.ticket == ticket; });
      if (head_waits_for(*self)) {
        const GpuQueued& head = gpu_queue_.front();
        const Seconds head_waited = clock_.mono_now() - head.queued_at;
        // Served first while the head has time to spare; past half of its wait, this one gives
        // way: its request ends, and the server's work with it, so that the head, first in
        // line, is served before its own wait runs out (a new user's re-trial: a stream of model
        // requests went ahead of a big wake, each with a model swap, until its 503).
        if (head_waited.count() * 2 >= gpu_.wait_seconds) {
          say_gives_way(gpu_queue_.front(), "a request for " + request.name, request.service);
          const std::string message = fmt::format(
              "no room in the GPU budget now: {} is first in line ({:.1f} s of gpu.wait_seconds "
              "{:g} waited) and waits for the requests on {}, this one among them: it gives way",
              head.request.name, head_waited.count(), gpu_.wait_seconds, request.service);
          leave("timed_out");
          return {ErrorCode::kUnavailable, message};  // Retry-After: the head will be served
        }
        spdlog::info("GPU: {} goes ahead of {}, which waits for the requests on {}", request.name,
                     head.request.name, request.service);
        std::rotate(gpu_queue_.begin(), self, self + 1);
        continue;
      }
      gpu_cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
    while (is_head()) {
      if (loaded_meanwhile()) {
        leave("fitted");
        return Status::ok();
      }
      RoomPlan plan = plan_room(gpu_, holders_now(), request);
      if (plan.verdict == RoomVerdict::kFits) {
        if (on_fit) on_fit();
        leave("fitted");
        return Status::ok();
      }
      if (plan.verdict == RoomVerdict::kCannotFit) {
        const std::string why = refusal_text(plan);
        spdlog::warn("GPU: no room for {}: {}", request.name, why);
        leave("cannot_fit");
        // It cannot fit as things are: a later try gets the same (no Retry-After), unless an unload
        // or stop that failed is in the way (siesta tries it again itself).
        const std::string message = "no room in the GPU budget: " + why;
        return failed.empty() ? Status::final_error(ErrorCode::kUnavailable, message)
                              : Status(ErrorCode::kUnavailable, message);
      }
      if (plan.verdict == RoomVerdict::kEvict && evictions++ < 16) {
        // Evicting takes seconds (a stop): others may queue meanwhile, not plan, nor go ahead on
        // the room it frees (making_room).
        set_making_room(ticket, true);
        lock.unlock();
        for (const GpuHolder& h : plan.evict) {
          if (failed.count({h.kind, h.name}) != 0) continue;  // its server's stop frees it
          if (Status st = evict(h); !st) {
            const bool model = h.kind == GpuHolder::Kind::kModel;
            spdlog::warn("GPU: {} {} did not {} to make room ({}): left out of the plan for {}",
                         model ? "model" : "service", h.name, model ? "unload" : "stop",
                         st.message(), request.name);
            failed[{h.kind, h.name}] =
                (model ? "its unload failed: " : "its stop failed: ") + st.message();
            break;  // planned again without it
          }
        }
        lock.lock();
        set_making_room(ticket, false);
        continue;  // planned again: what the evictions really freed, and any change since
      }
      // kWait (or evictions that keep not freeing enough): in-flight work has to end first.
      if (plan.verdict == RoomVerdict::kEvict) {
        plan.reason = request.name + " needs " +
                      std::to_string(static_cast<long long>(request.mib)) +
                      " MiB: evicting idle holders did not free it";
        for (const GpuHolder& h : plan.evict) plan.held_by.push_back(h.name);
      }
      begin_wait();
      if (clock_.mono_now() >= deadline) {
        const std::string why = refusal_text(plan);
        // An exclusive partner's work alone: the memory is there, it is not said to be missing.
        spdlog::warn(
            "GPU: {} {}: {}",
            plan.exclusive_only ? request.name + " not started" : "no room for " + request.name,
            waited, why);
        leave("timed_out");
        // Retry-After: the work in flight it waited for will end. An exclusive partner's work
        // alone: the memory is there, it is not said to be missing.
        return {ErrorCode::kUnavailable,
                (plan.exclusive_only ? "not started " : "no room in the GPU budget ") + waited +
                    ": " + why};
      }
      lock.unlock();
      clock_.sleep_for(std::chrono::milliseconds(50));
      lock.lock();
    }
  }
}

void Controller::say_gives_way(GpuQueued& head, const std::string& what,
                               const std::string& server) {
  const Seconds waited = clock_.mono_now() - head.queued_at;
  // One warning per head (a new user's re-trial: one per request, hundreds in a stream).
  const auto level = head.gave_way++ == 0 ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(level,
              "GPU: {} gives way to {}, which waits for the requests on {} and has waited "
              "{:.1f} s of its {:g} s{}",
              what, head.request.name, server, waited.count(), gpu_.wait_seconds,
              head.gave_way == 1 ? " (the next that do are counted, not logged)" : "");
}

bool Controller::head_waits_only_for(const std::string& server, std::optional<int> requests) const {
  const GpuQueued& head = gpu_queue_.front();
  Snapshot snap = registry_.snapshot();
  const auto plan = [&] {
    std::vector<GpuHolder> holders = gpu_holders(gpu_, snap, clock_.wall_now());
    std::erase_if(holders, [&](const GpuHolder& h) {
      return h.kind == head.request.kind && h.name == head.request.name;
    });
    return plan_room(gpu_, holders, head.request).verdict;
  };
  if (plan() != RoomVerdict::kWait) return false;
  // Without those requests' counts, would the head still wait?
  for (ServiceView& s : snap.services) {
    if (s.spec->name != server) continue;
    s.runtime.in_flight = requests ? std::max(0, s.runtime.in_flight - *requests) : 0;
  }
  for (ModelView& m : snap.models) {
    if (!requests && m.spec->provider == server) m.runtime.in_flight = 0;
  }
  return plan() != RoomVerdict::kWait;
}

Status Controller::model_request_gives_way(const ModelKey& model) {
  if (!gpu_.enabled()) return Status::ok();
  std::lock_guard lock(gpu_mu_);
  if (gpu_queue_.empty()) return Status::ok();
  GpuQueued& head = gpu_queue_.front();
  const Seconds waited = clock_.mono_now() - head.queued_at;
  // Served while the head has time to spare (as a queued model request is), and never kept from
  // a server whose own start or load is the head.
  if (head.making_room || waited.count() * 2 < gpu_.wait_seconds ||
      (head.request.kind == GpuHolder::Kind::kModel && head.request.name == model.name &&
       head.request.service == model.service) ||
      !head_waits_only_for(model.service, std::nullopt)) {
    return Status::ok();
  }
  say_gives_way(head, "a request for " + model.name, model.service);
  return {ErrorCode::kUnavailable,
          fmt::format("not forwarded: {} is first in line for room in the GPU budget ({:.1f} s "
                      "of gpu.wait_seconds {:g} waited) and waits for the requests on {} to end, "
                      "this one among them: it gives way",
                      head.request.name, waited.count(), gpu_.wait_seconds, model.service)};
}

bool Controller::head_waits_for(const GpuQueued& self) const {
  const GpuQueued& head = gpu_queue_.front();
  if (!self.in_flight || head.making_room || &head == &self) return false;
  const std::string& server = self.request.service;
  // The first of the requests queued on that server, and how many there are.
  int queued = 0;
  for (const GpuQueued& q : gpu_queue_) {
    if (!q.in_flight || q.request.service != server) continue;
    if (queued++ == 0 && q.ticket != self.ticket) return false;
  }
  return head_waits_only_for(server, queued);
}

Status Controller::evict(const GpuHolder& h) {
  if (h.kind == GpuHolder::Kind::kModel) {
    const ModelKey key{h.name, h.service};
    auto m = registry_.model(key);
    if (!m || !m->runtime.loaded || m->runtime.in_flight > 0) return Status::ok();
    spdlog::info("GPU: unloading model {} to make room (on {})", h.name, h.service);
    // A use since the plan (a request, an admin load) wins: planned again.
    Status st = models_.unload_now(key, Reason::kMakeRoom, /*only_unused=*/true);
    // An unload already runs, or a use since the plan: planned again (not a failed unload).
    if (st.code() == ErrorCode::kConflict) return Status::ok();
    if (!st) return st;
    m = registry_.model(key);
    if (m && m->runtime.loaded) {  // not asked: a frozen server answers nothing
      auto server = registry_.service(h.service);
      return {ErrorCode::kUnavailable, server && server->runtime.paused
                                           ? "its server " + h.service + " is paused"
                                           : std::string("it is still loaded")};
    }
    recorder_.gpu_evicted(Reason::kMakeRoom);
    return Status::ok();
  }
  Slot* s = slot(h.name);
  if (s == nullptr) return Status::ok();
  std::lock_guard op(s->op);
  bool claimed = false;
  const bool global = registry_.snapshot().settings.idle_sleep_enabled;
  registry_.update_service(h.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
    // The same rule plan_room applied, re-checked now: a use since wins.
    const bool up = rt.state == ServiceState::kRunning || rt.state == ServiceState::kPaused;
    if (up && rt.in_flight == 0 && global && rt.idle_sleep_enabled && rt.desired == Desired::kOff) {
      set_state(rt, ServiceState::kStopping, clock_.wall_now());
      claimed = true;
    }
  });
  if (!claimed) return Status::ok();  // a use since: planned again
  s->light_pending.store(0);
  spdlog::info("Stopping service {} (make_room)...", h.name);
  Status st = stop_locked(h.name, Reason::kMakeRoom);
  if (st) recorder_.gpu_evicted(Reason::kMakeRoom);
  return st;
}

void Controller::warn_gpu_over_budget() {
  if (!gpu_.enabled() || gpu_checked_.exchange(true)) return;
  const std::vector<GpuHolder> holders = gpu_holders(gpu_, registry_.snapshot(), clock_.wall_now());
  for (const GpuDeviceUse& use : gpu_use(gpu_, holders)) {
    if (use.over_mib <= 0) continue;
    std::string held;
    for (const GpuHolder& h : holders) {
      if (std::find(h.devices.begin(), h.devices.end(), use.id) == h.devices.end()) continue;
      held += fmt::format("{}{} {:g} MiB", held.empty() ? "" : ", ", h.name, h.mib);
    }
    // Kept working: each wake or load makes room by evicting idle holders first; idle-status
    // shows over_mib for as long as it lasts.
    spdlog::warn(
        "GPU {}: its budget of {:g} MiB is smaller than what siesta's services and models hold "
        "at start-up, {:g} MiB ({}): {:g} MiB over. Wakes and loads on it make room first; "
        "raise gpu.devices[].memory_mib if the card has the room",
        use.id, use.budget_mib, use.held_mib, held, use.over_mib);
  }
}

int Controller::waiters(const std::string& service) {
  Slot* s = slot(service);
  return s == nullptr ? 0 : s->waiting.load();
}

void Controller::leave_all() {
  for (const auto& name : registry_.service_names()) {
    Slot* s = slot(name);
    std::lock_guard op(s->op);
    auto view = registry_.service(name);
    if (!view || !view->runtime.paused) continue;
    ServiceBackend* backend = backend_for(*view->spec);
    if (backend == nullptr || backend->pause_outlives_siesta()) continue;
    spdlog::info("Resuming paused service {}: it would not survive paused without siesta", name);
    if (Status st = backend->resume(*view->spec); !st) {
      spdlog::error("Service {}: resume failed: {}", name, st.message());
      continue;
    }
    registry_.update_service(
        name, [&](const ServiceSpec&, ServiceRuntime& rt) { set_awake(rt, clock_.wall_now()); });
  }
  (void)save();
}

void Controller::stop_all() {
  for (const auto& name : registry_.service_names()) {
    Slot* s = slot(name);
    std::lock_guard op(s->op);
    auto view = registry_.service(name);
    if (!view || view->runtime.state == ServiceState::kStopped) continue;
    ServiceBackend* backend = backend_for(*view->spec);
    if (backend == nullptr) continue;
    spdlog::info("Stopping service {} (siesta is exiting)...", name);
    unload_models_before_stop(name);
    // A paused one too: the backend thaws it as its stop needs.
    if (Status st = backend->stop(*view->spec); !st) {
      spdlog::error("Service {}: stop failed: {}", name, st.message());
      continue;
    }
    registry_.update_service(
        name, [&](const ServiceSpec&, ServiceRuntime& rt) { set_stopped(rt, clock_.wall_now()); });
    // Its models went with it: the state file must not say they are loaded.
    mark_models_unloaded(name, Reason::kServiceSleep);
  }
  (void)save();
}

}  // namespace siesta
