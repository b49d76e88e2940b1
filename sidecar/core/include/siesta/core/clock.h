// Clock: the only source of time in siesta. Wall time stamps events that outlive the process
// (last_used, keep_alive_until); monotonic time measures durations. Tests inject a fake.
#pragma once

#include <chrono>

namespace siesta {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;
using Seconds = std::chrono::duration<double>;

// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual WallTime wall_now() const = 0;
  virtual MonoTime mono_now() const = 0;
  // Blocks the calling thread; a fake clock advances itself instead.
  virtual void sleep_for(std::chrono::nanoseconds duration) const = 0;
};

class SystemClock final : public Clock {
 public:
  WallTime wall_now() const override { return std::chrono::system_clock::now(); }
  MonoTime mono_now() const override { return std::chrono::steady_clock::now(); }
  void sleep_for(std::chrono::nanoseconds duration) const override;
};

// Seconds since the Unix epoch, as used in the API, the state file and /metrics.
inline double to_unix_seconds(WallTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
inline WallTime from_unix_seconds(double s) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(Seconds(s)));
}
template <typename Rep, typename Period>
WallTime::duration to_wall_duration(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration_cast<WallTime::duration>(d);
}

}  // namespace siesta
