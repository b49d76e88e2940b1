// Models end to end: the real siesta binary in front of the Ollama emulator (Ollama itself cannot
// run here; tests/support/ollama_emulator.py follows its published API), which is started,
// stopped and woken by siesta like any service.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class Models : public ::testing::Test {
 protected:
  TempDir dir;
  int upstream = free_port();
  int listen = free_port();
  std::string events_file = (dir / "ollama-events.ndjson").string();

  // An "ollama" service running the emulator; `fields` adds service keys, `models` the models.
  std::string config(const std::string& models, const std::string& fields = "",
                     std::vector<std::string> emulator_args = {}) {
    json cmd = json::array(
        {"python3", std::string(SIESTA_SOURCE_DIR) + "/tests/support/ollama_emulator.py", "--port",
         std::to_string(upstream), "--load-ms", "150", "--events-file", events_file});
    for (const auto& a : emulator_args) cmd.push_back(a);
    return R"({"idle_check_interval_minutes": 0.01, "services": {"ollama": {"command": )" +
           cmd.dump() + R"(, "upstream": "127.0.0.1:)" + std::to_string(upstream) +
           R"(", "health": "/api/version", "listen": "127.0.0.1:)" + std::to_string(listen) + "\"" +
           fields + R"(}}, "models": {)" + models + "}}";
  }
  httplib::Client via() const {
    httplib::Client c("127.0.0.1", listen);
    c.set_read_timeout(seconds(30));
    return c;
  }
  json emulator(const std::string& path) const {
    httplib::Client c("127.0.0.1", upstream);
    auto res = c.Get(path);
    return res ? json::parse(res->body, nullptr, false) : json();
  }
  std::vector<std::string> loaded_in_ollama() const {
    std::vector<std::string> names;
    const json ps = emulator("/api/ps");  // kept: a range over a temporary's member dangles
    for (const auto& m : ps["models"]) names.push_back(m["name"]);
    return names;
  }
  // The keep_alive values Ollama received in /api/* requests for `model`.
  std::vector<json> keep_alives_sent(const std::string& model) const {
    std::vector<json> out;
    for (const auto& r : emulator("/emulator/requests")) {
      if (r["body"].value("model", "") == model && r["body"].contains("keep_alive")) {
        out.push_back(r["body"]["keep_alive"]);
      }
    }
    return out;
  }
  json model_status(const SiestaProcess& s, const std::string& model) const {
    return get_json(s, "/admin/idle-status")["models"][model];
  }
};

TEST_F(Models, ARequestLoadsTheModelAndSiestaUnloadsItWhenItsKeepAliveEnds) {
  // keep-alive 0.0005 h = 1.8 s.
  SiestaProcess siesta(dir.path(),
                       config(R"("llama3.2:3b": {"provider": "ollama", "keep_alive_hours": 0.0005,
                                          "keep_alive_min_seconds": 0})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();

  auto res = via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "hi"})",
                        "application/json");
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_NE(res->body.find("\"done\": true"), std::string::npos);
  // The service and the model were both cold; the client is told what it paid.
  const std::string wake = res->get_header_value("X-Siesta-Wake");
  EXPECT_NE(wake.find("cold; dur="), std::string::npos) << wake;
  EXPECT_NE(wake.find("model=llama3.2:3b; load="), std::string::npos) << wake;

  // siesta owns the keep-alive: Ollama was told 1.8 s + 300 s, so it never unloads first.
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), std::vector<json>{json(302)});
  json st = model_status(siesta, "llama3.2:3b");
  EXPECT_EQ(st["loaded"], true) << st;
  EXPECT_NEAR(st["keep_alive_seconds"].get<double>(), 1.8, 1e-9);
  ASSERT_TRUE(eventually([&] {
    return model_status(siesta, "llama3.2:3b")["vram_bytes"].is_number();
  })) << model_status(siesta, "llama3.2:3b");  // from /api/ps at the next reconcile
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["vram_bytes"], 2e9);
  EXPECT_EQ(metric(siesta, R"(siesta_model_vram_bytes{model="llama3.2:3b",provider="ollama"})"),
            2e9);
  EXPECT_EQ(
      metric(siesta,
             R"(siesta_model_loads_total{model="llama3.2:3b",reason="request",service="ollama"})"),
      1);

  // 1.8 s after the request ended siesta unloads it, through Ollama's API.
  ASSERT_TRUE(siesta.wait_log("Successfully unloaded idle model llama3.2:3b", seconds(10)))
      << siesta.log();
  EXPECT_TRUE(loaded_in_ollama().empty());
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["loaded"], false);
  EXPECT_EQ(
      metric(
          siesta,
          R"(siesta_model_unloads_total{model="llama3.2:3b",reason="expired",service="ollama"})"),
      1);
  EXPECT_EQ(metric(siesta,
                   R"(siesta_model_vram_freed_bytes_total{model="llama3.2:3b",service="ollama"})"),
            2e9);
  // The service itself stays up (its own timeout is an hour).
  EXPECT_EQ(status_of(siesta, "ollama")["actual"], "running");
}

