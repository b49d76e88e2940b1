// ServiceBackend: starts, stops and inspects one kind of service (local processes here;
// Docker containers in their own backend). The controller serialises calls per service, so an
// implementation sees at most one call at a time for a given service, but calls for different
// services arrive concurrently: implementations must be thread-safe across services.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "siesta/core/service.h"
#include "siesta/core/status.h"

namespace siesta {

enum class Readiness { kReady, kNotYet };

struct Inspection {
  bool running = false;
  std::string detail;  // e.g. "exited with code 1"; shown to the operator
};

class ServiceBackend {
 public:
  virtual ~ServiceBackend() = default;

  // Launches the service and returns without waiting for readiness. Starting a service
  // that already runs is not an error.
  virtual Status start(const ServiceSpec& spec) = 0;
  // One readiness probe. An error means the start has failed for good (e.g. the process
  // exited), so the caller stops polling.
  virtual Result<Readiness> check_ready(const ServiceSpec& spec) = 0;
  // Stops the service and returns once it is gone, escalating after stop_timeout_seconds.
  // Stopping a stopped service is not an error.
  virtual Status stop(const ServiceSpec& spec) = 0;
  // The service's real state, read from the backend.
  virtual Result<Inspection> inspect(const ServiceSpec& spec) = 0;

  // Memory the running service holds now (resident set), if the backend can tell; read just
  // before a stop, to count what sleeping frees.
  virtual std::optional<double> memory_bytes(const ServiceSpec& /*spec*/) { return std::nullopt; }

  // What the backend needs to find a running service again after siesta restarts (e.g. a
  // pid); persisted in the state file. Null when there is nothing to remember.
  virtual nlohmann::json save_handle(const ServiceSpec& /*spec*/) { return nullptr; }
  virtual void restore_handle(const ServiceSpec& /*spec*/, const nlohmann::json& /*handle*/) {}
};

}  // namespace siesta
