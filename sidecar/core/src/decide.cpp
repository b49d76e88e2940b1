#include "siesta/core/decide.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string_view>

#include "siesta/core/units.h"

namespace siesta {

const char* to_string(SleepBlocker blocker) {
  switch (blocker) {
    case SleepBlocker::kNone:
      return "none";
    case SleepBlocker::kGlobalDisabled:
      return "global_disabled";
    case SleepBlocker::kServiceDisabled:
      return "service_disabled";
    case SleepBlocker::kDesiredOn:
      return "desired_on";
    case SleepBlocker::kNotRunning:
      return "not_running";
    case SleepBlocker::kInFlight:
      return "in_flight";
    case SleepBlocker::kScheduledOn:
      return "scheduled_on";
  }
  return "none";
}

const char* describe(SleepBlocker blocker) {
  switch (blocker) {
    case SleepBlocker::kNone:
      return "";
    case SleepBlocker::kGlobalDisabled:
      return "idle sleep is disabled globally";
    case SleepBlocker::kServiceDisabled:
      return "idle sleep is disabled for this service";
    case SleepBlocker::kDesiredOn:
      return "desired is \"on\"";
    case SleepBlocker::kNotRunning:
      return "the service is not running";
    case SleepBlocker::kInFlight:
      return "requests are in flight";
    case SleepBlocker::kScheduledOn:
      return "a schedule window keeps it on";
  }
  return "";
}

const char* to_string(UnloadBlocker blocker) {
  switch (blocker) {
    case UnloadBlocker::kNone:
      return "none";
    case UnloadBlocker::kGlobalDisabled:
      return "global_disabled";
    case UnloadBlocker::kNotLoaded:
      return "not_loaded";
    case UnloadBlocker::kInFlight:
      return "in_flight";
    case UnloadBlocker::kUnloading:
      return "unloading";
    case UnloadBlocker::kRetryWait:
      return "retry_wait";
    case UnloadBlocker::kNoUnloadApi:
      return "no_unload_api";
  }
  return "none";
}

const char* describe(UnloadBlocker blocker) {
  switch (blocker) {
    case UnloadBlocker::kNone:
      return "";
    case UnloadBlocker::kGlobalDisabled:
      return "idle sleep is disabled globally";
    case UnloadBlocker::kNotLoaded:
      return "the model is not loaded";
    case UnloadBlocker::kInFlight:
      return "requests are in flight";
    case UnloadBlocker::kUnloading:
      return "an unload is in progress";
    case UnloadBlocker::kRetryWait:
      return "the last unload failed; waiting to retry";
    case UnloadBlocker::kNoUnloadApi:
      return "its server cannot unload one model: no keep-alive applies, the service's idle "
             "timeout or sleep tiers free it (will_unload_in_seconds: when they will)";
  }
  return "";
}

const char* to_string(ActionKind kind) {
  switch (kind) {
    case ActionKind::kSleepService:
      return "sleep_service";
    case ActionKind::kStartService:
      return "start_service";
    case ActionKind::kUnloadModel:
      return "unload_model";
    case ActionKind::kLightSleep:
      return "light_sleep";
  }
  return "";
}

Seconds effective_idle_timeout(const Settings& settings, const ServiceSpec& spec) {
  return Seconds(spec.idle_timeout_minutes.value_or(settings.idle_timeout_minutes) * 60.0);
}

namespace {

// effective_tiers() without building the list: decide() runs per scrape over every service.
std::size_t tier_count(const ServiceSpec& spec) {
  return spec.sleep_tiers.empty() ? 1 : spec.sleep_tiers.size();
}

// A run that began at or after the pre-warm point of the last use is the pre-warmed one: it
// stays until the keep-alive. Any other sleeps `sleep_after` the use.
bool prewarmed_run(const PolicyChoice& choice, const ServiceRuntime& rt) {
  return choice.prewarm_after && rt.last_used &&
         rt.state_since >= *rt.last_used + to_wall_duration(*choice.prewarm_after);
}

// The one tier of a service without sleep_tiers comes after its policy's timeout at `now`.
SleepTier tier_of(const Settings& settings, const ServiceSpec& spec, const ServiceRuntime& rt,
                  std::size_t index, WallTime now) {
  if (!spec.sleep_tiers.empty()) return spec.sleep_tiers[index];
  const PolicyChoice choice = policy_choice(settings, spec, rt, now);
  const Seconds after = prewarmed_run(choice, rt) ? choice.keep_alive : choice.sleep_after;
  return {after.count() / 60.0, TierAction::kStop};
}

// A tier the monitor will not try: a vllm_sleep tier of an engine known to have no sleep routes
// (its /sleep would answer 404 again). It is neither entered nor promised as the next tier.
bool tier_skipped(const SleepTier& tier, const ServiceRuntime& rt) {
  return tier.action == TierAction::kVllmSleep && rt.engine_sleep_unavailable;
}

// The index (0-based) of the next tier the service will really enter from `from`: past the
// skipped ones; tier_count() when none will.
std::size_t upcoming_tier(const ServiceSpec& spec, const ServiceRuntime& rt, std::size_t from) {
  std::size_t i = from;
  while (i < spec.sleep_tiers.size() && tier_skipped(spec.sleep_tiers[i], rt)) ++i;
  return std::min(i, tier_count(spec));
}

}  // namespace

bool scheduled_on(const ServiceSpec& spec, WallTime now) {
  const ScheduleWindow* w = window_at(spec.schedule, now);
  return w != nullptr && w->desired_on;
}

PolicyChoice policy_choice(const Settings& settings, const ServiceSpec& spec,
                           const ServiceRuntime& runtime, WallTime now) {
  if (const ScheduleWindow* w = window_at(spec.schedule, now); w && w->idle_timeout_minutes) {
    PolicyChoice choice;
    choice.keep_alive = choice.sleep_after = Seconds(*w->idle_timeout_minutes * 60.0);
    choice.policy = "schedule";
    choice.reason = "the schedule window " + w->text + " (" + spec.schedule.timezone +
                    ") sets the idle timeout";
    return choice;
  }
  PolicyInput input;
  input.configured_timeout = effective_idle_timeout(settings, spec);
  input.idle_gaps = &runtime.idle_gaps;
  input.cold_start_seconds = spec.cold_start_seconds.value_or(runtime.cold_start_seconds);
  input.adaptive = &spec.adaptive;
  const TimeoutPolicy* policy = find_policy(spec.policy);
  return (policy != nullptr ? *policy : fixed_policy()).choose(input);
}

std::vector<SleepTier> effective_tiers(const Settings& settings, const ServiceSpec& spec) {
  if (spec.sleep_tiers.empty()) {
    return {{effective_idle_timeout(settings, spec).count() / 60.0, TierAction::kStop}};
  }
  return spec.sleep_tiers;
}

bool tier_holds(TierAction action, const ServiceRuntime& rt) {
  switch (action) {
    case TierAction::kPause:
      return rt.paused;
    case TierAction::kVllmSleep:
      return rt.engine_asleep;
    case TierAction::kUnloadModels:
    case TierAction::kStop:
      return true;
  }
  return true;
}

namespace {
// tier_name() among the first `passed` tiers.
const char* tier_name_within(const ServiceSpec& spec, const ServiceRuntime& rt,
                             std::size_t passed) {
  if (rt.state == ServiceState::kStopped) return to_string(TierAction::kStop);
  // The deepest tier passed that still holds it: a pause or an engine sleep that failed (the
  // service kept serving, or stayed in the lighter tier that holds it) is not the state it is in.
  for (std::size_t i = std::min(passed, spec.sleep_tiers.size()); i > 0; --i) {
    const TierAction action = spec.sleep_tiers[i - 1].action;
    if (tier_holds(action, rt)) return to_string(action);
  }
  return "awake";
}
}  // namespace

const char* tier_name(const ServiceSpec& spec, const ServiceRuntime& rt) {
  return tier_name_within(spec, rt, rt.tier);
}

std::vector<TierAction> failed_tiers(const ServiceSpec& spec, const ServiceRuntime& rt) {
  std::vector<TierAction> out;
  if (rt.state == ServiceState::kStopped) return out;
  for (std::size_t i = 0; i < std::min(rt.tier, spec.sleep_tiers.size()); ++i) {
    if (!tier_holds(spec.sleep_tiers[i].action, rt)) out.push_back(spec.sleep_tiers[i].action);
  }
  return out;
}

double clamp_keep_alive(double seconds, double min_seconds, double max_seconds) {
  return std::clamp(seconds, min_seconds, std::max(min_seconds, max_seconds));
}

namespace {
std::string bounds_text(double min_seconds, double max_seconds) {
  return "; bounded to [" + number_text(min_seconds) + ", " +
         number_text(std::max(min_seconds, max_seconds)) + "] s";
}
}  // namespace

PolicyChoice model_policy_choice(const Settings& settings, const ModelSpec& spec,
                                 const ModelRuntime& runtime) {
  PolicyInput input;
  input.configured_timeout =
      Seconds(spec.keep_alive_hours.value_or(settings.model_keep_alive_hours) * 3600.0);
  input.timeout_name = "keep-alive";
  input.idle_gaps = &runtime.idle_gaps;
  input.cold_start_seconds = runtime.load_seconds;  // the model's cold start: its load
  // The model's bounds are the adaptive policy's; no pre-warm (a load before a predicted use is
  // not done yet: docs/models.md).
  AdaptiveParams params;
  params.min_timeout_seconds = spec.keep_alive_min_seconds;
  params.max_timeout_seconds = spec.keep_alive_max_seconds;
  params.prewarm = false;
  input.adaptive = &params;
  const TimeoutPolicy* policy = find_policy(spec.policy);
  PolicyChoice choice = (policy != nullptr ? *policy : fixed_policy()).choose(input);
  const double chosen = choice.keep_alive.count();
  const double bounded =
      clamp_keep_alive(chosen, spec.keep_alive_min_seconds, spec.keep_alive_max_seconds);
  // The adaptive policy's own choice says when it was bounded; a configured one is said here.
  if (bounded != chosen) {
    choice.reason += bounds_text(spec.keep_alive_min_seconds, spec.keep_alive_max_seconds);
  }
  choice.keep_alive = choice.sleep_after = Seconds(bounded);
  choice.prewarm_after.reset();
  return choice;
}

Seconds effective_keep_alive(const Settings& settings, const ModelSpec& spec,
                             const ModelRuntime& runtime) {
  if (!runtime.keep_alive_seconds) return model_policy_choice(settings, spec, runtime).keep_alive;
  return Seconds(clamp_keep_alive(*runtime.keep_alive_seconds, spec.keep_alive_min_seconds,
                                  spec.keep_alive_max_seconds));
}

RequestKeepAlive request_keep_alive(const KeepAlivePolicy& policy, std::optional<double> asked) {
  RequestKeepAlive out;
  if (!asked) {
    // The policy's default is within the bounds already.
    out.seconds = clamp_keep_alive(policy.default_seconds, policy.min_seconds, policy.max_seconds);
    out.policy = policy.policy;
    out.reason = policy.reason;
    return out;
  }
  out.seconds = clamp_keep_alive(*asked, policy.min_seconds, policy.max_seconds);
  out.policy = "request";
  out.reason = std::isfinite(*asked) && *asked >= 0
                   ? "the request's keep_alive (" + number_text(*asked) + " s)"
                   : "the request's keep_alive (forever)";
  if (out.seconds != *asked) out.reason += bounds_text(policy.min_seconds, policy.max_seconds);
  return out;
}

Seconds reconcile_interval(const Settings& settings) {
  return Seconds(settings.idle_check_interval_minutes * 60.0);
}

Seconds retry_delay(const Settings& settings) { return reconcile_interval(settings); }

WallTime retry_at(const Settings& settings, WallTime now) {
  return now + to_wall_duration(retry_delay(settings));
}

Seconds start_backoff(int failed_in_a_row) {
  if (failed_in_a_row < 2) return Seconds(0);
  if (failed_in_a_row >= 7) return Seconds(60);
  return Seconds(static_cast<double>(1 << (failed_in_a_row - 1)));
}

KeepAlivePolicy keep_alive_policy(const Settings& settings, const ModelSpec* model,
                                  const ServiceSpec* server, const ModelRuntime* runtime) {
  ModelSpec defaults;
  if (model == nullptr && server != nullptr) {  // as it would be learned (registry.h)
    defaults.keep_alive_hours = server->model_keep_alive_hours;
    defaults.policy = server->model_policy;
  }
  const ModelSpec& spec = model != nullptr ? *model : defaults;
  static const ModelRuntime kNoHistory;
  PolicyChoice choice =
      model_policy_choice(settings, spec, runtime != nullptr ? *runtime : kNoHistory);
  return {choice.keep_alive.count(), spec.keep_alive_min_seconds, spec.keep_alive_max_seconds,
          choice.policy, std::move(choice.reason)};
}

double model_server_keep_alive(double enforced_seconds) {
  return enforced_seconds + kModelServerGraceSeconds;
}

SleepBlocker sleep_blocker(const Settings& settings, const ServiceRuntime& rt) {
  if (!settings.idle_sleep_enabled) return SleepBlocker::kGlobalDisabled;
  if (!rt.idle_sleep_enabled) return SleepBlocker::kServiceDisabled;
  if (rt.desired == Desired::kOn) return SleepBlocker::kDesiredOn;
  if (rt.state != ServiceState::kRunning && rt.state != ServiceState::kPaused) {
    return SleepBlocker::kNotRunning;
  }
  if (rt.in_flight > 0) return SleepBlocker::kInFlight;
  return SleepBlocker::kNone;
}

UnloadBlocker unload_blocker(const Settings& settings, const ModelRuntime& rt, WallTime now) {
  if (!settings.idle_sleep_enabled) return UnloadBlocker::kGlobalDisabled;
  if (!rt.loaded) return UnloadBlocker::kNotLoaded;
  if (rt.unloading) return UnloadBlocker::kUnloading;
  if (rt.in_flight > 0 || rt.admin_loads > 0) return UnloadBlocker::kInFlight;  // or loading
  if (rt.retry_at && now < *rt.retry_at) return UnloadBlocker::kRetryWait;
  return UnloadBlocker::kNone;
}

namespace {

// A running service nobody has used yet idles from the moment it was seen running.
WallTime idle_since(const ServiceRuntime& rt) { return rt.last_used.value_or(rt.state_since); }

WallTime tier_at(const ServiceRuntime& rt, const SleepTier& tier) {
  return idle_since(rt) + to_wall_duration(Seconds(tier.after_minutes * 60.0));
}

// A loaded model always has a last use; `now` is only a guard against a broken invariant.
WallTime keep_alive_until(const Settings& settings, const ModelSpec& spec, const ModelRuntime& rt,
                          WallTime now) {
  return rt.last_used.value_or(now) + to_wall_duration(effective_keep_alive(settings, spec, rt));
}

}  // namespace

WallTime first_tier_at(const Settings& settings, const ServiceSpec& spec,
                       const ServiceRuntime& runtime, WallTime last_used) {
  ServiceRuntime used = runtime;
  used.last_used = last_used;
  // Its first tier that will really be entered (a skipped vllm_sleep is not).
  const std::size_t first = std::min(upcoming_tier(spec, used, 0), tier_count(spec) - 1);
  return last_used + to_wall_duration(Seconds(
                         tier_of(settings, spec, used, first, last_used).after_minutes * 60.0));
}

std::optional<WallTime> keep_alive_ends(const Settings& settings, const ModelSpec& spec,
                                        const ModelRuntime& runtime) {
  const Seconds keep_alive = effective_keep_alive(settings, spec, runtime);
  if (!runtime.last_used || !std::isfinite(keep_alive.count())) return std::nullopt;
  return *runtime.last_used + to_wall_duration(keep_alive);
}

std::optional<std::size_t> tier_due(const Settings& settings, const ServiceSpec& spec,
                                    const ServiceRuntime& runtime, WallTime now) {
  if (sleep_blocker(settings, runtime) != SleepBlocker::kNone) return std::nullopt;
  if (scheduled_on(spec, now)) return std::nullopt;
  const std::size_t count = tier_count(spec);
  if (runtime.tier >= count) return std::nullopt;
  if (const SleepTier last = tier_of(settings, spec, runtime, count - 1, now);
      last.action == TierAction::kStop && now >= tier_at(runtime, last)) {
    return count;
  }
  const std::size_t next = upcoming_tier(spec, runtime, runtime.tier);
  if (next < count && now >= tier_at(runtime, tier_of(settings, spec, runtime, next, now))) {
    return next + 1;
  }
  return std::nullopt;
}

bool sleep_due(const Settings& settings, const ServiceSpec& spec, const ServiceRuntime& runtime,
               WallTime now) {
  const auto tier = tier_due(settings, spec, runtime, now);
  return tier && tier_of(settings, spec, runtime, *tier - 1, now).action == TierAction::kStop;
}

bool unload_due(const Settings& settings, const ModelSpec& spec, const ModelRuntime& runtime,
                WallTime now) {
  return unload_blocker(settings, runtime, now) == UnloadBlocker::kNone &&
         now >= keep_alive_until(settings, spec, runtime, now);
}

namespace {

class DeadlineTracker {
 public:
  void offer(WallTime t) {
    if (!earliest_ || t < *earliest_) earliest_ = t;
  }
  std::optional<WallTime> earliest() const { return earliest_; }

