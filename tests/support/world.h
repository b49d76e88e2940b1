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

struct World {
  explicit World(const std::string& config_text) : config(parse_config(config_text, "test.json")) {
    registry = make_registry(config, clock.wall_now());  // as main() makes it
    controller = std::make_unique<Controller>(
        *registry, Controller::BackendMap{{"process", &backend}, {"docker", &backend}},
        [this](const std::string& service) -> ModelProvider* {
          return service == "ollama"     ? &provider
                 : service == "ollama-b" ? &provider_b
                 : service == "vllm"     ? &provider_vllm
                                         : nullptr;
        },
        clock, recorder,
        [this] {
          ++saves;
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
  ModelRuntime model(const std::string& name) { return registry->model(name)->runtime; }

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
  std::unique_ptr<Registry> registry;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<Monitor> monitor;
};

}  // namespace siesta::testing
