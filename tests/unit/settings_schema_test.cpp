// The settings schema (settings_schema.h): one table, read alike by the config file,
// POST /admin/settings, the state file's restore, the status answers, the metrics and the docs.
#include "siesta/core/settings_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "siesta/api/admin_server.h"
#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/config/labels.h"
#include "siesta/runtime/persister.h"
#include "siesta/state/state_store.h"
#include "world.h"

namespace siesta {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string read_text(const std::string& relative) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/" + relative);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(SettingsSchema, EveryRowIsComplete) {
  std::set<std::string> names;
  for (const auto& field : kSettingFields) {
    SCOPED_TRACE(field.key);
    EXPECT_TRUE(names.insert(field.key).second) << "a key twice";
    EXPECT_TRUE(names.insert(field.alias).second) << "an alias twice";
    EXPECT_NE(field.flag == nullptr, field.number == nullptr) << "a switch or a number";
    if (field.number != nullptr) {
      EXPECT_STRNE(field.rule.unit, "");
      EXPECT_LT(field.rule.min, field.rule.max);
    }
    EXPECT_EQ(std::string(field.metric).rfind("siesta_settings_", 0), 0U);
    EXPECT_EQ(find_setting(field.key), &field);
    EXPECT_EQ(find_setting(field.alias), &field);
  }
  EXPECT_EQ(find_setting("colour"), nullptr);
}

// Adding a setting means a row and its docs line: the line is checked here.
TEST(SettingsSchema, EverySettingIsDocumented) {
  const std::string configuration = read_text("docs/configuration.md");
  const std::string api = read_text("docs/api.md");
  const std::string catalogue = read_text("metrics/CATALOGUE.md");
  for (const auto& field : kSettingFields) {
    EXPECT_THAT(configuration, HasSubstr("| `" + std::string(field.key) + "` |"));
    EXPECT_THAT(api, HasSubstr("\"" + std::string(field.alias) + "\""));
    EXPECT_THAT(catalogue, HasSubstr("| `" + std::string(field.metric) + "` |"));
  }
}

// The admin page's settings form is written by hand (sidecar/api/ui/index.html): each row has
// its input, named by the alias the page posts, of the row's kind, with the row's bounds and
// unit, so the browser refuses what the API would refuse. HTML has no exclusive minimum: such an
// input says so with data-exclusive-min and app.js refuses the bound itself.
TEST(SettingsSchema, TheAdminPageFormHasEachRowWithItsBounds) {
  const std::string page = read_text("sidecar/api/ui/index.html");
  const std::string script = read_text("sidecar/api/ui/app.js");
  const auto attribute = [](const std::string& tag, const std::string& name) {
    std::smatch m;
    const std::regex re("\\s" + name + "(?:=\"([^\"]*)\")?[\\s>/]");
    if (!std::regex_search(tag, m, re)) return std::optional<std::string>{};
    return std::optional<std::string>{m[1].str()};
  };
  for (const auto& field : kSettingFields) {
    SCOPED_TRACE(field.key);
    std::smatch m;
    const std::regex input_re("<input[^>]*\\sid=\"" + std::string(field.alias) + "\"[^>]*>");
    ASSERT_TRUE(std::regex_search(page, m, input_re)) << "no input with id " << field.alias;
    const std::string tag = m.str();
    EXPECT_EQ(attribute(tag, "name"), field.alias);
    EXPECT_THAT(script, HasSubstr(std::string(field.alias) + ":")) << "app.js posts it";
    if (field.flag != nullptr) {
      EXPECT_EQ(attribute(tag, "type"), "checkbox");
      continue;
    }
    EXPECT_EQ(attribute(tag, "type"), "number");
    ASSERT_TRUE(attribute(tag, "min").has_value());
    ASSERT_TRUE(attribute(tag, "max").has_value());
    EXPECT_DOUBLE_EQ(std::stod(*attribute(tag, "min")), field.rule.min);
    EXPECT_DOUBLE_EQ(std::stod(*attribute(tag, "max")), field.rule.max);
    EXPECT_EQ(attribute(tag, "data-exclusive-min").has_value(), field.rule.min_exclusive);
    const std::regex label_re("<label for=\"" + std::string(field.alias) + "\">[^<]*\\(" +
                              field.rule.unit + "\\)</label>");
    EXPECT_TRUE(std::regex_search(page, label_re))
        << "its label names the unit " << field.rule.unit;
  }
}

