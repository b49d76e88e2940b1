// Schedules end to end: the real binary, a real process, the real clock and the OS time zone
// database. A window in force keeps a service on (started without a request); once it ends the
// service sleeps by the normal rules. A bad schedule exits 2 naming file, key and reason.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// "HH:MM:SS" in UTC of the instant `t`.
std::string utc_time_of_day(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

TEST(Schedule, AWindowInForceKeepsTheServiceOnAndItsEndSleepsItByTheNormalRules) {
  TempDir dir;
  const int port = free_port();
  const auto now = std::chrono::system_clock::now();
  // Whole seconds: the window ends 8 to 9 s from now.
  const auto end = std::chrono::ceil<seconds>(now) + seconds(8);
  const json cmd = json::array({SIESTA_TESTSERVER, "--port", std::to_string(port)});
  const json config = {{"timezone", "UTC"},
                       {"services",
                        {{"web",
                          {{"command", cmd},
                           {"upstream", "127.0.0.1:" + std::to_string(port)},
                           {"health", "/health"},
                           {"idle_timeout_minutes", 0.02},  // 1.2 s
                           {"schedule", json::array({{{"from", utc_time_of_day(now - seconds(60))},
                                                      {"to", utc_time_of_day(end)},
                                                      {"desired", "on"}}})}}}}}};
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  // Started by the schedule, no request made.
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "running"; })) << siesta.log();
  EXPECT_TRUE(siesta.wait_log("Waking service web (schedule)")) << siesta.log();
  json st = status_of(siesta, "web");
  EXPECT_EQ(st["sleep_blocker"], "scheduled_on") << st.dump();
  ASSERT_TRUE(st["schedule"].is_object()) << st.dump();
  EXPECT_EQ(st["schedule"]["timezone"], "UTC");
  EXPECT_EQ(st["schedule"]["asks"], "on");
  EXPECT_EQ(st["schedule"]["window_ends_at"].get<double>(),
            std::chrono::duration_cast<seconds>(end.time_since_epoch()).count());
  EXPECT_EQ(st["schedule"]["next_change_at"], st["schedule"]["window_ends_at"]);
  // Three idle timeouts later, still on.
  std::this_thread::sleep_for(std::chrono::milliseconds(3600));
  ASSERT_LT(std::chrono::system_clock::now(), end) << "the machine was too slow for the window";
  EXPECT_EQ(actual(siesta, "web"), "running") << siesta.log();
  // At the window's end: idle for longer than its timeout, it sleeps at once.
  ASSERT_TRUE(eventually([&] { return actual(siesta, "web") == "stopped"; }, seconds(15)))
      << siesta.log();
  EXPECT_GE(std::chrono::system_clock::now(), end);
  st = status_of(siesta, "web");
  EXPECT_TRUE(st["schedule"]["window"].is_null()) << st.dump();
  EXPECT_TRUE(st["sleep_blocker"].is_null() || st["sleep_blocker"] == "not_running") << st.dump();
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web")) << siesta.log();
  // Outside the window a request wakes it as usual.
  auto res = siesta.client().Post("/admin/services/web/wake");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

TEST(Schedule, ABadScheduleExitsTwoNamingFileKeyAndReason) {
  TempDir dir;
  const auto path = (dir / "bad.json").string();
  std::ofstream(path) << R"({"services": {"web": {"command": ["true"], "timezone": "UTC",
      "schedule": [{"days": "mon-fri", "from": "08:00", "to": "18:00", "desired": "on"},
                   {"days": "fri", "from": "12:00", "to": "20:00", "idle_timeout_minutes": 5}]}}})";
  auto [code, out] =
      run_command({SIESTA_BINARY, "--check-config", "--config", path}, dir / "out.txt");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "siesta: config error in " + path +
                     ": services.web.schedule[1]: overlaps schedule[0] (mon-fri 08:00-18:00) from "
                     "fri 12:00 and asks something else: windows that overlap must ask the same\n");
  std::ofstream(path, std::ios::trunc)
      << R"({"services": {"web": {"command": ["true"], "timezone": "Europe/Nowhere",
      "schedule": [{"desired": "on"}]}}})";
  auto [code2, out2] =
      run_command({SIESTA_BINARY, "--check-config", "--config", path}, dir / "out.txt");
  EXPECT_EQ(code2, 2);
  EXPECT_NE(out2.find(path + ": services.web.timezone: names no time zone"), std::string::npos)
      << out2;
}

}  // namespace
}  // namespace siesta::testing
