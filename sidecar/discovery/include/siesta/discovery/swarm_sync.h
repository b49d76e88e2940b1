// SwarmSync: keeps siesta's view of Swarm services current, as DockerSync does for containers.
//   - Label discovery: Swarm services whose spec is labelled siesta.enable=true become services
//     (at start-up, on every reconnection, and when such a service is created or updated).
//   - Events: a service scaled, updated or removed by anyone, and its tasks' containers
//     starting or dying, are re-read at once.
//   - The swarm itself: an engine leaving the swarm sends no event, so the node's swarm state
//     (GET /info) is read every `swarm_check` (2 s); when it changes every Swarm service is
//     re-read, and so shows the engine's error ("not in a swarm") or comes back.
// start() and stop() are called from one thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "siesta/backends/swarm_backend.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/discovery/refresh_queue.h"
#include "siesta/runtime/discovery_actions.h"

namespace siesta {

// The labelled Swarm services the engine has now, as services; those whose name or Swarm
// service is already in `taken` are left out (the config wins). Bad labels are logged and
// skipped; an engine that is not a swarm manager has none (logged).
std::vector<ServiceConfig> find_labelled_swarm_services(DockerClient& client,
                                                        const std::vector<ServiceConfig>& taken);

class SwarmSync {
 public:
  SwarmSync(Registry& registry, DiscoveryActions& controller, SwarmBackend& backend,
            bool label_discovery, std::function<void(const ServiceSpec&)> added,
            std::chrono::milliseconds swarm_check = std::chrono::seconds(2));
  ~SwarmSync();

  void start();
  void stop();

 private:
  void on_event(const DockerEvent& event);
  void discover_all();
  void check_swarm_loop();
  std::string service_for(const std::string& name, const std::string& id);

  Registry& registry_;
  DiscoveryActions& controller_;
  SwarmBackend& backend_;
  const bool label_discovery_;
  std::function<void(const ServiceSpec&)> added_;
  const std::chrono::milliseconds swarm_check_;
  RefreshQueue refresh_;
  std::thread checker_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace siesta
