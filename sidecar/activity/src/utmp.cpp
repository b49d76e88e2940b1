#include "siesta/activity/utmp.h"

#include <sys/stat.h>
#include <utmp.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace siesta {

UtmpRead read_utmp(const std::string& path, const std::string& dev_root) {
  UtmpRead result;
  // A regular file only, read to a bound: a device (/dev/zero) or a FIFO would never end.
  struct stat file {};
  if (::stat(path.c_str(), &file) != 0) {
    result.error = "cannot read " + path + ": " + std::strerror(errno);
    return result;
  }
  if (!S_ISREG(file.st_mode)) {
    result.error = "cannot read " + path + ": not a regular file";
    return result;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    result.error = "cannot read " + path + ": " + std::strerror(errno);
    return result;
  }
  constexpr int kMaxRecords = 65536;  // a utmp file holds one per terminal
  utmp record{};
  for (int n = 0; n < kMaxRecords && in.read(reinterpret_cast<char*>(&record), sizeof record);
       ++n) {
    if (record.ut_type != USER_PROCESS) continue;
    UtmpSession session;
    session.user.assign(record.ut_user, strnlen(record.ut_user, sizeof record.ut_user));
    session.line.assign(record.ut_line, strnlen(record.ut_line, sizeof record.ut_line));
    struct stat st {};
    if (!session.line.empty() && session.line.find("..") == std::string::npos &&
        ::stat((dev_root + "/" + session.line).c_str(), &st) == 0) {
      session.input_at = WallTime(std::chrono::duration_cast<WallTime::duration>(
          std::chrono::seconds(st.st_atim.tv_sec) + std::chrono::nanoseconds(st.st_atim.tv_nsec)));
    }
    result.sessions.push_back(std::move(session));
  }
  return result;
}

int active_sessions(const std::vector<UtmpSession>& sessions, WallTime now,
                    std::optional<Seconds> window) {
  int count = 0;
  for (const UtmpSession& s : sessions) {
    // With a window, a session counts only with recent input on a terminal that exists: a
    // record left by a crashed session (its terminal gone) must not keep services up.
    if (!window || (s.input_at && now - *s.input_at <= to_wall_duration(*window))) ++count;
  }
  return count;
}

}  // namespace siesta
