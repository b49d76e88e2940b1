// Two model servers serving a model of the same name (a new user's trial, issue 24): the Ollama
// emulator and the vLLM emulator, both started by the real siesta binary as processes, both
// serving "qwen3:0.6b". Models are per service: each server's model is its own entry (provider,
// state, metrics, state file), and the admin API asks which one when a bare name is ambiguous.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr const char* kModel = "qwen3:0.6b";

class SharedModel : public ::testing::Test {
 protected:
  TempDir dir;
  int ollama_upstream = free_port();
  int ollama_listen = free_port();
  int vllm_upstream = free_port();
  int vllm_listen = free_port();
  std::string state = (dir / "state.json").string();

  std::string config() const {
    json ollama = {
        {"command",
         {"python3", std::string(SIESTA_SOURCE_DIR) + "/tests/support/ollama_emulator.py", "--port",
          std::to_string(ollama_upstream), "--models", kModel, "--load-ms", "50"}},
        {"upstream", "127.0.0.1:" + std::to_string(ollama_upstream)},
        {"listen", "127.0.0.1:" + std::to_string(ollama_listen)},
        {"health", "/api/version"},
        {"model_api", "ollama"}};
    json vllm = {{"command",
                  {"python3", std::string(SIESTA_SOURCE_DIR) + "/tests/support/vllm_emulator.py",
                   "--port", std::to_string(vllm_upstream), "--model", kModel}},
                 {"upstream", "127.0.0.1:" + std::to_string(vllm_upstream)},
                 {"listen", "127.0.0.1:" + std::to_string(vllm_listen)},
                 {"model_api", "vllm"}};
    return json({{"idle_check_interval_minutes", 0.01},
                 {"state_file", state},
                 {"services", {{"ollama", ollama}, {"vllm", vllm}}}})
        .dump();
  }
  static httplib::Result chat(int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(seconds(30));
    return c.Post("/v1/chat/completions",
                  json({{"model", kModel},
                        {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}})
                      .dump(),
                  "application/json");
  }
  static json models(const SiestaProcess& s) { return get_json(s, "/admin/idle-status")["models"]; }
  static std::string loaded_sample(const std::string& provider) {
    return std::string(R"(siesta_model_loaded{model=")") + kModel + R"(",provider=")" + provider +
           R"("})";
  }
};

