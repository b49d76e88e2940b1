// ProcessBackend: runs each service as a local process from its argv, in a process group of
// its own, with its output in siesta's log. Stop is SIGTERM to the group, then SIGKILL after
// stop_timeout_seconds; every child is reaped. A process started by an earlier siesta (on_exit
// "leave") is adopted again from its saved handle (pid and kernel start time, so a reused pid
// is never mistaken for it) only while /proc/<pid>/cmdline is still the service's command.
// Pause (graduated sleep) is SIGSTOP to the group, resume SIGCONT; a stop sends SIGCONT right
// after SIGTERM, since a stopped group would keep the SIGTERM pending and never exit.
// A process that exits on its own, its group gone, while its upstream still answers was kept
// from its port by another process (which may have passed the readiness probe): inspect() says so
// as a failed start (Inspection::start_failure), check_ready() in its error. Grace periods are
// measured, and polls paced, with the injected Clock. Thread-safe.
// The exit listener hears of each process that ended on its own (not by a stop siesta asked for),
// so that the controller looks at once rather than at its next check (a new user's re-trial: a
// service whose process died on a taken port was shown running for a whole check interval).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "siesta/core/clock.h"
#include "siesta/core/service_backend.h"

namespace siesta {

class ProcessBackend final : public ServiceBackend {
 public:
  explicit ProcessBackend(const Clock& clock);
  ~ProcessBackend() override;

  Status start(const ServiceSpec& spec) override;
  Result<Readiness> check_ready(const ServiceSpec& spec) override;
  Status stop(const ServiceSpec& spec) override;
  Result<Inspection> inspect(const ServiceSpec& spec) override;
  bool supports_pause() const override { return true; }
  bool pause_outlives_siesta() const override { return false; }
  Status pause(const ServiceSpec& spec) override;
  Status resume(const ServiceSpec& spec) override;
  nlohmann::json save_handle(const ServiceSpec& spec) override;
  void restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) override;

  // The resident memory of the service's process (/proc/<pid>/statm).
  std::optional<double> memory_bytes(const ServiceSpec& spec) override;
  // The pid of the service's process, or -1. For tests and the status API.
  pid_t pid_of(const std::string& service) const;

  // Called on the process's waiter thread with the service's name, after its exit is recorded
  // (inspect() sees it), for an exit siesta did not ask for. It must not block (post the work);
  // nullptr removes it, and no call is in progress once that returns.
  using ExitListener = std::function<void(const std::string& service)>;
  void set_exit_listener(ExitListener listener);

 private:
  struct Child;
  struct Listener {  // shared with the waiters, which may outlive the backend
    std::mutex mu;
    ExitListener call;  // guarded by mu
  };
  std::shared_ptr<Child> find(const std::string& service) const;

  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Child>> children_;
  std::shared_ptr<Listener> listener_ = std::make_shared<Listener>();
};

}  // namespace siesta
