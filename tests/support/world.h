// A whole siesta core on fakes: config text in, registry + controller + monitor out, with a
// fake clock, fake backends and an inline executor, so a test drives it pass by pass.
#pragma once

#include <memory>
#include <string>

#include "fakes.h"
#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"
#include "siesta/core/decide.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/controller.h"
#include "siesta/runtime/executor.h"
#include "siesta/runtime/monitor.h"

namespace siesta::testing {

// The message of the ConfigError the config text gets, or "accepted".
inline std::string config_error(const std::string& text) {
  try {
    parse_config(text, "bad.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

struct World {
  explicit World(const std::string& config_text) : config(parse_config(config_text, "test.json")) {
    const Controller::BackendMap backends{{"process", &backend}, {"docker", &backend}};
    // As main() seeds it: the registry from the config, the state file (if any) restored.
    registry = seed(config, backends, clock.wall_now()).registry;
    controller = std::make_unique<Controller>(
        *registry, backends,
        [this](const std::string& service) -> ModelProvider* {
          return service == "ollama"     ? &provider
                 : service == "ollama-b" ? &provider_b
                 : service == "vllm"     ? &provider_vllm
                                         : nullptr;
        },
        clock, recorder,
        [this] {
          ++saves;
          if (on_save) on_save();
          return Status::ok();
        },
        config.max_learned_models);
    monitor = std::make_unique<Monitor>(*registry, *controller, clock, recorder, executor);
    provider_vllm.sleep_mode = &engine;
  }

  // Marks a service as running since now, as if it had been seen up.
  void run(const std::string& service) {
    backend.running.insert(service);
    registry->update_service(service, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_state(rt, ServiceState::kRunning, clock.wall_now());
    });
  }
  ServiceRuntime service(const std::string& name) { return registry->service(name)->runtime; }
  // The model of that name on the one service that has one (these tests use each name once);
  // none: the name with no service (a load then looks for it).
  ModelKey key(const std::string& name) const {
    auto services = registry->services_of_model(name);
    return {name, services.empty() ? std::string() : services.front()};
  }
  ModelRuntime model(const std::string& name) { return registry->model(key(name))->runtime; }
  // Every model's name, in order.
  std::vector<std::string> model_names() const {
    std::vector<std::string> names;
    for (const auto& k : registry->model_keys()) names.push_back(k.name);
    return names;
  }

  Config config;
  FakeClock clock;
  FakeBackend backend;
  FakeProvider provider;       // the models of service "ollama"
  FakeProvider provider_b;     // ... and of "ollama-b"
  FakeEngineSleep engine;      // the sleep mode of "vllm"
  FakeProvider provider_vllm;  // the models of "vllm"; its sleep_mode is `engine`
  RecordingRecorder recorder;
  InlineExecutor executor;
  int saves = 0;
  std::function<void()> on_save;  // runs at each save of the state, e.g. to advance the clock
  std::unique_ptr<Registry> registry;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<Monitor> monitor;
};

}  // namespace siesta::testing
