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
constexpr std::size_t kMaxErrorOutput = 64 << 10;

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
  const SpawnedChild child = spawn_in_own_group(argv, StderrTo::kOwnPipe);
  if (child.pid < 0) {
    result.outcome =
        child.error == ENOENT ? CommandResult::Outcome::kNotFound : CommandResult::Outcome::kFailed;
    result.why_failed = std::strerror(child.error);
    result.error = "cannot run " + argv[0] + ": " + result.why_failed;
    return result;
  }
  const pid_t pid = child.pid;
  // Its stdout (the answer) and its stderr (what it says when it fails), each read to a bound.
  struct Stream {
    int fd;
    std::string* text;
    std::size_t max;
    bool ended = false;  // end of file (or a read error)
  };
  Stream streams[2] = {{child.output, &result.output, kMaxOutput},
                       {child.errors, &result.error_output, kMaxErrorOutput}};
  char buf[4096];
  const auto read_once = [&](Stream& s) {
    const ssize_t got = ::read(s.fd, buf, sizeof buf);
    if (got > 0 && s.text->size() < s.max) s.text->append(buf, static_cast<std::size_t>(got));
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) s.ended = true;
    return got > 0;
  };
  // Read until the command exits (or its output ends) or the deadline; the deadline kills the
  // whole group. A child the command left in the background (holding its stdout) does not
  // make it a timeout: the command's exit decides, and the leftovers are killed with the group.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  bool timed_out = false;
  std::optional<int> exited;  // the command's wait status, once it has exited
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
    pollfd p[2];
    for (int i = 0; i < 2; ++i) p[i] = {streams[i].ended ? -1 : streams[i].fd, POLLIN, 0};
    const int n = ::poll(p, 2, static_cast<int>(std::min<long long>(left.count(), 20)));
    for (int i = 0; n > 0 && i < 2; ++i) {
      if (!streams[i].ended && p[i].revents != 0) read_once(streams[i]);
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = status;
      // What it wrote just before exiting is still in the pipes: take what is there now.
      for (Stream& s : streams) {
        ::fcntl(s.fd, F_SETFL, O_NONBLOCK);
        while (!s.ended && read_once(s)) {
        }
      }
      break;
    }
  }
  for (Stream& s : streams) ::close(s.fd);
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

std::string describe_failure(const CommandResult& r, Seconds timeout) {
  using O = CommandResult::Outcome;
  std::ostringstream text;
  switch (r.outcome) {
    case O::kNotFound:
      return "not found";
    case O::kFailed:
      // After the command's name: not "X cannot run X: ..." (issue 21's re-trial).
      return r.why_failed.empty() ? r.error : "cannot be run: " + r.why_failed;
    case O::kTimedOut:
      text << "timed out after " << timeout.count() << " s";
      return text.str();
    case O::kSignalled:
      text << "was killed by signal " << r.exit_code;
      break;
    case O::kExited:
      if (r.exit_code == 0) return "";
      text << "exited with code " << r.exit_code;
      break;
  }
  // nvidia-smi says why on its standard output ("NVIDIA-SMI has failed because ..."); other
  // failures (a wrapper script, a missing library) only on its standard error.
  const auto first_line = [](const std::string& out) {
    const auto a = out.find_first_not_of(" \t\r\n");
    return a == std::string::npos ? std::string() : out.substr(a, out.find_first_of("\r\n", a) - a);
  };
  std::string first = first_line(r.output);
  if (first.empty()) first = first_line(r.error_output);
  if (!first.empty()) text << ": " << first.substr(0, 200);
  return text.str();
}

}  // namespace siesta
