// KubeSync: keeps siesta's view of Kubernetes workloads current, as SwarmSync does for Swarm
// services.
//   - Label discovery: Deployments and StatefulSets of the namespace labelled
//     siesta.io/enable=true become services, configured by their siesta.io/* annotations (at
//     start-up, on every list, and when such a workload is added or modified).
//   - Watches (KubeWatcher): a workload scaled, modified or deleted by anyone is re-read at once;
//     a relist (after 410 Gone or an error) re-reads every service.
//   - Annotation edits of a discovered service apply at once (a modified workload is parsed
//     again): its settings change, except those the proxy bound when it was found (listen,
//     upstream, protocol, model-api and the proxy's limits), which take a restart (logged). A
//     bad value keeps the service with its last good settings and shows the error on it
//     (config_error, last_error), logged once with the workload, the annotation and the reason;
//     a workload found with a bad value is kept as a service of the bare workload, idle sleep
//     off, until its annotations are good.
//   - Errors: a failed list or watch (401, 403, the API down) re-reads every service, so each
//     shows the API's answer as its error state.
// start() and stop() are called from one thread.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "siesta/backends/kube_backend.h"
#include "siesta/backends/kube_watcher.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/discovery/refresh_queue.h"
#include "siesta/runtime/discovery_actions.h"

namespace siesta {

// A labelled workload whose annotations have a bad value, and why (the parser's message: the
// workload, the annotation, the reason).
struct BadWorkload {
  Workload workload;
  std::string error;
};

// The labelled workloads of `workloads` as services; those whose name or workload is already in
// `taken` are left out (the config wins). Those with bad annotations go to `bad` when given,
// else are logged and skipped.
std::vector<ServiceConfig> labelled_workload_services(const std::vector<Workload>& workloads,
                                                      const std::vector<ServiceConfig>& taken,
                                                      std::vector<BadWorkload>* bad = nullptr);

// Whether the workload opts in: the label siesta.io/enable is exactly "true", what the label
// selector siesta.io/enable=true matches (a "True" or "1" is warned about once, and is not).
bool kube_labelled(const Workload& workload);

// The labelled Deployments and StatefulSets the API has now, as services (a failed list is
// logged and finds none).
std::vector<ServiceConfig> find_labelled_workloads(KubeClient& client,
                                                   const std::vector<ServiceConfig>& taken);

class KubeSync {
 public:
  // `configured`: the names of the config's services (their annotations are not read).
  KubeSync(Registry& registry, DiscoveryActions& controller, KubeBackend& backend,
           bool label_discovery, std::function<void(const ServiceSpec&)> added,
           std::set<std::string> configured = {});
  ~KubeSync();

  void start();
  void stop();

 private:
  void add_found(const std::vector<Workload>& workloads);
  // A discovered service's workload as it is now: its annotations applied if they changed.
  void apply_annotations(const ServiceSpec& current, const Workload& workload);

  Registry& registry_;
  DiscoveryActions& controller_;
  KubeBackend& backend_;
  const bool label_discovery_;
  std::function<void(const ServiceSpec&)> added_;
  const std::set<std::string> configured_;
  std::mutex mu_;
  // guarded by mu_: by service, its siesta.io/* annotations last applied (or found bad)
  std::map<std::string, std::map<std::string, std::string>> applied_;
  std::set<std::string> bare_;  // guarded by mu_: kept as the bare workload (bad annotations)
  RefreshQueue refresh_;
  KubeWatcher watcher_;
};

}  // namespace siesta
