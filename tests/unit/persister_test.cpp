// Persister on a real state file in a temp directory: what it writes, when it writes nothing, a
// failed save, and concurrent saves ending with the latest state.
#include "siesta/runtime/persister.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"
#include "temp_dir.h"

namespace siesta::testing {
namespace {

using Persist = TempDir;

std::unique_ptr<Registry> registry_of(const char* text) {
  return make_registry(parse_config(text, "test.json"), from_unix_seconds(1'700'000'000));
}

constexpr const char* kConfig = R"({"idle_timeout_minutes": 60,
  "services": {"ollama": {"command": ["o"]}}, "models": {"m": {"provider": "ollama"}}})";

nlohmann::json read(StateStore& store) {
  auto loaded = store.load();
  EXPECT_TRUE(loaded) << loaded.status().message();
  EXPECT_TRUE(loaded && loaded->has_value());
  return loaded && loaded->has_value() ? **loaded : nlohmann::json();
}

TEST_F(Persist, WithoutAStateFileItIsDisabledAndSavesNothing) {
  auto registry = registry_of(kConfig);
  Persister persister(*registry, nullptr, Baseline{}, nullptr);
  EXPECT_FALSE(persister.enabled());
  EXPECT_TRUE(persister.save());
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(Persist, ASaveWritesTheRegistryNowAndTheBackendsHandles) {
  auto registry = registry_of(kConfig);
  const std::string path = (dir_ / "state.json").string();
  Baseline baseline;
  baseline.settings = registry->settings();
  Persister persister(*registry, std::make_unique<StateStore>(path), baseline, [] {
    return Handles{{"ollama", {{"pid", 42}}}};
  });
  EXPECT_TRUE(persister.enabled());
  registry->update_settings([](Settings& s) { s.idle_timeout_minutes = 30; });
  ASSERT_TRUE(persister.save());
  StateStore file(path);
  const nlohmann::json doc = read(file);
  EXPECT_EQ(doc, encode_state(registry->snapshot(), baseline, {{"ollama", {{"pid", 42}}}}));
  EXPECT_EQ(doc["settings"]["idle_timeout_minutes"]["value"], 30);
  // The next save reads the registry again.
  registry->update_settings([](Settings& s) { s.idle_timeout_minutes = 45; });
  ASSERT_TRUE(persister.save());
  EXPECT_EQ(read(file)["settings"]["idle_timeout_minutes"]["value"], 45);
}

TEST_F(Persist, AFailedWriteIsReturned) {
  auto registry = registry_of(kConfig);
  Persister persister(*registry,
                      std::make_unique<StateStore>((dir_ / "missing" / "state.json").string()),
                      Baseline{}, nullptr);
  const Status st = persister.save();
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_NE(st.message().find("missing/state.json"), std::string::npos) << st.message();
}

TEST_F(Persist, ConcurrentSavesLeaveTheLatestState) {
  auto registry = registry_of(kConfig);
  const std::string path = (dir_ / "state.json").string();
  Persister persister(*registry, std::make_unique<StateStore>(path), Baseline{}, nullptr);
  std::vector<std::thread> savers;
  for (int i = 1; i <= 8; ++i) {
    savers.emplace_back([&, i] {
      registry->update_settings([&](Settings& s) {
        s.idle_timeout_minutes = std::max(s.idle_timeout_minutes, 100.0 + i);
      });
      EXPECT_TRUE(persister.save());
    });
  }
  for (auto& t : savers) t.join();
  StateStore file(path);
  EXPECT_EQ(read(file)["settings"]["idle_timeout_minutes"]["value"], 108);
}

}  // namespace
}  // namespace siesta::testing
