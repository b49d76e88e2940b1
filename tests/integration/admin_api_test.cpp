// Every admin endpoint against the real binary, with each of its error cases. Errors have one
// shape, {"error":{"code","message","source":"siesta"}}, and a rejected request changes nothing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

class AdminApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const int port = free_port();
    json config = {{"idle_timeout_minutes", 60},
                   {"state_file", (*dir_ / "state.json").string()},
                   {"services",
                    {{"ollama",
                      {{"command", {SIESTA_TESTSERVER, "--port", std::to_string(port)}},
                       {"upstream", "127.0.0.1:" + std::to_string(port)},
                       {"health", "/health"}}},
                     {"redis", {{"command", {"sleep", "1000"}}, {"idle_sleep_enabled", false}}}}},
                   {"models",
                    {{"llama3.2:3b", {{"provider", "ollama"}}},
                     {"library/qwen2:7b", {{"provider", "ollama"}, {"keep_alive_hours", 0.5}}}}}};
    siesta_ = new SiestaProcess(dir_->path(), config.dump(2));
    ASSERT_TRUE(siesta_->start()) << siesta_->log();
  }
  static void TearDownTestSuite() {
    delete siesta_;
    delete dir_;
  }

  httplib::Result post(const std::string& path, const std::string& body = "") {
    return siesta_->client().Post(path, body, "application/json");
  }
  json body_of(const httplib::Result& res) { return json::parse(res->body, nullptr, false); }
  // An error response: status, then {"error":{"code":code,...,"source":"siesta"}}.
  void expect_error(const httplib::Result& res, int status, const std::string& code,
                    const std::string& message_part = "") {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, status) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    json j = body_of(res);
    ASSERT_TRUE(j.is_object()) << res->body;
    EXPECT_EQ(j["error"]["code"], code) << res->body;
    EXPECT_EQ(j["error"]["source"], "siesta");
    EXPECT_NE(j["error"]["message"].get<std::string>().find(message_part), std::string::npos)
        << res->body;
  }
  json idle_status() { return body_of(siesta_->client().Get("/admin/idle-status")); }

  static TempDir* dir_;
  static SiestaProcess* siesta_;
};
TempDir* AdminApi::dir_ = nullptr;
SiestaProcess* AdminApi::siesta_ = nullptr;

TEST_F(AdminApi, IdleStatusHasTheSeedsShape) {
  json j = idle_status();
  for (const char* key : {"idle_sleep_enabled", "idle_timeout_minutes", "model_keep_alive_hours",
                          "services", "models", "monitor_task_running"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["monitor_task_running"], true);
  for (const char* key :
       {"last_used", "idle_for_minutes", "idle_sleep_enabled", "desired", "actual",
        "will_sleep_in_minutes", "idle_for_seconds", "will_sleep_in_seconds"}) {
    EXPECT_TRUE(j["services"]["ollama"].contains(key)) << key;
  }
  for (const char* key : {"last_used", "keep_alive_until", "will_unload_in_minutes", "provider",
                          "will_unload_in_seconds"}) {
    EXPECT_TRUE(j["models"]["llama3.2:3b"].contains(key)) << key;
  }
  EXPECT_EQ(j["services"]["redis"]["will_not_sleep_because"],
            "idle sleep is disabled for this service");
}

TEST_F(AdminApi, HealthzAndMetricsAreServed) {
  auto h = siesta_->client().Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(body_of(h)["status"], "ok");
  auto m = siesta_->client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(m->body.find("siesta_monitor_running 1"), std::string::npos);
}

TEST_F(AdminApi, ToggleIdleSleep) {
  auto res = post("/admin/services/ollama/idle-sleep", R"({"enabled": false})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(body_of(res)["idle_sleep_enabled"], false);
  EXPECT_EQ(idle_status()["services"]["ollama"]["idle_sleep_enabled"], false);
  ASSERT_EQ(post("/admin/services/ollama/idle-sleep", R"({"enabled": true})")->status, 200);
  EXPECT_EQ(idle_status()["services"]["ollama"]["idle_sleep_enabled"], true);
}

TEST_F(AdminApi, ToggleIdleSleepErrors) {
  expect_error(post("/admin/services/ollama/idle-sleep", "{not json"), 400, "invalid_argument",
               "not valid JSON");
  expect_error(post("/admin/services/ollama/idle-sleep", R"({"enabled": "no"})"), 400,
               "invalid_argument", "\"enabled\" is required and must be true or false");
  expect_error(post("/admin/services/ollama/idle-sleep", "{}"), 400, "invalid_argument",
               "\"enabled\"");
  expect_error(post("/admin/services/ollama/idle-sleep", R"({"enabled": true, "x": 1})"), 400,
               "invalid_argument", "unknown field \"x\"");
  expect_error(post("/admin/services/ollama/idle-sleep", "[true]"), 400, "invalid_argument",
               "must be a JSON object");
  expect_error(post("/admin/services/nope/idle-sleep", R"({"enabled": false})"), 404, "not_found",
               "unknown service: nope");
  expect_error(post("/admin/services/bad%01name/idle-sleep", R"({"enabled": false})"), 400,
               "invalid_argument", "invalid service name");
  auto get = siesta_->client().Get("/admin/services/ollama/idle-sleep");
  expect_error(get, 405, "method_not_allowed");
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  expect_error(post("/admin/services/ollama/idle-sleep", std::string(70 * 1024, ' ')), 413,
               "payload_too_large");
  EXPECT_EQ(idle_status()["services"]["ollama"]["idle_sleep_enabled"], true);  // unchanged
}

TEST_F(AdminApi, SettingsAcceptCamelCaseSnakeCaseAndPartialUpdates) {
  auto res = post("/admin/settings", R"({"idleSleepEnabled": true, "idleTimeout": 30,
                                         "modelKeepAlive": 1, "idleCheckInterval": 3})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  json s = body_of(res);
  EXPECT_EQ(s["idle_timeout_minutes"], 30);
  EXPECT_EQ(s["model_keep_alive_hours"], 1);
  EXPECT_EQ(s["idle_check_interval_minutes"], 3);
  ASSERT_EQ(post("/admin/settings", R"({"idle_timeout_minutes": 45.5})")->status, 200);
  json st = idle_status();
  EXPECT_EQ(st["idle_timeout_minutes"], 45.5);
  EXPECT_EQ(st["model_keep_alive_hours"], 1);  // untouched by the partial update
  ASSERT_EQ(post("/admin/settings", R"({"idleTimeout": 60, "modelKeepAlive": 2,
                                        "idleCheckInterval": 5})")
                ->status,
            200);
}

