#include "siesta/api/status_json.h"

#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cmath>
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
  o.key("tier").text(timer.tier);
  timer.next_tier ? o.key("next_tier").text(to_string(*timer.next_tier))
                  : o.key("next_tier").null();
  o.key("next_tier_in_seconds").seconds(timer.next_tier ? timer.sleeps_in : std::nullopt);
  // The timeout policy that chose idle_timeout_minutes, and why (docs/policies.md).
  o.key("policy").text(timer.policy);
  o.key("policy_reason").text_or_null(timer.policy_reason);
  o.key("prewarm_at").unix_seconds(timer.prewarm_at);
  o.key("idle_gaps").integer(static_cast<long long>(rt.idle_gaps.size()));
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
  const bool counting = timer.loaded && !blocked;
  o.key("last_used").unix_seconds(rt.last_used);
  // The seed's convention: 0 once the model is unloaded.
  timer.keep_alive_until ? o.key("keep_alive_until").unix_seconds(timer.keep_alive_until)
                         : o.key("keep_alive_until").integer(0);
  o.key("will_unload_in_minutes").ceil_minutes(counting ? timer.unloads_in : std::nullopt);
  o.key("provider").text(timer.provider);
  o.key("will_unload_in_seconds").seconds(counting ? timer.unloads_in : std::nullopt);
  o.key("loaded").boolean(timer.loaded);
  // One word for the dashboards: "offloaded" while a vLLM engine sleeps at level 1 (weights in
  // CPU RAM), "not_loaded" at level 2 or stopped.
  o.key("state").text(timer.loaded ? "loaded" : timer.offloaded ? "offloaded" : "not_loaded");
  o.key("keep_alive_seconds").number(precise(timer.keep_alive));
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
  named_objects(o, snapshot.models, decision.models, &model_fields);
  return o.str();
}

json gpu_json(const GpuConfig& gpu, const Snapshot& snapshot, int waiting) {
  const std::vector<GpuHolder> holders = gpu_holders(gpu, snapshot);
  json devices = json::array();
  for (const GpuDeviceUse& d : gpu_use(gpu, holders)) {
    devices.push_back({{"id", d.id},
                       {"budget_mib", d.budget_mib},
                       {"held_mib", d.held_mib},
                       {"free_mib", d.free_mib}});
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
  named_objects(o, snapshot.models, decision.models, &model_fields);
  o.key("monitor_task_running").boolean(extras.monitor.running);
  extras.monitor.last_run ? o.key("monitor_last_run")
                                .number(precise(Seconds(to_unix_seconds(*extras.monitor.last_run))))
                          : o.key("monitor_last_run").null();
  decision.next_deadline
      ? o.key("next_deadline").number(precise(Seconds(to_unix_seconds(*decision.next_deadline))))
      : o.key("next_deadline").null();
  o.key("now").number(precise(Seconds(to_unix_seconds(decision.now))));
  if (extras.gpu != nullptr && extras.gpu->enabled()) {
    o.key("gpu").value(gpu_json(*extras.gpu, snapshot, extras.gpu_waiting));
  }
  o.key("state_file").boolean(extras.state_file);
  o.key("version").text(kVersion);
  o.end();
  return o.str();
}

}  // namespace siesta
