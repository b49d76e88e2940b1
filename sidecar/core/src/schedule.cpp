#include "siesta/core/schedule.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <tuple>

#include "siesta/core/settings_schema.h"

namespace siesta {

namespace {

using std::chrono::seconds;

constexpr int kDay = 86400;
constexpr int kWeek = 7 * kDay;
constexpr const char* kDayNames[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr const char* kLongDayNames[] = {"monday", "tuesday",  "wednesday", "thursday",
                                         "friday", "saturday", "sunday"};

// What a window asks, to tell whether two windows (or none) ask the same.
using Ask = std::tuple<bool, bool, double>;  // in a window, desired on, timeout
Ask ask_of(const ScheduleWindow* w) {
  if (w == nullptr) return {false, false, 0};
  return {true, w->desired_on, w->idle_timeout_minutes.value_or(0)};
}

// 0 (Monday) ... 6 (Sunday).
unsigned weekday_index(date::local_days d) { return date::weekday(d).iso_encoding() - 1; }

// The occurrence of `w` that starts on local day `d`: [start, end).
std::pair<WallTime, WallTime> occurrence(const Schedule& s, const ScheduleWindow& w,
                                         date::local_days d) {
  const int end = w.to_seconds > w.from_seconds ? w.to_seconds : w.to_seconds + kDay;
  const auto start_local = date::local_seconds(d) + seconds(w.from_seconds);
  const auto end_local = date::local_seconds(d) + seconds(end);
  return {WallTime(s.zone->to_sys(start_local, date::choose::earliest)),
          WallTime(s.zone->to_sys(end_local, date::choose::earliest))};
}

date::local_days local_day(const Schedule& s, WallTime now) {
  return date::floor<date::days>(s.zone->to_local(std::chrono::floor<seconds>(now)));
}

const ScheduleWindow* find_window(const Schedule& s, WallTime now, WallTime* start, WallTime* end) {
  if (s.windows.empty() || s.zone == nullptr) return nullptr;
  const date::local_days today = local_day(s, now);
  for (const ScheduleWindow& w : s.windows) {
    for (date::local_days d : {today - date::days(1), today}) {
      if ((w.days & (1u << weekday_index(d))) == 0) continue;
      const auto [from, to] = occurrence(s, w, d);
      if (from <= now && now < to) {
        if (start != nullptr) *start = from;
        if (end != nullptr) *end = to;
        return &w;
      }
    }
  }
  return nullptr;
}

// HH:MM, or HH:MM:SS when the seconds are not 0. Formatted with snprintf: GCC 12's -O3 sees a
// false -Wrestrict overlap in `"0" + std::to_string(v)` (a Release build failed on it).
std::string time_text(int s) {
  char text[16];
  if (s % 60 != 0) {
    std::snprintf(text, sizeof text, "%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(text, sizeof text, "%02d:%02d", s / 3600, s / 60 % 60);
  }
  return text;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string trim(const std::string& text) {
  const auto b = text.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return text.substr(b, text.find_last_not_of(" \t") - b + 1);
}

std::optional<unsigned> day_index(const std::string& name) {
  for (unsigned i = 0; i < 7; ++i) {
    if (name == kDayNames[i] || name == kLongDayNames[i]) return i;
  }
  return std::nullopt;
}

// "mon-fri", "sat,sun", "fri-mon" (wraps), "mon,wed-fri": the bit set, or why not.
std::optional<unsigned> parse_days(const std::string& text, std::string& why) {
  unsigned bits = 0;
  std::string rest = lower(text) + ",";
  for (std::size_t pos; (pos = rest.find(',')) != std::string::npos; rest.erase(0, pos + 1)) {
    const std::string item = trim(rest.substr(0, pos));
    const auto dash = item.find('-');
    const auto a = day_index(trim(item.substr(0, dash)));
    const auto b = dash == std::string::npos ? a : day_index(trim(item.substr(dash + 1)));
    if (!a || !b) {
      why =
          "must be day names (mon, tue, wed, thu, fri, sat, sun) or ranges of them "
          "separated by commas (\"mon-fri\", \"sat,sun\"), got \"" +
          text + "\"";
      return std::nullopt;
    }
    for (unsigned i = *a;; i = (i + 1) % 7) {
      bits |= 1u << i;
      if (i == *b) break;
    }
  }
  return bits;
}

// "HH:MM" or "HH:MM:SS" as seconds of the day; "24:00" only when `end`.
std::optional<int> parse_time(const std::string& text, bool end) {
  if (text.size() != 5 && text.size() != 8) return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool colon = i == 2 || i == 5;
    if (colon ? text[i] != ':' : !std::isdigit(static_cast<unsigned char>(text[i]))) {
      return std::nullopt;
    }
  }
  const int h = std::stoi(text.substr(0, 2));
  const int m = std::stoi(text.substr(3, 2));
  const int s = text.size() == 8 ? std::stoi(text.substr(6, 2)) : 0;
  if (m > 59 || s > 59) return std::nullopt;
  const int total = h * 3600 + m * 60 + s;
  if (total > kDay || (total == kDay && !end)) return std::nullopt;
  return total;
}

std::string week_text(int s) {
  s = ((s % kWeek) + kWeek) % kWeek;
  return std::string(kDayNames[s / kDay]) + " " + time_text(s % kDay);
}

}  // namespace

const ScheduleWindow* window_at(const Schedule& schedule, WallTime now) {
  return find_window(schedule, now, nullptr, nullptr);
}

ScheduleNow schedule_at(const Schedule& schedule, WallTime now) {
  ScheduleNow out;
  const ScheduleWindow* w = find_window(schedule, now, &out.window_start, &out.window_end);
  if (w != nullptr) out.window = static_cast<std::size_t>(w - schedule.windows.data());
  if (schedule.windows.empty() || schedule.zone == nullptr) return out;
  // Every start and end from yesterday's windows to those of eight days on, in order: the
  // first after which the schedule asks something else.
  std::set<WallTime> edges;
  const date::local_days today = local_day(schedule, now);
  for (const ScheduleWindow& win : schedule.windows) {
    for (int i = -1; i <= 8; ++i) {
      const date::local_days d = today + date::days(i);
      if ((win.days & (1u << weekday_index(d))) == 0) continue;
      const auto [from, to] = occurrence(schedule, win, d);
      if (from > now) edges.insert(from);
      if (to > now) edges.insert(to);
    }
  }
  const Ask current = ask_of(w);
  for (WallTime t : edges) {
    if (ask_of(window_at(schedule, t)) != current) {
      out.next_change = t;
      break;
    }
  }
  return out;
}

const date::time_zone* find_time_zone(const std::string& name) {
  try {
    if (!name.empty()) return date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
  if (const char* tz = std::getenv("TZ"); tz != nullptr && *tz != '\0') {
    try {
      return date::locate_zone(tz[0] == ':' ? tz + 1 : tz);
    } catch (const std::exception&) {
    }
  }
  try {
    return date::current_zone();
  } catch (const std::exception&) {
  }
  try {
    return date::locate_zone("UTC");
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string local_time_zone_name() {
  const date::time_zone* zone = find_time_zone("");
  return zone != nullptr ? std::string(zone->name()) : "";
}

std::optional<ScheduleError> parse_schedule(const nlohmann::json& value,
                                            const std::string& timezone, Schedule& out) {
  Schedule s;
  s.zone = find_time_zone(timezone);
  if (s.zone == nullptr) {
    return ScheduleError{"timezone",
                         timezone.empty()
                             ? "no time zone database to read the local zone from (install tzdata)"
                             : "names no time zone in the database (/usr/share/zoneinfo): \"" +
                                   timezone + "\" (e.g. \"Europe/Berlin\", \"UTC\")"};
  }
  s.timezone = s.zone->name();
  if (!value.is_array() || value.empty()) {
    return ScheduleError{"schedule",
                         "must be a non-empty array of windows ({\"days\": \"mon-fri\", \"from\": "
                         "\"08:30\", \"to\": \"18:00\", \"desired\": \"on\"})"};
  }
  std::vector<std::vector<std::pair<int, int>>> spans;  // each window's seconds of the week
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string at = "schedule[" + std::to_string(i) + "]";
    const nlohmann::json& item = value[i];
    if (!item.is_object()) return ScheduleError{at, "must be a JSON object"};
    for (const auto& [key, v] : item.items()) {
      if (key != "days" && key != "from" && key != "to" && key != "desired" &&
          key != "idle_timeout_minutes") {
        return ScheduleError{
            at + "." + key,
            "unknown key (known keys: days, desired, from, idle_timeout_minutes, to)"};
      }
      if (key != "idle_timeout_minutes" && !v.is_string()) {
        return ScheduleError{at + "." + key, "must be a string, got " + v.dump()};
      }
    }
    ScheduleWindow w;
    std::string days_text = "every day";
    if (item.contains("days")) {
      std::string why;
      days_text = item["days"].get<std::string>();
      const auto bits = parse_days(days_text, why);
      if (!bits) return ScheduleError{at + ".days", why};
      w.days = *bits;
    }
    w.to_seconds = kDay;
    for (const char* key : {"from", "to"}) {
      if (!item.contains(key)) continue;
      const std::string text = item[key].get<std::string>();
      const bool end = std::string(key) == "to";
      const auto t = parse_time(text, end);
      if (!t) {
        return ScheduleError{at + "." + key, std::string("must be a time of day \"HH:MM\" or "
                                                         "\"HH:MM:SS\"") +
                                                 (end ? " (\"24:00\": midnight at the end)" : "") +
                                                 ", got \"" + text + "\""};
      }
      (end ? w.to_seconds : w.from_seconds) = *t;
    }
    if (w.from_seconds == w.to_seconds) {
      return ScheduleError{at + ".to",
                           "must differ from \"from\" (" + time_text(w.from_seconds) +
                               "): a window of no time (a whole day: omit both, or \"00:00\" to "
                               "\"24:00\")"};
    }
    if (item.contains("desired")) {
      if (item["desired"] != "on") {
        return ScheduleError{at + ".desired",
                             "must be \"on\" (outside its windows a service follows its normal "
                             "rules), got " +
                                 item["desired"].dump()};
      }
      w.desired_on = true;
    }
    if (item.contains("idle_timeout_minutes")) {
      if (std::string why = check_number(kTimeoutMinutes, item["idle_timeout_minutes"]);
          !why.empty()) {
        return ScheduleError{at + ".idle_timeout_minutes", why};
      }
      w.idle_timeout_minutes = item["idle_timeout_minutes"].get<double>();
    }
    if (w.desired_on == w.idle_timeout_minutes.has_value()) {
      return ScheduleError{at, std::string(w.desired_on ? "has both" : "has neither") +
                                   " \"desired\": \"on\" and \"idle_timeout_minutes\": a "
                                   "window asks one of them"};
    }
    w.text = days_text + " " + time_text(w.from_seconds) + "-" + time_text(w.to_seconds);
    // Its occurrences in the week (local time), the part past Sunday midnight wrapped.
    std::vector<std::pair<int, int>> mine;
    const int length = (w.to_seconds - w.from_seconds + kDay - 1) % kDay + 1;
    for (int d = 0; d < 7; ++d) {
      if ((w.days & (1u << d)) == 0) continue;
      const int a = d * kDay + w.from_seconds;
      mine.emplace_back(a, std::min(a + length, kWeek));
      if (a + length > kWeek) mine.emplace_back(0, a + length - kWeek);
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (ask_of(&s.windows[j]) == ask_of(&w)) continue;
      for (const auto& [a0, a1] : mine) {
        for (const auto& [b0, b1] : spans[j]) {
          if (a0 < b1 && b0 < a1) {
            return ScheduleError{at, "overlaps schedule[" + std::to_string(j) + "] (" +
                                         s.windows[j].text + ") from " +
                                         week_text(std::max(a0, b0)) +
                                         " and asks something else: windows that overlap must "
                                         "ask the same"};
          }
        }
      }
    }
    spans.push_back(std::move(mine));
    s.windows.push_back(std::move(w));
  }
  out = std::move(s);
  return std::nullopt;
}

}  // namespace siesta
