// Faults, each on the real binary: a service that crashes while starting, the state file's
// directory vanishing at run time, a proxy port already taken. siesta reports, counts, keeps
// going with everything else, and never crashes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

TEST(Faults, AServiceThatCrashesWhileStartingIsAnErrorAndTheOthersCarryOn) {
  TempDir dir;
  const int steady_port = free_port();
  const json config = {{"idle_timeout_minutes", 0.02},
                       {"services",
                        {{"crashy",
                          {{"command", {"sh", "-c", "sleep 0.2; exit 3"}},
                           {"upstream", "127.0.0.1:" + std::to_string(free_port())},
                           {"start_timeout_seconds", 20}}},
                         {"steady",
                          {{"command", {SIESTA_TESTSERVER, "--port", std::to_string(steady_port)}},
                           {"upstream", "127.0.0.1:" + std::to_string(steady_port)},
                           {"health", "/health"}}}}}};
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();

  ASSERT_EQ(cli.Post("/admin/services/steady/wake", "", "application/json")->status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  auto res = cli.Post("/admin/services/crashy/wake", "", "application/json");
  ASSERT_TRUE(res);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(res->status, 500) << res->body;
  EXPECT_EQ(json::parse(res->body)["error"]["source"], "siesta");
  // Seen when the process exits, not at the 20 s start timeout.
  EXPECT_LT(took, std::chrono::seconds(5));
  auto crashy = status_of(siesta, "crashy");
  EXPECT_EQ(crashy["actual"], "error");
  EXPECT_NE(crashy["last_error"].get<std::string>().find("3"), std::string::npos) << crashy;
  EXPECT_EQ(metric(siesta, R"(siesta_service_failures_total{operation="start",service="crashy"})"),
            1);

  // The monitor goes on: the healthy service is still put to sleep at its deadline.
  EXPECT_TRUE(eventually([&] { return status_of(siesta, "steady")["actual"] == "stopped"; },
                         std::chrono::seconds(10)))
      << siesta.log();
  EXPECT_TRUE(siesta.running());
}

TEST(Faults, TheStateFilesDirectoryVanishingIsReportedAndRecoveredFrom) {
  TempDir dir;
  const fs::path state_dir = dir / "state";
  fs::create_directories(state_dir);
  const fs::path state = state_dir / "state.json";
  SiestaProcess siesta(dir.path(), json{{"state_file", state.string()}}.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();

  ASSERT_EQ(cli.Post("/admin/settings", R"({"idleTimeout": 7})", "application/json")->status, 200);
  EXPECT_EQ(json::parse(slurp(state))["settings"]["idle_timeout_minutes"]["value"], 7);

  // Deleted: the next change writes it again.
  fs::remove(state);
  ASSERT_EQ(cli.Post("/admin/settings", R"({"idleTimeout": 8})", "application/json")->status, 200);
  EXPECT_EQ(json::parse(slurp(state))["settings"]["idle_timeout_minutes"]["value"], 8);

  // Its directory gone: the change is not acknowledged (500, with the reason), siesta runs on.
  fs::remove_all(state_dir);
  auto res = cli.Post("/admin/settings", R"({"idleTimeout": 9})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(res->body.find("could not be saved"), std::string::npos) << res->body;
  EXPECT_EQ(cli.Get("/healthz")->status, 200);

  // Back: the next change saves everything, the unsaved one included.
  fs::create_directories(state_dir);
  ASSERT_EQ(cli.Post("/admin/services/nothing/wake", "", "application/json")->status, 404);
  ASSERT_EQ(cli.Post("/admin/settings", R"({"modelKeepAlive": 1})", "application/json")->status,
            200);
  auto doc = json::parse(slurp(state));
  EXPECT_EQ(doc["settings"]["model_keep_alive_hours"]["value"], 1);
  EXPECT_EQ(doc["settings"]["idle_timeout_minutes"]["value"], 9);
  EXPECT_TRUE(siesta.running());
}

TEST(Faults, AProxyPortInUseIsAClearErrorAndANonZeroExit) {
  TempDir dir;
  httplib::Server holder;
  const int taken = holder.bind_to_any_port("127.0.0.1");
  ASSERT_GT(taken, 0);
  const json config = {{"services",
                        {{"web",
                          {{"command", {"sleep", "60"}},
                           {"upstream", "127.0.0.1:" + std::to_string(free_port())},
                           {"listen", "127.0.0.1:" + std::to_string(taken)}}}}}};
  std::ofstream(dir / "c.json") << config.dump();
  auto [code, out] =
      run_command({SIESTA_BINARY, "--config", (dir / "c.json").string(), "--listen", "127.0.0.1:0"},
                  dir / "out.txt");
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(taken) + " (service web)"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace siesta::testing