TEST(SettingsSchema, ValuesRoundTripThroughJson) {
  Settings s;
  s.idle_sleep_enabled = false;
  s.idle_timeout_minutes = 7;
  Settings copy;
  for (const auto& field : kSettingFields) set_setting(field, copy, setting_value(field, s));
  EXPECT_EQ(copy, s);
  EXPECT_EQ(settings_json(s)["idle_timeout_minutes"], 7);
  // The "Settings changed: ..." log line, as it was written before the table (a new setting
  // joins at the end).
  EXPECT_THAT(settings_text(Settings{}),
              ::testing::StartsWith("idle_sleep_enabled=true idle_timeout_minutes=60 "
                                    "model_keep_alive_hours=2 idle_check_interval_minutes=5"));
}

// The issue that started the table: the state file accepted values the config and the API
// refused. Every value is now accepted or refused by all three alike.
class SettingsAgree : public ::testing::TestWithParam<const SettingField*> {};

TEST_P(SettingsAgree, ConfigApiAndStateFileAcceptTheSameValues) {
  const SettingField& field = *GetParam();
  const NumberRule& r = field.rule;
  const std::vector<json> values = {json(true),      json(false), json("5"),         json(nullptr),
                                    json(r.min - 1), json(r.min), json(r.min + 0.5), json(r.max),
                                    json(r.max * 2), json(0),     json(1),           json(-0.001)};
  for (const json& value : values) {
    SCOPED_TRACE(std::string(field.key) + " = " + value.dump());
    const bool schema = check_setting(field, value).empty();

    bool config = true;
    try {
      parse_config(json{{field.key, value}}.dump(), "test.json");
    } catch (const ConfigError&) {
      config = false;
    }
    EXPECT_EQ(config, schema) << "config file";

    testing::World world("{}");
    Metrics metrics;
    Persister persister(*world.registry, nullptr, Baseline{}, nullptr);
    AdminServer admin(
        *world.registry, *world.controller, persister, metrics, world.clock,
        [] { return MonitorStatus{}; }, AdminOptions{});
    const AdminResponse answer =
        admin.handle("POST", "/admin/settings", {}, json{{field.alias, value}}.dump());
    EXPECT_EQ(answer.status == 200, schema) << "POST /admin/settings: " << answer.body;
    if (schema) {
      EXPECT_EQ(settings_json(world.registry->settings())[field.key], value);
    }

    testing::World restored("{}");
    const Baseline baseline{Settings{}, {}};
    json doc = {{"format", "siesta-state/1"},
                {"settings",
                 {{field.key, {{"value", value}, {"config", setting_value(field, Settings{})}}}}}};
    auto result = restore_state(doc, baseline, *restored.registry, restored.clock.wall_now());
    ASSERT_TRUE(result);
    EXPECT_EQ(result->warnings.empty(), schema) << "state file";
  }
}

std::vector<const SettingField*> all_settings() {
  std::vector<const SettingField*> out;
  for (const auto& field : kSettingFields) out.push_back(&field);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Schema, SettingsAgree, ::testing::ValuesIn(all_settings()),
                         [](const auto& param_info) { return std::string(param_info.param->key); });

// Per-service numbers: the config entry and the Docker labels read the same rows.
TEST(SettingsSchema, LabelsAndConfigShareTheServiceNumbers) {
  for (const auto& field : kServiceNumbers) {
    SCOPED_TRACE(field.key);
    EXPECT_THROW(parse_service("a", json{{"backend", "docker"}, {field.key, field.rule.max * 2}},
                               "test.json"),
                 ConfigError);
  }
  auto sc = service_from_labels("c", {{"siesta.idle-timeout", "90m"},
                                      {"siesta.start-timeout", "2m"},
                                      {"siesta.stop-timeout", "15s"}});
  ASSERT_TRUE(sc);
  EXPECT_EQ(sc->spec.idle_timeout_minutes, 90);
  EXPECT_EQ(sc->spec.start_timeout_seconds, 120);
  EXPECT_EQ(sc->spec.stop_timeout_seconds, 15);
}

TEST(SettingsSchema, ModelKeepAliveBoundsAreTheStateFilesToo) {
  const auto* min = find_number(kModelNumbers, "keep_alive_min_seconds");
  ASSERT_NE(min, nullptr);
  EXPECT_TRUE(check_number(min->rule, json(0)).empty());
  EXPECT_FALSE(check_number(min->rule, json(-1)).empty());
  EXPECT_EQ(check_number(kKeepAliveSeconds, json(kMaxHours * 3600 * 2)),
            check_number(min->rule, json(kMaxHours * 3600 * 2)));
}

}  // namespace
}  // namespace siesta