TEST_F(AdminApi, SettingsErrorsChangeNothing) {
  const json before = body_of(siesta_->client().Get("/admin/settings"));
  expect_error(post("/admin/settings", R"({"idleTimeout": -5})"), 400, "invalid_argument",
               "\"idleTimeout\" must be greater than 0");
  expect_error(post("/admin/settings", R"({"idleTimeout": 0})"), 400, "invalid_argument");
  expect_error(post("/admin/settings", R"({"idleTimeout": 1e300})"), 400, "invalid_argument",
               "at most");
  expect_error(post("/admin/settings", R"({"idleTimeout": "30"})"), 400, "invalid_argument",
               "must be a number of minutes");
  expect_error(post("/admin/settings", R"({"pricePerKwh": "0.3"})"), 400, "invalid_argument",
               "\"pricePerKwh\" must be a number per kWh, got \"0.3\"");
  expect_error(post("/admin/settings", R"({"idleSleepEnabled": 1})"), 400, "invalid_argument",
               "true or false");
  expect_error(post("/admin/settings", R"({"modelKeepAlive": -1})"), 400, "invalid_argument",
               "at least 0");
  expect_error(post("/admin/settings", R"({"idleTimeout": 30, "idle_timeout_minutes": 40})"), 400,
               "invalid_argument", "set the same setting");
  expect_error(post("/admin/settings", R"({"idleTimeout": 30, "colour": "blue"})"), 400,
               "invalid_argument", "unknown setting \"colour\"");
  expect_error(post("/admin/settings", "{}"), 400, "invalid_argument", "no settings given");
  expect_error(post("/admin/settings", "{\"idleTimeout\": NaN}"), 400, "invalid_argument",
               "not valid JSON");
  expect_error(siesta_->client().Delete("/admin/settings"), 405, "method_not_allowed");
  EXPECT_EQ(body_of(siesta_->client().Get("/admin/settings")), before);
}

TEST_F(AdminApi, ModelNamesWithColonsAndSlashesRoute) {
  ASSERT_EQ(post("/admin/models/llama3.2:3b/touch")->status, 200);
  json m = idle_status()["models"]["llama3.2:3b"];
  EXPECT_GT(m["keep_alive_until"].get<long long>(), 0);
  auto res = post("/admin/models/llama3.2:3b/unload");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(body_of(res)["keep_alive_until"], 0);
  EXPECT_EQ(body_of(res)["loaded"], false);

  ASSERT_EQ(post("/admin/models/library%2Fqwen2:7b/touch")->status, 200);
  auto get = siesta_->client().Get("/admin/models/library%2Fqwen2:7b");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(body_of(get)["name"], "library/qwen2:7b");
  EXPECT_EQ(body_of(get)["keep_alive_seconds"], 1800);
  EXPECT_EQ(post("/admin/models/library/qwen2:7b/unload")->status, 200);  // unencoded works too
  EXPECT_EQ(idle_status()["models"]["library/qwen2:7b"]["loaded"], false);
}

TEST_F(AdminApi, ModelErrors) {
  expect_error(post("/admin/models/nope:1b/unload"), 404, "not_found", "unknown model: nope:1b");
  expect_error(post("/admin/models/..%2Fetc/unload"), 400, "invalid_argument",
               "invalid model name");
  expect_error(siesta_->client().Get("/admin/models/llama3.2:3b/unload"), 405,
               "method_not_allowed");
  expect_error(post("/admin/models/llama3.2:3b/unload", R"({"force": true})"), 400,
               "invalid_argument", "this endpoint takes no fields");
}

