#include "siesta/api/status_json.h"

#include <cmath>

#include "siesta/version.h"

namespace siesta {

using nlohmann::json;

namespace {

// Seconds with millisecond precision: enough for timers, stable in tests and diffs.
double precise(Seconds s) { return std::round(s.count() * 1000.0) / 1000.0; }

// The seed shows whole numbers: timestamps in whole seconds, idle minutes rounded down and
// minutes-until rounded up, so that idle_for + will_sleep_in adds up to the timeout.
json unix_seconds(const std::optional<WallTime>& t) {
  if (!t) return nullptr;
  return static_cast<long long>(std::floor(to_unix_seconds(*t)));
}
json floor_minutes(const std::optional<Seconds>& s) {
  if (!s) return nullptr;
  return static_cast<long long>(std::floor(s->count() / 60.0 + 1e-9));
}
json ceil_minutes(const std::optional<Seconds>& s) {
  if (!s) return nullptr;
  return static_cast<long long>(std::ceil(s->count() / 60.0 - 1e-9));
}
json seconds(const std::optional<Seconds>& s) { return s ? json(precise(*s)) : json(nullptr); }

}  // namespace

json settings_json(const Settings& s) {
  return {{"idle_sleep_enabled", s.idle_sleep_enabled},
          {"idle_timeout_minutes", s.idle_timeout_minutes},
          {"model_keep_alive_hours", s.model_keep_alive_hours},
          {"idle_check_interval_minutes", s.idle_check_interval_minutes}};
}

json service_json(const ServiceView& view, const ServiceTimer& timer) {
  const ServiceRuntime& rt = view.runtime;
  json j = {{"last_used", unix_seconds(rt.last_used)},
            {"idle_for_minutes", floor_minutes(timer.idle_for)},
            {"idle_for_seconds", seconds(timer.idle_for)},
            {"idle_sleep_enabled", rt.idle_sleep_enabled},
            {"desired", to_string(rt.desired)},
            {"actual", to_string(rt.state)},
            {"will_sleep_in_minutes", ceil_minutes(timer.sleeps_in)},
            {"will_sleep_in_seconds", seconds(timer.sleeps_in)},
            {"sleeps_at", unix_seconds(timer.sleeps_at)},
            {"idle_timeout_minutes", timer.timeout.count() / 60.0},
            {"sleep_blocker",
             timer.blocker == SleepBlocker::kNone ? json(nullptr) : json(to_string(timer.blocker))},
            {"will_not_sleep_because",
             timer.blocker == SleepBlocker::kNone ? json(nullptr) : json(describe(timer.blocker))},
            {"backend", view.spec->backend},
            {"in_flight", rt.in_flight},
            {"state_since", unix_seconds(rt.state_since)},
            {"last_error", rt.last_error.empty() ? json(nullptr) : json(rt.last_error)},
            {"last_error_at", unix_seconds(rt.last_error_at)}};
  return j;
}

json model_json(const ModelView& view, const ModelTimer& timer) {
  const ModelRuntime& rt = view.runtime;
  const bool blocked = timer.blocker != UnloadBlocker::kNone;
  return {
      {"last_used", unix_seconds(rt.last_used)},
      // The seed's convention: 0 once the model is unloaded.
      {"keep_alive_until", timer.keep_alive_until ? unix_seconds(timer.keep_alive_until) : json(0)},
      {"will_unload_in_minutes",
       ceil_minutes(timer.loaded && !blocked ? timer.unloads_in : std::nullopt)},
      {"will_unload_in_seconds",
       seconds(timer.loaded && !blocked ? timer.unloads_in : std::nullopt)},
      {"provider", timer.provider},
      {"loaded", timer.loaded},
      {"keep_alive_seconds", precise(timer.keep_alive)},
      {"unload_blocker", blocked ? json(to_string(timer.blocker)) : json(nullptr)},
      {"will_not_unload_because", blocked ? json(describe(timer.blocker)) : json(nullptr)},
      {"in_flight", rt.in_flight},
      // As the provider reports it (Ollama's /api/ps), refreshed at each reconcile.
      {"size_bytes", timer.loaded && rt.size_bytes ? json(*rt.size_bytes) : json(nullptr)},
      {"vram_bytes", timer.loaded && rt.vram_bytes ? json(*rt.vram_bytes) : json(nullptr)},
      {"last_error", rt.last_error.empty() ? json(nullptr) : json(rt.last_error)},
      {"last_error_at", unix_seconds(rt.last_error_at)}};
}

json services_json(const Snapshot& snapshot, const Decision& decision) {
  json services = json::object();
  for (size_t i = 0; i < decision.services.size(); ++i) {
    services[decision.services[i].name] = service_json(snapshot.services[i], decision.services[i]);
  }
  return services;
}

json models_json(const Snapshot& snapshot, const Decision& decision) {
  json models = json::object();
  for (size_t i = 0; i < decision.models.size(); ++i) {
    models[decision.models[i].name] = model_json(snapshot.models[i], decision.models[i]);
  }
  return models;
}

json idle_status_json(const Snapshot& snapshot, const Decision& decision,
                      const MonitorStatus& monitor) {
  json j = settings_json(snapshot.settings);
  j["services"] = services_json(snapshot, decision);
  j["models"] = models_json(snapshot, decision);
  j["monitor_task_running"] = monitor.running;
  j["monitor_last_run"] =
      monitor.last_run ? json(precise(Seconds(to_unix_seconds(*monitor.last_run)))) : json(nullptr);
  j["next_deadline"] = decision.next_deadline
                           ? json(precise(Seconds(to_unix_seconds(*decision.next_deadline))))
                           : json(nullptr);
  j["now"] = precise(Seconds(to_unix_seconds(decision.now)));
  j["version"] = kVersion;
  return j;
}

}  // namespace siesta
