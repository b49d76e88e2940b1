// KubeBackend: services that are Kubernetes Deployments or StatefulSets. A service sleeps by its
// workload being scaled to 0 through the `scale` subresource and wakes by being scaled back to
// the count it had, which is remembered twice: in the workload's annotation siesta.io/replicas
// (written when siesta's role may patch the workload, so that another siesta or a lost state
// file finds it; also the operator's way to set it) and in siesta's state file (save_handle).
// It is ready when status.readyReplicas reaches the count and, when the service has a `health`
// check, that answers on its upstream.
//
// Thread-safe: every API call opens its own connection; the remembered counts are guarded.
#pragma once

#include <map>
#include <mutex>
#include <set>

#include "siesta/backends/kube_client.h"
#include "siesta/core/clock.h"
#include "siesta/core/service_backend.h"

namespace siesta {

// The annotation holding the count a sleeping workload wakes to.
inline constexpr const char* kReplicasAnnotation = "siesta.io/replicas";

// The count siesta last saw a workload run with, and its annotation siesta.io/replicas as it
// was then ("" when absent; nullopt when not known: a state file from before it was kept). The
// annotation unchanged since means the count is newer than it (e.g. a Role that cannot patch
// the workload left a stale one behind).
struct RememberedReplicas {
  int replicas = 1;
  std::optional<std::string> annotation_seen;
};

class KubeBackend final : public ServiceBackend {
 public:
  KubeBackend(KubeCredentials credentials, const Clock& clock);

  Status start(const ServiceSpec& spec) override;
  Result<Readiness> check_ready(const ServiceSpec& spec) override;
  // Scales to 0 and returns once the workload reports no pod left (status.replicas 0), so that
  // a wake right after does not find the old pod still holding its port.
  Status stop(const ServiceSpec& spec) override;
  Result<Inspection> inspect(const ServiceSpec& spec) override;
  nlohmann::json save_handle(const ServiceSpec& spec) override;
  void restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) override;

  KubeClient& client() { return client_; }
  const Clock& clock() const { return clock_; }

 private:
  std::optional<RememberedReplicas> remembered(const std::string& service);
  void remember(const std::string& service, const Workload& seen, int replicas);

  const Clock& clock_;
  KubeClient client_;
  std::mutex mu_;
  std::map<std::string, RememberedReplicas> remembered_;  // guarded by mu_: by service name
  std::set<std::string> annotation_refused_;  // guarded by mu_: warned once per workload
};

// The count a sleeping workload wakes to: the remembered one (the state file's) when the
// annotation has not changed since it was remembered (it is the newer); else the annotation's
// (a whole number from 1), else the remembered one, else 1.
int kube_wake_replicas(const Workload& workload,
                       const std::optional<RememberedReplicas>& remembered);

// The workload's annotation siesta.io/replicas ("" when it has none).
std::string replicas_annotation(const Workload& workload);

}  // namespace siesta