TEST_F(Models, TheLoadTimeIsOllamasOwnLoadDurationNotTheGeneration) {
  // Issue 14, item 7: "load=4.002" for a 0.5 s load and 4 s of tokens. Here: 0.15 s of load,
  // then 20 tokens 100 ms apart.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})", "",
                                          {"--tokens", "20", "--token-interval-ms", "100"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/wake")->status, 200);
  auto load_in = [](const httplib::Result& res) {
    const std::string wake = res->get_header_value("X-Siesta-Wake");
    const auto at = wake.find("load=");
    return at == std::string::npos ? -1.0 : std::stod(wake.substr(at + 5));
  };
  // Not streamed: the whole answer comes at once, with Ollama's load_duration in it.
  auto whole =
      via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "x", "stream": false})",
                 "application/json");
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200);
  EXPECT_DOUBLE_EQ(load_in(whole), 0.15) << whole->get_header_value("X-Siesta-Wake");
  // Observed once the answer has been relayed: an instant after the client has it.
  const std::string whole_sum =
      R"(siesta_model_load_duration_seconds_sum{model="llama3.2:3b",service="ollama"})";
  ASSERT_TRUE(eventually([&] { return metric(siesta, whole_sum) > 0; }));
  EXPECT_NEAR(metric(siesta, whole_sum), 0.15, 1e-9);
  // Streamed: the header goes out before the final line, so it says the time to the first
  // byte; the metric waits for Ollama's figure at the end.
  auto stream = via().Post("/api/chat", R"({"model": "qwen2.5:7b", "messages": [{"role": "user",
      "content": "x"}]})",
                           "application/json");
  ASSERT_TRUE(stream);
  ASSERT_EQ(stream->status, 200);
  EXPECT_GE(load_in(stream), 0.15);
  EXPECT_LT(load_in(stream), 1.5);  // not the 2 s of tokens
  const std::string stream_sum =
      R"(siesta_model_load_duration_seconds_sum{model="qwen2.5:7b",service="ollama"})";
  ASSERT_TRUE(eventually([&] { return metric(siesta, stream_sum) > 0; }));
  EXPECT_NEAR(metric(siesta, stream_sum), 0.15, 1e-9);
}

// Two requests at once for a model not loaded: one load, counted once, and its time is the load's,
// whichever request's answer siesta sees first (a new user's re-trial: 0 s was recorded; the
// emulator answered the second request at once, where Ollama makes it wait for the load and
// reports the time it waited as its load_duration).
TEST_F(Models, ConcurrentRequestsThatShareOneLoadRecordItsTime) {
  SiestaProcess siesta(
      dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})", "", {"--load-ms", "400"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/wake")->status, 200);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] {
      std::this_thread::sleep_for(milliseconds(100 * i));  // the second while the first loads
      auto res =
          via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "x", "stream": false})",
                     "application/json");
      ok += res && res->status == 200;
    });
  }
  for (auto& c : clients) c.join();
  ASSERT_EQ(ok.load(), 2) << siesta.log();
  const std::string labels = R"({model="llama3.2:3b",service="ollama"})";
  ASSERT_TRUE(eventually(
      [&] { return metric(siesta, "siesta_model_load_duration_seconds_count" + labels) == 1; }));
  EXPECT_GE(metric(siesta, "siesta_model_load_duration_seconds_sum" + labels), 0.2);
}

