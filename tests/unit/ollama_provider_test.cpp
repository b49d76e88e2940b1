// OllamaProvider against a fake Ollama on loopback (cpp-httplib's server in the test): what it
// sends for a load and an unload, how it reads /api/ps and /api/tags, and each error.
#include "siesta/providers/ollama_provider.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace siesta::testing {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Answers as Ollama does (shapes from its API docs); records each request body.
class FakeOllama {
 public:
  explicit FakeOllama(std::string ps = R"({"models":[
      {"name":"llama3.2:3b","model":"llama3.2:3b","size":3730000000,"size_vram":3730000000},
      {"model":"no-name"},
      {"name":"qwen2.5:7b","size":5400000000}]})")
      : ps_(std::move(ps)) {
    server_.Post("/api/generate", [this](const httplib::Request& req, httplib::Response& res) {
      const json body = json::parse(req.body);
      {
        std::lock_guard lock(mu_);
        generate_bodies_.push_back(body);
      }
      if (installed_.count(body.value("model", "")) == 0) {
        res.status = 404;
        res.set_content(R"({"error":"model ')" + body.value("model", "") + R"(' not found"})",
                        "application/json");
        return;
      }
      res.set_content(R"({"model":")" + body.value("model", "") +
                          R"(","response":"","done":true,"done_reason":"load"})",
                      "application/json");
    });
    server_.Get("/api/ps", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(ps_, "application/json");
    });
    server_.Get("/api/tags", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(
          R"({"models":[{"name":"llama3.2:3b","size":2019393189},{"name":"qwen2.5:7b"}]})",
          "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeOllama() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<json> generate_bodies() {
    std::lock_guard lock(mu_);
    return generate_bodies_;
  }

 private:
  const std::string ps_;  // the answer to GET /api/ps
  httplib::Server server_;
  std::set<std::string> installed_ = {"llama3.2:3b", "qwen2.5:7b"};
  std::mutex mu_;
  std::vector<json> generate_bodies_;
  int port_ = -1;
  std::thread thread_;
};

TEST(OllamaProvider, ALoadAsksForTheKeepAliveInWholeSecondsAndForeverIsMinusOne) {
  FakeOllama ollama;
  ASSERT_GT(ollama.port(), 0);
  OllamaProvider provider("127.0.0.1", ollama.port());
  ASSERT_TRUE(provider.load("llama3.2:3b", 900.2));
  ASSERT_TRUE(provider.load("llama3.2:3b", std::numeric_limits<double>::infinity()));
  ASSERT_TRUE(provider.unload("llama3.2:3b"));
  EXPECT_THAT(ollama.generate_bodies(),
              ElementsAre(json{{"model", "llama3.2:3b"}, {"keep_alive", 901}},
                          json{{"model", "llama3.2:3b"}, {"keep_alive", -1}},
                          json{{"model", "llama3.2:3b"}, {"keep_alive", 0}}));
}

TEST(OllamaProvider, AModelItDoesNotHaveIsNotFoundToLoadAndAlreadyUnloaded) {
  FakeOllama ollama;
  OllamaProvider provider("127.0.0.1", ollama.port());
  const Status load = provider.load("nope:1b", 60);
  EXPECT_EQ(load.code(), ErrorCode::kNotFound);
  EXPECT_THAT(load.message(), HasSubstr("model 'nope:1b' not found"));  // Ollama's own words
  EXPECT_TRUE(provider.unload("nope:1b"));
}

TEST(OllamaProvider, LoadedModelsAreReadFromApiPsWithTheirSizes) {
  FakeOllama ollama;
  OllamaProvider provider("127.0.0.1", ollama.port());
  auto loaded = provider.loaded();
  ASSERT_TRUE(loaded) << loaded.status().message();
  ASSERT_EQ(loaded->size(), 2u);  // the entry without a name is skipped
  EXPECT_EQ((*loaded)[0].name, "llama3.2:3b");
  EXPECT_EQ((*loaded)[0].size_bytes, 3.73e9);
  EXPECT_EQ((*loaded)[0].vram_bytes, 3.73e9);
  EXPECT_EQ((*loaded)[1].name, "qwen2.5:7b");
  EXPECT_FALSE((*loaded)[1].vram_bytes);
  auto installed = provider.list_installed();
  ASSERT_TRUE(installed) << installed.status().message();
  EXPECT_THAT(*installed, ElementsAre("llama3.2:3b", "qwen2.5:7b"));
}

TEST(OllamaProvider, AnAnswerOfTheWrongShapeFailsAndASilentServerIsUnavailable) {
  int port = 0;
  {
    FakeOllama ollama(R"({"models": "none"})");
    port = ollama.port();
    OllamaProvider provider("127.0.0.1", port);
    auto loaded = provider.loaded();
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.status().code(), ErrorCode::kFailed);
    EXPECT_THAT(loaded.status().message(), HasSubstr("/api/ps is not {\"models\": [...]}"));
  }
  OllamaProvider gone("127.0.0.1", port);  // nothing listens there any more
  auto loaded = gone.loaded();
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.status().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(gone.load("llama3.2:3b", 60).code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace siesta::testing
