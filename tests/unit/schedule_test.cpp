// Schedules (core/schedule.h): windows in named zones on hand-picked instants, DST transitions
// of Europe/Berlin and America/New_York included, the config's refusals, and what decide()
// does with them. Pure: every instant is given, nothing sleeps.
#include "siesta/core/schedule.h"

#include <date/date.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta/config/config.h"
#include "siesta/core/decide.h"

namespace siesta {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

// An instant given in UTC.
WallTime utc(int y, unsigned m, unsigned d, int h, int mi, int s = 0) {
  return WallTime(date::sys_days(date::year(y) / date::month(m) / date::day(d)) + hours(h) +
                  minutes(mi) + seconds(s));
}

Schedule make(const std::string& windows, const std::string& zone) {
  Schedule s;
  auto error = parse_schedule(json::parse(windows), zone, s);
  EXPECT_FALSE(error) << (error ? error->key + ": " + error->reason : "");
  return s;
}

ScheduleError refused(const std::string& windows, const std::string& zone = "UTC") {
  Schedule s;
  auto error = parse_schedule(json::parse(windows), zone, s);
  EXPECT_TRUE(error) << windows;
  return error.value_or(ScheduleError{});
}

bool in(const Schedule& s, WallTime t) { return window_at(s, t) != nullptr; }

const char* kOffice = R"([{"days": "mon-fri", "from": "08:30", "to": "18:00", "desired": "on"},
                          {"days": "sat,sun", "idle_timeout_minutes": 10}])";

TEST(Schedule, AWeekdayWindowInBerlinSummerTime) {
  const Schedule s = make(kOffice, "Europe/Berlin");
  EXPECT_EQ(s.timezone, "Europe/Berlin");
  // Monday 2026-06-01, CEST (UTC+2): 08:30 local is 06:30 UTC.
  EXPECT_FALSE(in(s, utc(2026, 6, 1, 6, 29, 59)));
  const ScheduleWindow* w = window_at(s, utc(2026, 6, 1, 6, 30));
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(w->desired_on);
  EXPECT_EQ(w->text, "mon-fri 08:30-18:00");
  EXPECT_TRUE(in(s, utc(2026, 6, 1, 15, 59, 59)));
  EXPECT_FALSE(in(s, utc(2026, 6, 1, 16, 0)));
  // Saturday: the other window, all day.
  const ScheduleWindow* weekend = window_at(s, utc(2026, 6, 6, 1, 0));
  ASSERT_NE(weekend, nullptr);
  EXPECT_EQ(weekend->idle_timeout_minutes, 10);
  EXPECT_EQ(weekend->text, "sat,sun 00:00-24:00");
}

TEST(Schedule, TheNextChangeAndTheWindowsEnd) {
  const Schedule s = make(R"([{"days": "mon-fri", "from": "08:30", "to": "18:00",
                               "desired": "on"}])",
                          "Europe/Berlin");
  // Monday 07:00 local: the window starts at 08:30 local.
  ScheduleNow before = schedule_at(s, utc(2026, 6, 1, 5, 0));
  EXPECT_FALSE(before.window);
  EXPECT_EQ(before.next_change, utc(2026, 6, 1, 6, 30));
  ScheduleNow inside = schedule_at(s, utc(2026, 6, 1, 10, 0));
  ASSERT_TRUE(inside.window);
  EXPECT_EQ(inside.window_start, utc(2026, 6, 1, 6, 30));
  EXPECT_EQ(inside.window_end, utc(2026, 6, 1, 16, 0));
  EXPECT_EQ(inside.next_change, utc(2026, 6, 1, 16, 0));
  // Friday evening: Monday morning.
  EXPECT_EQ(schedule_at(s, utc(2026, 6, 5, 17, 0)).next_change, utc(2026, 6, 8, 6, 30));
}

TEST(Schedule, AdjacentWindowsThatAskTheSameAreOneChange) {
  // Every day, all day, in two windows: no change ahead.
  const Schedule s = make(R"([{"days": "mon-fri", "desired": "on"},
                               {"days": "sat,sun", "desired": "on"}])",
                          "UTC");
  const ScheduleNow now = schedule_at(s, utc(2026, 6, 5, 23, 0));
  EXPECT_TRUE(now.window);
  EXPECT_FALSE(now.next_change);
}

