#include "siesta/bootstrap/bootstrap.h"

#include <spdlog/spdlog.h>

namespace siesta {

std::string admin_token_policy(const Config& config, const char* env_token, bool insecure) {
  std::string token = resolve_admin_token(config, env_token);
  if (token.empty() && !insecure && !is_loopback_host(config.listen.host)) {
    throw ConfigError(
        "the admin API would listen on " + config.listen.to_string() +
        " without a token, and whoever reaches it controls your services: set "
        "admin_token_file or SIESTA_ADMIN_TOKEN, listen on 127.0.0.1, or pass --insecure");
  }
  return token;
}

Result<DockerEndpoint> docker_endpoint(const Config& config, const char* env_host) {
  const std::string host =
      !config.docker.host.empty() ? config.docker.host : (env_host != nullptr ? env_host : "");
  auto endpoint = parse_docker_host(host);
  if (!endpoint) {
    return Status{endpoint.status().code(),
                  endpoint.status().message() +
                      (config.docker.host.empty() ? " (from DOCKER_HOST)" : " (docker.host)")};
  }
  return endpoint;
}

std::unique_ptr<Registry> make_registry(const Config& config, WallTime now) {
  std::vector<ServiceSpec> specs;
  for (const auto& s : config.services) specs.push_back(s.spec);
  auto registry = std::make_unique<Registry>(config.settings, specs, config.models);
  for (const auto& s : config.services) {
    registry->update_service(s.spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      rt.idle_sleep_enabled = s.idle_sleep_enabled;
      rt.desired = s.desired;
      rt.state_since = now;
    });
  }
  return registry;
}

Baseline baseline_of(const Config& config) {
  Baseline b;
  b.settings = config.settings;
  for (const auto& s : config.services) {
    b.services[s.spec.name] = {s.idle_sleep_enabled, s.desired};
  }
  return b;
}

void restore_state_file(StateStore& store, const Baseline& baseline, Registry& registry,
                        const Controller::BackendMap& backends, WallTime now) {
  auto loaded = store.load();
  if (!loaded) {
    spdlog::warn("State file: {}; starting from the config alone", loaded.status().message());
    return;
  }
  if (!*loaded) return;  // no file yet
  auto restored = restore_state(**loaded, baseline, registry, now);
  if (!restored) {
    spdlog::warn("{}; starting from the config alone", restored.status().message());
    return;
  }
  for (const auto& note : restored->notes) spdlog::info("State file: {}", note);
  for (const auto& warning : restored->warnings) {
    spdlog::warn("State file {}: {}", store.path(), warning);
  }
  for (const auto& [name, handle] : restored->handles) {
    auto view = registry.service(name);
    if (!view) continue;
    if (auto it = backends.find(view->spec->backend); it != backends.end()) {
      it->second->restore_handle(*view->spec, handle);
    }
  }
  spdlog::info("Restored runtime state from {}", store.path());
}

Handles handles_of(const Registry& registry, const Controller::BackendMap& backends) {
  Handles handles;
  for (const auto& view : registry.snapshot().services) {
    auto it = backends.find(view.spec->backend);
    if (it == backends.end()) continue;
    auto handle = it->second->save_handle(*view.spec);
    if (!handle.is_null()) handles[view.spec->name] = handle;
  }
  return handles;
}

}  // namespace siesta
