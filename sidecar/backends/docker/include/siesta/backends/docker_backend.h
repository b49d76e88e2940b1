// DockerBackend: services that are Docker containers. Start and stop go through the Engine API;
// readiness is the container's own HEALTHCHECK when it has one, else the service's `health`
// check on its upstream, else "running".
//
// It also follows the engine's event stream (watch(), an EventWatcher), so that containers
// started, stopped or crashed by someone else are seen within moments.
#pragma once

#include "siesta/backends/docker_client.h"
#include "siesta/backends/event_watcher.h"
#include "siesta/core/service_backend.h"

namespace siesta {

// The container a service maps to: its `container`, else its name.
const std::string& container_of(const ServiceSpec& spec);

class DockerBackend final : public ServiceBackend {
 public:
  explicit DockerBackend(DockerEndpoint endpoint);

  Status start(const ServiceSpec& spec) override;
  Result<Readiness> check_ready(const ServiceSpec& spec) override;
  Status stop(const ServiceSpec& spec) override;
  Result<Inspection> inspect(const ServiceSpec& spec) override;
  // docker pause / unpause: the cgroup freezer. stop() unpauses a paused container first, so
  // that it gets its stop signal and its grace period like a running one.
  bool supports_pause() const override { return true; }
  Status pause(const ServiceSpec& spec) override;
  Status resume(const ServiceSpec& spec) override;

  DockerClient& client() { return client_; }

  using Watch = EventWatcher::Callbacks;
  // Starts following container events on a thread of its own; stop_watching() (or the
  // destructor) ends it.
  void watch(Watch callbacks) { watcher_.start(std::move(callbacks)); }
  void stop_watching() { watcher_.stop(); }

 private:
  DockerClient client_;
  EventWatcher watcher_;  // declared after client_, which it uses
};

}  // namespace siesta
