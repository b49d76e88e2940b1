// DiscoveryActions: what service discovery (sidecar/discovery: Docker labels, Swarm, the
// refresh queue) asks of the runtime, so that it depends on this and not on the Controller.
// Controller implements it; each method is documented there.
#pragma once

#include <optional>
#include <string>

#include "siesta/core/service.h"
#include "siesta/core/status.h"

namespace siesta {

class DiscoveryActions {
 public:
  virtual ~DiscoveryActions() = default;

  // A service found after start-up; kConflict if the name is taken.
  virtual Status add_service(const ServiceSpec& spec, bool idle_sleep_enabled, Desired desired) = 0;
  // A discovered service's labels or annotations changed: its spec becomes `spec` (found by
  // spec.name), its runtime is kept but for `idle_sleep_enabled` when given. kNotFound if
  // unknown.
  virtual Status update_spec(const ServiceSpec& spec, std::optional<bool> idle_sleep_enabled) = 0;
  // A discovered service's labels or annotations have a bad value (`error` names the object,
  // the key and the reason), or no longer (empty): shown on the service (config_error and
  // last_error); its spec stays as it was.
  virtual void set_config_error(const std::string& service, const std::string& error) = 0;
  // Re-reads one service's real state (e.g. on a Docker event).
  virtual void refresh(const std::string& service) = 0;
  // Re-reads every service's real state (after events may have been missed).
  virtual void reconcile() = 0;
};

}  // namespace siesta