 private:
  std::optional<WallTime> earliest_;
};

Seconds non_negative(WallTime::duration d) { return std::max(Seconds(0), Seconds(d)); }

// "after 5 minutes idle", "after 0.5 minutes idle"
std::string idle_minutes_text(double minutes) {
  return "after " + number_text(minutes) + (minutes == 1 ? " minute" : " minutes") + " idle";
}

// "stop", "vllm_sleep level 1"
std::string tier_text(const SleepTier& tier) {
  std::string out = to_string(tier.action);
  if (tier.action == TierAction::kVllmSleep) out += " level " + std::to_string(tier.level);
  return out;
}

// The policy_reason of a service with sleep_tiers: the tier that comes next and after what idle
// time (each tier's after_minutes, counted from the last use), the stop after it, and the tiers
// that failed.
std::string tiers_reason(const ServiceSpec& spec, const ServiceRuntime& rt,
                         const std::vector<TierAction>& failed, std::size_t upcoming,
                         SleepBlocker blocker) {
  const auto& tiers = spec.sleep_tiers;
  const std::size_t n = tiers.size();
  const auto nth = [&](std::size_t i) {  // 0-based index: "tier 2 of 3 (vllm_sleep level 1)"
    return "tier " + std::to_string(i + 1) + " of " + std::to_string(n) + " (" +
           tier_text(tiers[i]) + ")";
  };
  std::string out = "sleep_tiers: ";
  const std::size_t first = upcoming_tier(spec, rt, 0);
  if (rt.state == ServiceState::kStopped) {
    out += "stopped (its last tier)";
    if (blocker != SleepBlocker::kNone && blocker != SleepBlocker::kNotRunning &&
        blocker != SleepBlocker::kInFlight) {
      // A new user's re-trial: tier 1 was promised after a wake while idle sleep was off.
      out += std::string("; after a wake, no tier comes while ") + describe(blocker);
    } else if (first < n) {
      out += "; after a wake, " + nth(first) + " comes " +
             idle_minutes_text(tiers[first].after_minutes);
    }
  } else if (rt.tier >= n) {
    out += "all " + std::to_string(n) + " tiers passed; a use wakes it";
  } else if (blocker != SleepBlocker::kNone && blocker != SleepBlocker::kInFlight) {
    // Nothing comes while it holds (a new user's re-trial: a tier was promised to a service in
    // error, desired on, or with idle sleep disabled). Requests in flight only delay the tiers.
    out += "no tier comes while ";
    out += rt.state == ServiceState::kError ? "it is in error (last_error says why)"
                                            : describe(blocker);
  } else if (upcoming >= n) {
    out += "no tier to come";
  } else {
    out += nth(upcoming) + " comes " + idle_minutes_text(tiers[upcoming].after_minutes);
    if (upcoming + 1 < n) {
      out += ", then " + nth(n - 1) + " " + idle_minutes_text(tiers[n - 1].after_minutes);
    }
  }
  const std::size_t from = rt.state == ServiceState::kStopped ? 0 : rt.tier;
  if (std::any_of(tiers.begin() + static_cast<std::ptrdiff_t>(std::min(from, n)), tiers.end(),
                  [&](const SleepTier& t) { return tier_skipped(t, rt); })) {
    out += "; its vllm_sleep tier is skipped: its engine has no sleep routes (last_error says why)";
  }
  // A tier that failed behind a lighter one that still holds it (a pause) left it there: a
  // paused service serves nothing.
  const std::string outcome = light_asleep(rt)
                                  ? std::string("it stayed in its ") + tier_name(spec, rt) + " tier"
                                  : std::string("it kept serving");
  for (TierAction a : failed) {
    out += std::string("; its ") + to_string(a) + " tier failed, so " + outcome +
           " (last_error says why)";
  }
  return out;
}

ServiceTimer service_timer(const Settings& settings, const ServiceView& view, WallTime now,
                           std::vector<Action>& actions, DeadlineTracker& deadlines) {
  const ServiceSpec& spec = *view.spec;
  const ServiceRuntime& rt = view.runtime;
  ServiceTimer timer;
  timer.name = spec.name;
  timer.state = rt.state;
  const std::size_t count = tier_count(spec);
  // The next tier it will really enter (a skipped one is not), or the last once all are passed.
  const std::size_t upcoming = upcoming_tier(spec, rt, rt.tier);
  const SleepTier next = tier_of(settings, spec, rt, std::min(upcoming, count - 1), now);
  timer.timeout = Seconds(next.after_minutes * 60.0);
  if (rt.last_used) timer.idle_for = non_negative(now - *rt.last_used);
  timer.blocker = sleep_blocker(settings, rt);
  // A tier claimed but not done yet is not shown: its action may still fail (tier_pending).
  timer.tier = tier_name_within(spec, rt, rt.tier_pending && rt.tier > 0 ? rt.tier - 1 : rt.tier);
  // In error with nothing up (a failed start): neither awake nor in a tier. One served in error
  // (its control plane out) is awake as far as siesta knows.
  if (rt.state == ServiceState::kError && !rt.serving_in_error) timer.tier = nullptr;
  timer.failed_tiers = failed_tiers(spec, rt);
  timer.energy = energy_account(settings, spec, rt, now);
  bool keep_on = false;  // by a schedule window
  if (!spec.schedule.windows.empty()) {
    const ScheduleNow at = schedule_at(spec.schedule, now);
    ServiceTimer::ScheduleTimer st;
    st.timezone = spec.schedule.timezone;
    if (at.window) {
      const ScheduleWindow& w = spec.schedule.windows[*at.window];
      st.window = w.text;
      st.keeps_on = keep_on = w.desired_on;
      st.idle_timeout_minutes = w.idle_timeout_minutes;
      st.window_ends = at.window_end;
    }
    st.next_change = at.next_change;
    // The monitor wakes when the schedule asks something else: a start, a timeout, a sleep.
    if (at.next_change) deadlines.offer(*at.next_change);
    timer.schedule = std::move(st);
    if (keep_on && timer.blocker == SleepBlocker::kNone) timer.blocker = SleepBlocker::kScheduledOn;
  }
  if (!spec.sleep_tiers.empty()) {
    timer.policy_reason = tiers_reason(spec, rt, timer.failed_tiers, upcoming, timer.blocker);
  } else {
    PolicyChoice choice = policy_choice(settings, spec, rt, now);
    timer.policy = choice.policy;
    timer.policy_reason = std::move(choice.reason);
    // Pre-warm: a service asleep since its last use is started at the pre-warm point, unless
    // its keep-alive has passed (the predicted use did not come; the next use wakes it), and
    // once: stopped since the pre-warm point means it was tried (a start that failed is not
    // repeated at every check).
    if (!keep_on && choice.prewarm_after && rt.last_used && rt.state == ServiceState::kStopped &&
        settings.idle_sleep_enabled && rt.idle_sleep_enabled && rt.desired == Desired::kOff) {
      const WallTime at = *rt.last_used + to_wall_duration(*choice.prewarm_after);
      const WallTime until = *rt.last_used + to_wall_duration(choice.keep_alive);
      if (now < until && rt.state_since < at) {
        timer.prewarm_at = at;
        if (now >= at) {
          actions.push_back({ActionKind::kStartService, spec.name, Reason::kPrewarm});
        } else {
          deadlines.offer(at);
        }
      }
    }
  }

  if (timer.blocker == SleepBlocker::kNone && upcoming < count) {
    WallTime at = tier_at(rt, next);
    // A window's own timeout that ends after the window: the normal rules then apply from the
    // last use, and not before the window's end.
    if (timer.schedule && timer.schedule->window_ends && timer.schedule->idle_timeout_minutes &&
        at > *timer.schedule->window_ends) {
      const WallTime end = *timer.schedule->window_ends;
      at = std::max(end, tier_at(rt, tier_of(settings, spec, rt, upcoming, end)));
    }
    timer.sleeps_at = at;
    timer.sleeps_in = non_negative(at - now);
    timer.next_tier = next.action;
    if (spec.model_api != ServiceSpec::ModelApi::kNone) {
      // A model server: the first tier from here that frees its models (a pause does not), which
      // ends their countdown if it comes first (their keep-alive, if any, may end later).
      for (std::size_t i = upcoming; i < count && !timer.frees_models_at; ++i) {
        const SleepTier t = i == upcoming ? next : tier_of(settings, spec, rt, i, now);
        if (tier_skipped(t, rt)) continue;
        if (t.action == TierAction::kVllmSleep || t.action == TierAction::kStop ||
            t.action == TierAction::kUnloadModels) {
          timer.frees_models_at = tier_at(rt, t);
        }
      }
    }
    if (auto due = tier_due(settings, spec, rt, now)) {
      if (tier_of(settings, spec, rt, *due - 1, now).action == TierAction::kStop) {
        actions.push_back({ActionKind::kSleepService, spec.name, Reason::kIdle});
      } else {
        actions.push_back({ActionKind::kLightSleep, spec.name, Reason::kIdle, *due});
      }
    } else {
      deadlines.offer(at);
    }
  }

  if (rt.desired == Desired::kOn || keep_on) {
    // A schedule window starts it at the window's start (and again should it stop within).
    const Reason why = rt.desired == Desired::kOn ? Reason::kDesired : Reason::kSchedule;
    if (rt.state == ServiceState::kStopped || rt.state == ServiceState::kPaused) {
      actions.push_back({ActionKind::kStartService, spec.name, why});
    } else if (rt.state == ServiceState::kError && !rt.serving_in_error) {
      // Retry a failed start once per check interval, not in a tight loop. One still serving
      // through a control-plane outage needs no start.
      WallTime retry_at = rt.retry_at.value_or(rt.state_since);
      if (now >= retry_at) {
        actions.push_back({ActionKind::kStartService, spec.name, why});
      } else {
        deadlines.offer(retry_at);
      }
    }
  }
  return timer;
}

// `unloadable`: its server can unload it (its keep-alive applies); `freed_at` is when its
// service's next tier frees it (ServiceTimer::frees_models_at): its whole countdown if not
// unloadable, else when that comes before the keep-alive ends.
ModelTimer model_timer(const Settings& settings, const ModelView& view, WallTime now,
                       bool unloadable, std::optional<WallTime> freed_at, bool offloaded,
                       std::vector<Action>& actions, DeadlineTracker& deadlines) {
  const ModelSpec& spec = *view.spec;
  const ModelRuntime& rt = view.runtime;
  ModelTimer timer;
  timer.name = spec.name;
  timer.provider = spec.provider;
  timer.loaded = rt.loaded;
  timer.offloaded = !rt.loaded && offloaded;
  // Which policy chose its keep-alive: the one that set the per-use keep-alive in force, else its
  // policy's choice now (effective_keep_alive's, computed once).
  if (rt.keep_alive_seconds) {
    timer.keep_alive = effective_keep_alive(settings, spec, rt);
    timer.policy = rt.keep_alive_policy.empty() ? "restored" : rt.keep_alive_policy;
    timer.policy_reason = rt.keep_alive_policy.empty()
                              ? "the keep-alive of its last request, from a state file that did "
                                "not say which policy chose it"
                              : rt.keep_alive_reason;
  } else {
    PolicyChoice choice = model_policy_choice(settings, spec, rt);
    timer.keep_alive = choice.keep_alive;
    timer.policy = choice.policy;
    timer.policy_reason = std::move(choice.reason);
  }
  timer.blocker = unload_blocker(settings, rt, now);
  if (!unloadable &&
      (timer.blocker == UnloadBlocker::kNone || timer.blocker == UnloadBlocker::kRetryWait)) {
    timer.blocker = UnloadBlocker::kNoUnloadApi;
  }
  if (timer.blocker == UnloadBlocker::kRetryWait) deadlines.offer(*rt.retry_at);
  if (!unloadable) {
    // No keep-alive: its service frees it (its deadline is the service's, offered there).
    timer.keep_alive_applies = false;
    timer.policy.clear();
    timer.policy_reason.clear();
    if (rt.loaded && freed_at && timer.blocker == UnloadBlocker::kNoUnloadApi) {
      timer.keep_alive_until = freed_at;
      timer.unloads_in = non_negative(*freed_at - now);
    }
    return timer;
  }
  if (rt.loaded) {
    // keep_alive_until() with the keep-alive computed above.
    const WallTime until = rt.last_used.value_or(now) + to_wall_duration(timer.keep_alive);
    timer.keep_alive_until = until;
    // Its service's tier frees it first (an Ollama stopped before the keep-alive ends): the
    // countdown ends with the service, as for a model that is the process.
    timer.freed_by_service = freed_at && *freed_at < until;
    timer.unloads_in = non_negative((timer.freed_by_service ? *freed_at : until) - now);
    if (timer.blocker == UnloadBlocker::kNone) {
      if (now >= until) {
        actions.push_back(
            {ActionKind::kUnloadModel, spec.name, Reason::kExpired, 0, spec.provider});
      } else {
        deadlines.offer(until);
      }
    }
  }
  return timer;
}

}  // namespace

Decision decide(const Snapshot& snapshot, WallTime now) {
  Decision decision;
  decision.now = now;
  DeadlineTracker deadlines;
  decision.services.reserve(snapshot.services.size());
  for (const auto& view : snapshot.services) {
    decision.services.push_back(
        service_timer(snapshot.settings, view, now, decision.actions, deadlines));
  }
  decision.models.reserve(snapshot.models.size());
  // A model of a server that has no unload API (its service's model_api) is freed by the
  // service's tiers; one whose server is unknown (a container not found yet) as before.
  std::set<std::string_view> no_unload;
  // Servers whose engine sleeps at level 1: their models' weights wait in CPU RAM.
  std::set<std::string_view> offloading;
  std::map<std::string_view, std::optional<WallTime>> frees_at;  // of model servers
  for (std::size_t s = 0; s < snapshot.services.size(); ++s) {
    const auto& service = snapshot.services[s];
    const auto api = service.spec->model_api;
    if (api != ServiceSpec::ModelApi::kNone) {
      frees_at[service.spec->name] = decision.services[s].frees_models_at;
      if (!can_unload_models(api)) no_unload.insert(service.spec->name);
    }
    const auto& tiers = service.spec->sleep_tiers;
    int level = 0;  // of the deepest vllm_sleep tier in force
    for (std::size_t i = 0;
         service.runtime.engine_asleep && i < service.runtime.tier && i < tiers.size(); ++i) {
      if (tiers[i].action == TierAction::kVllmSleep) level = tiers[i].level;
    }
    if (level == 1) offloading.insert(service.spec->name);
  }
  for (const auto& view : snapshot.models) {
    const bool unloadable = no_unload.count(view.spec->provider) == 0;
    const bool offloaded = offloading.count(view.spec->provider) != 0;
    const auto freed = frees_at.find(view.spec->provider);
    decision.models.push_back(model_timer(snapshot.settings, view, now, unloadable,
                                          freed != frees_at.end() ? freed->second : std::nullopt,
                                          offloaded, decision.actions, deadlines));
  }
  decision.next_deadline = deadlines.earliest();
  return decision;
}

}  // namespace siesta
