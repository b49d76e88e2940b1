// The bounds of the settings that can change at runtime: one table read by the config file,
// POST /admin/settings and the state file's restore, so a value one of them refuses is refused
// by all three.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace siesta {

struct SettingRule {
  const char* key;  // the canonical (snake_case) name
  bool is_bool;     // true or false; else a number within the bounds below
  double min = 0;
  bool min_exclusive = false;  // min itself is refused
  double max = 0;
  const char* unit = "";
};

// nullptr for a key that is not a setting.
const SettingRule* find_setting_rule(std::string_view key);

// Empty when `value` is acceptable, else why not, e.g. "must be greater than 0, got 0" or
// "must be at most 5.256e+06, got 1e+300".
std::string check_setting(const SettingRule& rule, const nlohmann::json& value);

}  // namespace siesta
