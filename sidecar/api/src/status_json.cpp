#include "siesta/api/status_json.h"

#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>
#include <vector>

#include "siesta/core/settings_schema.h"
#include "siesta/version.h"

namespace siesta {

using nlohmann::json;

namespace {

// Seconds with millisecond precision: enough for timers, stable in tests and diffs.
double precise(Seconds s) { return std::round(s.count() * 1000.0) / 1000.0; }

bool valid_utf8(std::string_view s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return true;
  struct Discard {
    void Put(char) {}
  } discard;
  rapidjson::MemoryStream in(s.data(), s.size());
  while (in.Tell() < s.size()) {
    if (!rapidjson::UTF8<>::Validate(in, discard)) return false;
  }
  return true;
}

// A JSON text written as it goes, indented like every other admin answer.
class Out {
 public:
  Out() : w_(buf_) { w_.SetIndent(' ', 2); }

  Out& key(std::string_view k) {
    text(k);
    return *this;
  }
  void begin() { w_.StartObject(); }
  void end() { w_.EndObject(); }
  void array_begin() { w_.StartArray(); }
  void array_end() { w_.EndArray(); }
  void null() { w_.Null(); }
  void boolean(bool b) { w_.Bool(b); }
  void integer(long long v) { w_.Int64(v); }
  // Not finite has no JSON form: null, as nlohmann writes it elsewhere in the API.
  void number(double v) { std::isfinite(v) ? void(w_.Double(v)) : null(); }
  void text(std::string_view s) {
    if (valid_utf8(s)) {
      w_.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    } else {
      // Bytes from outside (an engine's or a provider's error) that are not UTF-8: shown with
      // U+FFFD for each bad byte, as every other answer does.
      const std::string quoted =
          json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
      w_.RawValue(quoted.data(), quoted.size(), rapidjson::kStringType);
    }
  }
  void text_or_null(const std::string& s) { s.empty() ? null() : text(s); }
  void value(const json& scalar) {
    const std::string t = scalar.dump(-1, ' ', false, json::error_handler_t::replace);
    w_.RawValue(t.data(), t.size(), raw_type(scalar));
  }

  // The seed shows whole numbers: timestamps in whole seconds, idle minutes rounded down and
  // minutes-until rounded up, so that idle_for + will_sleep_in adds up to the timeout.
  void unix_seconds(const std::optional<WallTime>& t) {
    t ? integer(static_cast<long long>(std::floor(to_unix_seconds(*t)))) : null();
  }
  void floor_minutes(const std::optional<Seconds>& s) {
    s ? integer(static_cast<long long>(std::floor(s->count() / 60.0 + 1e-9))) : null();
  }
  void ceil_minutes(const std::optional<Seconds>& s) {
    s ? integer(static_cast<long long>(std::ceil(s->count() / 60.0 - 1e-9))) : null();
  }
  void seconds(const std::optional<Seconds>& s) { s ? number(precise(*s)) : null(); }
  void bytes(const std::optional<double>& b) { b ? number(*b) : null(); }
  void optional(const std::optional<double>& v) { v ? number(*v) : null(); }

  std::string str() const {
    std::string s;
    s.reserve(buf_.GetSize() + 1);
    s.append(buf_.GetString(), buf_.GetSize()).push_back('\n');
    return s;
  }

 private:
  static rapidjson::Type raw_type(const json& j) {
    if (j.is_boolean()) return j.get<bool>() ? rapidjson::kTrueType : rapidjson::kFalseType;
    if (j.is_number()) return rapidjson::kNumberType;
    if (j.is_string()) return rapidjson::kStringType;
    if (j.is_object()) return rapidjson::kObjectType;  // written compact, on one line
    if (j.is_array()) return rapidjson::kArrayType;
    return rapidjson::kNullType;
  }

