#include "siesta/config/settings_rules.h"

#include <cmath>
#include <sstream>

#include "siesta/core/settings.h"

namespace siesta {

namespace {

// The check interval has a floor: a tiny one (say 1e-300 minutes) makes the monitor reconcile
// in a loop that never sleeps.
constexpr SettingRule kRules[] = {{"idle_sleep_enabled", true},
                                  {"idle_timeout_minutes", false, 0, true, kMaxMinutes, "minutes"},
                                  {"model_keep_alive_hours", false, 0, false, kMaxHours, "hours"},
                                  {"idle_check_interval_minutes", false, kMinCheckIntervalMinutes,
                                   false, kMaxMinutes, "minutes"}};

std::string number_text(double d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

}  // namespace

const SettingRule* find_setting_rule(std::string_view key) {
  for (const auto& rule : kRules) {
    if (key == rule.key) return &rule;
  }
  return nullptr;
}

std::string check_setting(const SettingRule& rule, const nlohmann::json& value) {
  if (rule.is_bool) {
    return value.is_boolean() ? "" : "must be true or false, got " + value.dump();
  }
  if (!value.is_number()) return "must be a number, got " + value.dump();
  const double d = value.get<double>();
  if (!std::isfinite(d)) return "must be a finite number";
  if (rule.min_exclusive ? d <= rule.min : d < rule.min) {
    return std::string("must be ") + (rule.min_exclusive ? "greater than " : "at least ") +
           number_text(rule.min) + ", got " + value.dump();
  }
  if (d > rule.max) return "must be at most " + number_text(rule.max) + ", got " + value.dump();
  return "";
}

}  // namespace siesta