TEST(Schedule, AWindowCrossingMidnight) {
  const Schedule s = make(R"([{"days": "fri", "from": "22:00", "to": "06:00",
                               "idle_timeout_minutes": 5}])",
                          "UTC");
  EXPECT_FALSE(in(s, utc(2026, 6, 5, 21, 59, 59)));  // Friday
  EXPECT_TRUE(in(s, utc(2026, 6, 5, 22, 0)));
  EXPECT_TRUE(in(s, utc(2026, 6, 6, 3, 0)));  // Saturday, started on Friday
  EXPECT_FALSE(in(s, utc(2026, 6, 6, 6, 0)));
  EXPECT_FALSE(in(s, utc(2026, 6, 6, 23, 0)));  // Saturday night: not a Friday
  EXPECT_EQ(schedule_at(s, utc(2026, 6, 6, 3, 0)).next_change, utc(2026, 6, 6, 6, 0));
}

TEST(Schedule, BerlinSpringForwardAWindowAtTheMissingHalfHourStartsAtTheTransition) {
  // Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
  const Schedule s = make(R"([{"days": "sun", "from": "02:30", "to": "04:00", "desired": "on"}])",
                          "Europe/Berlin");
  EXPECT_FALSE(in(s, utc(2026, 3, 29, 0, 59, 59)));
  const ScheduleNow now = schedule_at(s, utc(2026, 3, 29, 1, 0));
  ASSERT_TRUE(now.window);
  EXPECT_EQ(now.window_start, utc(2026, 3, 29, 1, 0));
  EXPECT_EQ(now.window_end, utc(2026, 3, 29, 2, 0));  // 04:00 CEST
  EXPECT_FALSE(in(s, utc(2026, 3, 29, 2, 0)));
  // Before the day: the change is announced at the transition's instant.
  EXPECT_EQ(schedule_at(s, utc(2026, 3, 28, 12, 0)).next_change, utc(2026, 3, 29, 1, 0));
  // A week later, summer time: 02:30 CEST is 00:30 UTC.
  EXPECT_TRUE(in(s, utc(2026, 4, 5, 0, 30)));
  EXPECT_FALSE(in(s, utc(2026, 4, 5, 0, 29)));
}

TEST(Schedule, BerlinSpringForwardATwoHourWindowLastsOneHour) {
  const Schedule s = make(R"([{"days": "sun", "from": "01:00", "to": "03:00", "desired": "on"}])",
                          "Europe/Berlin");
  const ScheduleNow now = schedule_at(s, utc(2026, 3, 29, 0, 30));
  ASSERT_TRUE(now.window);
  EXPECT_EQ(now.window_start, utc(2026, 3, 29, 0, 0));  // 01:00 CET
  EXPECT_EQ(now.window_end, utc(2026, 3, 29, 1, 0));    // 03:00 CEST
}

TEST(Schedule, BerlinFallBackTheRepeatedHourIsInsideAndTheWindowLastsThreeHours) {
  // Sunday 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:00-03:00 twice.
  const Schedule s = make(R"([{"days": "sun", "from": "01:00", "to": "03:00", "desired": "on"}])",
                          "Europe/Berlin");
  const ScheduleNow now = schedule_at(s, utc(2026, 10, 24, 23, 0));
  ASSERT_TRUE(now.window);
  EXPECT_EQ(now.window_start, utc(2026, 10, 24, 23, 0));  // 01:00 CEST
  EXPECT_EQ(now.window_end, utc(2026, 10, 25, 2, 0));     // 03:00 CET
  EXPECT_TRUE(in(s, utc(2026, 10, 25, 0, 30)));           // 02:30 CEST
  EXPECT_TRUE(in(s, utc(2026, 10, 25, 1, 30)));           // 02:30 CET, the second time
  EXPECT_FALSE(in(s, utc(2026, 10, 25, 2, 0)));
  // A window starting in the repeated hour starts at its first occurrence.
  const Schedule late = make(R"([{"days": "sun", "from": "02:30", "to": "05:00",
                                  "desired": "on"}])",
                             "Europe/Berlin");
  EXPECT_FALSE(in(late, utc(2026, 10, 25, 0, 29)));
  EXPECT_TRUE(in(late, utc(2026, 10, 25, 0, 30)));
  EXPECT_EQ(schedule_at(late, utc(2026, 10, 25, 0, 30)).window_end, utc(2026, 10, 25, 4, 0));
}

