#include "siesta/activity/run_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <sstream>

#include "siesta/core/spawn.h"

namespace siesta {

namespace {

constexpr std::size_t kMaxOutput = 1 << 20;

int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, Seconds timeout) {
  CommandResult result;
  if (argv.empty() || argv.front().empty()) {
    result.error = "no command";
    return result;
  }
  const SpawnedChild child = spawn_in_own_group(argv, /*stderr_too=*/false);
  if (child.pid < 0) {
    result.outcome =
        child.error == ENOENT ? CommandResult::Outcome::kNotFound : CommandResult::Outcome::kFailed;
    result.error = "cannot run " + argv[0] + ": " + std::strerror(child.error);
    return result;
  }
  const pid_t pid = child.pid;
  const int out_fd = child.output;
  // Read until the command exits (or its output ends) or the deadline; the deadline kills the
  // whole group. A child the command left in the background (holding its stdout) does not
  // make it a timeout: the command's exit decides, and the leftovers are killed with the group.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  bool timed_out = false;
  bool output_ended = false;  // end of file (or a read error): only the exit is awaited now
  std::optional<int> exited;  // the command's wait status, once it has exited
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    // Every turn: read what there is (waiting at most 20 ms), then check the exit, so that
    // neither a command that closed its output and hangs nor a child that keeps writing
    // outlives the deadline.
    pollfd p{output_ended ? -1 : out_fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 20)));
    if (n > 0 && !output_ended) {
      const ssize_t got = ::read(out_fd, buf, sizeof buf);
      if (got > 0 && result.output.size() < kMaxOutput) {
        result.output.append(buf, static_cast<std::size_t>(got));
      }
      if (got == 0 || (got < 0 && errno != EINTR)) output_ended = true;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = status;
      // What it wrote just before exiting is still in the pipe: take what is there now.
      ::fcntl(out_fd, F_SETFL, O_NONBLOCK);
      for (ssize_t got; !output_ended && (got = ::read(out_fd, buf, sizeof buf)) > 0;) {
        if (result.output.size() < kMaxOutput) {
          result.output.append(buf, static_cast<std::size_t>(got));
        }
      }
      break;
    }
  }
  ::close(out_fd);
  if (exited) ::kill(-pid, SIGKILL);  // what it left running in its group
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    wait_child(pid);
    result.outcome = CommandResult::Outcome::kTimedOut;
    std::ostringstream text;
    text << argv[0] << " did not finish within " << timeout.count() << " s";
    result.error = text.str();
    return result;
  }
  const int status = *exited;
  if (WIFEXITED(status)) {
    result.outcome = CommandResult::Outcome::kExited;
    result.exit_code = WEXITSTATUS(status);
  } else {
    result.outcome = CommandResult::Outcome::kSignalled;
    result.exit_code = WIFSIGNALED(status) ? WTERMSIG(status) : -1;
  }
  return result;
}

}  // namespace siesta
