// A model's keep-alive policy (docs/models.md, docs/policies.md; issue 20 point 2): "adaptive"
// learns the model's idle gaps, recorded when a request begins on an idle model, kept in the
// state file; the keep-alive a request gives the model comes from it, the configured one while
// the history is too short; a client's own keep_alive still wins; idle-status says which policy
// chose it and why. On the fake clock.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/core/decide.h"
#include "siesta/state/state_store.h"
#include "world.h"

namespace siesta {
namespace {

using siesta::testing::config_error;
using siesta::testing::World;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr const char* kAdaptive = R"({"services": {"ollama": {"command": ["o"],
  "idle_sleep_enabled": false}}, "models": {"m": {"provider": "ollama", "keep_alive_hours": 1,
  "policy": "adaptive"}, "f": {"provider": "ollama", "keep_alive_hours": 1}}})";

// One request on `model` as the proxy makes it: the use begins (recording the gap it ends), the
// keep-alive comes from the policy (or the client's `asked`), the server accepts, it ends 2 s
// later. Returns the keep-alive the request gave the model.
RequestKeepAlive request(World& w, const ModelKey& key,
                         std::optional<double> asked = std::nullopt) {
  auto ticket = w.controller->begin_model_request(key);
  RequestKeepAlive keep_alive = request_keep_alive(w.controller->keep_alive_policy(key), asked);
  w.controller->model_accepted(key, keep_alive, ticket);
  w.clock.advance(seconds(2));
  w.controller->end_model_request(key, true);
  return keep_alive;
}
RequestKeepAlive request(World& w, const std::string& model,
                         std::optional<double> asked = std::nullopt) {
  return request(w, w.key(model), asked);
}

ModelTimer timer_of(World& w, const std::string& model) {
  const Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  for (const ModelTimer& t : d.models) {
    if (t.name == model) return t;
  }
  ADD_FAILURE() << "no model " << model;
  return {};
}

TEST(ModelPolicy, ConfigKeys) {
  Config c = parse_config(kAdaptive, "t.json");
  ASSERT_EQ(c.models.size(), 2u);
  for (const ModelSpec& m : c.models) EXPECT_EQ(m.policy, m.name == "m" ? "adaptive" : "fixed");
  EXPECT_EQ(config_error(R"({"services": {"ollama": {"command": ["o"]}},
                             "models": {"m": {"provider": "ollama", "policy": "lru"}}})"),
            "config error in bad.json: models.m.policy: must be one of fixed, adaptive, got "
            "\"lru\"");
  EXPECT_EQ(config_error(R"({"services": {"ollama": {"command": ["o"]}},
                             "models": {"m": {"provider": "ollama", "policy": 1}}})"),
            "config error in bad.json: models.m.policy: must be a string, got 1");
  // A server whose model is the process has no keep-alive for a policy to choose.
  EXPECT_EQ(
      config_error(R"({"services": {"v": {"command": ["v"], "model_api": "vllm",
                         "upstream": "127.0.0.1:8001"}},
                       "models": {"q": {"provider": "v", "policy": "adaptive"}}})"),
      "config error in bad.json: models.q.policy: a \"vllm\" server has no unload API: its model "
      "stays while the server runs; free it with the service's sleep_tiers (vllm_sleep, stop) "
      "instead");
}

