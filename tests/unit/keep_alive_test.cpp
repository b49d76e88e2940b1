// Ollama's keep_alive values and siesta's policy for them.
#include "siesta/providers/keep_alive.h"

#include <gtest/gtest.h>

#include <cmath>

#include "siesta/providers/load_duration.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

TEST(OllamaKeepAlive, NumbersAreSecondsAndNegativeIsForever) {
  EXPECT_EQ(*parse_ollama_keep_alive(json(300)), 300);
  EXPECT_EQ(*parse_ollama_keep_alive(json(0)), 0);
  EXPECT_EQ(*parse_ollama_keep_alive(json(1.5)), 1.5);
  EXPECT_TRUE(std::isinf(*parse_ollama_keep_alive(json(-1))));
}

TEST(OllamaKeepAlive, StringsAreGoDurations) {
  EXPECT_EQ(*parse_ollama_keep_alive(json("5m")), 300);
  EXPECT_EQ(*parse_ollama_keep_alive(json("1h30m")), 5400);
  EXPECT_EQ(*parse_ollama_keep_alive(json("250ms")), 0.25);
  EXPECT_EQ(*parse_ollama_keep_alive(json("0")), 0);
  EXPECT_TRUE(std::isinf(*parse_ollama_keep_alive(json("-1m"))));
  // As in Ollama: a string needs a unit.
  EXPECT_FALSE(parse_ollama_keep_alive(json("300")));
  EXPECT_FALSE(parse_ollama_keep_alive(json("soon")));
  EXPECT_FALSE(parse_ollama_keep_alive(json(true)));
  EXPECT_FALSE(parse_ollama_keep_alive(json::array()));
}

TEST(OllamaKeepAlive, EveryDurationGoAcceptsIsADuration) {
  EXPECT_EQ(*parse_ollama_keep_alive(json("+5m")), 300);
  EXPECT_EQ(*parse_ollama_keep_alive(json(".5h")), 1800);
  EXPECT_EQ(*parse_ollama_keep_alive(json("1.m")), 60);
  EXPECT_EQ(*parse_ollama_keep_alive(json("+0")), 0);
  EXPECT_EQ(*parse_ollama_keep_alive(json("2μs")), 2e-6);  // Greek mu, as Go accepts
  EXPECT_FALSE(parse_ollama_keep_alive(json(".m")));
  EXPECT_FALSE(parse_ollama_keep_alive(json("-")));
  EXPECT_FALSE(parse_ollama_keep_alive(json("5 m")));
}

TEST(OllamaKeepAlive, NullIsAbsentAndAValueOllamaRejectsIsFlagged) {
  // null: Ollama applies its default, so siesta applies its policy (issue 14, item 3).
  auto null_asked = asked_keep_alive(ModelRoute::kOllama, json::parse(R"({"keep_alive": null})"));
  EXPECT_FALSE(null_asked.seconds);
  EXPECT_FALSE(null_asked.invalid);
  auto absent = asked_keep_alive(ModelRoute::kOllama, json::parse(R"({"model": "m"})"));
  EXPECT_FALSE(absent.seconds);
  EXPECT_FALSE(absent.invalid);
  auto bad = asked_keep_alive(ModelRoute::kOllama, json::parse(R"({"keep_alive": "300"})"));
  EXPECT_FALSE(bad.seconds);
  EXPECT_TRUE(bad.invalid);
  EXPECT_TRUE(
      asked_keep_alive(ModelRoute::kOllama, json::parse(R"({"keep_alive": true})")).invalid);
  auto good = asked_keep_alive(ModelRoute::kOllama, json::parse(R"({"keep_alive": "10m"})"));
  EXPECT_EQ(good.seconds, 600);
  // /v1 routes: Ollama reads no keep_alive, whatever it is.
  auto v1 = asked_keep_alive(ModelRoute::kOpenAi, json::parse(R"({"keep_alive": "300"})"));
  EXPECT_FALSE(v1.seconds);
  EXPECT_FALSE(v1.invalid);
}

TEST(OllamaKeepAlive, RoutesThatNameAModel) {
  EXPECT_EQ(model_route("POST", "/api/generate"), ModelRoute::kOllama);
  EXPECT_EQ(model_route("POST", "/api/chat"), ModelRoute::kOllama);
  EXPECT_EQ(model_route("POST", "/api/embed"), ModelRoute::kOllama);
  EXPECT_EQ(model_route("POST", "/api/embeddings?x=1"), ModelRoute::kOllama);
  EXPECT_EQ(model_route("POST", "/v1/chat/completions"), ModelRoute::kOpenAi);
  EXPECT_EQ(model_route("POST", "/v1/completions"), ModelRoute::kOpenAi);
  EXPECT_EQ(model_route("POST", "/v1/embeddings"), ModelRoute::kOpenAi);
  EXPECT_EQ(model_route("GET", "/api/ps"), ModelRoute::kNone);
  EXPECT_EQ(model_route("POST", "/api/pull"), ModelRoute::kNone);
  EXPECT_EQ(model_route("GET", "/v1/models"), ModelRoute::kNone);
}

TEST(OllamaKeepAlive, TheClientsValueWithinBoundsElseTheConfigured) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(bounded_keep_alive(std::nullopt, 7200, 60, 86400), 7200);
  EXPECT_EQ(bounded_keep_alive(inf, 7200, 60, 86400), 86400);  // no pinning forever
  EXPECT_EQ(bounded_keep_alive(0, 7200, 60, 86400), 60);       // no thrashing
  EXPECT_EQ(bounded_keep_alive(600, 7200, 60, 86400), 600);
  EXPECT_EQ(upstream_keep_alive(600), 900);  // Ollama never unloads before siesta
}

TEST(OllamaKeepAlive, TheConfiguredKeepAliveIsBoundedLikeAClients) {
  // Issue 14, item 8: max 15 s, yet a configured hour gave 3,600 s.
  EXPECT_EQ(bounded_keep_alive(std::nullopt, 3600, 5, 15), 15);
  EXPECT_EQ(bounded_keep_alive(std::nullopt, 1, 5, 15), 5);
}

TEST(ModelsLoadDuration, OllamasOwnFromTheFinalObjectOfAnyBody) {
  // Issue 14, item 7: a non-streamed answer paid 0.5 s of load and 4 s of tokens.
  EXPECT_EQ(load_duration_of(R"({"done": true, "load_duration": 500000000})"), 0.5);
  EXPECT_FALSE(load_duration_of(R"({"done": true})"));
  EXPECT_FALSE(load_duration_of(R"({"load_duration": "soon"})"));
  EXPECT_FALSE(load_duration_of("data: [DONE]"));

  // An NDJSON stream, cut anywhere: the last line carries it.
  const std::string stream =
      "{\"response\": \"t0\", \"done\": false}\n{\"response\": \"t1\", \"done\": false}\n"
      "{\"done\": true, \"load_duration\": 250000000, \"eval_count\": 2}\n";
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    LoadDurationScanner scan;
    scan.feed(std::string_view(stream).substr(0, cut));
    scan.feed(std::string_view(stream).substr(cut));
    EXPECT_EQ(scan.seconds(), 0.25) << cut;
  }
  LoadDurationScanner whole;  // one object, no final newline
  whole.feed(R"({"done": true, "load_)");
  whole.feed(R"(duration": 1000000000})");
  EXPECT_EQ(whole.seconds(), 1.0);
  LoadDurationScanner sse;
  sse.feed("data: {\"choices\": []}\n\ndata: [DONE]\n\n");
  EXPECT_FALSE(sse.seconds());
}

}  // namespace
}  // namespace siesta::testing
