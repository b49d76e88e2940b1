// Logged-in sessions, as `who` reads them: the USER_PROCESS records of a utmp file, and how long
// ago each session's terminal last saw input (its atime, as `who -u` shows it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

struct UtmpSession {
  std::string user;
  std::string line;                  // the terminal, e.g. "pts/0"
  std::optional<WallTime> input_at;  // the terminal's last input; absent when it cannot be read
};

// The sessions in `path` (a glibc utmp file); an error when it cannot be read. `dev_root` holds
// the terminals (tests point it at a directory of their own).
struct UtmpRead {
  std::vector<UtmpSession> sessions;
  std::string error;
};
UtmpRead read_utmp(const std::string& path, const std::string& dev_root = "/dev");

// Sessions active within `window` of `now` (all of them without a window). A session whose
// terminal cannot be read counts as active: someone is logged in.
int active_sessions(const std::vector<UtmpSession>& sessions, WallTime now,
                    std::optional<Seconds> window);

}  // namespace siesta
