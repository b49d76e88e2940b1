#include "siesta/core/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>

extern char** environ;

namespace siesta {

SpawnedChild spawn_in_own_group(const std::vector<std::string>& argv, StderrTo stderr_to) {
  SpawnedChild child;
  if (argv.empty()) {
    child.error = ENOENT;
    return child;
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    child.error = errno;
    return child;
  }
  int err[2] = {-1, -1};
  if (stderr_to == StderrTo::kOwnPipe && ::pipe2(err, O_CLOEXEC) != 0) {
    child.error = errno;
    ::close(out[0]);
    ::close(out[1]);
    return child;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, stderr_to == StderrTo::kOwnPipe ? err[1] : out[1],
                                   STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigfillset(&defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int rc = ::posix_spawnp(&child.pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  if (err[1] >= 0) ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    if (err[0] >= 0) ::close(err[0]);
    child.pid = -1;
    child.error = rc;
    return child;
  }
  child.output = out[0];
  child.errors = err[0];
  return child;
}

}  // namespace siesta
