#include "siesta/discovery/docker_sync.h"

#include <spdlog/spdlog.h>

#include "siesta/config/labels.h"

namespace siesta {

namespace {

bool same_container(const ServiceSpec& spec, const std::string& name, const std::string& id) {
  const std::string& c = container_of(spec);
  if (c == name) return true;
  // A config may name the container by its id or an unambiguous prefix of it (12+ digits).
  return !id.empty() && c.size() >= 12 && id.rfind(c, 0) == 0;
}

}  // namespace

std::vector<ServiceConfig> find_labelled_services(DockerClient& client,
                                                  const std::vector<ServiceConfig>& taken) {
  std::vector<ServiceConfig> found;
  auto listed = client.list(std::string(kEnableLabel) + "=true");
  if (!listed) {
    spdlog::warn("Docker label discovery: {}", listed.status().message());
    return found;
  }
  for (const auto& c : *listed) {
    if (!labels_enable(c.labels)) continue;
    auto sc = service_from_labels(c.name, c.labels);
    if (!sc) {
      spdlog::error("Docker label discovery: {}; container ignored", sc.status().message());
      continue;
    }
    // Two Compose projects with the same service: the one found later is named with its project.
    auto other_has = [&](const std::string& name) {
      for (const auto& t : taken) {
        const bool same = t.spec.backend == "docker" && same_container(t.spec, c.name, c.id);
        if (t.spec.name == name && !same) return true;
      }
      for (const auto& f : found) {
        if (f.spec.name == name) return true;
      }
      return false;
    };
    if (other_has(sc->spec.name)) {
      if (auto qualified = compose_qualified_name(c.labels); qualified && !other_has(*qualified)) {
        sc.value().spec.name = *qualified;
      }
    }
    bool clash = false;
    for (const auto& t : taken) {
      const bool same = t.spec.backend == "docker" && same_container(t.spec, c.name, c.id);
      if (same && t.spec.name == sc->spec.name) {
        clash = true;  // found before: already a service
      } else if (t.spec.name == sc->spec.name || same) {
        spdlog::info("Container {} has siesta labels, but the config's service {} wins", c.name,
                     t.spec.name);
        clash = true;
      }
    }
    for (const auto& f : found) clash |= f.spec.name == sc->spec.name;
    if (clash) continue;
    spdlog::info("Container {} discovered by its labels as service {}", c.name, sc->spec.name);
    found.push_back(std::move(*sc));
  }
  return found;
}

DockerSync::DockerSync(Registry& registry, DiscoveryActions& controller, DockerBackend& backend,
                       bool label_discovery, Hooks hooks)
    : registry_(registry),
      controller_(controller),
      backend_(backend),
      label_discovery_(label_discovery),
      hooks_(std::move(hooks)),
      refresh_(controller) {}

DockerSync::~DockerSync() { stop(); }

void DockerSync::start() {
  backend_.watch({[this](const DockerEvent& e) { on_event(e); }, [this] { on_connected(); },
                  [this](const Status&) { on_disconnected(); }});
}

void DockerSync::stop() {
  backend_.stop_watching();
  refresh_.join_all();
}

std::string DockerSync::service_for(const std::string& name, const std::string& id) {
  for (const auto& view : registry_.snapshot().services) {
    if (view.spec->backend == "docker" && same_container(*view.spec, name, id)) {
      return view.spec->name;
    }
  }
  return {};
}

void DockerSync::on_event(const DockerEvent& event) {
  spdlog::debug("Docker event: {} {}", event.action, event.name);
  std::string service = service_for(event.name, event.id);
  if (service.empty()) {
    if (label_discovery_ && (event.action == "create" || event.action == "start") &&
        labels_enable(event.attributes)) {
      discover(event.name, event.attributes);
    }
    return;
  }
  if (hooks_.container && (event.action == "destroy" || event.action == "create")) {
    if (auto view = registry_.service(service))
      hooks_.container(*view->spec, event.action == "create");
  }
  refresh_.refresh_soon(service);
}

void DockerSync::discover(const std::string& container,
                          const std::map<std::string, std::string>& labels) {
  auto sc = service_from_labels(container, labels);
  if (!sc) {
    spdlog::error("Docker label discovery: {}; container ignored", sc.status().message());
    return;
  }
  if (registry_.service(sc->spec.name)) {
    // No service has this container (on_event): the name is another container's.
    if (auto qualified = compose_qualified_name(labels);
        qualified && !registry_.service(*qualified)) {
      sc.value().spec.name = *qualified;
    }
  }
  if (registry_.service(sc->spec.name)) {
    spdlog::warn("Container {} has siesta labels for service {}, which already exists; ignored",
                 container, sc->spec.name);
    return;
  }
  spdlog::info("Container {} discovered by its labels as service {}", container, sc->spec.name);
  if (Status st = controller_.add_service(sc->spec, sc->idle_sleep_enabled, sc->desired); !st) {
    spdlog::warn("Service {}: {}", sc->spec.name, st.message());
  } else if (hooks_.added) {
    hooks_.added(sc->spec);
  }
}

void DockerSync::discover_all() {
  std::vector<ServiceConfig> taken;
  for (const auto& view : registry_.snapshot().services) {
    ServiceConfig sc;
    sc.spec = *view.spec;
    taken.push_back(std::move(sc));
  }
  for (auto& sc : find_labelled_services(backend_.client(), taken)) {
    if (Status st = controller_.add_service(sc.spec, sc.idle_sleep_enabled, sc.desired); !st) {
      spdlog::warn("Service {}: {}", sc.spec.name, st.message());
    } else if (hooks_.added) {
      hooks_.added(sc.spec);
    }
  }
}

void DockerSync::on_connected() {
  // Events may have been missed while the stream was down: read everything again.
  if (label_discovery_) discover_all();
  refresh_.reconcile_soon();
}

void DockerSync::on_disconnected() {
  // Every Docker service now shows the engine's error instead of a stale state.
  refresh_.reconcile_soon();
}

}  // namespace siesta