TEST_F(Models, AClientsKeepAliveIsHonouredWithinTheModelsBounds) {
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama",
      "keep_alive_min_seconds": 30, "keep_alive_max_seconds": 120})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto ask = [&](const std::string& keep_alive) {
    auto res =
        via().Post("/api/generate",
                   R"({"model": "llama3.2:3b", "prompt": "x", "stream": false, "keep_alive": )" +
                       keep_alive + "}",
                   "application/json");
    EXPECT_TRUE(res && res->status == 200);
    return model_status(siesta, "llama3.2:3b")["keep_alive_seconds"].get<double>();
  };
  EXPECT_EQ(ask("-1"), 120);        // "forever" is capped: no pinning
  EXPECT_EQ(ask("\"1s\""), 30);     // too short is raised: no thrashing
  EXPECT_EQ(ask("\"1m30s\""), 90);  // within bounds: the client's own
  EXPECT_EQ(ask("45"), 45);
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), (std::vector<json>{420, 330, 390, 345}));
}

TEST_F(Models, TheConfiguredAndDefaultKeepAlivesAreBoundedLikeAClients) {
  // Issue 14, item 8: with keep_alive_max_seconds 15, "modelKeepAlive": 1 (hour) gave 3,600 s
  // while a client asking -1 got 15 s.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama",
      "keep_alive_min_seconds": 5, "keep_alive_max_seconds": 15})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client()
                .Post("/admin/settings", R"({"modelKeepAlive": 1})", "application/json")
                ->status,
            200);
  auto res =
      via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "x"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["keep_alive_seconds"], 15);
  ASSERT_EQ(via()
                .Post("/api/generate", R"({"model": "llama3.2:3b", "keep_alive": -1})",
                      "application/json")
                ->status,
            200);
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["keep_alive_seconds"], 15);
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), (std::vector<json>{315, 315}));
  // The admin API's load uses the same bound.
  ASSERT_EQ(siesta.client().Post("/admin/models/llama3.2:3b/load")->status, 200);
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), (std::vector<json>{315, 315, 315}));
}

TEST_F(Models, OpenAiRequestsAreTrackedAndFollowTheSamePolicy) {
  // qwen2.5:7b is not in the config: tracked from its first request, with the global keep-alive.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  httplib::Headers headers;
  std::string body;
  auto res = via().Post(
      "/v1/chat/completions",
      R"({"model": "qwen2.5:7b", "stream": true, "messages": [{"role": "user", "content": "x"}]})",
      "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(res->get_header_value("X-Accel-Buffering"), "no");
  json st = model_status(siesta, "qwen2.5:7b");
  EXPECT_EQ(st["loaded"], true) << st;
  EXPECT_EQ(st["provider"], "ollama");
  EXPECT_EQ(st["keep_alive_seconds"], 7200);  // the global model_keep_alive_hours (2)
  // Ollama reads no keep_alive from /v1: siesta sets it right after, through /api/generate.
  ASSERT_TRUE(eventually([&] { return !keep_alives_sent("qwen2.5:7b").empty(); }));
  EXPECT_EQ(keep_alives_sent("qwen2.5:7b"), std::vector<json>{json(7500)});
}

TEST_F(Models, AFailedV1RequestSetsNoKeepAliveAndLoadsNothing) {
  // Issue 14, item 5: after a /v1 request failed, siesta set the keep-alive through
  // /api/generate anyway, which loaded the model.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto bad = via().Post("/v1/embeddings", R"({"model": "llama3.2:3b"})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;  // no "input"
  auto missing =
      via().Post("/v1/embeddings", R"({"model": "nope:1b", "input": "x"})", "application/json");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
  // A request that succeeds afterwards does get its keep-alive set: wait for that one, then
  // no other may have been sent.
  auto good =
      via().Post("/v1/embeddings", R"({"model": "qwen2.5:7b", "input": "x"})", "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
  ASSERT_TRUE(eventually([&] { return !keep_alives_sent("qwen2.5:7b").empty(); }));
  std::this_thread::sleep_for(milliseconds(300));  // a refresh posted earlier has landed too
  EXPECT_TRUE(keep_alives_sent("llama3.2:3b").empty());
  EXPECT_TRUE(keep_alives_sent("nope:1b").empty());
  EXPECT_EQ(loaded_in_ollama(), std::vector<std::string>{"qwen2.5:7b"});
}

TEST_F(Models, AModelWithARequestInFlightIsNeverUnloaded) {
  // keep-alive 0.36 s; the stream runs 2 s.
  SiestaProcess siesta(dir.path(),
                       config(R"("llama3.2:3b": {"provider": "ollama", "keep_alive_hours": 0.0001,
                                          "keep_alive_min_seconds": 0})",
                              "", {"--tokens", "20", "--token-interval-ms", "100"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  // Up first: the emulator's start alone can take seconds on a loaded machine.
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/wake")->status, 200);
  json mid;
  std::thread watcher([&] {
    std::this_thread::sleep_for(milliseconds(1500));
    mid = model_status(siesta, "llama3.2:3b");
  });
  auto res = via().Post(
      "/api/chat", R"({"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}]})",
      "application/json");
  watcher.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(mid["loaded"], true) << mid;
  EXPECT_EQ(mid["in_flight"], 1);
  EXPECT_EQ(mid["unload_blocker"], "in_flight");
  EXPECT_EQ(siesta.log().find("Model llama3.2:3b keep-alive expired"), std::string::npos);
  EXPECT_TRUE(siesta.wait_log("Successfully unloaded idle model llama3.2:3b", seconds(5)));
}

