// Reason: why siesta woke, stopped, loaded or unloaded something. Decisions and the controller
// compare these as values; the text (to_string) is the `reason` label of the metrics
// (docs/metrics.md), of GET /admin/events and of the logs, written only at those edges.
#pragma once

namespace siesta {

enum class Reason {
  kRequest,       // a request through the proxy: a wake, a model load
  kManual,        // the admin API: a wake, a sleep, a model load
  kDesired,       // desired "on": a wake
  kSchedule,      // a schedule window that keeps the service on: a wake
  kPrewarm,       // the adaptive policy's predicted use: a wake
  kIdle,          // the idle timer: a sleep
  kExpired,       // the model's keep-alive ran out: an unload
  kForced,        // the admin API: an unload
  kServiceSleep,  // its service was put to sleep: an unload
  kExternal,      // found stopped, or its engine asleep, outside siesta: an unload
  kSleepTier,     // an unload_models or vllm_sleep tier: an unload
  kMakeRoom,      // the GPU budget made room: a sleep, an unload
};

// "request", "manual", "desired", "schedule", "prewarm", "idle", "expired", "forced",
// "service_sleep", "external", "sleep_tier", "make_room"
const char* to_string(Reason reason);

// Every reason each counter's `reason` label takes, as the code passes them: the metrics declare
// each at 0 (rate() sees the first event), and metrics/CATALOGUE.md and docs/models.md list them
// (tests/unit/metrics_catalogue_test.cpp compares the three).
// siesta_service_sleeps_total: the idle timer, the admin API, room in the GPU budget.
inline constexpr Reason kSleepReasons[] = {Reason::kIdle, Reason::kManual, Reason::kMakeRoom};
// siesta_service_wakes_total: the admin API (and a model load), desired "on", a request, a
// schedule window that keeps it on, the adaptive policy's pre-warm.
inline constexpr Reason kWakeReasons[] = {Reason::kManual, Reason::kDesired, Reason::kRequest,
                                          Reason::kSchedule, Reason::kPrewarm};
// siesta_model_unloads_total.
inline constexpr Reason kUnloadReasons[] = {Reason::kExpired,      Reason::kForced,
                                            Reason::kServiceSleep, Reason::kExternal,
                                            Reason::kSleepTier,    Reason::kMakeRoom};
// siesta_model_loads_total: a proxied request, the admin API.
inline constexpr Reason kLoadReasons[] = {Reason::kRequest, Reason::kManual};

}  // namespace siesta
