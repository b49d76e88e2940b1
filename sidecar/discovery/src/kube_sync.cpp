#include "siesta/discovery/kube_sync.h"

#include <spdlog/spdlog.h>

#include "siesta/config/labels.h"

namespace siesta {

namespace {

// Labelled siesta.io/enable=true (the same values as siesta.enable's).
bool labelled(const Workload& w) {
  auto it = w.labels.find(std::string(kKubePrefix) + "enable");
  return it != w.labels.end() && labels_enable({{kEnableLabel, it->second}});
}

bool taken_by(const std::vector<ServiceConfig>& taken, const ServiceConfig& found) {
  for (const auto& t : taken) {
    const bool same = t.spec.backend == "kubernetes" && t.spec.workload == found.spec.workload;
    if (same && t.spec.name == found.spec.name) return true;  // found before
    if (t.spec.name == found.spec.name || same) {
      spdlog::info("Kubernetes {} has siesta annotations, but the config's service {} wins",
                   found.spec.workload, t.spec.name);
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<ServiceConfig> labelled_workload_services(const std::vector<Workload>& workloads,
                                                      const std::vector<ServiceConfig>& taken) {
  std::vector<ServiceConfig> found;
  for (const auto& w : workloads) {
    if (!labelled(w)) continue;
    auto sc = service_from_annotations(w.key(), w.annotations);
    if (!sc) {
      spdlog::error("Kubernetes label discovery: {}; workload ignored", sc.status().message());
      continue;
    }
    if (taken_by(taken, *sc) || taken_by(found, *sc)) continue;
    spdlog::info("Kubernetes {} discovered by its label as service {}", w.key(), sc->spec.name);
    found.push_back(std::move(*sc));
  }
  return found;
}

std::vector<ServiceConfig> find_labelled_workloads(KubeClient& client,
                                                   const std::vector<ServiceConfig>& taken) {
  std::vector<Workload> all;
  for (const char* kind : {"deployment", "statefulset"}) {
    auto listed = client.list(kind, std::string(kKubePrefix) + "enable=true");
    if (!listed) {
      spdlog::warn("Kubernetes label discovery ({}s): {}", kind, listed.status().message());
      continue;
    }
    all.insert(all.end(), listed->items.begin(), listed->items.end());
  }
  return labelled_workload_services(all, taken);
}

KubeSync::KubeSync(Registry& registry, DiscoveryActions& controller, KubeBackend& backend,
                   bool label_discovery, std::function<void(const ServiceSpec&)> added)
    : registry_(registry),
      controller_(controller),
      backend_(backend),
      label_discovery_(label_discovery),
      added_(std::move(added)),
      refresh_(controller),
      watcher_(backend.client()) {}

KubeSync::~KubeSync() { stop(); }

void KubeSync::start() {
  watcher_.start({[this](const std::string&, const WorkloadList& list) {
                    if (label_discovery_) add_found(list.items);
                    refresh_.reconcile_soon();
                  },
                  [this](const WatchEvent& e) {
                    for (const auto& view : registry_.snapshot().services) {
                      if (view.spec->backend == "kubernetes" &&
                          view.spec->workload == e.object.key()) {
                        refresh_.refresh_soon(view.spec->name);
                        return;
                      }
                    }
                    if (label_discovery_ && e.type != "DELETED") add_found({e.object});
                  },
                  [this](const Status&) { refresh_.reconcile_soon(); }});
}

void KubeSync::stop() {
  watcher_.stop();
  refresh_.join_all();
}

void KubeSync::add_found(const std::vector<Workload>& workloads) {
  std::vector<ServiceConfig> taken;
  for (const auto& view : registry_.snapshot().services) {
    ServiceConfig sc;
    sc.spec = *view.spec;
    taken.push_back(std::move(sc));
  }
  for (auto& sc : labelled_workload_services(workloads, taken)) {
    if (Status st = controller_.add_service(sc.spec, sc.idle_sleep_enabled, sc.desired); !st) {
      spdlog::warn("Service {}: {}", sc.spec.name, st.message());
    } else if (added_) {
      added_(sc.spec);
    }
  }
}

}  // namespace siesta
