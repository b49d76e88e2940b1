// The command line: exit codes and messages, without a daemon left half-started.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

TEST(Cli, InvalidConfigExitsWithCodeTwoAndOneMessage) {
  TempDir dir;
  std::ofstream(dir / "bad.json") << R"({"services": {"a": {"command": ["a"], "desired": 1}}})";
  auto [code, out] =
      run_command({SIESTA_BINARY, "--config", (dir / "bad.json").string()}, dir / "out.txt");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "siesta: config error in " + (dir / "bad.json").string() +
                     ": services.a.desired: must be a string, got 1\n");
}

// Whoever can write in the state file's directory can replace the state file (rename over
// it) or plant files where siesta writes: such a directory is refused at start-up unless it
// is sticky (like /tmp) and owned by root or by siesta's user.
TEST(Cli, AStateDirectoryWritableByOthersIsRefused) {
  TempDir dir;
  const fs::path state_dir = dir / "state";
  fs::create_directory(state_dir);
  fs::permissions(state_dir, fs::perms(0777));
  SiestaProcess siesta(dir.path(),
                       R"({"state_file": ")" + (state_dir / "state.json").string() + R"("})");
  EXPECT_FALSE(siesta.start());
  EXPECT_EQ(siesta.exit_code(), 2);
  EXPECT_NE(siesta.log().find("siesta: config error in " + (dir / "siesta.json").string() +
                              ": state_file: its directory " + state_dir.string() +
                              " is writable by other users (mode 0777)"),
            std::string::npos)
      << siesta.log();
}

TEST(Cli, AStickyStateDirectoryOfSiestasUserIsAccepted) {
  TempDir dir;
  const fs::path state_dir = dir / "state";
  fs::create_directory(state_dir);
  fs::permissions(state_dir, fs::perms(01777));
  SiestaProcess siesta(dir.path(),
                       R"({"state_file": ")" + (state_dir / "state.json").string() + R"("})");
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_TRUE(eventually([&] { return fs::exists(state_dir / "state.json"); }));
}

TEST(Cli, CheckConfigValidatesTheSeedExamples) {
  TempDir dir;
  for (const char* name : {"conservative", "balanced", "aggressive", "service-specific"}) {
    std::string path = std::string(SIESTA_SOURCE_DIR) + "/examples/seed/" + name + ".json";
    auto [code, out] =
        run_command({SIESTA_BINARY, "--check-config", "--config", path}, dir / "out.txt");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find(": OK ("), std::string::npos) << out;
  }
}

TEST(Cli, UnknownOptionsAndMissingFilesExitWithCodeTwo) {
  TempDir dir;
  EXPECT_EQ(run_command({SIESTA_BINARY, "--frobnicate"}, dir / "o").first, 2);
  auto [code, out] = run_command({SIESTA_BINARY, "--config", "/nonexistent.json"}, dir / "o");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("File does not exist: /nonexistent.json"), std::string::npos) << out;
}

TEST(Cli, AListenAddressInUseIsAClearErrorAndANonZeroExit) {
  TempDir dir;
  httplib::Server holder;
  const int port = holder.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::ofstream(dir / "c.json") << "{\"listen\": \"127.0.0.1:" << port << "\"}";
  auto [code, out] =
      run_command({SIESTA_BINARY, "--config", (dir / "c.json").string()}, dir / "out.txt");
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << out;
}

TEST(Cli, NoConfigRunsTheBalancedDefaultsWithAnEmptyRegistry) {
  TempDir dir;
  SiestaProcess siesta(dir.path(), /*config=*/"", {"--listen", "127.0.0.1:0"});
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = siesta.client().Get("/admin/idle-status");
  ASSERT_TRUE(res);
  auto j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["idle_timeout_minutes"], 60);
  EXPECT_EQ(j["model_keep_alive_hours"], 2);
  EXPECT_TRUE(j["services"].empty());
  EXPECT_EQ(siesta.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace siesta::testing
