// metrics/CATALOGUE.md lists what /metrics exposes: every family, with its type and labels, and
// nothing that is not there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "siesta/metrics/metrics.h"
#include "world.h"

namespace siesta::testing {
namespace {

struct Family {
  std::string type;
  std::set<std::string> labels;
};

// name -> type and label names, from "# TYPE" lines and the samples under them.
std::map<std::string, Family> exposed(const std::string& text) {
  std::map<std::string, Family> out;
  std::istringstream lines(text);
  std::string line;
  std::string current;
  const std::regex type_line(R"(# TYPE (\S+) (\S+))");
  const std::regex label(R"(([a-z_]+)=")");
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_match(line, m, type_line)) {
      current = m[1];
      out[current].type = m[2];
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const auto brace = line.find('{');
    if (brace == std::string::npos) continue;
    const std::string labels = line.substr(brace, line.find('}') - brace);
    for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it) {
      if ((*it)[1] != "le") out[current].labels.insert((*it)[1]);  // a histogram's buckets
    }
  }
  return out;
}

// name -> type and label names, from the catalogue's table: "| `name` | type | labels | ...".
std::map<std::string, Family> catalogued() {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/metrics/CATALOGUE.md");
  std::map<std::string, Family> out;
  std::string line;
  const std::regex row(R"(\| `([a-z_]+)` \| (\w+) \| ([^|]*) \|.*)");
  const std::regex label(R"((^|, )([a-z_]+))");
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, row)) continue;
    Family& f = out[m[1]];
    f.type = m[2];
    // "service, reason (`idle`, `manual`)": the names, not the values in parentheses.
    std::string labels = std::regex_replace(std::string(m[3]), std::regex(R"( \([^)]*\))"), "");
    if (labels == "—") continue;
    for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it) {
      f.labels.insert((*it)[2]);
    }
  }
  return out;
}

TEST(MetricsCatalogue, ListsEveryFamilyThatMetricsExposesAndNoOther) {
  World w(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 24576}]},
              "services": {"ollama": {"command": ["o"], "gpu_memory_mib": 500},
                           "redis": {"command": ["r"], "idle_sleep_enabled": false}},
              "models": {"llama3.2:3b": {"provider": "ollama"}}})");
  w.run("ollama");
  w.run("redis");  // a blocker: siesta_service_sleep_blocked
  ASSERT_TRUE(w.controller->touch_service("ollama"));
  ASSERT_TRUE(w.controller->touch_model("llama3.2:3b"));
  w.registry->update_model("llama3.2:3b",
                           [](const ModelSpec&, ModelRuntime& rt) { rt.vram_bytes = 1e9; });
  // An activity signal that has seen activity: every siesta_activity_* sample.
  w.registry->update_service("ollama", [&](const ServiceSpec&, ServiceRuntime& rt) {
    SignalState sig;
    sig.name = "cpu";
    sig.kind = SignalKind::kCpu;
    sig.sampled_at = sig.last_busy_at = w.clock.wall_now();
    sig.value = 50;
    sig.busy = true;
    rt.activity.push_back(sig);
  });
  Metrics m;
  m.set_gpu(w.config.gpu);  // the siesta_gpu_* families
  m.gpu_evicted("make_room");
  Snapshot snap = w.registry->snapshot();
  m.declare(snap);
  // Every family that appears only with its first event.
  m.service_woke("ollama", "request", Seconds(1));
  m.proxy_request("ollama", 200, Seconds(0.1));
  m.proxy_connection("ollama");
  m.proxy_connection_opened("ollama");
  m.proxy_connection_refused("ollama", "service_limit");
  m.proxy_upstream_connection("ollama", false);
  m.proxy_idle_closed("ollama", "upgraded");
  m.model_loaded("llama3.2:3b", "request", Seconds(2));
  m.monitor_ran(w.clock.wall_now(), Seconds(0.001));
  const Decision d = decide(snap, w.clock.wall_now());
  const auto families = exposed(m.render(snap, d, MonitorStatus{true, w.clock.wall_now()}));
  const auto catalogue = catalogued();

  std::set<std::string> exposed_names, catalogued_names;
  for (const auto& [name, f] : families) exposed_names.insert(name);
  for (const auto& [name, f] : catalogue) catalogued_names.insert(name);
  EXPECT_EQ(catalogued_names, exposed_names);
  for (const auto& [name, f] : families) {
    auto it = catalogue.find(name);
    if (it == catalogue.end()) continue;
    SCOPED_TRACE(name);
    EXPECT_EQ(it->second.type, f.type);
    EXPECT_EQ(it->second.labels, f.labels);
  }
}

}  // namespace
}  // namespace siesta::testing
