// Start-up (siesta/bootstrap): what main() does before it wires the parts, and World with it.
#include "siesta/bootstrap/bootstrap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "world.h"

namespace siesta::testing {
namespace {

using ::testing::HasSubstr;

TEST(Bootstrap, TheRegistryStartsAsTheConfigSays) {
  Config config = parse_config(
      R"({"services": {"a": {"command": ["a"], "idle_sleep_enabled": false, "desired": "on"},
                        "b": {"command": ["b"]}}})",
      "test.json");
  const WallTime now = from_unix_seconds(1'700'000'000);
  auto registry = make_registry(config, now);
  EXPECT_FALSE(registry->service("a")->runtime.idle_sleep_enabled);
  EXPECT_EQ(registry->service("a")->runtime.desired, Desired::kOn);
  EXPECT_EQ(registry->service("b")->runtime.state_since, now);
  const Baseline baseline = baseline_of(config);
  EXPECT_FALSE(baseline.services.at("a").idle_sleep_enabled);
  EXPECT_EQ(baseline.services.at("a").desired, Desired::kOn);
}

// A restart as main() does one: handles and runtime changes saved, then restored into a
// registry made from the same config, each handle into its service's backend.
TEST(Bootstrap, HandlesAndChangesSurviveARestart) {
  const std::string config = R"({"services": {"a": {"command": ["a"]}}})";
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("siesta-bootstrap-" + std::to_string(::getpid()) + ".json"))
                               .string();
  StateStore store(path);
  {
    World before(config);
    before.backend.handles["a"] = {{"pid", 42}};
    ASSERT_TRUE(before.controller->set_desired("a", Desired::kOn));
    const Controller::BackendMap backends{{"process", &before.backend}};
    ASSERT_TRUE(store.save(encode_state(before.registry->snapshot(), baseline_of(before.config),
                                        handles_of(*before.registry, backends))));
  }
  World after(config);
  const Controller::BackendMap backends{{"process", &after.backend}};
  restore_state_file(store, baseline_of(after.config), *after.registry, backends,
                     after.clock.wall_now());
  EXPECT_EQ(after.backend.handles["a"], (nlohmann::json{{"pid", 42}}));
  EXPECT_EQ(after.service("a").desired, Desired::kOn);
  std::filesystem::remove(path);
}

TEST(Bootstrap, AnAdminApiOthersCanReachNeedsATokenOrInsecure) {
  Config config;
  config.listen = {"0.0.0.0", 0};
  try {
    admin_token_policy(config, nullptr, /*insecure=*/false);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the admin API would listen on 0.0.0.0:0 without a token"));
  }
  EXPECT_EQ(admin_token_policy(config, nullptr, /*insecure=*/true), "");
  EXPECT_EQ(admin_token_policy(config, "0123456789abcdef", false), "0123456789abcdef");
  config.listen = {"127.0.0.1", 0};
  EXPECT_EQ(admin_token_policy(config, nullptr, false), "");
}

TEST(Bootstrap, ABadDockerHostSaysWhereItCameFrom) {
  Config config;
  auto from_env = docker_endpoint(config, "ftp://nowhere");
  ASSERT_FALSE(from_env);
  EXPECT_THAT(from_env.status().message(), HasSubstr(" (from DOCKER_HOST)"));
  config.docker.host = "ftp://nowhere";
  auto from_config = docker_endpoint(config, "unix:///var/run/docker.sock");
  ASSERT_FALSE(from_config);
  EXPECT_THAT(from_config.status().message(), HasSubstr(" (docker.host)"));
  config.docker.host.clear();
  EXPECT_TRUE(docker_endpoint(config, nullptr));  // the local socket
}

}  // namespace
}  // namespace siesta::testing
