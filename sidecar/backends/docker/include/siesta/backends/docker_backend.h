// DockerBackend: services that are Docker containers. Start and stop go through the Engine API;
// readiness is the container's own HEALTHCHECK when it has one, else the service's `health`
// check on its upstream, else "running".
//
// It also follows the engine's event stream (watch()), so that containers started, stopped or
// crashed by someone else are seen within moments, and reconnects with a backoff capped at one
// second when the engine goes away, renegotiating the API version when it comes back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "siesta/backends/docker_client.h"
#include "siesta/core/service_backend.h"

namespace siesta {

// The container a service maps to: its `container`, else its name.
const std::string& container_of(const ServiceSpec& spec);

class DockerBackend final : public ServiceBackend {
 public:
  explicit DockerBackend(DockerEndpoint endpoint);
  ~DockerBackend() override;

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

  struct Watch {
    // Each container event.
    std::function<void(const DockerEvent&)> on_event;
    // After every (re)connection: events may have been missed, so re-read everything.
    std::function<void()> on_connected;
    // The stream broke (the engine stopped or restarted).
    std::function<void(const Status&)> on_disconnected;
  };
  // Starts following events on a thread of its own; stop_watching() (or the destructor) ends it.
  void watch(Watch callbacks);
  void stop_watching();

 private:
  void watch_loop();

  DockerClient client_;
  Watch watch_;
  std::thread watcher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace siesta
