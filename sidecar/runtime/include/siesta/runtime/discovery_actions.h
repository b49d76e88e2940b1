// DiscoveryActions: what service discovery (sidecar/discovery: Docker labels, Swarm, the
// refresh queue) asks of the runtime, so that it depends on this and not on the Controller.
// Controller implements it; each method is documented there.
#pragma once

#include <string>

#include "siesta/core/service.h"
#include "siesta/core/status.h"

namespace siesta {

class DiscoveryActions {
 public:
  virtual ~DiscoveryActions() = default;

  // A service found after start-up; kConflict if the name is taken.
  virtual Status add_service(const ServiceSpec& spec, bool idle_sleep_enabled, Desired desired) = 0;
  // Re-reads one service's real state (e.g. on a Docker event).
  virtual void refresh(const std::string& service) = 0;
  // Re-reads every service's real state (after events may have been missed).
  virtual void reconcile() = 0;
};

}  // namespace siesta
