// AdminServer in-process (AdminServer::handle, no socket) on a fake AdminActions: routing,
// validation, the token check and the error shape, without a Controller behind it.
#include "siesta/api/admin_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fakes.h"
#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;

// Records every call; answers `answer` (OK unless a test says otherwise). update_settings
// applies the change to the registry, as the Controller does.
class FakeAdminActions final : public AdminActions {
 public:
  explicit FakeAdminActions(Registry& registry) : registry_(registry) {}

  Status update_settings(const std::function<void(Settings&)>& change) override {
    calls.push_back("update_settings");
    if (answer) registry_.update_settings(change);
    return answer;
  }
  Status set_idle_sleep(const std::string& s, bool enabled) override {
    return record("set_idle_sleep " + s + (enabled ? " true" : " false"));
  }
  Status set_desired(const std::string& s, Desired d) override {
    return record("set_desired " + s + " " + to_string(d));
  }
  Status wake(const std::string& s, Reason reason) override {
    return record("wake " + s + " " + to_string(reason));
  }
  Status sleep(const std::string& s) override { return record("sleep " + s); }
  Status touch_service(const std::string& s) override { return record("touch_service " + s); }
  Status unload_models_of(const std::string& s) override { return record("unload_models_of " + s); }
  Status load_model(const ModelKey& m) override { return record("load_model " + m.name); }
  Status unload_model(const ModelKey& m) override { return record("unload_model " + m.name); }
  Status touch_model(const ModelKey& m) override { return record("touch_model " + m.name); }

  std::vector<std::string> calls;
  Status answer = Status::ok();

 private:
  Status record(std::string call) {
    calls.push_back(std::move(call));
    return answer;
  }
  Registry& registry_;
};

struct Admin {
  explicit Admin(AdminOptions options = {})
      : config(parse_config(R"({"idle_timeout_minutes": 60,
          "services": {"ollama": {"command": ["o"]}},
          "models": {"llama3.2:3b": {"provider": "ollama"}}})",
                            "test.json")),
        registry(make_registry(config, clock.wall_now())),
        actions(*registry),
        persister(*registry, nullptr, Baseline{}, nullptr),
        server(
            *registry, actions, persister, metrics, clock, [] { return MonitorStatus{}; },
            std::move(options)) {}

  AdminResponse post(const std::string& path, const std::string& body,
                     std::vector<std::pair<std::string, std::string>> headers = {}) {
    return server.handle("POST", path, headers, body);
  }

  Config config;
  FakeClock clock;
  std::unique_ptr<Registry> registry;
  FakeAdminActions actions;
  Metrics metrics;
  Persister persister;
  AdminServer server;
};

// The error shape every 4xx and 5xx has: {"error": {"code", "message", "source": "siesta"}}.
void expect_error(const AdminResponse& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  const json j = json::parse(r.body);
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["code"], code);
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  EXPECT_EQ(j["error"]["source"], "siesta");
}

TEST(AdminServer, ASettingOutOfBoundsIs400WithTheErrorShapeAndChangesNothing) {
  Admin a;
  const Settings before = a.registry->settings();
  const AdminResponse r = a.post("/admin/settings", R"({"idleTimeout": -5})");
  expect_error(r, 400, "invalid_argument");
  EXPECT_THAT(json::parse(r.body)["error"]["message"].get<std::string>(),
              ::testing::HasSubstr("idleTimeout"));
  EXPECT_TRUE(a.actions.calls.empty());  // refused before anything is asked
  EXPECT_EQ(a.registry->settings().idle_timeout_minutes, before.idle_timeout_minutes);
}

TEST(AdminServer, OneBadSettingAmongGoodOnesChangesNoneOfThem) {
  Admin a;
  const AdminResponse r =
      a.post("/admin/settings", R"({"idleTimeout": 30, "idle_sleep_enabled": "yes"})");
  expect_error(r, 400, "invalid_argument");
  EXPECT_TRUE(a.actions.calls.empty());
  EXPECT_EQ(a.registry->settings().idle_timeout_minutes, 60);
  EXPECT_TRUE(a.registry->settings().idle_sleep_enabled);
}

