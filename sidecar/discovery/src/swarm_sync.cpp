#include "siesta/discovery/swarm_sync.h"

#include <spdlog/spdlog.h>

#include "siesta/config/labels.h"

namespace siesta {

namespace {

bool same_service(const ServiceSpec& spec, const std::string& name, const std::string& id) {
  if (spec.backend != "swarm") return false;
  const std::string& s = swarm_service_of(spec);
  return s == name || (!id.empty() && s == id);
}

bool taken_by(const std::vector<ServiceConfig>& taken, const ServiceConfig& found,
              const SwarmService& s) {
  for (const auto& t : taken) {
    const bool same = same_service(t.spec, s.name, s.id);
    if (same && t.spec.name == found.spec.name) return true;  // found before
    if (t.spec.name == found.spec.name || same) {
      spdlog::info("Swarm service {} has siesta labels, but the config's service {} wins", s.name,
                   t.spec.name);
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<ServiceConfig> find_labelled_swarm_services(DockerClient& client,
                                                        const std::vector<ServiceConfig>& taken) {
  std::vector<ServiceConfig> found;
  auto listed = client.list_services(std::string(kEnableLabel) + "=true");
  if (!listed) {
    spdlog::warn("Swarm label discovery: {}", listed.status().message());
    return found;
  }
  for (const auto& s : *listed) {
    if (!labels_enable(s.labels)) continue;
    auto sc = service_from_swarm_labels(s.name, s.labels);
    if (!sc) {
      spdlog::error("Swarm label discovery: {}; service ignored", sc.status().message());
      continue;
    }
    if (taken_by(taken, *sc, s) || taken_by(found, *sc, s)) continue;
    spdlog::info("Swarm service {} discovered by its labels as service {}", s.name, sc->spec.name);
    found.push_back(std::move(*sc));
  }
  return found;
}

SwarmSync::SwarmSync(Registry& registry, DiscoveryActions& controller, SwarmBackend& backend,
                     bool label_discovery, std::function<void(const ServiceSpec&)> added,
                     std::chrono::milliseconds swarm_check)
    : registry_(registry),
      controller_(controller),
      backend_(backend),
      label_discovery_(label_discovery),
      added_(std::move(added)),
      swarm_check_(swarm_check),
      refresh_(controller) {}

SwarmSync::~SwarmSync() { stop(); }

void SwarmSync::start() {
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  backend_.watch({[this](const DockerEvent& e) { on_event(e); },
                  [this] {
                    // Events may have been missed while the stream was down.
                    if (label_discovery_) discover_all();
                    refresh_.reconcile_soon();
                  },
                  [this](const Status&) { refresh_.reconcile_soon(); }});
  checker_ = std::thread([this] { check_swarm_loop(); });
}

void SwarmSync::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (checker_.joinable()) checker_.join();
  backend_.stop_watching();
  refresh_.join_all();
}

std::string SwarmSync::service_for(const std::string& name, const std::string& id) {
  for (const auto& view : registry_.snapshot().services) {
    if (same_service(*view.spec, name, id)) return view.spec->name;
  }
  return {};
}

void SwarmSync::on_event(const DockerEvent& event) {
  std::string name = event.name;
  std::string id = event.id;
  if (event.type == "container") {
    // A task's container: its service is in the labels swarm gives it.
    auto n = event.attributes.find("com.docker.swarm.service.name");
    if (n == event.attributes.end()) return;
    name = n->second;
    auto i = event.attributes.find("com.docker.swarm.service.id");
    id = i != event.attributes.end() ? i->second : std::string();
  }
  spdlog::debug("Swarm event: {} {} {}", event.type, event.action, name);
  if (std::string service = service_for(name, id); !service.empty()) {
    refresh_.refresh_soon(service);
    return;
  }
  // Service events carry no labels: read the spec of a service new to siesta.
  if (label_discovery_ && event.type == "service" && event.action != "remove") discover_all();
}

void SwarmSync::discover_all() {
  std::vector<ServiceConfig> taken;
  for (const auto& view : registry_.snapshot().services) {
    ServiceConfig sc;
    sc.spec = *view.spec;
    taken.push_back(std::move(sc));
  }
  for (auto& sc : find_labelled_swarm_services(backend_.client(), taken)) {
    if (Status st = controller_.add_service(sc.spec, sc.idle_sleep_enabled, sc.desired); !st) {
      spdlog::warn("Service {}: {}", sc.spec.name, st.message());
    } else if (added_) {
      added_(sc.spec);
    }
  }
}

void SwarmSync::check_swarm_loop() {
  std::string last;
  while (true) {
    auto state = backend_.client().swarm_state();
    // An unreachable engine is the event watcher's to report.
    if (state && *state != last) {
      if (!last.empty()) {
        if (*state == "active") {
          spdlog::info("Docker engine at {} is in a swarm again",
                       backend_.client().endpoint().to_string());
        } else {
          spdlog::warn(
              "Docker engine at {} left the swarm (state {}): Swarm services cannot "
              "sleep or wake",
              backend_.client().endpoint().to_string(), *state);
        }
        if (*state == "active" && label_discovery_) discover_all();
        refresh_.reconcile_soon();
      }
      last = *state;
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, swarm_check_, [&] { return stopping_; })) return;
  }
}

}  // namespace siesta