// Used every 5 minutes: the configured hour while fewer than 10 gaps are known, then the 99th
// percentile of the gaps +10 %, 330 s, which the monitor unloads it at. The fixed model used the
// same way keeps its hour.
TEST(ModelPolicy, UsesEveryFiveMinutesGiveAnAdaptiveKeepAlive) {
  World w(kAdaptive);
  w.run("ollama");
  for (int i = 0; i < 10; ++i) {  // the first request ends no gap: 9 gaps
    const RequestKeepAlive m = request(w, "m");
    EXPECT_EQ(m.seconds, 3600) << i;
    EXPECT_EQ(m.policy, "fixed") << i;
    EXPECT_EQ(request(w, "f").seconds, 3600) << i;
    w.clock.advance(minutes(5) - seconds(2));  // from m's end to its next request: 5 minutes
  }
  ASSERT_EQ(w.model("m").idle_gaps.size(), 9u);
  EXPECT_DOUBLE_EQ(w.model("m").idle_gaps.back(), 300);
  ModelTimer t = timer_of(w, "m");
  EXPECT_EQ(t.policy, "fixed");
  EXPECT_EQ(t.policy_reason,
            "adaptive falls back: history too short (9 of 10 idle gaps); the configured "
            "keep-alive (60 minutes)");

  const RequestKeepAlive tenth = request(w, "m");  // its gap is the 10th: counted for it
  EXPECT_NEAR(tenth.seconds, 330, 1e-6);
  EXPECT_EQ(tenth.policy, "adaptive");
  EXPECT_EQ(request(w, "f").seconds, 3600);
  EXPECT_EQ(w.model("m").idle_gaps.size(), 10u);
  t = timer_of(w, "m");
  EXPECT_EQ(t.policy, "adaptive");
  EXPECT_EQ(t.policy_reason, "p99 of 10 idle gaps (+margin) is 330 s");
  EXPECT_NEAR(t.keep_alive.count(), 330, 1e-6);
  EXPECT_EQ(timer_of(w, "f").policy, "fixed");
  EXPECT_EQ(timer_of(w, "f").policy_reason, "the configured keep-alive (60 minutes)");

  // idle-status (and GET /admin/models, the same fields) say it.
  const Snapshot snap = w.registry->snapshot();
  const auto j =
      nlohmann::json::parse(idle_status_text(snap, decide(snap, w.clock.wall_now()), {}));
  EXPECT_EQ(j["models"]["m"]["policy"], "adaptive") << j["models"]["m"].dump();
  EXPECT_EQ(j["models"]["m"]["policy_reason"], "p99 of 10 idle gaps (+margin) is 330 s");
  EXPECT_EQ(j["models"]["m"]["idle_gaps"], 10);
  EXPECT_NEAR(j["models"]["m"]["keep_alive_seconds"].get<double>(), 330, 1e-6);
  EXPECT_EQ(j["models"]["f"]["policy"], "fixed");

  // Unloaded 330 s after the last request's end, not an hour (f's request took 2 s since).
  w.provider.loaded_models = {"m", "f"};
  w.clock.advance(seconds(327));
  w.monitor->step();
  EXPECT_TRUE(w.model("m").loaded);
  w.clock.advance(seconds(1));
  w.monitor->step();
  EXPECT_FALSE(w.model("m").loaded);
  EXPECT_TRUE(w.model("f").loaded);
}

// Issue 20, a new user's re-trial: a model with no "models" entry (learned from traffic) could
// not be adaptive. A model server's model_policy is the policy of the models it learns; a
// configured model keeps its own; the config and the state file's learned models follow it.
TEST(ModelPolicy, AServersModelPolicyIsThePolicyOfTheModelsItLearns) {
  World w(R"({"services": {"ollama": {"command": ["o"], "idle_sleep_enabled": false,
    "model_keep_alive_hours": 1, "model_policy": "adaptive"}},
    "models": {"f": {"provider": "ollama", "keep_alive_hours": 1}}})");
  w.run("ollama");
  EXPECT_STREQ(w.controller->keep_alive_policy({"learned", "ollama"}).policy,
               "fixed");  // too short
  const ModelKey learned{"learned", "ollama"};
  for (int i = 0; i < 11; ++i) {  // 10 gaps of 5 minutes
    request(w, learned);
    request(w, "f");
    w.clock.advance(minutes(5) - seconds(2));
  }
  ASSERT_TRUE(w.registry->model({"learned", "ollama"})->spec->learned);
  EXPECT_EQ(w.registry->model({"learned", "ollama"})->spec->policy, "adaptive");
  EXPECT_EQ(timer_of(w, "learned").policy, "adaptive");
  EXPECT_EQ(timer_of(w, "learned").policy_reason, "p99 of 10 idle gaps (+margin) is 330 s");
  EXPECT_EQ(timer_of(w, "f").policy, "fixed");  // its own entry
  // Learned again from the state file after a restart: adaptive, with its history.
  World again(R"({"services": {"ollama": {"command": ["o"], "idle_sleep_enabled": false,
    "model_api": "ollama", "model_keep_alive_hours": 1, "model_policy": "adaptive"}}})");
  Baseline base;
  base.services["ollama"] = {false, Desired::kOff};
  ASSERT_TRUE(restore_state(encode_state(w.registry->snapshot(), Baseline{}, {}), base,
                            *again.registry, again.clock.wall_now()));
  auto restored = again.registry->model({"learned", "ollama"});
  ASSERT_TRUE(restored);
  EXPECT_EQ(restored->spec->policy, "adaptive");
  EXPECT_EQ(restored->runtime.idle_gaps.size(), 10u);

  EXPECT_EQ(config_error(R"({"services": {"ollama": {"command": ["o"], "model_api": "ollama",
                             "model_policy": "lru"}}})"),
            "config error in bad.json: services.ollama.model_policy: must be one of fixed, "
            "adaptive, got \"lru\"");
  for (const char* policy : {"fixed", "adaptive"}) {  // either way, it means nothing there
    EXPECT_EQ(
        config_error(std::string(R"({"services": {"web": {"command": ["w"], "model_policy": ")") +
                     policy + R"("}}})"),
        "config error in bad.json: services.web.model_policy: is for a model server: set "
        "\"model_api\": \"ollama\" or name the service as a model's provider")
        << policy;
  }
  EXPECT_EQ(config_error(R"({"services": {"v": {"command": ["v"], "model_api": "vllm",
                             "upstream": "127.0.0.1:8001", "model_policy": "adaptive"}}})"),
            "config error in bad.json: services.v.model_policy: a \"vllm\" server has no unload "
            "API: its model stays while the server runs; free it with the service's sleep_tiers "
            "(vllm_sleep, stop) instead");
}

