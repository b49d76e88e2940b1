// Ollama's API as the proxy sees it (providers/ollama_api.h, core/model_api.h): which requests
// name a model, what keep-alive they ask for, the body that carries siesta's, and the load's
// price from the answer. The proxy itself knows none of this.
#include "siesta/providers/ollama_api.h"

#include <gtest/gtest.h>

#include <cmath>

namespace siesta::testing {
namespace {

using nlohmann::json;

TEST(OllamaApi, NativeAndOpenAiRoutesNameAModelOthersDoNot) {
  const ModelApi& api = ollama_api();
  for (const char* path :
       {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/v1/chat/completions",
        "/v1/completions", "/v1/embeddings", "/api/chat?x=1"}) {
    EXPECT_TRUE(api.names_model("POST", path)) << path;
  }
  EXPECT_FALSE(api.names_model("GET", "/api/generate"));
  EXPECT_FALSE(api.names_model("POST", "/api/pull"));
  EXPECT_FALSE(api.names_model("GET", "/v1/models"));
  EXPECT_EQ(model_api_of(ServiceSpec::ModelApi::kOllama), &api);
  EXPECT_EQ(model_api_of(ServiceSpec::ModelApi::kNone), nullptr);
}

TEST(OllamaApi, ANativeRequestCarriesSiestasKeepAlivePlusTheGrace) {
  const ModelApi& api = ollama_api();
  auto r = api.read("/api/generate", R"({"model": "m:1b", "prompt": "hi", "keep_alive": "1m"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "m:1b");
  EXPECT_EQ(r->asked_keep_alive, 60);
  EXPECT_TRUE(r->carries_keep_alive);
  EXPECT_FALSE(r->keep_alive_after);
  auto body = api.with_keep_alive(*r, 90);
  ASSERT_TRUE(body);
  const json sent = json::parse(*body);
  EXPECT_EQ(sent["keep_alive"], 390) << "90 s enforced + 300 s grace: Ollama never unloads first";
  EXPECT_EQ(sent["prompt"], "hi") << "the rest passes unchanged";
  EXPECT_EQ(api.server_keep_alive(90), 390);
}

TEST(OllamaApi, NullOrAbsentIsNoAskAndAnInvalidValueIsForwardedUnchanged) {
  const ModelApi& api = ollama_api();
  auto null = api.read("/api/chat", R"({"model": "m", "keep_alive": null})");
  ASSERT_TRUE(null);
  EXPECT_FALSE(null->asked_keep_alive);
  EXPECT_TRUE(null->carries_keep_alive);
  auto forever = api.read("/api/chat", R"({"model": "m", "keep_alive": -1})");
  ASSERT_TRUE(forever);
  EXPECT_TRUE(std::isinf(*forever->asked_keep_alive));
  // Ollama answers 400 to "300" (a string needs a unit): the client gets Ollama's own error.
  auto invalid = api.read("/api/generate", R"({"model": "m", "keep_alive": "300"})");
  ASSERT_TRUE(invalid);
  EXPECT_FALSE(invalid->carries_keep_alive);
  EXPECT_FALSE(invalid->keep_alive_after) << "Ollama's own 400, not a keep-alive set after";
  EXPECT_FALSE(api.with_keep_alive(*invalid, 60));
}

TEST(OllamaApi, OpenAiRoutesCarryNoKeepAliveAndBodiesWithoutAModelAreNotTracked) {
  const ModelApi& api = ollama_api();
  auto v1 = api.read("/v1/chat/completions", R"({"model": "m", "keep_alive": "5m"})");
  ASSERT_TRUE(v1);
  EXPECT_FALSE(v1->asked_keep_alive) << "Ollama reads no keep_alive on /v1";
  EXPECT_FALSE(v1->carries_keep_alive);
  EXPECT_TRUE(v1->keep_alive_after) << "set through the provider after a success";
  EXPECT_FALSE(api.with_keep_alive(*v1, 60));
  EXPECT_FALSE(api.read("/api/generate", "not json"));
  EXPECT_FALSE(api.read("/api/generate", R"({"prompt": "no model"})"));
  EXPECT_FALSE(api.read("/api/generate", R"({"model": ""})"));
  EXPECT_FALSE(api.read("/api/generate", R"({"model": 7})"));
  EXPECT_FALSE(api.read("/api/pull", R"({"model": "m"})"));
}

TEST(OllamaApi, TheLoadsPriceIsOllamasOwnLoadDuration) {
  const ModelApi& api = ollama_api();
  EXPECT_EQ(api.load_seconds(R"({"done": true, "load_duration": 1500000000})"), 1.5);
  EXPECT_FALSE(api.load_seconds(R"({"done": true})"));
  auto meter = api.load_meter();
  meter->feed("{\"response\": \"a\"}\n{\"done\": true, \"load_");
  meter->feed("duration\": 250000000}\n");
  EXPECT_EQ(meter->seconds(), 0.25);
}

}  // namespace
}  // namespace siesta::testing
