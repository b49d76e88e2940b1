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
  int error = 0;    // the errno of a failure (pid is then -1 and output closed)
};

// Runs argv[0] (searched on PATH) with argv. Its stderr goes to the same pipe as its stdout when
// `stderr_too`, else to /dev/null.
SpawnedChild spawn_in_own_group(const std::vector<std::string>& argv, bool stderr_too);

}  // namespace siesta