TEST_F(Models, AKeepAliveOfNullIsLeftToSiestaAndTheModelIsInFlightThroughoutItsStream) {
  // Issue 14, item 3: null was forwarded untouched and the request not counted, so siesta
  // unloaded the model under the running stream. keep-alive 0.36 s; the stream runs 2 s.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama",
      "keep_alive_hours": 0.0001, "keep_alive_min_seconds": 0})",
                                          "", {"--tokens", "20", "--token-interval-ms", "100"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Post("/api/generate", R"({"model": "llama3.2:3b"})", "application/json")->status,
            200);  // loaded; unloaded again 0.36 s later
  json mid;
  std::thread watcher([&] {
    std::this_thread::sleep_for(milliseconds(1500));
    mid = model_status(siesta, "llama3.2:3b");
  });
  auto res = via().Post("/api/chat", R"({"model": "llama3.2:3b", "keep_alive": null,
      "messages": [{"role": "user", "content": "x"}]})",
                        "application/json");
  watcher.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(mid["in_flight"], 1) << mid;
  EXPECT_EQ(mid["loaded"], true) << mid;
  EXPECT_EQ(mid["unload_blocker"], "in_flight") << mid;
  // Rewritten to siesta's keep-alive (0.36 s + 300 s), like an absent one.
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), (std::vector<json>{301, 301}));
}

TEST_F(Models, AKeepAliveOllamaRejectsIsForwardedUnchangedForOllamasOwn400) {
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = via().Post("/api/generate", R"({"model": "llama3.2:3b", "keep_alive": "300"})",
                        "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body, nullptr, false),
            json::parse(R"({"error": "time: missing unit in duration \"300\""})"));
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), std::vector<json>{json("300")});
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["in_flight"], 0);
}

TEST_F(Models, PuttingTheServiceToSleepUnloadsItsModelsFirst) {
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})",
                                          R"(, "idle_timeout_minutes": 0.02)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Post("/api/generate", R"({"model": "llama3.2:3b"})", "application/json")->status,
            200);
  ASSERT_TRUE(siesta.wait_log("Successfully stopped idle service ollama", seconds(10)));
  // The emulator's own record: loaded, then unloaded by siesta's request before it was stopped.
  const std::string events = slurp(events_file);
  EXPECT_NE(events.find(R"("event": "load", "model": "llama3.2:3b")"), std::string::npos) << events;
  EXPECT_NE(events.find(R"("event": "unload", "model": "llama3.2:3b", "cause": "keep_alive 0")"),
            std::string::npos)
      << events;
  EXPECT_EQ(model_status(siesta, "llama3.2:3b")["loaded"], false);
  EXPECT_EQ(
      metric(
          siesta,
          R"(siesta_model_unloads_total{model="llama3.2:3b",reason="service_sleep",service="ollama"})"),
      1);

  // A model request to the sleeping service wakes it, then loads the model: a cold start.
  auto res = via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "again"})",
                        "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("X-Siesta-Wake").find("model=llama3.2:3b"), std::string::npos);
}

