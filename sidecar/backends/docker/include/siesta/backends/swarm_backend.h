// SwarmBackend: services that are replicated Docker Swarm services. A service sleeps by being
// scaled to 0 replicas and wakes by being scaled back to the count it had, which is remembered
// twice: in the service's own label siesta.replicas (so a restart of siesta, or another siesta,
// finds it) and in siesta's state file (save_handle), for a service redeployed without it. It
// is ready when all its replicas' tasks run (a task with a HEALTHCHECK is reported running only
// once healthy) and, when the service has a `health` check, that answers on its upstream.
//
// Thread-safe: every engine call opens its own connection; the remembered counts are guarded.
#pragma once

#include <map>
#include <mutex>

#include "siesta/backends/docker_client.h"
#include "siesta/backends/event_watcher.h"
#include "siesta/core/service_backend.h"

namespace siesta {

// The Swarm service a service maps to: its `swarm_service`, else its name.
const std::string& swarm_service_of(const ServiceSpec& spec);

class SwarmBackend final : public ServiceBackend {
 public:
  SwarmBackend(DockerEndpoint endpoint, const Clock& clock);

  Status start(const ServiceSpec& spec) override;
  Result<Readiness> check_ready(const ServiceSpec& spec) override;
  // Scales to 0 and returns once no task of the service is left alive, so that a wake right
  // after does not find the old task still holding its port.
  Status stop(const ServiceSpec& spec) override;
  Result<Inspection> inspect(const ServiceSpec& spec) override;
  nlohmann::json save_handle(const ServiceSpec& spec) override;
  void restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) override;

  DockerClient& client() { return client_; }
  // Follows service events and the events of their tasks' containers.
  void watch(EventWatcher::Callbacks callbacks) { watcher_.start(std::move(callbacks)); }
  void stop_watching() { watcher_.stop(); }

 private:
  // Reads the service, then writes it scaled to `replicas`; retried when swarm itself moved the
  // version in between ("update out of sequence").
  Status scale(const ServiceSpec& spec, bool wake);
  Status wait_for_tasks_gone(const ServiceSpec& spec, const std::string& id);
  std::optional<int> remembered(const std::string& service);
  void remember(const std::string& service, int replicas);

  const Clock& clock_;
  DockerClient client_;
  EventWatcher watcher_;  // declared after client_, which it uses
  std::mutex mu_;
  std::map<std::string, int> remembered_;  // guarded by mu_: by siesta service name
};

// How a service with `replicas` wakes: the label's count, else the state file's, else 1.
int wake_replicas(const SwarmService& service, std::optional<int> from_state);

}  // namespace siesta