// A new user's trial: an admin load of a model already loaded answered in 2 ms and became its
// load time, the adaptive keep-alive's cold-start price (capped at 0.13 s x 60). It renews the
// keep-alive at the server; no load is measured.
TEST(ModelPolicy, AnAdminLoadOfALoadedModelIsNoLoad) {
  World w(kAdaptive);
  w.run("ollama");
  w.provider.during_load = [&](const std::string&) { w.clock.advance(seconds(3)); };
  ASSERT_TRUE(w.controller->load_model(w.key("m")));
  EXPECT_DOUBLE_EQ(w.model("m").load_seconds, 3);
  w.provider.during_load = [&](const std::string&) {
    w.clock.advance(std::chrono::milliseconds(2));
  };
  ASSERT_TRUE(w.controller->load_model(w.key("m")));
  EXPECT_DOUBLE_EQ(w.model("m").load_seconds, 3);
  EXPECT_TRUE(w.model("m").loaded);
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load m", "load m"}));  // renewed there
}

// A new user's re-trial: an admin load overlapping a request's load of the same model (one load
// at the server) counted two loads, and the later finisher's wait became the load time. The
// first to finish pays it: here the request, inside the admin load's 3 s.
TEST(ModelPolicy, AnAdminLoadAndARequestLoadingTogetherAreOneLoad) {
  World w(kAdaptive);
  w.run("ollama");
  const ModelKey m = w.key("m");
  bool request_paid = false;
  w.provider.during_load = [&](const std::string&) {
    w.clock.advance(seconds(2));
    const auto ticket = w.controller->begin_model_request(m);
    ASSERT_TRUE(ticket.has_value());  // not loaded yet: the request loads it too
    request_paid = w.controller->model_accepted(m, {300}, ticket);
    w.controller->model_load_measured(m, Seconds(2));
    w.controller->end_model_request(m, true);
    w.clock.advance(seconds(1));
  };
  ASSERT_TRUE(w.controller->load_model(m));
  EXPECT_TRUE(request_paid);
  EXPECT_DOUBLE_EQ(w.model("m").load_seconds, 2);  // the request's, not the admin load's 3 s
  EXPECT_TRUE(w.model("m").loaded);
}

// A new user's trial: uses were written to the state file only at the next state change, so a
// crash lost every use since. A request's end marks the state for the monitor's next pass.
TEST(ModelPolicy, AUseIsSavedAtTheNextPassNotAtTheRequest) {
  World w(kAdaptive);
  w.run("ollama");
  w.provider.loaded_models = {"f"};  // as its server lists it: no change at a reconcile
  w.controller->reconcile();
  const int before = w.saves;
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  w.controller->end_request("ollama");
  EXPECT_EQ(w.saves, before);  // no request waits for the disk
  w.controller->reconcile();
  EXPECT_EQ(w.saves, before + 1);
  w.controller->reconcile();
  EXPECT_EQ(w.saves, before + 1);
  request(w, "f");  // loaded by it: a state change, saved at once
  w.controller->reconcile();
  const int loaded = w.saves;
  w.clock.advance(seconds(5));  // under 10 s: part of the same use, no gap
  request(w, "f");              // a use of the loaded model alone
  EXPECT_EQ(w.saves, loaded);
  w.controller->reconcile();
  EXPECT_EQ(w.saves, loaded + 1);
}

