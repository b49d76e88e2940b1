// Crash safety: siesta killed with SIGKILL at random moments while settings change. Every
// change acknowledged with 200 before the kill must be in the state file, the file must always
// be valid JSON, and the next siesta must start from it.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

TEST(CrashSafety, SigkillNeverLosesAnAcknowledgedChangeNorCorruptsTheStateFile) {
  TempDir dir;
  const fs::path state = dir / "state.json";
  const std::string config = R"({"state_file": ")" + state.string() + R"(",
    "services": {"a": {"command": ["sleep", "60"]}, "b": {"command": ["sleep", "60"]}}})";
  std::mt19937 random(20261129);
  constexpr int kRounds = 200;
  int value = 0;                // idle_timeout_minutes, increasing: 1, 2, 3, ...
  int acknowledged = 0;         // the last value answered 200
  bool a_enabled = true;        // services.a idle_sleep_enabled as last acknowledged
  int kills_mid_write = 0;      // rounds where a request was in flight at the kill
  int rounds_with_changes = 0;  // rounds whose writer had a change acknowledged before the kill
  for (int round = 0; round < kRounds; ++round) {
    SiestaProcess siesta(dir.path(), config);
    ASSERT_TRUE(siesta.start()) << "round " << round << ": " << siesta.log();
    auto cli = siesta.client();
    if (round == 0) {  // the config's values, saved at start-up
      auto res = cli.Get("/admin/settings");
      ASSERT_TRUE(res);
      acknowledged = value = nlohmann::json::parse(res->body)["idle_timeout_minutes"];
    } else {
      // The previous siesta's acknowledged changes are what this one starts with.
      auto res = cli.Get("/admin/settings");
      ASSERT_TRUE(res);
      const int restored = nlohmann::json::parse(res->body)["idle_timeout_minutes"];
      ASSERT_TRUE(restored == acknowledged || restored == acknowledged + 1)
          << "round " << round << ": restored " << restored << ", acknowledged " << acknowledged;
      acknowledged = value = restored;
      res = cli.Get("/admin/services/a");
      ASSERT_TRUE(res);
      a_enabled = nlohmann::json::parse(res->body)["idle_sleep_enabled"];
    }
    std::atomic<bool> stop{false};
    std::atomic<int> acked{acknowledged};
    std::atomic<bool> in_flight{false};
    std::atomic<bool> a_acked{a_enabled};
    std::thread writer([&, next = value]() mutable {
      auto c = siesta.client();
      c.set_connection_timeout(std::chrono::seconds(1));
      while (!stop) {
        ++next;
        in_flight = true;
        auto res = c.Post("/admin/settings", "{\"idleTimeout\": " + std::to_string(next) + "}",
                          "application/json");
        if (!res || res->status != 200) break;  // killed
        acked = next;
        const bool enable = next % 2 == 0;
        res = c.Post("/admin/services/a/idle-sleep",
                     std::string("{\"enabled\": ") + (enable ? "true" : "false") + "}",
                     "application/json");
        in_flight = false;
        if (!res || res->status != 200) break;
        a_acked = enable;
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 30000));
    const bool mid = in_flight;
    siesta.stop(SIGKILL);
    stop = true;
    writer.join();
    kills_mid_write += mid ? 1 : 0;
    rounds_with_changes += acked > value ? 1 : 0;
    acknowledged = acked;
    a_enabled = a_acked;
    value = acknowledged;

    // The file: valid JSON, holding at least every acknowledged change.
    ASSERT_TRUE(fs::exists(state)) << "round " << round;
    auto doc = nlohmann::json::parse(slurp(state), nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << "round " << round << ": corrupt state file";
    const int saved = doc["settings"]["idle_timeout_minutes"]["value"];
    ASSERT_TRUE(saved == acknowledged || saved == acknowledged + 1)
        << "round " << round << ": saved " << saved << ", acknowledged " << acknowledged;
    // The toggle that followed the last acknowledged timeout may or may not have landed.
    const bool saved_a = doc["services"]["a"]["idle_sleep_enabled"]["value"];
    if (saved == acknowledged && a_acked == ((acknowledged % 2) == 0)) {
      EXPECT_EQ(saved_a, a_enabled) << "round " << round;
    }
  }
  // The writer made progress: a kill lands at a random point in 0-30 ms, so in a slow build
  // (ThreadSanitizer, a loaded machine) many rounds end before the first answer; a quarter
  // with changes still shows the kills landed among acknowledged writes (the total, 117 changes
  // in 200 rounds under TSan, failed the old "more changes than rounds").
  EXPECT_GT(rounds_with_changes, kRounds / 4) << "the writer made progress";
  EXPECT_GT(kills_mid_write, 0) << "some kills landed while a change was in flight";
}

}  // namespace
}  // namespace siesta::testing
