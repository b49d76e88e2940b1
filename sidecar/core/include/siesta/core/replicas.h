// The most replicas a scaled backend (Swarm, Kubernetes) wakes a service to from a count it
// reads off the service itself (siesta.replicas, siesta.io/replicas): whoever can label or
// annotate it must not make a wake start a hundred thousand tasks (docs/security.md). A larger
// count there is ignored, with a warning; a scale by the operator is not bounded.
#pragma once

namespace siesta {

inline constexpr int kMaxWakeReplicas = 1000;

}  // namespace siesta