TEST(Schedule, NewYorkWinterSummerAndItsSpringForward) {
  const Schedule s = make(R"([{"days": "mon-fri", "from": "09:00", "to": "17:00",
                               "desired": "on"}])",
                          "America/New_York");
  // Monday 2026-01-05, EST (UTC-5); Monday 2026-06-01, EDT (UTC-4).
  EXPECT_FALSE(in(s, utc(2026, 1, 5, 13, 59)));
  EXPECT_TRUE(in(s, utc(2026, 1, 5, 14, 0)));
  EXPECT_FALSE(in(s, utc(2026, 1, 5, 22, 0)));
  EXPECT_TRUE(in(s, utc(2026, 6, 1, 13, 0)));
  EXPECT_FALSE(in(s, utc(2026, 6, 1, 21, 0)));
  // Sunday 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
  const Schedule night = make(R"([{"days": "sun", "from": "02:30", "to": "03:30",
                                   "idle_timeout_minutes": 1}])",
                              "America/New_York");
  const ScheduleNow now = schedule_at(night, utc(2026, 3, 8, 7, 10));
  ASSERT_TRUE(now.window);
  EXPECT_EQ(now.window_start, utc(2026, 3, 8, 7, 0));
  EXPECT_EQ(now.window_end, utc(2026, 3, 8, 7, 30));
}

TEST(Schedule, BadSchedulesAreRefusedWithTheKeyAndTheReason) {
  auto e = refused(R"([{"days": "mon-funday", "desired": "on"}])");
  EXPECT_EQ(e.key, "schedule[0].days");
  EXPECT_NE(e.reason.find("day names"), std::string::npos) << e.reason;
  e = refused(R"([{"from": "08:00", "to": "08:00", "desired": "on"}])");
  EXPECT_EQ(e.key, "schedule[0].to");
  EXPECT_NE(e.reason.find("must differ"), std::string::npos) << e.reason;
  e = refused(R"([{"from": "8:00", "desired": "on"}])");
  EXPECT_EQ(e.key, "schedule[0].from");
  EXPECT_EQ(refused(R"([{"from": "24:00", "desired": "on"}])").key, "schedule[0].from");
  EXPECT_EQ(refused(R"([{"to": "23:60", "desired": "on"}])").key, "schedule[0].to");
  EXPECT_EQ(refused(R"([{"days": "mon"}])").key, "schedule[0]");
  EXPECT_EQ(refused(R"([{"desired": "on", "idle_timeout_minutes": 5}])").key, "schedule[0]");
  EXPECT_EQ(refused(R"([{"desired": "off"}])").key, "schedule[0].desired");
  EXPECT_EQ(refused(R"([{"idle_timeout_minutes": 0}])").key, "schedule[0].idle_timeout_minutes");
  EXPECT_EQ(refused(R"([{"desired": "on", "every": "day"}])").key, "schedule[0].every");
  EXPECT_EQ(refused(R"([])").key, "schedule");
  EXPECT_EQ(refused(R"({"desired": "on"})").key, "schedule");
  e = refused(R"([{"desired": "on"}])", "Europe/Atlantis");
  EXPECT_EQ(e.key, "timezone");
  EXPECT_NE(e.reason.find("Europe/Atlantis"), std::string::npos);
  // Overlapping windows that ask something else; Sunday night's window wraps into Monday.
  e = refused(R"([{"days": "mon-fri", "from": "08:00", "to": "18:00", "desired": "on"},
                  {"days": "fri", "from": "17:00", "to": "20:00", "idle_timeout_minutes": 5}])");
  EXPECT_EQ(e.key, "schedule[1]");
  EXPECT_NE(e.reason.find("overlaps schedule[0] (mon-fri 08:00-18:00) from fri 17:00"),
            std::string::npos)
      << e.reason;
  e = refused(R"([{"days": "sun", "from": "22:00", "to": "06:00", "desired": "on"},
                  {"days": "mon", "from": "05:00", "to": "07:00", "idle_timeout_minutes": 5}])");
  EXPECT_NE(e.reason.find("from mon 05:00"), std::string::npos) << e.reason;
  // Overlapping windows that ask the same are one longer window.
  make(R"([{"days": "mon-fri", "from": "08:00", "to": "18:00", "desired": "on"},
           {"days": "fri", "from": "17:00", "to": "20:00", "desired": "on"}])",
       "UTC");
}

