#include "siesta/providers/model_servers.h"

#include <spdlog/spdlog.h>

namespace siesta {

bool ModelServers::add(const ServiceSpec& spec) {
  if (spec.model_api == ServiceSpec::ModelApi::kNone || spec.upstream_port == 0) return false;
  std::lock_guard lock(mu_);
  Server& server = servers_[spec.name];
  if (!server.provider) {
    server.provider = make_(spec);
    if (!server.provider) {
      servers_.erase(spec.name);
      return false;
    }
    spdlog::info("Service {} is a model server ({} API at {}:{})", spec.name,
                 to_string(spec.model_api), spec.upstream_host, spec.upstream_port);
  }
  server.present = true;
  return true;
}

void ModelServers::set_present(const std::string& service, bool present) {
  std::lock_guard lock(mu_);
  auto it = servers_.find(service);
  if (it == servers_.end() || it->second.present == present) return;
  it->second.present = present;
  if (present) {
    spdlog::info("Model server {}: its container exists again", service);
  } else {
    spdlog::info("Model server {}: its container is gone; its provider is dropped", service);
  }
}

ModelProvider* ModelServers::find(const std::string& service) const {
  std::lock_guard lock(mu_);
  auto it = servers_.find(service);
  return it == servers_.end() || !it->second.present ? nullptr : it->second.provider.get();
}

}  // namespace siesta