// The break-even: a measured load of 2 s caps the keep-alive at 120 s (2 s x 60); a client's
// own keep_alive keeps its precedence over the policy, within the bounds.
TEST(ModelPolicy, TheLoadTimeCapsItAndAClientsKeepAliveWins) {
  World w(kAdaptive);
  w.run("ollama");
  w.registry->update_model(w.key("m"), [&](const ModelSpec&, ModelRuntime& rt) {
    rt.idle_gaps = std::vector<double>(12, 300.0);
    rt.last_used = w.clock.wall_now();
  });
  w.clock.advance(minutes(5));
  w.controller->model_load_measured(w.key("m"), seconds(2));
  const RequestKeepAlive capped = request(w, "m");
  EXPECT_NEAR(capped.seconds, 120, 1e-6);
  EXPECT_EQ(capped.reason,
            "p99 of 13 idle gaps (+margin) is 330 s; capped at the ski-rental break-even 120 s "
            "(cold start 2 s x 60)");
  EXPECT_EQ(timer_of(w, "m").policy_reason, capped.reason);

  w.clock.advance(minutes(5));
  const RequestKeepAlive asked = request(w, "m", 900);
  EXPECT_EQ(asked.seconds, 900);
  EXPECT_EQ(asked.policy, "request");
  EXPECT_EQ(timer_of(w, "m").policy, "request");
  EXPECT_EQ(timer_of(w, "m").policy_reason, "the request's keep_alive (900 s)");
  EXPECT_EQ(timer_of(w, "m").keep_alive.count(), 900);
  w.clock.advance(minutes(5));
  EXPECT_EQ(request(w, "m", 5).reason, "the request's keep_alive (5 s); bounded to [60, 86400] s");
  // A model not in the config learned from traffic has its server's defaults: fixed.
  w.clock.advance(minutes(5));
  EXPECT_EQ(request(w, "new:1b").policy, "fixed");
}

// Not saved by the request (it does not wait for the disk): the monitor's next pass saves it,
// as a service's gap.
TEST(ModelPolicy, AGapIsSavedAtTheNextPass) {
  World w(kAdaptive);
  w.run("ollama");
  w.provider.loaded_models = {"m"};  // as its server lists it: no change at a reconcile
  request(w, "m");
  w.clock.advance(minutes(5));
  w.controller->reconcile();
  const int before = w.saves;
  request(w, "m");
  EXPECT_EQ(w.saves, before);
  ASSERT_EQ(w.model("m").idle_gaps.size(), 1u);
  w.controller->reconcile();
  EXPECT_EQ(w.saves, before + 1);
  w.controller->reconcile();
  EXPECT_EQ(w.saves, before + 1);
}

