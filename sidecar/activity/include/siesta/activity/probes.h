// The probes of each activity signal kind (core/activity.h), and the factory the sampler uses
// to make them. Each probe is used by one sample at a time (ActivitySampler's rule).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>

#include "siesta/core/clock.h"
#include "siesta/runtime/activity_sampler.h"

namespace siesta {

class DockerClient;

// What the probes need of the host.
struct ProbeContext {
  const Clock* clock = nullptr;
  // The process-group leader of a process service, or -1 when it does not run.
  std::function<pid_t(const std::string& service)> pid_of;
  DockerClient* docker = nullptr;  // null: container signals are unavailable
  std::string proc_root = "/proc";
  std::string dev_root = "/dev";                      // terminals, for the users signal
  std::string nvidia_smi = "nvidia-smi";              // the GPU tool
  std::string self_pid = std::to_string(::getpid());  // siesta: whose sockets are not "direct"
};

ActivitySampler::ProbeFactory make_probe_factory(ProbeContext context);

}  // namespace siesta
