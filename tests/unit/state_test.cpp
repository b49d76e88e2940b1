// The state file: round trip, the config-vs-state precedence rule, corrupt and missing files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "siesta/config/config.h"
#include "siesta/state/state_store.h"

namespace siesta {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Built {
  Config config;
  Baseline baseline;
  std::unique_ptr<Registry> registry;
};

Built build(const std::string& text) {
  Built b;
  b.config = parse_config(text, "t.json");
  b.baseline.settings = b.config.settings;
  std::vector<ServiceSpec> specs;
  for (const auto& s : b.config.services) {
    specs.push_back(s.spec);
    b.baseline.services[s.spec.name] = {s.idle_sleep_enabled, s.desired};
  }
  b.registry = std::make_unique<Registry>(b.config.settings, specs, b.config.models);
  for (const auto& s : b.config.services) {
    b.registry->update_service(s.spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      rt.idle_sleep_enabled = s.idle_sleep_enabled;
      rt.desired = s.desired;
    });
  }
  return b;
}

const char* kConfig = R"({"idle_timeout_minutes": 60,
  "services": {"ollama": {"command": ["o"]}, "redis": {"command": ["r"], "desired": "on"}},
  "models": {"llama3.2:3b": {"provider": "ollama"}}})";

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("siesta-state-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

using StateFile = TempDir;

TEST_F(StateFile, RuntimeChangesSurviveARoundTrip) {
  Built before = build(kConfig);
  before.registry->update_settings([](Settings& s) { s.idle_timeout_minutes = 30; });
  const WallTime used = from_unix_seconds(1'700'000'123.5);
  before.registry->update_service("ollama", [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.idle_sleep_enabled = false;
    rt.last_used = used;
  });
  before.registry->update_model("llama3.2:3b", [&](const ModelSpec&, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = used;
    rt.keep_alive_seconds = 600;
  });
  ModelRuntime discovered;
  discovered.loaded = true;
  discovered.last_used = used;
  before.registry->add_model({"qwen2:7b", "ollama", std::nullopt}, discovered);
  StateStore store((dir_ / "state.json").string());
  ASSERT_TRUE(store.save(
      encode_state(before.registry->snapshot(), before.baseline, {{"ollama", {{"pid", 42}}}})));

  Built after = build(kConfig);
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  ASSERT_TRUE(loaded->has_value());
  auto restored = restore_state(**loaded, after.baseline, *after.registry);
  ASSERT_TRUE(restored) << restored.status().message();
  EXPECT_EQ(after.registry->settings().idle_timeout_minutes, 30);
  auto ollama = after.registry->service("ollama")->runtime;
  EXPECT_FALSE(ollama.idle_sleep_enabled);
  EXPECT_NEAR(to_unix_seconds(*ollama.last_used), 1'700'000'123.5, 1e-3);
  auto model = after.registry->model("llama3.2:3b")->runtime;
  EXPECT_TRUE(model.loaded);
  EXPECT_EQ(*model.keep_alive_seconds, 600);
  ASSERT_TRUE(after.registry->model("qwen2:7b"));  // a discovered model is kept too
  EXPECT_EQ(restored->handles.at("ollama")["pid"], 42);
}

TEST_F(StateFile, AnEditedConfigWinsOverAnOlderRuntimeChange) {
  Built before = build(kConfig);
  before.registry->update_settings([](Settings& s) {
    s.idle_timeout_minutes = 30;   // changed at runtime
    s.model_keep_alive_hours = 4;  // changed at runtime
  });
  before.registry->update_service(
      "redis", [](const ServiceSpec&, ServiceRuntime& rt) { rt.desired = Desired::kOff; });
  json doc = encode_state(before.registry->snapshot(), before.baseline, {});

  // Meanwhile the user edited the config's idle timeout (60 -> 45) and redis's desired.
  Built after = build(R"({"idle_timeout_minutes": 45,
    "services": {"ollama": {"command": ["o"]}, "redis": {"command": ["r"], "desired": "off"}},
    "models": {"llama3.2:3b": {"provider": "ollama"}}})");
  auto restored = restore_state(doc, after.baseline, *after.registry);
  ASSERT_TRUE(restored);
  EXPECT_EQ(after.registry->settings().idle_timeout_minutes, 45);   // the config changed last
  EXPECT_EQ(after.registry->settings().model_keep_alive_hours, 4);  // the runtime changed last
  EXPECT_EQ(after.registry->service("redis")->runtime.desired, Desired::kOff);
  bool noted = false;
  for (const auto& n : restored->notes)
    noted |= n.find("idle_timeout_minutes") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST_F(StateFile, ServicesNoLongerConfiguredAreDropped) {
  Built before = build(kConfig);
  json doc = encode_state(before.registry->snapshot(), before.baseline, {});
  Built after = build(R"({"services": {"redis": {"command": ["r"]}}})");
  auto restored = restore_state(doc, after.baseline, *after.registry);
  ASSERT_TRUE(restored);
  EXPECT_FALSE(after.registry->service("ollama"));
  EXPECT_FALSE(after.registry->model("llama3.2:3b"));  // its provider is gone too
}

TEST_F(StateFile, AMissingFileIsNoStateAndNoError) {
  StateStore store((dir_ / "none.json").string());
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded->has_value());
}

TEST_F(StateFile, ACorruptFileIsKeptAsideAndReported) {
  const fs::path path = dir_ / "state.json";
  std::ofstream(path) << "{\"format\": \"siesta-state/1\", \"settings\": {";
  StateStore store(path.string());
  auto loaded = store.load();
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.status().message().find("is corrupt (not valid JSON); kept a copy at "),
            std::string::npos);
  int copies = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    copies += e.path().filename().string().rfind("state.json.corrupt-", 0) == 0;
  }
  EXPECT_EQ(copies, 1);
}

TEST_F(StateFile, AWellFormedButWrongDocumentIsRejectedWhole) {
  Built b = build(kConfig);
  json doc = encode_state(b.registry->snapshot(), b.baseline, {});
  doc["settings"]["idle_timeout_minutes"]["value"] = -3;
  doc["services"]["ollama"]["idle_sleep_enabled"]["value"] = false;
  auto restored = restore_state(doc, b.baseline, *b.registry);
  ASSERT_FALSE(restored);
  EXPECT_EQ(restored.status().message(), "state file: settings.idle_timeout_minutes is malformed");
  EXPECT_TRUE(b.registry->service("ollama")->runtime.idle_sleep_enabled);  // nothing applied
}

TEST_F(StateFile, SaveReplacesAtomicallyAndLeavesNoTempFile) {
  const fs::path path = dir_ / "state.json";
  StateStore store(path.string());
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 1}}));
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 2}}));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_EQ((**loaded)["n"], 2);
}

TEST_F(StateFile, AnUnwritableDirectoryIsAnErrorValue) {
  StateStore store("/nonexistent-dir/state.json");
  Status st = store.save({{"format", "siesta-state/1"}});
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_NE(st.message().find("cannot write /nonexistent-dir/state.json.tmp"), std::string::npos);
}

}  // namespace
}  // namespace siesta
