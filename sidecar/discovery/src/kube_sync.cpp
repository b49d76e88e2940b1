#include "siesta/discovery/kube_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "siesta/config/labels.h"

namespace siesta {

namespace {

// Says each distinct thing once per process (a relist or an event must not repeat it).
bool first_time(const std::string& what) {
  static std::mutex mu;
  static std::set<std::string> said;
  std::lock_guard lock(mu);
  return said.insert(what).second;
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

// Its siesta.io/* annotations but the count siesta writes itself: what an edit changes.
std::map<std::string, std::string> settings_of(const Workload& w) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : w.annotations) {
    if (k.rfind(kKubePrefix, 0) == 0 && k != kReplicasAnnotation) out[k] = v;
  }
  return out;
}

// The settings the proxy bound when the service was found: kept from `now` (named in `kept`
// when the edit changed them).
void keep_proxy_settings(ServiceSpec& next, const ServiceSpec& now,
                         std::vector<std::string>& kept) {
  auto keep = [&](auto& field, const auto& was, const char* key) {
    if (!(field == was)) kept.push_back(std::string(kKubePrefix) + key);
    field = was;
  };
  keep(next.name, now.name, "name");
  keep(next.listen_host, now.listen_host, "listen");
  keep(next.listen_port, now.listen_port, "listen");
  keep(next.upstream_host, now.upstream_host, "upstream");
  keep(next.upstream_port, now.upstream_port, "upstream");
  keep(next.protocol, now.protocol, "protocol");
  keep(next.model_api, now.model_api, "model-api");
  keep(next.wake_page, now.wake_page, "wake-page");
  next.response_timeout_seconds = now.response_timeout_seconds;
  next.trust_forwarded_headers = now.trust_forwarded_headers;
  next.max_connections = now.max_connections;
  next.tcp_idle_timeout_seconds = now.tcp_idle_timeout_seconds;
  next.upgraded_idle_timeout_seconds = now.upgraded_idle_timeout_seconds;
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
}

}  // namespace

bool kube_labelled(const Workload& w) {
  auto it = w.labels.find(std::string(kKubePrefix) + "enable");
  if (it == w.labels.end()) return false;
  if (it->second == "true") return true;
  if (labels_enable({{kEnableLabel, it->second}}) && first_time("enable " + w.key())) {
    spdlog::warn(
        "Kubernetes {}: label {}enable=\"{}\" is not \"true\", which the label selector "
        "{}enable=true needs; not managed",
        w.key(), kKubePrefix, it->second, kKubePrefix);
  }
  return false;
}

std::vector<ServiceConfig> labelled_workload_services(const std::vector<Workload>& workloads,
                                                      const std::vector<ServiceConfig>& taken,
                                                      std::vector<BadWorkload>* bad) {
  std::vector<ServiceConfig> found;
  for (const auto& w : workloads) {
    if (!kube_labelled(w)) continue;
    auto sc = service_from_annotations(w.key(), w.annotations);
    if (!sc) {
      if (bad != nullptr) {
        bad->push_back({w, sc.status().message()});
      } else {
        spdlog::error("Kubernetes label discovery: {}", sc.status().message());
      }
      continue;
    }
    if (taken_by(taken, *sc) || taken_by(found, *sc)) continue;
    spdlog::info("Kubernetes {} discovered by its label as service {}", w.key(), sc->spec.name);
    if (sc->spec.listen_host.empty() && sc->spec.listen_port == 0 &&
        first_time("listen " + w.key())) {
      spdlog::warn(
          "Kubernetes {} has no {}listen: no client can wake it through siesta (only the admin "
          "API can), though siesta puts it to sleep",
          w.key(), kKubePrefix);
    }
    found.push_back(std::move(*sc));
  }
  return found;
}

std::vector<ServiceConfig> find_labelled_workloads(KubeClient& client,
                                                   const std::vector<ServiceConfig>& taken) {
  std::vector<Workload> all;
  bool listed_all = true;
  for (const char* kind : {"deployment", "statefulset"}) {
    auto listed = client.list(kind, std::string(kKubePrefix) + "enable=true");
    if (!listed) {
      spdlog::warn("Kubernetes label discovery ({}s): {}", kind, listed.status().message());
      listed_all = false;
      continue;
    }
    all.insert(all.end(), listed->items.begin(), listed->items.end());
  }
  if (listed_all && all.empty()) {
    spdlog::warn(
        "Kubernetes label discovery: no Deployment or StatefulSet in namespace {} is labelled "
        "{}enable=true (the label's value must be exactly \"true\"); a workload labelled later "
        "becomes a service when it is",
        client.namespace_name(), kKubePrefix);
  }
  return labelled_workload_services(all, taken);
}

