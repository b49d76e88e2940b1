// Schedules: time windows in a named time zone that keep a service on or give it another idle
// timeout (docs/schedules.md). Pure: schedule_at() is a function of the schedule and `now`, so
// decide(), idle-status and the tests on the fake clock see one answer. Local times are turned
// into instants with the OS time zone database (/usr/share/zoneinfo, through Howard Hinnant's
// date library): a local time that does not exist (spring forward) is the transition's instant,
// a repeated one (fall back) its first occurrence.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace date {
class time_zone;
}

namespace siesta {

struct ScheduleWindow {
  unsigned days = 0x7f;     // bit i: the window starts on weekday i (0 Monday ... 6 Sunday)
  int from_seconds = 0;     // local time of day it starts, [0, 86400)
  int to_seconds = 0;       // ... and ends, (0, 86400]; at most from_seconds: the next day
  bool desired_on = false;  // inside: kept on, started at the start
  std::optional<double> idle_timeout_minutes;  // inside: this idle timeout instead
  std::string text;                            // "mon-fri 08:30-18:00", for people
};

struct Schedule {
  std::vector<ScheduleWindow> windows;  // empty: no schedule
  std::string timezone;                 // the zone's name ("Europe/Berlin")
  const date::time_zone* zone = nullptr;
};

// The schedule at one instant.
struct ScheduleNow {
  std::optional<std::size_t> window;  // the window in force (index), if any
  WallTime window_start{};            // its current occurrence
  WallTime window_end{};
  // The next instant at which what the schedule asks changes (a window starts or ends and the
  // one in force after it differs); absent with no schedule or none within eight days.
  std::optional<WallTime> next_change;
};

ScheduleNow schedule_at(const Schedule& schedule, WallTime now);

// The window in force at `now`, if any (schedule_at() without the next change: cheaper).
const ScheduleWindow* window_at(const Schedule& schedule, WallTime now);

// A bad schedule: the key under the service ("schedule[1].days", "timezone") and why.
struct ScheduleError {
  std::string key;
  std::string reason;
};

// The zone named `name`; empty: $TZ if it names one, else the system's (/etc/localtime), else
// UTC. Null when `name` names no zone.
const date::time_zone* find_time_zone(const std::string& name);
// The name of the zone find_time_zone("") gives.
std::string local_time_zone_name();

// Parses a service's "schedule" (an array of windows) in the zone `timezone` ("" as above) into
// `out`. Refused: not an array of objects, unknown keys, bad day names, times not "HH:MM" or
// "HH:MM:SS" ("24:00" as "to" only), from == to, neither or both of desired "on" and
// idle_timeout_minutes, an unknown zone, windows that overlap with other settings.
std::optional<ScheduleError> parse_schedule(const nlohmann::json& value,
                                            const std::string& timezone, Schedule& out);

}  // namespace siesta
