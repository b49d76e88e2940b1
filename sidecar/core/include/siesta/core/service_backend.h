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
  bool running = false;  // up, paused or not
  std::string detail;    // e.g. "exited with code 1"; shown to the operator
  bool paused = false;   // held paused (Docker pause, SIGSTOP): up, but serving nothing
  // Not running, and why that is a failed start rather than a stop: e.g. a process that
  // exited on its own while another process answers its upstream (its port was taken, so the
  // readiness probe and the requests reached that one). Shown as last_error, counted as a
  // failed start. Empty otherwise.
  std::string start_failure{};
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
  // Stopping a stopped service is not an error; a paused one is stopped too (thawed first
  // where the backend needs that for it to exit).
  virtual Status stop(const ServiceSpec& spec) = 0;
  // The service's real state, read from the backend.
  virtual Result<Inspection> inspect(const ServiceSpec& spec) = 0;

  // The pause tier of graduated sleep: freezes the running service in place (no CPU, its
  // memory kept) and returns once it is frozen; resume() thaws it. Pausing a paused service or
  // resuming a running one is not an error. Backends without it answer kUnavailable.
  virtual bool supports_pause() const { return false; }
  // Whether a paused service stays paused after siesta exits (on_exit "leave"). A stopped
  // process group does not: once siesta (its parent) is gone the group is orphaned, and the
  // kernel sends an orphaned group with a stopped member SIGHUP then SIGCONT (POSIX), which
  // would end most services.
  virtual bool pause_outlives_siesta() const { return true; }
  virtual Status pause(const ServiceSpec& /*spec*/) {
    return {ErrorCode::kUnavailable, "this backend cannot pause a service"};
  }
  virtual Status resume(const ServiceSpec& /*spec*/) {
    return {ErrorCode::kUnavailable, "this backend cannot pause a service"};
  }

  // Memory the running service holds now (resident set), if the backend can tell; read just
  // before a stop, to count what sleeping frees.
  virtual std::optional<double> memory_bytes(const ServiceSpec& /*spec*/) { return std::nullopt; }

  // What the backend needs to find a running service again after siesta restarts (e.g. a
  // pid); persisted in the state file. Null when there is nothing to remember.
  virtual nlohmann::json save_handle(const ServiceSpec& /*spec*/) { return nullptr; }
  virtual void restore_handle(const ServiceSpec& /*spec*/, const nlohmann::json& /*handle*/) {}
};

}  // namespace siesta
