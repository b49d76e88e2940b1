// decide(): the one pure function that turns a snapshot of the registry and `now` into every
// timer and every action due. The monitor acts on its result; GET /admin/idle-status and
// /metrics render the same result, so what a dashboard shows is what the monitor does.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/energy.h"
#include "siesta/core/policy.h"
#include "siesta/core/reason.h"
#include "siesta/core/registry.h"

namespace siesta {

// Why a service will not be put to sleep (kNone: it will, at sleeps_at).
enum class SleepBlocker {
  kNone,
  kGlobalDisabled,   // idle_sleep_enabled is false in the settings
  kServiceDisabled,  // the service's idle_sleep_enabled is false
  kDesiredOn,        // desired is "on"
  kNotRunning,       // stopped, starting, stopping or in error: no idle timer runs (a paused
                     // service's does: it goes on to its deeper tiers)
  kInFlight,         // a request or connection is open
  kScheduledOn,      // a schedule window in force keeps it on (schedule.h)
};
inline constexpr SleepBlocker kAllSleepBlockers[] = {
    SleepBlocker::kGlobalDisabled, SleepBlocker::kServiceDisabled, SleepBlocker::kDesiredOn,
    SleepBlocker::kNotRunning,     SleepBlocker::kInFlight,        SleepBlocker::kScheduledOn};
const char* to_string(SleepBlocker blocker);  // stable snake_case, used as a metric label
const char* describe(SleepBlocker blocker);   // a sentence for people

enum class UnloadBlocker {
  kNone,
  kGlobalDisabled,
  kNotLoaded,
  kInFlight,
  kUnloading,
  kRetryWait,    // the last unload failed; retried at retry_at
  kNoUnloadApi,  // its server (vLLM, OpenAI-compatible) holds it as long as it runs: the
                 // service's idle timeout or sleep tiers free it, not a keep-alive
};
const char* to_string(UnloadBlocker blocker);
const char* describe(UnloadBlocker blocker);

struct ServiceTimer {
  std::string name;
  ServiceState state = ServiceState::kStopped;
  // The idle time of the next tier (the last one once all are in force); with one tier, the
  // effective idle timeout. idle_for + sleeps_in adds up to it.
  Seconds timeout{0};
  std::optional<Seconds> idle_for;    // since last_used; absent if never used
  std::optional<WallTime> sleeps_at;  // when the next tier comes; absent when none will
  std::optional<Seconds> sleeps_in;   // sleeps_at - now, never negative
  SleepBlocker blocker = SleepBlocker::kNone;
  // Graduated sleep: the tier in force ("awake", an action's name, "stop" for a stopped
  // service; a tier claimed but not done yet is not, ServiceRuntime::tier_pending) and the next
  // one, due at sleeps_at (absent when none will come). nullptr for a service in error that is
  // not served (a failed start): it is in no tier, and not awake.
  const char* tier = "awake";
  std::optional<TierAction> next_tier;
  // Tiers passed whose action failed: the service kept serving through them, or stayed in the
  // lighter tier that holds it (failed_tiers()).
  std::vector<TierAction> failed_tiers;
  // The timeout policy that chose `timeout` and why (with sleep_tiers: which tier comes next,
  // after what idle time, and the tiers that failed); and when the adaptive policy will start it
  // again before a predicted use (absent: not planned).
  const char* policy = "fixed";
  std::string policy_reason;
  std::optional<WallTime> prewarm_at;
  // A model server: when its next tier that frees its models (vllm_sleep, unload_models, stop)
  // comes; absent when none will (a blocker) or for other services.
  std::optional<WallTime> frees_models_at;
  // A service with a schedule: its zone, the window in force (if any) and what it asks, and the
  // next instant the schedule asks something else.
  struct ScheduleTimer {
    std::string timezone;
    std::string window;  // "mon-fri 08:30-18:00"; empty: none in force
    bool keeps_on = false;
    std::optional<double> idle_timeout_minutes;
    std::optional<WallTime> window_ends;
    std::optional<WallTime> next_change;
  };
  std::optional<ScheduleTimer> schedule;
  // Energy and cost at `now` (energy.h); absent when the service declares no idle power.
  std::optional<EnergyAccount> energy;
};

struct ModelTimer {
  std::string name;
  std::string provider;
  bool loaded = false;
  // Not loaded, but its weights wait in CPU RAM: its server's vLLM engine sleeps at level 1 (at
  // level 2, or stopped, it is only not loaded). A wake brings them back.
  bool offloaded = false;
  // Its keep-alive unloads it. Not for a model of a server whose model is the process (vLLM,
  // OpenAI-compatible; blocker kNoUnloadApi): the service's idle timeout or sleep tiers free it,
  // and keep_alive_until / unloads_in are when its service's next tier that frees it comes
  // (ServiceTimer::frees_models_at).
  bool keep_alive_applies = true;
  // Its keep-alive applies, but its service's next tier frees it first (an Ollama stopped or its
  // models unloaded before the keep-alive ends): unloads_in counts down to that tier, while
  // keep_alive_until stays the keep-alive's end.
  bool freed_by_service = false;
  Seconds keep_alive{0};  // the effective keep-alive (when it applies)
  // The policy that chose keep_alive and why (model_policy_choice; "request": the client's own
  // keep_alive in the request that set it); empty when its keep-alive does not apply.
  std::string policy;
  std::string policy_reason;
  std::optional<WallTime> keep_alive_until;  // absent when not loaded, or nothing will free it
  std::optional<Seconds> unloads_in;  // until it is freed (keep_alive_until, or its service's
                                      // tier when freed_by_service) - now, never negative
  UnloadBlocker blocker = UnloadBlocker::kNone;
};

// kSleepService: the stop tier (the full stop); kLightSleep: a lighter tier, Action::tier.
enum class ActionKind { kSleepService, kStartService, kUnloadModel, kLightSleep };
const char* to_string(ActionKind kind);

struct Action {
  ActionKind kind;
  std::string name;
  Reason reason;          // kIdle, kDesired, kExpired, kPrewarm, kSchedule
  std::size_t tier = 0;   // kLightSleep: the tier to enter, 1-based (ServiceRuntime::tier)
  std::string service{};  // kUnloadModel: the model's service (models are per service)
  bool operator==(const Action&) const = default;
};

struct Decision {
  WallTime now{};
  std::vector<ServiceTimer> services;  // same order as the snapshot
  std::vector<ModelTimer> models;
  std::vector<Action> actions;            // everything due at `now`
  std::optional<WallTime> next_deadline;  // the earliest future instant something is due
};

// The configured idle timeout: the service's idle_timeout_minutes, else the global one.
Seconds effective_idle_timeout(const Settings& settings, const ServiceSpec& spec);
// What the service's timeout policy (spec.policy) chooses from its history now; within a
// schedule window that sets idle_timeout_minutes, that timeout (policy "schedule").
PolicyChoice policy_choice(const Settings& settings, const ServiceSpec& spec,
                           const ServiceRuntime& runtime, WallTime now);
// A schedule window in force at `now` keeps the service on.
bool scheduled_on(const ServiceSpec& spec, WallTime now);
// The service's configured sleep tiers: its sleep_tiers, else the one tier {idle timeout, stop}
// (its policy may choose another timeout: ServiceTimer::timeout).
std::vector<SleepTier> effective_tiers(const Settings& settings, const ServiceSpec& spec);
// Whether a tier the service has passed still holds it: a pause while its backend holds it
// paused, an engine sleep while the engine sleeps (one that failed, or was undone outside
// siesta, does not); an unload_models tier once passed.
bool tier_holds(TierAction action, const ServiceRuntime& runtime);
// "awake", the action of the deepest tier passed that holds it (tier_holds), or "stop" for a
// stopped service: the state it is really in.
const char* tier_name(const ServiceSpec& spec, const ServiceRuntime& runtime);
// The tiers it has passed that do not hold it (their action failed: the service kept serving, or
// stayed in a lighter tier that holds it), lightest first; empty for a stopped service.
std::vector<TierAction> failed_tiers(const ServiceSpec& spec, const ServiceRuntime& runtime);
// The one rule for every keep-alive siesta enforces, whatever its source (the model's
// keep_alive_hours, the global model_keep_alive_hours, a client's keep_alive): within
// [min_seconds, max_seconds] (a model's keep_alive_min_seconds and keep_alive_max_seconds).
double clamp_keep_alive(double seconds, double min_seconds, double max_seconds);
// What the model's keep-alive policy (spec.policy) chooses from its history now: the configured
// keep-alive (keep_alive_hours, else the global model_keep_alive_hours) for "fixed" and as
// "adaptive"'s fallback; always within the model's bounds; never a pre-warm.
PolicyChoice model_policy_choice(const Settings& settings, const ModelSpec& spec,
                                 const ModelRuntime& runtime);
// The per-use keep-alive if any, else the model's policy's (model_policy_choice); always clamped
// into the model's bounds.
Seconds effective_keep_alive(const Settings& settings, const ModelSpec& spec,
                             const ModelRuntime& runtime);

// A failed start of a desired-on service, or a failed unload, is retried this long later.
Seconds retry_delay(const Settings& settings);

// The timers siesta sets outside decide() (claims, request ends, loads). Each is computed here
// and nowhere else, so a deadline the monitor is woken for is the one decide() later finds due.

// How often backends are reconciled (their real state re-read): idle_check_interval_minutes.
Seconds reconcile_interval(const Settings& settings);
// When a failure at `now` is retried (retry_at of a service or a model).
WallTime retry_at(const Settings& settings, WallTime now);
// How long after its last failed start a request may try a service's start again, after
// `failed_in_a_row` starts failed in a row: at once after one (a passing fault), then 2, 4, 8, 16,
// 32 s, then every 60 s (a command that cannot start was run again at every request). An admin
// wake always tries.
Seconds start_backoff(int failed_in_a_row);
// A use of the service ended at `last_used` with nothing else in flight: its first sleep tier
// (the idle timeout with no sleep_tiers) is due then. The earliest deadline the use creates.
WallTime first_tier_at(const Settings& settings, const ServiceSpec& spec,
                       const ServiceRuntime& runtime, WallTime last_used);
// A model's keep-alive ends (last_used + effective_keep_alive); absent when it is forever or the
// model has no last use.
std::optional<WallTime> keep_alive_ends(const Settings& settings, const ModelSpec& spec,
                                        const ModelRuntime& runtime);

// The keep-alive rule for a request on a model: its default keep-alive (its policy's choice from
// `runtime`'s history: model_policy_choice; the configured one for "fixed") and its bounds.
// `model` is the known model's spec; for a model siesta does not know yet (nullptr), the model it
// would be learned as on `server` (its model_keep_alive_hours; nullptr: none). `runtime`: the
// model's (nullptr: none, no history).
struct KeepAlivePolicy {
  double default_seconds;
  double min_seconds;
  double max_seconds;
  const char* policy = "fixed";  // the policy that chose default_seconds, and why
  std::string reason{};
};
KeepAlivePolicy keep_alive_policy(const Settings& settings, const ModelSpec* model,
                                  const ServiceSpec* server, const ModelRuntime* runtime = nullptr);

// The keep-alive a request gives its model: the client's own `asked` (Ollama's keep_alive) if it
// sent one, else the policy's default; within the bounds. `policy` names who chose it ("request"
// for the client's) and `reason` why (ModelRuntime::keep_alive_policy and keep_alive_reason).
struct RequestKeepAlive {
  double seconds = 0;
  std::string policy{};
  std::string reason{};
};
RequestKeepAlive request_keep_alive(const KeepAlivePolicy& policy, std::optional<double> asked);

// What siesta tells a model server that unloads on its own (Ollama's keep_alive): longer than
// siesta's own deadline by this grace, so the server never unloads first, yet finite, so a model
// is not pinned forever should siesta be gone. Infinite stays infinite.
inline constexpr double kModelServerGraceSeconds = 300;
double model_server_keep_alive(double enforced_seconds);

// The rules decide() applies to one entry, for callers that must re-check a claim
// atomically under the registry lock (a use may have arrived since the decision).
SleepBlocker sleep_blocker(const Settings& settings, const ServiceRuntime& runtime);
// The tier (1-based) the service should enter now: the stop tier as soon as it is due (a light
// tier still to come is skipped), else the next tier once due; nullopt when none is due. A
// vllm_sleep tier of an engine known to have no sleep routes (engine_sleep_unavailable) is never
// the next tier: the one after it is.
std::optional<std::size_t> tier_due(const Settings& settings, const ServiceSpec& spec,
                                    const ServiceRuntime& runtime, WallTime now);
// tier_due() names the stop tier.
bool sleep_due(const Settings& settings, const ServiceSpec& spec, const ServiceRuntime& runtime,
               WallTime now);
UnloadBlocker unload_blocker(const Settings& settings, const ModelRuntime& runtime, WallTime now);
bool unload_due(const Settings& settings, const ModelSpec& spec, const ModelRuntime& runtime,
                WallTime now);

Decision decide(const Snapshot& snapshot, WallTime now);

}  // namespace siesta
