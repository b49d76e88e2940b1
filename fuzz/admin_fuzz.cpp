// libFuzzer target: the admin API's request handling (authorization, routing, body validation
// and the actions) on a whole siesta core over fakes, without sockets.
//
// Input: "METHOD PATH\n", then header lines "Name: value\n", an empty line, then the body.
// Besides crashes and undefined behaviour it checks the API's contract: every answer is JSON;
// an error is {"error": {"code", "message", "source"}}; a refused request changes nothing.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "siesta/api/admin_server.h"
#include "siesta/api/status_json.h"
#include "world.h"

namespace {

constexpr const char* kConfig = R"({
  "idle_timeout_minutes": 30,
  "services": {
    "ollama": {"command": ["ollama", "serve"], "upstream": "127.0.0.1:11434", "model_api": "ollama"},
    "whisper": {"command": ["whisper"], "idle_sleep_enabled": false},
    "redis": {"command": ["redis-server"], "desired": "on"}
  },
  "models": {"llama3.2:3b": {"provider": "ollama"}, "qwen/coder:7b": {"provider": "ollama"}}
})";

void fail(const char* what, const siesta::AdminResponse& r) {
  std::fprintf(stderr, "contract broken: %s (status %d): %s\n", what, r.status, r.body.c_str());
  std::abort();
}

// What a refused request must leave as it was.
nlohmann::json observable(siesta::Registry& registry) {
  nlohmann::json j;
  const auto snap = registry.snapshot();
  j["settings"] = siesta::settings_json(snap.settings);
  for (const auto& s : snap.services) {
    j[s.spec->name] = {s.runtime.idle_sleep_enabled, static_cast<int>(s.runtime.desired),
                       static_cast<int>(s.runtime.state)};
  }
  for (const auto& m : snap.models) j[m.spec->name] = m.runtime.loaded;
  return j;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto line_end = input.find('\n');
  if (line_end == std::string_view::npos) return 0;
  const std::string_view line = input.substr(0, line_end);
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return 0;
  const std::string method(line.substr(0, space));
  const std::string path(line.substr(space + 1));
  std::vector<std::pair<std::string, std::string>> headers;
  std::size_t pos = line_end + 1;
  while (pos < input.size()) {
    auto end = input.find('\n', pos);
    if (end == std::string_view::npos) end = input.size();
    const std::string_view h = input.substr(pos, end - pos);
    pos = end + 1;
    if (h.empty()) break;
    const auto colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = h.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    headers.emplace_back(std::string(h.substr(0, colon)), std::string(value));
  }
  const std::string body(pos < input.size() ? input.substr(pos) : std::string_view());

  siesta::testing::World world(kConfig);
  world.run("redis");
  siesta::Metrics metrics;
  siesta::Persister persister(*world.registry, nullptr, siesta::Baseline{}, nullptr);
  siesta::AdminOptions options;
  // Half the inputs run with a token, so the fuzzer explores both sides of the check.
  if (size % 2 == 0) options.token = "fuzz-token-0123456789";
  siesta::AdminServer admin(
      *world.registry, *world.controller, persister, metrics, world.clock,
      [] { return siesta::MonitorStatus{}; }, options);

  const nlohmann::json before = observable(*world.registry);
  const siesta::AdminResponse r = admin.handle(method, path, headers, body);
  if (r.status < 200 || r.status > 599) fail("status out of range", r);
  if (r.content_type.rfind("application/json", 0) == 0) {
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) fail("answer is not JSON", r);
    if (r.status >= 400) {
      if (!j.contains("error") || !j["error"].is_object() || !j["error"]["code"].is_string() ||
          !j["error"]["message"].is_string() || !j["error"]["source"].is_string()) {
        fail("error without the error shape", r);
      }
    }
  }
  // 4xx: the request was refused, so nothing may have changed. (5xx may be a failed backend
  // operation that was attempted; 503 from a wake is one.)
  if (r.status >= 400 && r.status < 500 && observable(*world.registry) != before) {
    fail("a refused request changed something", r);
  }
  return 0;
}
