#pragma once
// Starting a child the way siesta starts every program it runs (a service's command, an
// activity signal's command): in a process group of its own, so that a stop or a timeout
// reaches its children too; with the signal mask and dispositions reset (siesta blocks
// SIGTERM/SIGINT for its signal thread); stdin from /dev/null; and none of siesta's other file
// descriptors (Asio opens its listening sockets without O_CLOEXEC: they would stay bound in a
// service that outlives siesta with on_exit "leave").

#include <sys/types.h>

#include <string>
#include <vector>

namespace siesta {

struct SpawnedChild {
  pid_t pid = -1;
  int output = -1;  // read end of the pipe on the child's stdout (and stderr, if asked), CLOEXEC
  int errors = -1;  // read end of the pipe on its stderr (StderrTo::kOwnPipe), CLOEXEC; else -1
  int error = 0;    // the errno of a failure (pid is then -1 and the pipes closed)
};

// Where the child's stderr goes: the same pipe as its stdout (a service's log), or a pipe of its
// own (a helper whose complaints explain a failure, e.g. nvidia-smi's).
enum class StderrTo { kOutput, kOwnPipe };

// Runs argv[0] (searched on PATH) with argv.
SpawnedChild spawn_in_own_group(const std::vector<std::string>& argv, StderrTo stderr_to);

}  // namespace siesta