TEST_F(Models, AModelItsServerDoesNotHaveIsNeitherLoadedNorKept) {
  // Issue 14, item 4: 300 random names gave 304 entries, each "loaded" with a keep-alive timer.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  for (const char* name : {"nope:1b", "nope:2b", "nope:3b"}) {
    auto res = via().Post("/api/generate", std::string(R"({"model": ")") + name + R"("})",
                          "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << res->body;
    EXPECT_EQ(json::parse(res->body, nullptr, false),
              json({{"error", std::string("model '") + name + "' not found"}}));
    EXPECT_EQ(res->get_header_value("X-Siesta-Wake").find("model="), std::string::npos);
  }
  // The last request ends (and its model is forgotten) just after its answer is in the client's
  // socket: the client may read it first (this run's full suite once saw nope:3b in flight).
  json models;
  EXPECT_TRUE(eventually([&] {
    models = get_json(siesta, "/admin/idle-status")["models"];
    return models.size() == 1u;
  })) << models;
  EXPECT_FALSE(models.contains("nope:1b"));
  EXPECT_EQ(siesta.client().Get("/admin/models/nope:1b")->status, 404);
  const auto text = siesta.client().Get("/metrics")->body;
  EXPECT_EQ(text.find("nope:"), std::string::npos);
  EXPECT_EQ(siesta.log().find("keep-alive expired"), std::string::npos);
}

TEST_F(Models, AdminLoadUnloadAndUnloadEveryModelOfAProvider) {
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"},
                                             "qwen2.5:7b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  // Loading wakes the service first.
  auto load = siesta.client().Post("/admin/models/llama3.2:3b/load");
  ASSERT_TRUE(load);
  ASSERT_EQ(load->status, 200) << load->body;
  ASSERT_EQ(siesta.client().Post("/admin/models/qwen2.5:7b/load")->status, 200);
  auto in_ollama = loaded_in_ollama();
  std::sort(in_ollama.begin(), in_ollama.end());
  EXPECT_EQ(in_ollama, (std::vector<std::string>{"llama3.2:3b", "qwen2.5:7b"}));
  EXPECT_EQ(
      metric(siesta,
             R"(siesta_model_loads_total{model="qwen2.5:7b",reason="manual",service="ollama"})"),
      1);

  ASSERT_EQ(siesta.client().Post("/admin/models/llama3.2:3b/unload")->status, 200);
  EXPECT_EQ(loaded_in_ollama(), std::vector<std::string>{"qwen2.5:7b"});
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/unload-models")->status, 200);
  EXPECT_TRUE(loaded_in_ollama().empty());
  EXPECT_EQ(model_status(siesta, "qwen2.5:7b")["loaded"], false);
  EXPECT_EQ(
      metric(siesta,
             R"(siesta_model_unloads_total{model="qwen2.5:7b",reason="forced",service="ollama"})"),
      1);
}

TEST_F(Models, AdminLoadOfAnInstalledModelSiestaHasNotSeen) {
  // Issue 14, item 6: qwen2.5:7b is in Ollama's /api/tags, not in the config, never requested.
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto load = siesta.client().Post("/admin/models/qwen2.5:7b/load");
  ASSERT_TRUE(load);
  EXPECT_EQ(load->status, 200) << load->body;
  EXPECT_EQ(loaded_in_ollama(), std::vector<std::string>{"qwen2.5:7b"});
  EXPECT_EQ(model_status(siesta, "qwen2.5:7b")["loaded"], true);
  EXPECT_EQ(model_status(siesta, "qwen2.5:7b")["provider"], "ollama");
  auto missing = siesta.client().Post("/admin/models/nope:1b/load");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_FALSE(get_json(siesta, "/admin/idle-status")["models"].contains("nope:1b"));
}

TEST_F(Models, AnUnloadOllamaRefusesIsShownCountedAndRetried) {
  SiestaProcess siesta(dir.path(),
                       config(R"("llama3.2:3b": {"provider": "ollama", "keep_alive_hours": 0.0002,
                                          "keep_alive_min_seconds": 0})",
                              "", {"--fail-unload"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Post("/api/generate", R"({"model": "llama3.2:3b"})", "application/json")->status,
            200);
  ASSERT_TRUE(eventually(
      [&] {
        return metric(
                   siesta,
                   R"(siesta_model_unload_failures_total{model="llama3.2:3b",service="ollama"})") >=
               2;
      },
      seconds(10)))
      << siesta.log();  // retried after idle_check_interval (0.6 s)
  json st = model_status(siesta, "llama3.2:3b");
  EXPECT_EQ(st["loaded"], true);
  EXPECT_NE(st["last_error"].get<std::string>().find("unload failed (emulated)"), std::string::npos)
      << st;
  EXPECT_EQ(status_of(siesta, "ollama")["actual"], "running");  // the monitor goes on
}

TEST_F(Models, ModelsLoadedOrUnloadedOutsideSiestaAreSyncedFromApiPs) {
  SiestaProcess siesta(dir.path(), config(R"("llama3.2:3b": {"provider": "ollama"})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/wake")->status, 200);
  // Straight to Ollama, past siesta: a model siesta has never seen.
  httplib::Client direct("127.0.0.1", upstream);
  direct.set_read_timeout(seconds(10));
  ASSERT_EQ(direct.Post("/api/generate", R"({"model": "qwen2.5:7b"})", "application/json")->status,
            200);
  ASSERT_TRUE(eventually([&] { return model_status(siesta, "qwen2.5:7b")["loaded"] == true; }))
      << siesta.log();
  EXPECT_TRUE(siesta.wait_log("Model qwen2.5:7b found loaded on ollama; tracking it"));
  ASSERT_EQ(
      direct
          .Post("/api/generate", R"({"model": "qwen2.5:7b", "keep_alive": 0})", "application/json")
          ->status,
      200);
  ASSERT_TRUE(eventually([&] { return model_status(siesta, "qwen2.5:7b")["loaded"] == false; }));
  EXPECT_EQ(
      metric(
          siesta,
          R"(siesta_model_unloads_total{model="qwen2.5:7b",reason="external",service="ollama"})"),
      1);
}

TEST_F(Models, SiestasExitUnloadsTheModelsOfTheServersItStops) {
  // Found by a new user: on SIGTERM (on_exit "stop") Ollama was stopped with its models still
  // marked loaded, so after a restart idle-status showed them loaded on a stopped server.
  const std::string state = (dir / "state.json").string();
  std::string cfg = config(R"("llama3.2:3b": {"provider": "ollama"})");
  cfg.insert(1, R"("state_file": ")" + state + "\", ");
  {
    SiestaProcess siesta(dir.path(), cfg);
    ASSERT_TRUE(siesta.start()) << siesta.log();
    ASSERT_EQ(
        via().Post("/api/generate", R"({"model": "llama3.2:3b"})", "application/json")->status,
        200);
    ASSERT_EQ(model_status(siesta, "llama3.2:3b")["loaded"], true);
    EXPECT_EQ(siesta.stop(SIGTERM), 0) << siesta.log();
  }
  // Unloaded through Ollama before it was stopped, and not loaded in the state file.
  const std::string events = slurp(events_file);
  EXPECT_NE(events.find(R"("event": "unload", "model": "llama3.2:3b", "cause": "keep_alive 0")"),
            std::string::npos)
      << events;
  const json saved = json::parse(slurp(state), nullptr, false);
  EXPECT_EQ(saved["models"]["ollama"]["llama3.2:3b"]["loaded"], false) << saved;
  SiestaProcess again(dir.path(), cfg);
  ASSERT_TRUE(again.start()) << again.log();
  EXPECT_EQ(model_status(again, "llama3.2:3b")["loaded"], false);
}