TEST(AdminServer, AValidSettingGoesThroughTheActionsAndIsAnswered) {
  Admin a;
  const AdminResponse r = a.post("/admin/settings", R"({"idleTimeout": 30})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(a.actions.calls, ElementsAre("update_settings"));
  EXPECT_EQ(a.registry->settings().idle_timeout_minutes, 30);
  EXPECT_EQ(json::parse(r.body)["idle_timeout_minutes"], 30);
}

TEST(AdminServer, ActionsAreRoutedToTheirMethod) {
  Admin a;
  for (const char* path : {"/admin/services/ollama/wake", "/admin/services/ollama/sleep",
                           "/admin/services/ollama/touch", "/admin/services/ollama/unload-models",
                           "/admin/models/llama3.2:3b/load", "/admin/models/llama3.2:3b/unload",
                           "/admin/models/llama3.2:3b/touch"}) {
    EXPECT_EQ(a.post(path, "").status, 200) << path;
  }
  EXPECT_EQ(a.post("/admin/services/ollama/idle-sleep", R"({"enabled": false})").status, 200);
  EXPECT_EQ(a.post("/admin/services/ollama/desired", R"({"desired": "on"})").status, 200);
  EXPECT_THAT(a.actions.calls,
              ElementsAre("wake ollama manual", "sleep ollama", "touch_service ollama",
                          "unload_models_of ollama", "load_model llama3.2:3b",
                          "unload_model llama3.2:3b", "touch_model llama3.2:3b",
                          "set_idle_sleep ollama false", "set_desired ollama on"));
}

TEST(AdminServer, BadRequestsNeverReachTheActions) {
  Admin a;
  expect_error(a.post("/admin/services/nope/wake", ""), 404, "not_found");
  expect_error(a.post("/admin/services/ollama/wake", "not json"), 400, "invalid_argument");
  expect_error(a.post("/admin/services/ollama/wake", R"({"force": true})"), 400,
               "invalid_argument");
  expect_error(a.post("/admin/services/ollama/desired", R"({"desired": "maybe"})"), 400,
               "invalid_argument");
  expect_error(a.post("/admin/models/unknown:1b/unload", ""), 404, "not_found");
  EXPECT_TRUE(a.actions.calls.empty());
}

TEST(AdminServer, AnActionsErrorIsAnsweredWithItsStatus) {
  Admin a;
  a.actions.answer = {ErrorCode::kConflict, "service ollama has desired \"on\""};
  expect_error(a.post("/admin/services/ollama/sleep", ""), 409, "conflict");
  a.actions.answer = {ErrorCode::kUnavailable, "ollama did not answer"};
  const AdminResponse r = a.post("/admin/models/llama3.2:3b/load", "");
  expect_error(r, 503, "unavailable");
}

TEST(AdminServer, WithATokenEveryAdminRequestNeedsIt) {
  AdminOptions options;
  options.token = "s3cret-token";
  Admin a(options);
  expect_error(a.post("/admin/services/ollama/wake", ""), 401, "unauthorized");
  expect_error(a.post("/admin/services/ollama/wake", "", {{"Authorization", "Bearer wrong"}}), 401,
               "unauthorized");
  expect_error(a.post("/admin/services/ollama/wake", "", {{"Authorization", "s3cret-token"}}), 401,
               "unauthorized");  // no scheme
  expect_error(a.server.handle("GET", "/admin/idle-status", {}, ""), 401, "unauthorized");
  EXPECT_TRUE(a.actions.calls.empty());
  EXPECT_EQ(
      a.post("/admin/services/ollama/wake", "", {{"Authorization", "Bearer s3cret-token"}}).status,
      200);
  EXPECT_THAT(a.actions.calls, ElementsAre("wake ollama manual"));
  // /healthz and (without protect_metrics) /metrics stay open.
  EXPECT_EQ(a.server.handle("GET", "/healthz", {}, "").status, 200);
  EXPECT_EQ(a.server.handle("GET", "/metrics", {}, "").status, 200);
}

}  // namespace
}  // namespace siesta::testing
