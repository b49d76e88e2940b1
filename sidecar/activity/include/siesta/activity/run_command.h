// run_command: runs an executable with a deadline and captures its standard output, for the
// command, GPU and input-idle activity signals. The child gets its own process group, which a
// timeout kills whole (SIGKILL), so a hung helper never outlives its sample.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

struct CommandResult {
  enum class Outcome { kExited, kSignalled, kTimedOut, kNotFound, kFailed };
  Outcome outcome = Outcome::kFailed;
  int exit_code = -1;        // kExited; the signal number for kSignalled
  std::string output;        // standard output, at most 1 MiB
  std::string error_output;  // standard error, at most 64 KiB
  std::string error;         // for kNotFound and kFailed: "cannot run ARGV0: REASON"
  std::string why_failed;    // kFailed: the REASON alone ("Permission denied")
};

// Thread-safe. Blocks the caller for at most about `timeout`.
CommandResult run_command(const std::vector<std::string>& argv, Seconds timeout);

// Why a run did not succeed, in words, to follow the command's name: "not found", "cannot be
// run: Permission denied", "timed out after 10 s", "was killed by signal 9", "exited with code 6";
// then the first line of its output, else of its standard error, if any. Empty when it exited 0.
std::string describe_failure(const CommandResult& r, Seconds timeout);

}  // namespace siesta