  rapidjson::StringBuffer buf_;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w_;
};

// The fields of one service, in the seed's order, then siesta's own.
void service_fields(Out& o, const ServiceView& view, const ServiceTimer& timer) {
  const ServiceRuntime& rt = view.runtime;
  const bool blocked = timer.blocker != SleepBlocker::kNone;
  o.key("last_used").unix_seconds(rt.last_used);
  o.key("idle_for_minutes").floor_minutes(timer.idle_for);
  o.key("idle_sleep_enabled").boolean(rt.idle_sleep_enabled);
  o.key("desired").text(to_string(rt.desired));
  o.key("actual").text(to_string(rt.state));
  o.key("will_sleep_in_minutes").ceil_minutes(timer.sleeps_in);
  o.key("idle_for_seconds").seconds(timer.idle_for);
  o.key("will_sleep_in_seconds").seconds(timer.sleeps_in);
  o.key("sleeps_at").unix_seconds(timer.sleeps_at);
  o.key("idle_timeout_minutes").number(timer.timeout.count() / 60.0);
  blocked ? o.key("sleep_blocker").text(to_string(timer.blocker)) : o.key("sleep_blocker").null();
  blocked ? o.key("will_not_sleep_because").text(describe(timer.blocker))
          : o.key("will_not_sleep_because").null();
  o.key("backend").text(view.spec->backend);
  o.key("in_flight").integer(rt.in_flight);
  o.key("upgraded_connections").integer(rt.upgraded);
  o.key("state_since").unix_seconds(rt.state_since);
  o.key("last_error").text_or_null(rt.last_error);
  o.key("last_error_at").unix_seconds(rt.last_error_at);
  o.key("serving_in_error").boolean(rt.serving_in_error);
  o.key("config_error").text_or_null(rt.config_error);
  // Graduated sleep: the tier in force and the next one, due in will_sleep_in_seconds.
  timer.tier != nullptr ? o.key("tier").text(timer.tier) : o.key("tier").null();
  timer.next_tier ? o.key("next_tier").text(to_string(*timer.next_tier))
                  : o.key("next_tier").null();
  o.key("next_tier_in_seconds").seconds(timer.next_tier ? timer.sleeps_in : std::nullopt);
  // Tiers passed whose action failed (the service kept serving, or stayed in a lighter tier that
  // holds it; last_error says why).
  o.key("failed_tiers");
  o.array_begin();
  for (TierAction a : timer.failed_tiers) o.text(to_string(a));
  o.array_end();
  // The timeout policy that chose idle_timeout_minutes, and why (docs/policies.md).
  o.key("policy").text(timer.policy);
  o.key("policy_reason").text_or_null(timer.policy_reason);
  o.key("prewarm_at").unix_seconds(timer.prewarm_at);
  o.key("idle_gaps").integer(static_cast<long long>(rt.idle_gaps.size()));
  // Energy and cost (docs/policies.md#energy-and-cost); null without an idle power.
  const std::optional<EnergyAccount>& e = timer.energy;
  e ? o.key("idle_power_watts").number(e->watts) : o.key("idle_power_watts").null();
  // A measured one says so before its first measurement (then its watts are null).
  e                                ? o.key("idle_power_source").text(e->source)
  : view.spec->idle_power_measured ? o.key("idle_power_source").text("measured")
                                   : o.key("idle_power_source").null();
  // How many readings the median is of: for a measured one only (null as the other fields are
  // for a service without an idle power).
  view.spec->idle_power_measured
      ? o.key("idle_power_measurements")
            .integer(static_cast<long long>(rt.idle_power_samples.size()))
      : o.key("idle_power_measurements").null();
  e ? o.key("asleep_seconds").number(precise(Seconds(e->asleep_seconds)))
    : o.key("asleep_seconds").null();
  o.key("energy_saved_wh")
      .optional(e ? std::optional(e->saved_joules / kJoulesPerWattHour) : std::nullopt);
  o.key("cold_start_energy_wh")
      .optional(e ? std::optional(e->cold_start_joules / kJoulesPerWattHour) : std::nullopt);
  o.key("cost_saved").optional(e ? e->cost_saved : std::nullopt);
  o.key("cold_start_cost").optional(e ? e->cold_start_cost : std::nullopt);
  // The GPU budget (docs/gpu.md): what it holds while it runs, declared or measured; null: none.
  o.key("gpu_memory_mib").optional(service_gpu_mib(*view.spec, rt));
  view.spec->gpu_memory_measured ? o.key("gpu_memory_source").text("measured")
  : view.spec->gpu_memory_mib    ? o.key("gpu_memory_source").text("configured")
                                 : o.key("gpu_memory_source").null();
  // A schedule (docs/schedules.md): the window in force and the next change; null: none.
  o.key("schedule");
  if (timer.schedule) {
    const auto& st = *timer.schedule;
    o.begin();
    o.key("timezone").text(st.timezone);
    o.key("window").text_or_null(st.window);
    if (st.window.empty()) {
      o.key("asks").null();
    } else {
      o.key("asks").text(st.keeps_on ? "on" : "idle_timeout");
    }
    st.idle_timeout_minutes ? o.key("idle_timeout_minutes").number(*st.idle_timeout_minutes)
                            : o.key("idle_timeout_minutes").null();
    o.key("window_ends_at").unix_seconds(st.window_ends);
    o.key("next_change_at").unix_seconds(st.next_change);
    o.end();
  } else {
    o.null();
  }
  // Activity signals (docs/activity.md): each one's last sample.
  o.key("activity");
  o.array_begin();
  for (const SignalState& sig : rt.activity) {
    o.begin();
    o.key("name").text(sig.name);
    o.key("kind").text(to_string(sig.kind));
    o.key("state").text(!sig.sampled_at      ? "pending"
                        : !sig.error.empty() ? "error"
                        : sig.busy           ? "busy"
                                             : "idle");
    // A Prometheus answer can be +Inf, -Inf or NaN, which JSON has no number for: written as
    // Prometheus's own API writes them, as a string.
    if (!sig.sampled_at || !sig.error.empty()) {
      o.key("value").null();
    } else if (std::isfinite(sig.value)) {
      o.key("value").number(sig.value);
    } else {
      o.key("value").text(std::isnan(sig.value) ? "NaN" : sig.value > 0 ? "+Inf" : "-Inf");
    }
    o.key("threshold").number(sig.threshold);
    o.key("sampled_at").unix_seconds(sig.sampled_at);
    o.key("last_busy_at").unix_seconds(sig.last_busy_at);
    o.key("error").text_or_null(sig.error);
    o.key("errors").integer(static_cast<long long>(sig.errors));
    o.end();
  }
  o.array_end();
}

void model_fields(Out& o, const ModelView& view, const ModelTimer& timer) {
  const ModelRuntime& rt = view.runtime;
  const bool blocked = timer.blocker != UnloadBlocker::kNone;
  // A model whose server cannot unload it counts down to its service's next tier that frees it.
  const bool counting = timer.loaded && (!blocked || !timer.keep_alive_applies);
  o.key("last_used").unix_seconds(rt.last_used);
  // The seed's convention: 0 once the model is unloaded. Loaded with nothing that will free it
  // (its service kept awake): null.
  if (timer.keep_alive_until) {
    o.key("keep_alive_until").unix_seconds(timer.keep_alive_until);
  } else if (timer.loaded && !timer.keep_alive_applies) {
    o.key("keep_alive_until").null();
  } else {
    o.key("keep_alive_until").integer(0);
  }
  o.key("will_unload_in_minutes").ceil_minutes(counting ? timer.unloads_in : std::nullopt);
  o.key("provider").text(timer.provider);
  o.key("will_unload_in_seconds").seconds(counting ? timer.unloads_in : std::nullopt);
  o.key("loaded").boolean(timer.loaded);
  // One word for the dashboards: "offloaded" while a vLLM engine sleeps at level 1 (weights in
  // CPU RAM), "not_loaded" at level 2 or stopped.
  o.key("state").text(timer.loaded ? "loaded" : timer.offloaded ? "offloaded" : "not_loaded");
  // What frees it: its keep-alive, or (vLLM, OpenAI-compatible: the model is the process) its
  // service's idle timeout or sleep tiers, with no keep-alive.
  timer.keep_alive_applies ? o.key("keep_alive_seconds").number(precise(timer.keep_alive))
                           : o.key("keep_alive_seconds").null();
  // The service when its tiers free it first (an Ollama stopped before the keep-alive ends).
  o.key("freed_by")
      .text(timer.keep_alive_applies && !timer.freed_by_service ? "keep_alive" : "service");
  // The policy that chose keep_alive_seconds, and why (docs/models.md); null when no keep-alive
  // applies.
  o.key("policy").text_or_null(timer.policy);
  o.key("policy_reason").text_or_null(timer.policy_reason);
  o.key("idle_gaps").integer(static_cast<long long>(rt.idle_gaps.size()));
  blocked ? o.key("unload_blocker").text(to_string(timer.blocker)) : o.key("unload_blocker").null();
  blocked ? o.key("will_not_unload_because").text(describe(timer.blocker))
          : o.key("will_not_unload_because").null();
  o.key("in_flight").integer(rt.in_flight);
  // As the provider reports it (Ollama's /api/ps), refreshed at each reconcile.
  o.key("size_bytes").bytes(timer.loaded ? rt.size_bytes : std::nullopt);
  o.key("vram_bytes").bytes(timer.loaded ? rt.vram_bytes : std::nullopt);
  o.key("last_error").text_or_null(rt.last_error);
  o.key("last_error_at").unix_seconds(rt.last_error_at);
}

// {name: fields} for every entry: the views and their timers, index by index.
template <class View, class Timer>
void named_objects(Out& o, const std::vector<View>& views, const std::vector<Timer>& timers,
                   void (*fields)(Out&, const View&, const Timer&)) {
  o.begin();
  for (size_t i = 0; i < timers.size(); ++i) {
    o.key(timers[i].name).begin();
    fields(o, views[i], timers[i]);
    o.end();
  }
  o.end();
}

// {key: fields} for every model. The key is the model's name (the seed's shape); a name that
// several services serve is keyed "name@service" for each of them (each one's "provider" says
// the service too).
void model_objects(Out& o, const std::vector<ModelView>& views,
                   const std::vector<ModelTimer>& timers) {
  std::map<std::string_view, int> served_by;
  for (const auto& t : timers) ++served_by[t.name];
  o.begin();
  for (size_t i = 0; i < timers.size(); ++i) {
    const ModelTimer& t = timers[i];
    o.key(served_by[t.name] > 1 ? t.name + "@" + t.provider : t.name).begin();
    model_fields(o, views[i], t);
    o.end();
  }
  o.end();
}

// One entry with its name first.
template <class View, class Timer>
std::string named_text(const std::string& name, const View& view, const Timer& timer,
                       void (*fields)(Out&, const View&, const Timer&)) {
  Out o;
  o.begin();
  o.key("name").text(name);
  fields(o, view, timer);
  o.end();
  return o.str();
}

// The sums over the services that declare an idle power (docs/policies.md#energy-and-cost).
void energy_totals(Out& o, const Decision& decision, const std::string& currency) {
  int services = 0;
  double saved = 0;
  double spent = 0;
  std::optional<double> cost_saved;
  std::optional<double> cold_start_cost;
  for (const ServiceTimer& t : decision.services) {
    if (!t.energy) continue;
    ++services;
    saved += t.energy->saved_joules;
    spent += t.energy->cold_start_joules;
    if (t.energy->cost_saved) cost_saved = cost_saved.value_or(0) + *t.energy->cost_saved;
    if (t.energy->cold_start_cost) {
      cold_start_cost = cold_start_cost.value_or(0) + *t.energy->cold_start_cost;
    }
  }
  o.begin();
  o.key("services").integer(services);
  o.key("energy_saved_wh").number(saved / kJoulesPerWattHour);
  o.key("cold_start_energy_wh").number(spent / kJoulesPerWattHour);
  o.key("cost_saved").optional(cost_saved);
  o.key("cold_start_cost").optional(cold_start_cost);
  o.key("currency").text_or_null(currency);
  o.end();
}

}  // namespace

json settings_json(const Settings& s) {
  json out = json::object();
  for (const auto& field : kSettingFields) out[field.key] = setting_value(field, s);
  return out;
}

std::string service_text(const std::string& name, const ServiceView& view,
                         const ServiceTimer& timer) {
  return named_text(name, view, timer, &service_fields);
}

std::string model_text(const std::string& name, const ModelView& view, const ModelTimer& timer) {
  return named_text(name, view, timer, &model_fields);
}

std::string services_text(const Snapshot& snapshot, const Decision& decision) {
  Out o;
  named_objects(o, snapshot.services, decision.services, &service_fields);
  return o.str();
}

std::string models_text(const Snapshot& snapshot, const Decision& decision) {
  Out o;
  model_objects(o, snapshot.models, decision.models);
  return o.str();
}

json gpu_json(const GpuConfig& gpu, const Snapshot& snapshot, int waiting, WallTime now) {
  const std::vector<GpuHolder> holders = gpu_holders(gpu, snapshot, now);
  json devices = json::array();
  for (const GpuDeviceUse& d : gpu_use(gpu, holders)) {
    devices.push_back({{"id", d.id},
                       {"budget_mib", d.budget_mib},
                       {"held_mib", d.held_mib},
                       {"free_mib", d.free_mib},
                       {"over_mib", d.over_mib}});
  }
  json held = json::array();
  for (const GpuHolder& h : holders) {
    held.push_back({{"kind", h.kind == GpuHolder::Kind::kModel ? "model" : "service"},
                    {"name", h.name},
                    {"service", h.service},
                    {"mib", h.mib},
                    {"devices", h.devices},
                    {"in_flight", h.in_flight},
                    {"pinned", h.pinned}});
  }
  return {{"devices", devices},
          {"holders", held},
          {"exclusive", gpu.exclusive},
          {"wait_seconds", gpu.wait_seconds},
          {"waiting", waiting}};
}

std::string idle_status_text(const Snapshot& snapshot, const Decision& decision,
                             const IdleStatusExtras& extras) {
  Out o;
  o.begin();
  const json settings = settings_json(snapshot.settings);
  for (const auto& [key, value] : settings.items()) o.key(key).value(value);
  o.key("services");
  named_objects(o, snapshot.services, decision.services, &service_fields);
  o.key("models");
  model_objects(o, snapshot.models, decision.models);
  energy_totals(o.key("energy"), decision, extras.currency);
  o.key("monitor_task_running").boolean(extras.monitor.running);
  extras.monitor.last_run ? o.key("monitor_last_run")
                                .number(precise(Seconds(to_unix_seconds(*extras.monitor.last_run))))
                          : o.key("monitor_last_run").null();
  decision.next_deadline
      ? o.key("next_deadline").number(precise(Seconds(to_unix_seconds(*decision.next_deadline))))
      : o.key("next_deadline").null();
  o.key("now").number(precise(Seconds(to_unix_seconds(decision.now))));
  if (extras.gpu != nullptr && extras.gpu->enabled()) {
    o.key("gpu").value(gpu_json(*extras.gpu, snapshot, extras.gpu_waiting, decision.now));
  }
  o.key("state_file").boolean(extras.state_file);
  o.key("version").text(kVersion);
  o.end();
  return o.str();
}

}  // namespace siesta