TEST_F(Models, ARequestSentButNeverAnsweredKeepsItsModelTracked) {
  // Found by a new user: a client that gave up while its model was loading made siesta forget a
  // model that the server went on to load (with siesta's keep-alive), so it was never unloaded.
  SiestaProcess siesta(dir.path(), config("", R"(, "model_api": "ollama")", {"--load-ms", "1500"}));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(siesta.client().Post("/admin/services/ollama/wake")->status, 200);
  {
    httplib::Client impatient("127.0.0.1", listen);
    impatient.set_read_timeout(milliseconds(300));
    EXPECT_FALSE(impatient.Post("/api/generate", R"({"model": "qwen2.5:7b"})", "application/json"));
  }
  // The emulator loads it after 1.5 s all the same; siesta keeps tracking it as loaded.
  ASSERT_TRUE(eventually([&] { return loaded_in_ollama().size() == 1; }, seconds(5)));
  ASSERT_TRUE(
      eventually([&] { return model_status(siesta, "qwen2.5:7b")["in_flight"] == 0; }, seconds(5)));
  // Not forgotten at the abort (the /api/ps sync may mark it unloaded until the load is done).
  EXPECT_EQ(siesta.log().find("forgotten"), std::string::npos) << siesta.log();
  EXPECT_TRUE(
      eventually([&] { return model_status(siesta, "qwen2.5:7b")["loaded"] == true; }, seconds(5)))
      << model_status(siesta, "qwen2.5:7b");
}

