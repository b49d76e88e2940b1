// The settings schema: every value a user sets (the global settings, a service's and a model's
// numbers) with its key, its bounds and its unit, written once. The config file, the Docker
// labels, POST /admin/settings, the state file's restore, the status answers, the metrics and
// the "Settings changed" log line all read these tables, so a value one of them refuses is
// refused by all, and adding a global setting is one member of Settings (its default), one row
// of kSettingFields and its line in docs/configuration.md.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "siesta/core/model.h"
#include "siesta/core/service.h"
#include "siesta/core/settings.h"
#include "siesta/core/units.h"

namespace siesta {

// The bounds of a number: finite, within [min, max] (min itself refused when min_exclusive),
// whole when `whole`.
struct NumberRule {
  double min = 0;
  bool min_exclusive = false;
  double max = 0;
  const char* unit = "";  // "minutes", "hours", "seconds" (units.h), "MiB"; empty for a count
  bool whole = false;
};

// "a number of minutes", "a number per kWh", "a number": what a bad value's error asks for.
inline std::string a_number_of(std::string_view unit) {
  if (unit.empty()) return "a number";
  return std::string(unit.starts_with("per ") ? "a number " : "a number of ") + std::string(unit);
}

inline constexpr NumberRule kTimeoutMinutes{0, true, kMaxMinutes, "minutes"};
inline constexpr NumberRule kKeepAliveHours{0, false, kMaxHours, "hours"};
inline constexpr NumberRule kKeepAliveSeconds{0, false, kMaxHours * 3600, "seconds"};
// GPU memory in MiB: up to 16 TiB (far beyond any card, short of absurd).
inline constexpr NumberRule kGpuMemoryMib{0, true, 16'777'216, "MiB"};
// A price per kWh in any currency: up to a million (far beyond any tariff, short of absurd).
inline constexpr NumberRule kPricePerKwh{0, false, 1e6, "per kWh"};
// A service's idle power in watts: up to 100 kW (a rack of GPUs).
inline constexpr NumberRule kIdlePowerWatts{0, false, 100'000, "W"};
inline constexpr NumberRule kCheckIntervalMinutes{kMinCheckIntervalMinutes, false, kMaxMinutes,
                                                  "minutes"};

// Empty when `value` is acceptable, else why not, as the config file says it: "must be true or
// false, got 1", "must be a number, got \"x\"", "must be a finite number", "must be greater
// than 0, got 0", "must be at least 0.01, got 0", "must be at most 5.256e+06, got 1e+300",
// "must be a whole number".
std::string check_bool(const nlohmann::json& value);
std::string check_number(const NumberRule& rule, const nlohmann::json& value);

// One global setting (the seed's idle-sleep settings, changeable at runtime).
struct SettingField {
  const char* key;                     // snake_case: config file, state file, status, logs
  const char* alias;                   // the seed's camelCase name for POST /admin/settings
  bool Settings::*flag = nullptr;      // a switch (true or false) ...
  double Settings::*number = nullptr;  // ... or a number within `rule`
  NumberRule rule{};
  // Its gauge on /metrics: in seconds for a duration (a switch: 1 or 0; any other unit, the
  // number itself: setting_gauge).
  const char* metric = "";
  const char* metric_help = "";
};

// In the order of the seed, the metrics and the log line.
inline constexpr SettingField kSettingFields[] = {
    {"idle_sleep_enabled",
     "idleSleepEnabled",
     &Settings::idle_sleep_enabled,
     nullptr,
     {},
     "siesta_settings_idle_sleep_enabled",
     "1 when idle sleep is on globally."},
    {"idle_timeout_minutes", "idleTimeout", nullptr, &Settings::idle_timeout_minutes,
     kTimeoutMinutes, "siesta_settings_idle_timeout_seconds", "The global idle timeout."},
    {"model_keep_alive_hours", "modelKeepAlive", nullptr, &Settings::model_keep_alive_hours,
     kKeepAliveHours, "siesta_settings_model_keep_alive_seconds", "The global model keep-alive."},
    // A floor: a tiny interval (say 1e-300 minutes) would have the monitor reconcile in a loop
    // that never sleeps.
    {"idle_check_interval_minutes", "idleCheckInterval", nullptr,
     &Settings::idle_check_interval_minutes, kCheckIntervalMinutes,
     "siesta_settings_idle_check_interval_seconds", "How often backends are reconciled."},
    // Energy and cost (energy.h): no duration, so its gauge is the number itself. 0: no price.
    {"price_per_kwh", "pricePerKwh", nullptr, &Settings::price_per_kwh, kPricePerKwh,
     "siesta_settings_price_per_kwh",
     "The price of a kWh, for the cost saved by sleeping; 0: no price."},
};

// The setting named `name` (its key or its alias); nullptr for none.
const SettingField* find_setting(std::string_view name);
// Empty when `value` is acceptable for the setting, else why not (check_bool, check_number).
std::string check_setting(const SettingField& field, const nlohmann::json& value);
// The setting's value in `settings`, as JSON (a boolean or a number).
nlohmann::json setting_value(const SettingField& field, const Settings& settings);
// The value of its /metrics gauge (see SettingField::metric).
double setting_gauge(const SettingField& field, const Settings& settings);
// Sets it from a value check_setting accepted.
void set_setting(const SettingField& field, Settings& settings, const nlohmann::json& value);
// "idle_sleep_enabled=true idle_timeout_minutes=60 ...": every setting, for the log.
std::string settings_text(const Settings& settings);

// A number of a service's or a model's config entry. A Docker label that sets it (labels.cpp)
// gives a duration, converted to `rule.unit` (seconds_per, units.h). The config file's known
// keys of an entry include these keys (spec_keys).
template <class Spec>
struct SpecNumber {
  const char* key;
  NumberRule rule;
  void (*set)(Spec&, double);
};

inline constexpr SpecNumber<ServiceSpec> kServiceNumbers[] = {
    // Overrides the global idle_timeout_minutes: the same bounds.
    {"idle_timeout_minutes", kTimeoutMinutes,
     [](ServiceSpec& s, double v) { s.idle_timeout_minutes = v; }},
    {"start_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.start_timeout_seconds = v; }},
    {"stop_timeout_seconds",
     {0, false, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.stop_timeout_seconds = v; }},
    {"response_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.response_timeout_seconds = v; }},
    {"max_connections",
     {1, false, 1'000'000, "", true},
     [](ServiceSpec& s, double v) { s.max_connections = static_cast<int>(v); }},
    {"tcp_idle_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.tcp_idle_timeout_seconds = v; }},
    {"upgraded_idle_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.upgraded_idle_timeout_seconds = v; }},
    // A model server's default for its models: the bounds of a model's keep_alive_hours.
    {"model_keep_alive_hours", kKeepAliveHours,
     [](ServiceSpec& s, double v) { s.model_keep_alive_hours = v; }},
    // The GPU budget (docs/gpu.md): what it holds on each of its devices while it runs.
    {"gpu_memory_mib", kGpuMemoryMib, [](ServiceSpec& s, double v) { s.gpu_memory_mib = v; }},
    // Energy and cost (energy.h). A label gives it as a plain number of watts.
    {"idle_power_watts", kIdlePowerWatts, [](ServiceSpec& s, double v) { s.idle_power_watts = v; }},
    // How long a start takes, for the adaptive policy's break-even and pre-warm lead.
    {"cold_start_seconds",
     {0, false, 86400, "seconds"},
     [](ServiceSpec& s, double v) { s.cold_start_seconds = v; }},
};

// keep_alive_max_seconds must also be at least keep_alive_min_seconds (the config checks it).
// The entry of `key` in `fields`; nullptr for none.
template <class Spec, std::size_t N>
constexpr const SpecNumber<Spec>* find_number(const SpecNumber<Spec> (&fields)[N],
                                              std::string_view key) {
  for (const auto& field : fields) {
    if (key == field.key) return &field;
  }
  return nullptr;
}

// The keys of `fields`, for a list of the keys an entry may have.
template <class Spec, std::size_t N>
std::set<std::string> spec_keys(const SpecNumber<Spec> (&fields)[N]) {
  std::set<std::string> keys;
  for (const auto& field : fields) keys.insert(field.key);
  return keys;
}

inline constexpr SpecNumber<ModelSpec> kModelNumbers[] = {
    {"keep_alive_hours", kKeepAliveHours, [](ModelSpec& m, double v) { m.keep_alive_hours = v; }},
    {"keep_alive_min_seconds", kKeepAliveSeconds,
     [](ModelSpec& m, double v) { m.keep_alive_min_seconds = v; }},
    {"keep_alive_max_seconds", kKeepAliveSeconds,
     [](ModelSpec& m, double v) { m.keep_alive_max_seconds = v; }},
    // Its size until its server reports size_vram (docs/gpu.md).
    {"gpu_memory_mib", kGpuMemoryMib, [](ModelSpec& m, double v) { m.gpu_memory_mib = v; }},
};

}  // namespace siesta