TEST(Schedule, TheConfigNamesFileKeyAndReasonAndTakesTheGlobalZone) {
  const std::string good = R"({"timezone": "America/New_York", "services": {"web": {
      "command": ["true"], "schedule": [{"days": "mon-fri", "desired": "on"}]}}})";
  const Config c = parse_config(good, "siesta.json");
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services[0].spec.schedule.timezone, "America/New_York");
  const Config own = parse_config(R"({"timezone": "America/New_York", "services": {"web": {
      "command": ["true"], "timezone": "Europe/Berlin",
      "schedule": [{"days": "mon-fri", "desired": "on"}]}}})",
                                  "siesta.json");
  EXPECT_EQ(own.services[0].spec.schedule.timezone, "Europe/Berlin");
  auto message = [](const std::string& text) {
    try {
      parse_config(text, "siesta.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message(R"({"services": {"web": {"command": ["true"],
      "schedule": [{"days": "mon-sat", "desired": "on"}, {"days": "xyz", "desired": "on"}]}}})"),
            "config error in siesta.json: services.web.schedule[1].days: must be day names (mon, "
            "tue, wed, thu, fri, sat, sun) or ranges of them separated by commas (\"mon-fri\", "
            "\"sat,sun\"), got \"xyz\"");
  EXPECT_NE(message(R"({"services": {"web": {"command": ["true"], "timezone": "Mars/Olympus",
      "schedule": [{"desired": "on"}]}}})")
                .find("siesta.json: services.web.timezone: names no time zone"),
            std::string::npos);
  EXPECT_NE(message(R"({"timezone": "Nowhere", "services": {}})")
                .find("siesta.json: timezone: names no time zone"),
            std::string::npos);
  EXPECT_NE(message(R"({"services": {"web": {"command": ["true"], "timezone": "UTC"}}})")
                .find("services.web.timezone: is for a \"schedule\""),
            std::string::npos);
  EXPECT_NE(message(R"({"services": {"web": {"command": ["true"],
      "sleep_tiers": [{"after_minutes": 5, "action": "stop"}],
      "schedule": [{"idle_timeout_minutes": 3}]}}})")
                .find("services.web.schedule[0].idle_timeout_minutes: sets the one idle timeout"),
            std::string::npos);
}

// decide() on a service with the office schedule in Berlin.
ServiceView office(ServiceState state, std::optional<WallTime> last_used, WallTime since) {
  auto spec = std::make_shared<ServiceSpec>();
  spec->name = "web";
  spec->schedule = make(kOffice, "Europe/Berlin");
  ServiceRuntime rt;
  rt.state = state;
  rt.last_used = last_used;
  rt.state_since = since;
  return {spec, rt};
}

Snapshot one(ServiceView v) {
  Snapshot snap;
  snap.services.push_back(std::move(v));
  return snap;
}

TEST(ScheduleDecide, AStoppedServiceIsStartedAtTheWindowsStart) {
  const WallTime start = utc(2026, 6, 1, 6, 30);  // Monday 08:30 CEST
  const Snapshot snap = one(office(ServiceState::kStopped, std::nullopt, start - hours(60)));
  const Decision before = decide(snap, start - seconds(1));
  EXPECT_TRUE(before.actions.empty());
  EXPECT_EQ(before.next_deadline, start);  // the monitor wakes for it
  const Decision at = decide(snap, start);
  ASSERT_EQ(at.actions.size(), 1u);
  EXPECT_EQ(at.actions[0], (Action{ActionKind::kStartService, "web", Reason::kSchedule}));
  ASSERT_TRUE(at.services[0].schedule);
  EXPECT_EQ(at.services[0].schedule->window, "mon-fri 08:30-18:00");
  EXPECT_TRUE(at.services[0].schedule->keeps_on);
  EXPECT_EQ(at.services[0].schedule->window_ends, utc(2026, 6, 1, 16, 0));
  EXPECT_EQ(at.services[0].schedule->next_change, utc(2026, 6, 1, 16, 0));
}