TEST(ModelPolicy, TheHistorySurvivesInTheStateFile) {
  World w(kAdaptive);
  w.run("ollama");
  w.registry->update_model(w.key("m"), [&](const ModelSpec&, ModelRuntime& rt) {
    rt.idle_gaps = {60, 120.5, 3600};
    rt.loaded = true;
    rt.last_used = w.clock.wall_now();
    rt.keep_alive_seconds = 330;
    rt.keep_alive_policy = "adaptive";
    rt.keep_alive_reason = "p99 of 10 idle gaps (+margin) is 330 s";
  });
  const nlohmann::json doc = encode_state(w.registry->snapshot(), Baseline{}, {});
  const nlohmann::json& saved = doc["models"]["ollama"]["m"];
  EXPECT_EQ(saved["idle_gaps"], nlohmann::json({60, 120.5, 3600})) << saved.dump();
  EXPECT_EQ(saved["keep_alive_policy"], "adaptive");

  Baseline base;
  base.services["ollama"] = {false, Desired::kOff};
  World after(kAdaptive);
  ASSERT_TRUE(restore_state(doc, base, *after.registry, after.clock.wall_now()));
  EXPECT_EQ(after.model("m").idle_gaps, (std::vector<double>{60, 120.5, 3600}));
  EXPECT_EQ(timer_of(after, "m").policy, "adaptive");
  EXPECT_EQ(timer_of(after, "m").policy_reason, "p99 of 10 idle gaps (+margin) is 330 s");

  // The same validation as a service's history: a bad value drops itself, counted.
  nlohmann::json bad = doc;
  nlohmann::json& gaps = bad["models"]["ollama"]["m"]["idle_gaps"];
  gaps = nlohmann::json::array();
  for (int i = 0; i < 200; ++i) gaps.push_back(60 + i);
  gaps.push_back(-1);
  gaps.push_back(2);
  gaps.push_back("x");
  World third(kAdaptive);
  auto restored = restore_state(bad, base, *third.registry, third.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_EQ(third.model("m").idle_gaps.size(), 200u);
  ASSERT_EQ(restored->warnings.size(), 1u);
  EXPECT_EQ(restored->warnings[0],
            "models.ollama.m.idle_gaps: ignored 3 of 203 values, the first -1 (each must be "
            "seconds, at least 10 and at most a year)");
  gaps = 5;
  World fourth(kAdaptive);
  restored = restore_state(bad, base, *fourth.registry, fourth.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_TRUE(fourth.model("m").idle_gaps.empty());
  EXPECT_EQ(restored->warnings.at(0),
            "models.ollama.m.idle_gaps: ignored 5 (must be an array of seconds, at least 10 and at "
            "most a "
            "year)");

  // A file from before: a keep-alive without the policy that chose it.
  nlohmann::json old = doc;
  old["models"]["ollama"]["m"].erase("keep_alive_policy");
  old["models"]["ollama"]["m"].erase("keep_alive_reason");
  World fifth(kAdaptive);
  ASSERT_TRUE(restore_state(old, base, *fifth.registry, fifth.clock.wall_now()));
  EXPECT_EQ(timer_of(fifth, "m").policy, "restored");
}

// A new user's trial: after a restart the first adaptive keep-alive was not capped by the load
// time, which was kept in memory only. The model's last load and the service's last cold start
// are kept in the state file; a bad value is ignored with a warning.
TEST(ModelPolicy, TheLoadTimeAndTheColdStartAreKeptAcrossARestart) {
  World w(kAdaptive);
  w.run("ollama");
  w.controller->model_load_measured(w.key("m"), seconds(2));
  w.registry->update_service(
      "ollama", [](const ServiceSpec&, ServiceRuntime& rt) { rt.cold_start_seconds = 3.5; });
  const nlohmann::json doc = encode_state(w.registry->snapshot(), Baseline{}, {});
  EXPECT_EQ(doc["models"]["ollama"]["m"]["load_seconds"], 2) << doc.dump();
  EXPECT_EQ(doc["services"]["ollama"]["cold_start_seconds"], 3.5) << doc.dump();
  EXPECT_FALSE(doc["models"]["ollama"]["f"].contains("load_seconds"));  // none measured

  Baseline base;
  base.services["ollama"] = {false, Desired::kOff};
  World after(kAdaptive);
  ASSERT_TRUE(restore_state(doc, base, *after.registry, after.clock.wall_now()));
  EXPECT_EQ(after.model("m").load_seconds, 2);
  EXPECT_EQ(after.service("ollama").cold_start_seconds, 3.5);
  after.run("ollama");
  after.registry->update_model(after.key("m"), [&](const ModelSpec&, ModelRuntime& rt) {
    rt.idle_gaps = std::vector<double>(12, 300.0);
    rt.last_used = after.clock.wall_now();
  });
  after.clock.advance(minutes(5));
  EXPECT_NEAR(request(after, "m").seconds, 120, 1e-6);  // capped at once: 2 s x 60

  nlohmann::json bad = doc;
  bad["models"]["ollama"]["m"]["load_seconds"] = -1;
  bad["services"]["ollama"]["cold_start_seconds"] = "slow";
  World third(kAdaptive);
  auto restored = restore_state(bad, base, *third.registry, third.clock.wall_now());
  ASSERT_TRUE(restored);
  EXPECT_EQ(third.model("m").load_seconds, 0);
  EXPECT_EQ(third.service("ollama").cold_start_seconds, 0);
  EXPECT_EQ(restored->warnings,
            (std::vector<std::string>{
                "services.ollama.cold_start_seconds: ignored \"slow\" (must be a number of "
                "seconds, above 0 and at most 86400)",
                "models.ollama.m.load_seconds: ignored -1 (must be a number of seconds, above 0 "
                "and at most 86400)"}));
}

}  // namespace
}  // namespace siesta