TEST_F(SharedModel, EachServerKeepsItsOwnModelEntry) {
  SiestaProcess siesta(dir.path(), config());
  ASSERT_TRUE(siesta.start()) << siesta.log();

  // Ollama serves it first: one entry, keyed by its bare name (the seed's shape).
  auto first = chat(ollama_listen);
  ASSERT_TRUE(first) << siesta.log();
  ASSERT_EQ(first->status, 200) << first->body;
  ASSERT_TRUE(models(siesta).contains(kModel)) << models(siesta);
  EXPECT_EQ(models(siesta)[kModel]["provider"], "ollama");

  // Then vLLM: its own entry, not Ollama's (which kept provider "ollama" before and took vLLM's
  // state as its own).
  auto second = chat(vllm_listen);
  ASSERT_TRUE(second) << siesta.log();
  ASSERT_EQ(second->status, 200) << second->body;
  json all = models(siesta);
  const std::string on_ollama = std::string(kModel) + "@ollama";
  const std::string on_vllm = std::string(kModel) + "@vllm";
  ASSERT_TRUE(all.contains(on_ollama) && all.contains(on_vllm)) << all;
  EXPECT_FALSE(all.contains(kModel)) << all;
  EXPECT_EQ(all[on_ollama]["provider"], "ollama");
  EXPECT_EQ(all[on_vllm]["provider"], "vllm");
  EXPECT_EQ(all[on_ollama]["loaded"], true);
  EXPECT_EQ(all[on_vllm]["loaded"], true);
  EXPECT_EQ(metric(siesta, loaded_sample("ollama")), 1);
  EXPECT_EQ(metric(siesta, loaded_sample("vllm")), 1);

  // The bare name is ambiguous: 409 naming both services, nothing done.
  const std::string path = std::string("/admin/models/") + kModel;
  auto get = siesta.client().Get(path);
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 409) << get->body;
  const json err = json::parse(get->body, nullptr, false);
  EXPECT_EQ(err["error"]["code"], "conflict") << get->body;
  const std::string message = err["error"]["message"].get<std::string>();
  EXPECT_NE(message.find("ollama"), std::string::npos) << message;
  EXPECT_NE(message.find("vllm"), std::string::npos) << message;
  auto unload = siesta.client().Post(path + "/unload");
  ASSERT_TRUE(unload);
  EXPECT_EQ(unload->status, 409) << unload->body;
  EXPECT_EQ(models(siesta)[on_ollama]["loaded"], true);

  // Qualified: each server's own model.
  auto one = siesta.client().Get(path + "?service=vllm");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200) << one->body;
  EXPECT_EQ(json::parse(one->body)["provider"], "vllm");
  EXPECT_EQ(siesta.client().Get(path + "?service=nosuch")->status, 404);
  // The key idle-status shows for it (name@service) names it too (a new user's trial: 400).
  auto keyed = siesta.client().Get(path + "@vllm");
  ASSERT_TRUE(keyed);
  ASSERT_EQ(keyed->status, 200) << keyed->body;
  EXPECT_EQ(json::parse(keyed->body)["provider"], "vllm");
  EXPECT_EQ(siesta.client().Get(path + "@nosuch")->status, 404);
  auto forced = siesta.client().Post(path + "/unload?service=ollama");
  ASSERT_TRUE(forced);
  ASSERT_EQ(forced->status, 200) << forced->body;
  EXPECT_EQ(json::parse(forced->body)["provider"], "ollama");
  all = models(siesta);
  EXPECT_EQ(all[on_ollama]["loaded"], false) << all;
  EXPECT_EQ(all[on_vllm]["loaded"], true) << all;
  EXPECT_EQ(metric(siesta, std::string(R"(siesta_model_unloads_total{model=")") + kModel +
                               R"(",reason="forced",service="ollama"})"),
            1);
  EXPECT_EQ(metric(siesta, std::string(R"(siesta_model_unloads_total{model=")") + kModel +
                               R"(",reason="forced",service="vllm"})"),
            0);

  // vLLM put to sleep: its model goes with it, Ollama's entry is untouched; vLLM's /v1/models is
  // answered by siesta without waking it (it used to find no model of its own and wake it).
  ASSERT_EQ(chat(ollama_listen)->status, 200);
  ASSERT_EQ(siesta.client().Post("/admin/services/vllm/sleep")->status, 200);
  all = models(siesta);
  EXPECT_EQ(all[on_ollama]["loaded"], true) << all;
  EXPECT_EQ(all[on_vllm]["loaded"], false) << all;
  httplib::Client vllm("127.0.0.1", vllm_listen);
  auto listed = vllm.Get("/v1/models");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->status, 200) << listed->body;
  EXPECT_TRUE(listed->has_header("X-Siesta-Asleep")) << listed->body;
  EXPECT_EQ(json::parse(listed->body)["data"][0]["id"], kModel) << listed->body;
  EXPECT_EQ(actual(siesta, "vllm"), "stopped");
  EXPECT_EQ(actual(siesta, "ollama"), "running");

  // The state file keeps the two apart, and a restart restores each on its own server.
  EXPECT_EQ(siesta.stop(SIGTERM), 0) << siesta.log();
  const json saved = json::parse(slurp(state), nullptr, false);
  EXPECT_TRUE(saved["models"]["ollama"].contains(kModel)) << saved;
  EXPECT_TRUE(saved["models"]["vllm"].contains(kModel)) << saved;
  SiestaProcess again(dir.path(), config());
  ASSERT_TRUE(again.start()) << again.log();
  all = models(again);
  EXPECT_EQ(all[on_ollama]["provider"], "ollama") << all;
  EXPECT_EQ(all[on_vllm]["provider"], "vllm") << all;
}

TEST_F(SharedModel, AStateFileKeyedByNameIsRestoredOnItsProvider) {
  // A file written before models were per service: {name: {"provider", ...}}. Each model keeps
  // its entry, on its provider.
  std::ofstream(state) << json({{"format", "siesta-state/1"},
                                {"models",
                                 {{kModel,
                                   {{"provider", "vllm"},
                                    {"loaded", false},
                                    {"last_used", 1.7e9},
                                    {"keep_alive_seconds", nullptr}}}}}})
                              .dump();
  SiestaProcess siesta(dir.path(), config());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  const json all = models(siesta);
  ASSERT_TRUE(all.contains(kModel)) << all << siesta.log();
  EXPECT_EQ(all[kModel]["provider"], "vllm");
  EXPECT_EQ(all[kModel]["last_used"], 1700000000) << all;
  // The admin API finds it by its bare name (one server has it).
  auto one = siesta.client().Get(std::string("/admin/models/") + kModel);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200) << one->body;
}

}  // namespace
}  // namespace siesta::testing