TEST(ScheduleDecide, InsideAnOnWindowItIsKeptOnAndAtItsEndTheNormalRulesApply) {
  const WallTime end = utc(2026, 6, 1, 16, 0);  // Monday 18:00 CEST
  const WallTime used = utc(2026, 6, 1, 7, 0);  // last used hours before
  const Snapshot snap = one(office(ServiceState::kRunning, used, used));
  const Decision inside = decide(snap, end - seconds(1));
  EXPECT_TRUE(inside.actions.empty());
  EXPECT_EQ(inside.services[0].blocker, SleepBlocker::kScheduledOn);
  EXPECT_EQ(inside.next_deadline, end);
  EXPECT_FALSE(
      sleep_due(snap.settings, *snap.services[0].spec, snap.services[0].runtime, end - seconds(1)));
  // Out: idle for nine hours against the 60-minute timeout, it sleeps at once.
  const Decision after = decide(snap, end);
  ASSERT_EQ(after.actions.size(), 1u);
  EXPECT_EQ(after.actions[0], (Action{ActionKind::kSleepService, "web", Reason::kIdle}));
  EXPECT_TRUE(sleep_due(snap.settings, *snap.services[0].spec, snap.services[0].runtime, end));
  EXPECT_EQ(after.services[0].schedule->window, "");
  // A use 10 minutes before the end: it sleeps 60 minutes after that use.
  const Snapshot recent = one(office(ServiceState::kRunning, end - minutes(10), used));
  const Decision later = decide(recent, end);
  EXPECT_TRUE(later.actions.empty());
  EXPECT_EQ(later.services[0].sleeps_at, end + minutes(50));
}

TEST(ScheduleDecide, AWindowsTimeoutReplacesTheConfiguredOne) {
  const WallTime saturday = utc(2026, 6, 6, 12, 0);
  const Snapshot snap = one(office(ServiceState::kRunning, saturday - minutes(12), saturday));
  const Decision d = decide(snap, saturday);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, ActionKind::kSleepService);
  EXPECT_STREQ(d.services[0].policy, "schedule");
  EXPECT_EQ(d.services[0].timeout, minutes(10));
  EXPECT_NE(d.services[0].policy_reason.find("sat,sun 00:00-24:00 (Europe/Berlin)"),
            std::string::npos);
  // The same idle time on a Monday night: outside every window, the 60-minute timeout.
  const WallTime monday = utc(2026, 6, 1, 20, 0);
  const Decision normal =
      decide(one(office(ServiceState::kRunning, monday - minutes(12), monday)), monday);
  EXPECT_TRUE(normal.actions.empty());
  EXPECT_STREQ(normal.services[0].policy, "fixed");
  EXPECT_EQ(normal.services[0].timeout, minutes(60));
}

// A window's timeout that would end after the window: the service sleeps by the normal rules,
// from its last use, and sleeps_at says so (a new user's trial: it showed the window's deadline,
// which the window's end made void).
TEST(ScheduleDecide, AWindowsTimeoutPastItsEndGivesWayToTheNormalRules) {
  const WallTime used = utc(2026, 6, 7, 21, 54);  // Sunday 23:54 CEST; the window ends at 24:00
  const WallTime now = used + minutes(1);
  const Decision d = decide(one(office(ServiceState::kRunning, used, used - hours(1))), now);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_STREQ(d.services[0].policy, "schedule");
  ASSERT_TRUE(d.services[0].sleeps_at);
  EXPECT_EQ(*d.services[0].sleeps_at, used + minutes(60));  // not used + 10 minutes
  // Used early enough in the window, its own timeout holds.
  const Decision early =
      decide(one(office(ServiceState::kRunning, used - minutes(30), used - hours(1))), now);
  ASSERT_EQ(early.actions.size(), 1u);
  EXPECT_EQ(early.actions[0].kind, ActionKind::kSleepService);
}

}  // namespace
}  // namespace siesta
