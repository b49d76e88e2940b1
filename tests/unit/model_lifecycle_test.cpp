// Model lifecycle on fakes (ModelLifecycle, through the Controller that owns it and on its own):
// a request's use, loads and unloads, learned models, what a model server reports loaded.
#include "siesta/runtime/model_lifecycle.h"

#include <gtest/gtest.h>

#include <limits>

#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

TEST(Controller, FailedUnloadIsCountedShownAndRetriedLater) {
  World w(R"({"model_keep_alive_hours": 1, "idle_check_interval_minutes": 5,
              "services": {"ollama": {"command": ["o"], "idle_sleep_enabled": false}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  ASSERT_TRUE(w.controller->touch_model(w.key("m")));
  w.provider.loaded_models.insert("m");
  w.provider.fail_unload = true;
  w.clock.advance(std::chrono::hours(1));
  w.monitor->step();
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(w.model("m").last_error, "unload failed: ollama did not answer");
  w.monitor->step();
  EXPECT_EQ(w.provider.calls.size(), 1u);  // waits for the retry time
  w.provider.fail_unload = false;
  w.clock.advance(minutes(5));
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_THAT(w.recorder.events(), ElementsAre("unload_failed m", "unloaded m expired"));
}

TEST(Controller, ReconcileTracksModelsLoadedAndUnloadedOutsideSiesta) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"known": {"provider": "ollama"}}})");
  w.run("ollama");
  w.provider.loaded_models = {"known", "qwen2:7b"};
  w.controller->reconcile();
  EXPECT_TRUE(w.model("known").loaded);
  ASSERT_TRUE(w.registry->model(w.key("qwen2:7b")));
  EXPECT_EQ(w.registry->model(w.key("qwen2:7b"))->spec->provider, "ollama");
  w.provider.loaded_models = {"qwen2:7b"};
  w.controller->reconcile();
  EXPECT_FALSE(w.model("known").loaded);
  EXPECT_THAT(w.recorder.events(), ElementsAre("unloaded known external"));
}

TEST(Controller, AModelStillLoadingForARequestIsNotTakenForUnloaded) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  auto ticket = w.controller->begin_model_request({"m", "ollama"});
  ASSERT_TRUE(ticket);  // was not loaded
  auto second = w.controller->begin_model_request({"m", "ollama"});
  w.provider.loaded_models = {"m"};  // loaded meanwhile: /api/ps shows it before any answer
  w.controller->reconcile();
  EXPECT_TRUE(w.controller->model_accepted(w.key("m"), {600}, ticket));   // this one paid the load
  EXPECT_FALSE(w.controller->model_accepted(w.key("m"), {600}, second));  // ... not this one too
  w.controller->end_model_request(w.key("m"), true);
  w.provider.loaded_models = {};  // Ollama lists a model only once it has loaded
  w.controller->reconcile();
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(w.model("m").in_flight, 1);
  w.controller->end_model_request(w.key("m"), true);
  EXPECT_EQ(w.model("m").in_flight, 0);
  EXPECT_EQ(w.model("m").keep_alive_seconds, 600);
  w.clock.advance(std::chrono::seconds(599));
  w.provider.loaded_models = {"m"};
  w.monitor->step();
  EXPECT_TRUE(w.model("m").loaded);
  w.clock.advance(std::chrono::seconds(1));  // 600 s after the request ended
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("unloaded m expired"));
}

TEST(Controller, AModelIsLoadedOnlyOnceItsServerAcceptedARequest) {
  // Issue 14, item 4: a generate for a model Ollama does not have (404) showed it loaded, with a
  // keep-alive timer and a load counted.
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.run("ollama");
  w.controller->begin_model_request({"nope:1b", "ollama"});
  ASSERT_TRUE(w.registry->model(w.key("nope:1b")));  // in flight while its request runs
  EXPECT_FALSE(w.model("nope:1b").loaded);
  EXPECT_EQ(w.model("nope:1b").in_flight, 1);
  w.controller->end_model_request(w.key("nope:1b"), /*accepted=*/false);
  EXPECT_FALSE(w.registry->model(w.key("nope:1b")));  // forgotten: it was never loaded
  // A configured model is kept, and not loaded by a failed request.
  w.controller->begin_model_request({"m", "ollama"});
  w.controller->end_model_request(w.key("m"), false);
  ASSERT_TRUE(w.registry->model(w.key("m")));
  EXPECT_FALSE(w.model("m").loaded);
  // Two requests on a new name: the first failing does not forget it under the second.
  w.controller->begin_model_request({"new:1b", "ollama"});
  w.controller->begin_model_request({"new:1b", "ollama"});
  w.controller->end_model_request(w.key("new:1b"), false);
  ASSERT_TRUE(w.registry->model(w.key("new:1b")));
  EXPECT_TRUE(w.controller->model_accepted(w.key("new:1b"), {600}, 0));  // its first load
  w.controller->end_model_request(w.key("new:1b"), true);
  EXPECT_TRUE(w.model("new:1b").loaded);
  EXPECT_EQ(w.model("new:1b").keep_alive_seconds, 600);
  EXPECT_TRUE(w.recorder.events().empty());
}

