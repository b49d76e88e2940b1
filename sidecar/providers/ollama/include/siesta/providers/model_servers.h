// ModelServers: the model provider of each service that is a model server (one with a
// model_api), by service name; `make` builds the provider for the service's API (main wires it). A
// server joins with its service (the config at start-up, or a labelled container found later) and
// is dropped while its container is gone. Providers are never destroyed while siesta runs, so a
// pointer handed out stays valid: an operation already under way on a dropped server fails like any
// request to a server that is not there. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "siesta/core/model_provider.h"
#include "siesta/core/service.h"

namespace siesta {

class ModelServers {
 public:
  using Factory = std::function<std::unique_ptr<ModelProvider>(const ServiceSpec&)>;
  explicit ModelServers(Factory make) : make_(std::move(make)) {}

  // Adds the provider of `spec` when it is a model server with an upstream (or makes it present
  // again); false when it is not a model server.
  bool add(const ServiceSpec& spec);
  // present=false: find() answers nullptr for the service until it is present again.
  void set_present(const std::string& service, bool present);
  // The provider of the named service; nullptr when it is not a model server or is gone.
  ModelProvider* find(const std::string& service) const;

 private:
  struct Server {
    std::unique_ptr<ModelProvider> provider;
    bool present = true;
  };
  Factory make_;
  mutable std::mutex mu_;
  std::map<std::string, Server> servers_;  // guarded by mu_
};

}  // namespace siesta
