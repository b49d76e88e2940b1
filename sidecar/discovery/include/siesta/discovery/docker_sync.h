// DockerSync: keeps siesta's view of Docker containers current without polling.
//   - Label discovery: containers labelled siesta.enable=true become services (at start-up,
//     on every reconnection to the engine, and when such a container is created or started).
//     A config entry for the same service name or container wins over labels.
//   - Events: a container started, stopped, crashed or destroyed by anyone is re-inspected at
//     once, so idle-status and /metrics show it within moments, and one started outside siesta
//     gets an idle timer like any other.
//   - Model servers: a container destroyed or created again is told to the `container` hook,
//     which drops or restores its model provider.
//   - Engine faults: when the event stream breaks, every Docker service is re-inspected (and so
//     shows the engine's error); when it comes back, everything is re-read.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "siesta/backends/docker_backend.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/discovery/refresh_queue.h"
#include "siesta/runtime/discovery_actions.h"

namespace siesta {

// The labelled containers the engine has now, as services; those whose name or container is
// already in `taken` are left out (the config wins). Bad labels are logged and skipped.
std::vector<ServiceConfig> find_labelled_services(DockerClient& client,
                                                  const std::vector<ServiceConfig>& taken);

class DockerSync {
 public:
  struct Hooks {
    // Each service discovered after start-up (e.g. to open its proxy port, make its provider).
    std::function<void(const ServiceSpec&)> added;
    // A service's container was destroyed (false) or created again (true), e.g. to drop and
    // bring back its model provider.
    std::function<void(const ServiceSpec&, bool exists)> container;
  };
  DockerSync(Registry& registry, DiscoveryActions& controller, DockerBackend& backend,
             bool label_discovery, Hooks hooks = {});
  ~DockerSync();

  void start();
  void stop();

 private:
  void on_event(const DockerEvent& event);
  void on_connected();
  void on_disconnected();
  void discover_all();
  void discover(const std::string& container, const std::map<std::string, std::string>& labels);
  std::string service_for(const std::string& name, const std::string& id);

  Registry& registry_;
  DiscoveryActions& controller_;
  DockerBackend& backend_;
  const bool label_discovery_;
  Hooks hooks_;
  RefreshQueue refresh_;
};

}  // namespace siesta