TEST(Controller, LearnedModelsAreBoundedTheOldestUnloadedForgottenFirst) {
  World w(R"({"max_learned_models": 2, "services": {"ollama": {"command": ["o"]}},
              "models": {"configured": {"provider": "ollama"}}})");
  w.run("ollama");
  auto use = [&](const std::string& m) {
    auto ticket = w.controller->begin_model_request({m, "ollama"});
    w.controller->model_accepted(w.key(m), {600}, ticket);
    w.controller->end_model_request(w.key(m), true);
    w.clock.advance(std::chrono::seconds(1));
  };
  use("a");
  use("b");
  use("c");  // a, b and c are loaded: none is forgotten, the limit notwithstanding
  EXPECT_EQ(w.model_names(), (std::vector<std::string>{"a", "b", "c", "configured"}));
  ASSERT_TRUE(w.controller->unload_model(w.key("b")));
  ASSERT_TRUE(w.controller->unload_model(w.key("a")));  // a was used before b
  use("d");  // 4 learned > 2: a, then b, the oldest unloaded
  EXPECT_EQ(w.model_names(), (std::vector<std::string>{"c", "configured", "d"}));
  ASSERT_TRUE(w.controller->unload_model(w.key("c")));
  ASSERT_TRUE(w.controller->unload_model(w.key("configured")));
  use("e");  // c goes; a configured model is never forgotten
  EXPECT_EQ(w.model_names(), (std::vector<std::string>{"configured", "d", "e"}));
}

TEST(Controller, AdminLoadOfAnInstalledModelSiestaHasNotSeenLearnsIt) {
  // Issue 14, item 6: a model in /api/tags but not in the config or traffic answered 404.
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  w.provider.installed = {"m", "qwen2.5:7b"};
  ASSERT_TRUE(
      w.controller->load_model(w.key("qwen2.5:7b")));  // one model server: no question asked
  ASSERT_TRUE(w.registry->model(w.key("qwen2.5:7b")));
  EXPECT_EQ(w.registry->model(w.key("qwen2.5:7b"))->spec->provider, "ollama");
  EXPECT_TRUE(w.model("qwen2.5:7b").loaded);
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);  // woken first
  Status st = w.controller->load_model(w.key("nope:1b"));
  EXPECT_EQ(st.code(), ErrorCode::kNotFound) << st.message();
  EXPECT_FALSE(w.registry->model(w.key("nope:1b")));
}

TEST(Controller, AdminLoadFindsWhichOfSeveralModelServersHasTheModel) {
  World w(R"({"services": {"ollama": {"command": ["o"], "model_api": "ollama"},
                           "ollama-b": {"command": ["b"], "model_api": "ollama"}}})");
  w.run("ollama");
  w.provider.installed = {"llama3.2:3b"};
  w.provider_b.installed = {"qwen2.5:7b"};
  ASSERT_TRUE(w.controller->load_model(w.key("qwen2.5:7b")));
  EXPECT_EQ(w.registry->model(w.key("qwen2.5:7b"))->spec->provider, "ollama-b");
  // The running server was asked first; the stopped one was woken to be asked.
  EXPECT_THAT(w.provider.calls, ElementsAre("list_installed"));
  EXPECT_THAT(w.provider_b.calls, ElementsAre("list_installed", "load qwen2.5:7b"));
  ASSERT_TRUE(w.controller->load_model(w.key("llama3.2:3b")));
  EXPECT_EQ(w.registry->model(w.key("llama3.2:3b"))->spec->provider, "ollama");
  EXPECT_EQ(w.controller->load_model(w.key("nope:1b")).code(), ErrorCode::kNotFound);
  EXPECT_FALSE(w.registry->model(w.key("nope:1b")));
}

TEST(Controller, ForcedUnloadOfAnUnloadedModelIsANoOp) {
  World w(
      R"({"services": {"ollama": {"command": ["o"]}}, "models": {"m": {"provider": "ollama"}}})");
  EXPECT_TRUE(w.controller->unload_model(w.key("m")));
  EXPECT_TRUE(w.provider.calls.empty());
  EXPECT_EQ(w.controller->unload_model(w.key("nope")).code(), ErrorCode::kNotFound);
}