KubeSync::KubeSync(Registry& registry, DiscoveryActions& controller, KubeBackend& backend,
                   bool label_discovery, std::function<void(const ServiceSpec&)> added,
                   std::set<std::string> configured)
    : registry_(registry),
      controller_(controller),
      backend_(backend),
      label_discovery_(label_discovery),
      added_(std::move(added)),
      configured_(std::move(configured)),
      refresh_(controller),
      watcher_(backend.client(), backend.clock()) {}

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
                        if (label_discovery_ && e.type != "DELETED") {
                          apply_annotations(*view.spec, e.object);
                        }
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

void KubeSync::apply_annotations(const ServiceSpec& current, const Workload& w) {
  if (configured_.count(current.name) != 0 || !kube_labelled(w)) return;
  const auto settings = settings_of(w);
  {
    std::lock_guard lock(mu_);
    auto [it, first] = applied_.try_emplace(current.name, settings);
    if (!first && it->second == settings) return;  // nothing of siesta's changed
    it->second = settings;
    if (first) return;  // found at start-up with these: they are in force
  }
  auto sc = service_from_annotations(w.key(), w.annotations);
  if (!sc) {
    spdlog::error("Service {}: {}; its settings stay as they were", current.name,
                  sc.status().message());
    controller_.set_config_error(current.name, sc.status().message());
    return;
  }
  controller_.set_config_error(current.name, "");
  ServiceSpec next = sc->spec;
  std::vector<std::string> kept;
  keep_proxy_settings(next, current, kept);
  bool was_bare = false;
  {
    std::lock_guard lock(mu_);
    was_bare = bare_.erase(current.name) != 0;
  }
  // A bare workload's idle sleep was off only while its settings were unknown.
  if (Status st = controller_.update_spec(
          next, was_bare ? std::optional<bool>(sc->idle_sleep_enabled) : std::nullopt);
      !st) {
    spdlog::warn("Service {}: {}", current.name, st.message());
    return;
  }
  spdlog::info("Service {}: annotations of {} changed; applied", current.name, w.key());
  for (const auto& key : kept) {
    spdlog::warn("Service {}: {} changed on {}; it takes effect when siesta restarts", current.name,
                 key, w.key());
  }
}

void KubeSync::add_found(const std::vector<Workload>& workloads) {
  std::vector<ServiceConfig> taken;
  for (const auto& view : registry_.snapshot().services) {
    ServiceConfig sc;
    sc.spec = *view.spec;
    taken.push_back(std::move(sc));
  }
  // The ones siesta has already: their annotations as they are now.
  for (const auto& w : workloads) {
    for (const auto& t : taken) {
      if (t.spec.backend == "kubernetes" && t.spec.workload == w.key()) {
        apply_annotations(t.spec, w);
      }
    }
  }
  std::vector<BadWorkload> bad;
  std::vector<ServiceConfig> found = labelled_workload_services(workloads, taken, &bad);
  for (const auto& b : bad) {
    bool known = false;
    for (const auto& t : taken)
      known |= t.spec.backend == "kubernetes" && t.spec.workload == b.workload.key();
    if (known) continue;  // apply_annotations showed it on the service
    // Kept, not dropped: the bare workload, idle sleep off (its settings are unknown), and the
    // error on it until the annotations are good.
    ServiceConfig sc;
    sc.spec.name = b.workload.name;
    sc.spec.backend = "kubernetes";
    sc.spec.workload = b.workload.key();
    sc.idle_sleep_enabled = false;
    if (registry_.service(sc.spec.name)) continue;
    spdlog::error(
        "Kubernetes label discovery: {}; kept as service {} with idle sleep off until "
        "it is good",
        b.error, sc.spec.name);
    if (Status st = controller_.add_service(sc.spec, sc.idle_sleep_enabled, sc.desired); !st) {
      spdlog::warn("Service {}: {}", sc.spec.name, st.message());
      continue;
    }
    controller_.set_config_error(sc.spec.name, b.error);
    std::lock_guard lock(mu_);
    applied_[sc.spec.name] = settings_of(b.workload);
    bare_.insert(sc.spec.name);
  }
  for (auto& sc : found) {
    if (Status st = controller_.add_service(sc.spec, sc.idle_sleep_enabled, sc.desired); !st) {
      spdlog::warn("Service {}: {}", sc.spec.name, st.message());
      continue;
    }
    for (const auto& w : workloads) {
      if (w.key() == sc.spec.workload) {
        std::lock_guard lock(mu_);
        applied_[sc.spec.name] = settings_of(w);
      }
    }
    if (added_) added_(sc.spec);
  }
}

}  // namespace siesta