// Issue 20 point 2: a model's adaptive keep-alive (docs/models.md). Its history, restored from
// the state file, says it is used every 10 s: the request gives it p99 +10 % = 11 s, which Ollama
// is told (+300 s) and siesta unloads it at, not at the configured hour. Once the load is
// measured (0.15 s), the break-even (x 60 = 9 s) caps the next one.
TEST_F(Models, AnAdaptiveModelIsUnloadedAtItsLearnedKeepAliveNotTheConfiguredOne) {
  const std::string state = (dir / "state.json").string();
  std::ofstream(state) << json{{"format", "siesta-state/1"},
                               {"models",
                                {{"ollama",
                                  {{"llama3.2:3b",
                                    {{"loaded", false},
                                     {"last_used", nullptr},
                                     {"idle_gaps", std::vector<double>(12, 10.0)}}}}}}}}
                              .dump();
  std::string cfg = config(R"("llama3.2:3b": {"provider": "ollama", "keep_alive_hours": 1,
                                "keep_alive_min_seconds": 5, "policy": "adaptive"})");
  cfg.insert(1, R"("state_file": ")" + state + "\", ");
  SiestaProcess siesta(dir.path(), cfg);
  ASSERT_TRUE(siesta.start()) << siesta.log();
  json st = model_status(siesta, "llama3.2:3b");
  EXPECT_EQ(st["policy"], "adaptive") << st;
  EXPECT_EQ(st["idle_gaps"], 12) << st;

  auto res = via().Post("/api/generate", R"({"model": "llama3.2:3b", "prompt": "hi"})",
                        "application/json");
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  const auto ended = std::chrono::steady_clock::now();
  EXPECT_EQ(keep_alives_sent("llama3.2:3b"), std::vector<json>{json(311)});
  st = model_status(siesta, "llama3.2:3b");
  EXPECT_EQ(st["loaded"], true) << st;
  EXPECT_NEAR(st["keep_alive_seconds"].get<double>(), 11, 1e-9) << st;
  EXPECT_EQ(st["policy"], "adaptive") << st;
  EXPECT_EQ(st["policy_reason"], "p99 of 12 idle gaps (+margin) is 11 s") << st;
  EXPECT_EQ(get_json(siesta, "/admin/models/llama3.2:3b")["policy"], "adaptive");

  ASSERT_TRUE(siesta.wait_log("Successfully unloaded idle model llama3.2:3b", seconds(30)))
      << siesta.log();
  const double after =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ended).count();
  EXPECT_GT(after, 10) << "unloaded before its keep-alive";
  EXPECT_TRUE(loaded_in_ollama().empty());
  st = model_status(siesta, "llama3.2:3b");
  EXPECT_EQ(st["loaded"], false) << st;
  // Its next keep-alive: capped by the load just measured.
  EXPECT_NE(st["policy_reason"].get<std::string>().find("capped at the ski-rental break-even"),
            std::string::npos)
      << st;
}

}  // namespace
}  // namespace siesta::testing