TEST(Controller, AModelServersKeepAliveIsTheDefaultOfTheModelsItServes) {
  // Issue 17: a discovered model server (siesta.model-keep-alive) sets the keep-alive of the
  // models it serves that have no "models" entry; a configured model keeps its own.
  World w(R"({"model_keep_alive_hours": 2,
              "services": {"ollama": {"command": ["o"], "model_keep_alive_hours": 0.5}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  w.run("ollama");
  EXPECT_EQ(w.controller->keep_alive_policy({"new:1b", "ollama"}).default_seconds, 1800);
  EXPECT_EQ(w.controller->keep_alive_policy({"new:1b", ""}).default_seconds, 7200);  // no server
  EXPECT_EQ(w.controller->keep_alive_policy({"m", "ollama"}).default_seconds, 3600);
  // Learned from traffic ...
  w.controller->begin_model_request({"new:1b", "ollama"});
  ASSERT_TRUE(w.registry->model(w.key("new:1b")));
  EXPECT_EQ(w.registry->model(w.key("new:1b"))->spec->keep_alive_hours, 0.5);
  // ... or found loaded on the server.
  w.provider.loaded_models = {"other:7b"};
  w.controller->reconcile();
  ASSERT_TRUE(w.registry->model(w.key("other:7b")));
  EXPECT_TRUE(w.model("other:7b").loaded);
  w.clock.advance(std::chrono::minutes(29));
  w.monitor->step();
  EXPECT_TRUE(w.model("other:7b").loaded);
  w.clock.advance(std::chrono::minutes(1));  // 30 minutes: the server's keep-alive, not 2 h
  w.monitor->step();
  EXPECT_FALSE(w.model("other:7b").loaded);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("unloaded other:7b expired"));
}

// The timers of a model come from decide.h (keep_alive_ends, model_server_keep_alive): on the
// fake clock, each lands where decide() acts.
TEST(Controller, AModelRequestsKeepAliveEndsWhereTheMonitorUnloadsIt) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  w.run("ollama");
  w.provider.loaded_models.insert("m");  // as the server will list it
  const WallTime now = w.clock.wall_now();
  (void)w.controller->begin_model_request({"m", "ollama"});
  w.controller->model_accepted(w.key("m"), {60}, std::nullopt);  // the request's own keep_alive
  w.controller->end_model_request(w.key("m"), true);
  const Settings settings = w.registry->settings();
  EXPECT_EQ(keep_alive_ends(settings, *w.registry->model(w.key("m"))->spec, w.model("m")),
            now + seconds(60));
  EXPECT_EQ(w.monitor->step(), now + seconds(60));  // the monitor sleeps until exactly then
  w.clock.advance(seconds(60));
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  // A client's "forever" is bounded by the model's keep_alive_max_seconds (a day).
  (void)w.controller->begin_model_request({"m", "ollama"});
  w.controller->model_accepted(w.key("m"), {std::numeric_limits<double>::infinity()}, std::nullopt);
  w.controller->end_model_request(w.key("m"), true);
  const WallTime later = w.clock.wall_now();
  EXPECT_EQ(keep_alive_ends(settings, *w.registry->model(w.key("m"))->spec, w.model("m")),
            later + std::chrono::hours(24));
  const Decision d = decide(w.registry->snapshot(), later);
  ASSERT_EQ(d.models.size(), 1u);
  EXPECT_EQ(d.models[0].keep_alive_until, later + std::chrono::hours(24));
}

TEST(Controller, AnAdminLoadAsksTheServerForTheKeepAlivePlusTheGrace) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama", "keep_alive_hours": 1}}})");
  ASSERT_TRUE(w.controller->load_model(w.key("m")));
  EXPECT_THAT(w.provider.load_keep_alives, ElementsAre(model_server_keep_alive(3600)));
  EXPECT_THAT(w.provider.load_keep_alives, ElementsAre(3600 + kModelServerGraceSeconds));
}

// On its own: the server's wake is whatever the owner hands it (the Controller's wake).
TEST(ModelLifecycle, ALoadWakesItsServerThroughTheGivenWakeAndAFailedWakeLoadsNothing) {
  World w(R"({"services": {"ollama": {"command": ["o"]}},
              "models": {"m": {"provider": "ollama"}}})");
  std::vector<std::string> woken;
  Status wake_answer{ErrorCode::kTimeout, "not ready within 1 s"};
  int saves = 0;
  ModelLifecycle models(
      *w.registry,
      [&](const std::string& s) -> ModelProvider* { return s == "ollama" ? &w.provider : nullptr; },
      w.clock, w.recorder,
      [&] {
        ++saves;
        return Status::ok();
      },
      [&](const std::string& s) {
        woken.push_back(s);
        return wake_answer;
      },
      10);
  EXPECT_EQ(models.load_model(w.key("m")).code(), ErrorCode::kTimeout);
  EXPECT_TRUE(w.provider.calls.empty());  // never asked: its server is not up
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_EQ(saves, 0);
  wake_answer = Status::ok();
  ASSERT_TRUE(models.load_model(w.key("m")));
  EXPECT_THAT(woken, ElementsAre("ollama", "ollama"));
  EXPECT_THAT(w.provider.calls, ElementsAre("load m"));
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(saves, 1);
  // Its server stopped: its models went with it.
  models.mark_models_unloaded("ollama", Reason::kServiceSleep);
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_THAT(w.recorder.events(), ::testing::Contains("unloaded m service_sleep"));
}

}  // namespace
}  // namespace siesta::testing
