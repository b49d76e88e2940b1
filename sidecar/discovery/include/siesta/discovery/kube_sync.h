// KubeSync: keeps siesta's view of Kubernetes workloads current, as SwarmSync does for Swarm
// services.
//   - Label discovery: Deployments and StatefulSets of the namespace labelled
//     siesta.io/enable=true become services, configured by their siesta.io/* annotations (at
//     start-up, on every list, and when such a workload is added or modified).
//   - Watches (KubeWatcher): a workload scaled, modified or deleted by anyone is re-read at once;
//     a relist (after 410 Gone or an error) re-reads every service.
//   - Errors: a failed list or watch (401, 403, the API down) re-reads every service, so each
//     shows the API's answer as its error state.
// start() and stop() are called from one thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "siesta/backends/kube_backend.h"
#include "siesta/backends/kube_watcher.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/discovery/refresh_queue.h"
#include "siesta/runtime/discovery_actions.h"

namespace siesta {

// The labelled workloads of `workloads` as services; those whose name or workload is already in
// `taken` are left out (the config wins). Bad annotations are logged and skipped.
std::vector<ServiceConfig> labelled_workload_services(const std::vector<Workload>& workloads,
                                                      const std::vector<ServiceConfig>& taken);

// The labelled Deployments and StatefulSets the API has now, as services (a failed list is
// logged and finds none).
std::vector<ServiceConfig> find_labelled_workloads(KubeClient& client,
                                                   const std::vector<ServiceConfig>& taken);

class KubeSync {
 public:
  KubeSync(Registry& registry, DiscoveryActions& controller, KubeBackend& backend,
           bool label_discovery, std::function<void(const ServiceSpec&)> added);
  ~KubeSync();

  void start();
  void stop();

 private:
  void add_found(const std::vector<Workload>& workloads);

  Registry& registry_;
  DiscoveryActions& controller_;
  KubeBackend& backend_;
  const bool label_discovery_;
  std::function<void(const ServiceSpec&)> added_;
  RefreshQueue refresh_;
  KubeWatcher watcher_;
};

}  // namespace siesta
