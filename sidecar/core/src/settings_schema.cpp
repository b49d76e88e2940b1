#include "siesta/core/settings_schema.h"

#include <cmath>

namespace siesta {

std::string check_bool(const nlohmann::json& value) {
  return value.is_boolean() ? "" : "must be true or false, got " + value.dump();
}

std::string check_number(const NumberRule& rule, const nlohmann::json& value) {
  if (!value.is_number()) return "must be a number, got " + value.dump();
  const double d = value.get<double>();
  if (!std::isfinite(d)) return "must be a finite number";
  if (rule.min_exclusive ? d <= rule.min : d < rule.min) {
    return std::string("must be ") + (rule.min_exclusive ? "greater than " : "at least ") +
           number_text(rule.min) + ", got " + value.dump();
  }
  if (d > rule.max) return "must be at most " + number_text(rule.max) + ", got " + value.dump();
  if (rule.whole && d != std::floor(d)) return "must be a whole number";
  return "";
}

const SettingField* find_setting(std::string_view name) {
  for (const auto& field : kSettingFields) {
    if (name == field.key || name == field.alias) return &field;
  }
  return nullptr;
}

std::string check_setting(const SettingField& field, const nlohmann::json& value) {
  return field.flag != nullptr ? check_bool(value) : check_number(field.rule, value);
}

nlohmann::json setting_value(const SettingField& field, const Settings& settings) {
  return field.flag != nullptr ? nlohmann::json(settings.*field.flag)
                               : nlohmann::json(settings.*field.number);
}

double setting_gauge(const SettingField& field, const Settings& settings) {
  if (field.flag != nullptr) return settings.*field.flag ? 1 : 0;
  const double scale = seconds_per(field.rule.unit);
  return settings.*field.number * (scale > 0 ? scale : 1);
}

void set_setting(const SettingField& field, Settings& settings, const nlohmann::json& value) {
  if (field.flag != nullptr) {
    settings.*field.flag = value.get<bool>();
  } else {
    settings.*field.number = value.get<double>();
  }
}

std::string settings_text(const Settings& settings) {
  std::string text;
  for (const auto& field : kSettingFields) {
    if (!text.empty()) text += ' ';
    text.append(field.key).append("=");
    text += field.flag != nullptr ? (settings.*field.flag ? "true" : "false")
                                  : number_text(settings.*field.number);
  }
  return text;
}

}  // namespace siesta