TEST_F(AdminApi, DesiredWakeSleepAndTouch) {
  auto woke = post("/admin/services/ollama/wake");
  ASSERT_TRUE(woke);
  EXPECT_EQ(woke->status, 200) << woke->body;
  EXPECT_EQ(body_of(woke)["actual"], "running");

  ASSERT_EQ(post("/admin/services/ollama/desired", R"({"desired": "on"})")->status, 200);
  expect_error(post("/admin/services/ollama/sleep"), 409, "conflict", "desired \"on\"");
  expect_error(post("/admin/services/ollama/desired", R"({"desired": "maybe"})"), 400,
               "invalid_argument", "\"on\" or \"off\"");
  ASSERT_EQ(post("/admin/services/ollama/desired", R"({"desired": "off"})")->status, 200);

  ASSERT_EQ(post("/admin/services/ollama/touch")->status, 200);
  EXPECT_EQ(idle_status()["services"]["ollama"]["idle_for_minutes"], 0);

  auto slept = post("/admin/services/ollama/sleep");
  ASSERT_TRUE(slept);
  EXPECT_EQ(slept->status, 200) << slept->body;
  EXPECT_EQ(body_of(slept)["actual"], "stopped");
  EXPECT_EQ(post("/admin/services/ollama/sleep")->status, 200);  // already asleep: fine
  expect_error(post("/admin/services/nope/wake"), 404, "not_found");
  expect_error(post("/admin/services/ollama/wake", "{\"now\": true}"), 400, "invalid_argument");
}

TEST_F(AdminApi, EveryActionEndpointRejectsUnknownNamesWrongMethodsAndBadBodies) {
  for (const char* action : {"idle-sleep", "wake", "sleep", "desired", "touch"}) {
    SCOPED_TRACE(action);
    expect_error(post(std::string("/admin/services/nope/") + action), 404, "not_found");
    expect_error(siesta_->client().Get(std::string("/admin/services/ollama/") + action), 405,
                 "method_not_allowed");
    expect_error(post(std::string("/admin/services/ollama/") + action, "{\"x\":"), 400,
                 "invalid_argument", "not valid JSON");
    expect_error(post(std::string("/admin/services/ollama/") + action, std::string(65 * 1024, 'x')),
                 413, "payload_too_large");
  }
  for (const char* action : {"unload", "touch"}) {
    SCOPED_TRACE(action);
    expect_error(post(std::string("/admin/models/nope:1b/") + action), 404, "not_found");
    expect_error(siesta_->client().Delete(std::string("/admin/models/llama3.2:3b/") + action), 405,
                 "method_not_allowed");
    expect_error(post(std::string("/admin/models/llama3.2:3b/") + action, "42"), 400,
                 "invalid_argument", "must be a JSON object");
  }
  expect_error(siesta_->client().Get("/admin/services/nope"), 404, "not_found");
  expect_error(siesta_->client().Get("/admin/models/nope:1b"), 404, "not_found");
}

TEST_F(AdminApi, UnknownEndpointsAndMethods) {
  expect_error(siesta_->client().Get("/admin/nothing"), 404, "not_found", "no such endpoint");
  expect_error(siesta_->client().Put("/admin/idle-status", "{}", "application/json"), 405,
               "method_not_allowed");
  expect_error(post("/metrics"), 405, "method_not_allowed");
}

// Found by fuzz/admin_fuzz.cpp: bytes that are not UTF-8 in a path were echoed into the error
// message, and encoding the answer threw (a 500). Now they are shown as U+FFFD in a 4xx.
TEST_F(AdminApi, PathsThatAreNotUtf8AreAClientErrorNotACrash) {
  auto res = siesta_->client().Get("/admin/services/%FF%FEweb");
  expect_error(res, 400, "invalid_argument", "invalid service name");
  EXPECT_NE(res->body.find("\xEF\xBF\xBD"), std::string::npos) << res->body;  // U+FFFD
  expect_error(siesta_->client().Get("/admin/%FF"), 404, "not_found", "no such endpoint");
  expect_error(post("/admin/models/m%FF:1b/load"), 400, "invalid_argument", "invalid model name");
  EXPECT_EQ(siesta_->client().Get("/healthz")->status, 200);
}

TEST_F(AdminApi, AcknowledgedChangesAreInTheStateFileAlready) {
  ASSERT_EQ(post("/admin/services/redis/desired", R"({"desired": "on"})")->status, 200);
  json state = json::parse(slurp(*dir_ / "state.json"));
  EXPECT_EQ(state["services"]["redis"]["desired"]["value"], "on");
  ASSERT_EQ(post("/admin/services/redis/desired", R"({"desired": "off"})")->status, 200);
  state = json::parse(slurp(*dir_ / "state.json"));
  EXPECT_EQ(state["services"]["redis"]["desired"]["value"], "off");
}

}  // namespace
}  // namespace siesta::testing
