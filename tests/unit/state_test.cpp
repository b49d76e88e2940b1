// The state file: round trip, the config-vs-state precedence rule, corrupt and missing files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "siesta/config/config.h"
#include "siesta/state/state_store.h"
#include "temp_dir.h"

namespace siesta {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Built {
  Config config;
  Baseline baseline;
  std::unique_ptr<Registry> registry;
  // A model's key: every model of these configs is served by "ollama".
  ModelKey key(const std::string& name) const { return {name, "ollama"}; }
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

using siesta::testing::TempDir;

using StateFile = TempDir;

const WallTime kNow = from_unix_seconds(1'700'100'000);

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_F(StateFile, RuntimeChangesSurviveARoundTrip) {
  Built before = build(kConfig);
  before.registry->update_settings([](Settings& s) { s.idle_timeout_minutes = 30; });
  const WallTime used = from_unix_seconds(1'700'000'123.5);
  before.registry->update_service("ollama", [&](const ServiceSpec&, ServiceRuntime& rt) {
    rt.idle_sleep_enabled = false;
    rt.last_used = used;
  });
  before.registry->update_model(before.key("llama3.2:3b"), [&](const ModelSpec&, ModelRuntime& rt) {
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
  auto restored = restore_state(**loaded, after.baseline, *after.registry, kNow);
  ASSERT_TRUE(restored) << restored.status().message();
  EXPECT_EQ(after.registry->settings().idle_timeout_minutes, 30);
  auto ollama = after.registry->service("ollama")->runtime;
  EXPECT_FALSE(ollama.idle_sleep_enabled);
  EXPECT_NEAR(to_unix_seconds(*ollama.last_used), 1'700'000'123.5, 1e-3);
  auto model = after.registry->model(after.key("llama3.2:3b"))->runtime;
  EXPECT_TRUE(model.loaded);
  EXPECT_EQ(*model.keep_alive_seconds, 600);
  ASSERT_TRUE(after.registry->model(after.key("qwen2:7b")));  // a discovered model is kept too
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
  auto restored = restore_state(doc, after.baseline, *after.registry, kNow);
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
  auto restored = restore_state(doc, after.baseline, *after.registry, kNow);
  ASSERT_TRUE(restored);
  EXPECT_FALSE(after.registry->service("ollama"));
  EXPECT_FALSE(after.registry->model(after.key("llama3.2:3b")));  // its provider is gone too
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

TEST_F(StateFile, TheCorruptCopyIsNotWrittenThroughAPlantedSymlink) {
  const fs::path path = dir_ / "state.json";
  const fs::path victim = dir_ / "victim";
  std::ofstream(victim) << "precious\n";
  std::ofstream(path) << "not json";
  const auto now = static_cast<long long>(std::time(nullptr));
  for (long long t = now; t < now + 5; ++t) {  // the copy's name is predictable
    fs::create_symlink(victim, path.string() + ".corrupt-" + std::to_string(t));
  }
  StateStore store(path.string());
  auto loaded = store.load();
  ASSERT_FALSE(loaded);
  EXPECT_EQ(slurp(victim), "precious\n");
}

TEST_F(StateFile, AWronglyShapedDocumentIsRejectedWhole) {
  Built b = build(kConfig);
  json doc = encode_state(b.registry->snapshot(), b.baseline, {});
  doc["services"]["ollama"]["idle_sleep_enabled"]["value"] = false;
  doc["models"] = "not an object";
  auto restored = restore_state(doc, b.baseline, *b.registry, kNow);
  ASSERT_FALSE(restored);
  EXPECT_EQ(restored.status().message(), "state file: models is not an object");
  EXPECT_TRUE(b.registry->service("ollama")->runtime.idle_sleep_enabled);  // nothing applied
}

bool warned(const RestoreResult& r, const std::string& key, const std::string& value) {
  for (const auto& w : r.warnings) {
    if (w.rfind(key + ": ignored " + value + " ", 0) == 0) return true;
  }
  return false;
}

// The state file gets the config's and the admin API's bounds: a value they would refuse is
// ignored (with a warning naming key and value), and the rest of the state is restored.
TEST_F(StateFile, OutOfRangeOrWrongTypedSettingsAreIgnoredAndTheRestRestored) {
  Built before = build(kConfig);
  before.registry->update_service(
      "ollama", [](const ServiceSpec&, ServiceRuntime& rt) { rt.idle_sleep_enabled = false; });
  json doc = encode_state(before.registry->snapshot(), before.baseline, {});
  doc["settings"]["idle_timeout_minutes"]["value"] = 1e300;
  doc["settings"]["idle_check_interval_minutes"]["value"] = 1e-300;  // a busy loop
  doc["settings"]["model_keep_alive_hours"]["value"] = "two";
  doc["settings"]["idle_sleep_enabled"]["value"] = 1;
  doc["services"]["redis"]["desired"]["value"] = "maybe";

  Built after = build(kConfig);
  auto restored = restore_state(doc, after.baseline, *after.registry, kNow);
  ASSERT_TRUE(restored) << restored.status().message();
  EXPECT_EQ(after.registry->settings(), after.config.settings);                 // every one ignored
  EXPECT_FALSE(after.registry->service("ollama")->runtime.idle_sleep_enabled);  // restored
  EXPECT_EQ(after.registry->service("redis")->runtime.desired, Desired::kOn);
  EXPECT_TRUE(warned(*restored, "settings.idle_timeout_minutes", "1e+300"));
  EXPECT_TRUE(warned(*restored, "settings.idle_check_interval_minutes", "1e-300"));
  EXPECT_TRUE(warned(*restored, "settings.model_keep_alive_hours", "\"two\""));
  EXPECT_TRUE(warned(*restored, "settings.idle_sleep_enabled", "1"));
  EXPECT_TRUE(warned(*restored, "services.redis.desired", "\"maybe\""));
}

// Timestamps before 2000 or more than a day ahead are not facts siesta wrote: 1e300 used to
// show as -9223372037 in idle-status.
TEST_F(StateFile, TimestampsOutsideASaneRangeAreIgnored) {
  Built before = build(kConfig);
  before.registry->update_model(before.key("llama3.2:3b"), [&](const ModelSpec&, ModelRuntime& rt) {
    rt.loaded = true;
    rt.last_used = kNow;
  });
  json doc = encode_state(before.registry->snapshot(), before.baseline, {});
  doc["services"]["ollama"]["last_used"] = 1e300;
  doc["services"]["redis"]["last_used"] = 100;  // 1970
  // Models are kept per service: models.SERVICE.NAME.
  doc["models"]["ollama"]["llama3.2:3b"]["last_used"] = to_unix_seconds(kNow) + 2 * 86400;
  doc["models"]["ollama"]["llama3.2:3b"]["keep_alive_seconds"] = -5;

  Built after = build(kConfig);
  auto restored = restore_state(doc, after.baseline, *after.registry, kNow);
  ASSERT_TRUE(restored) << restored.status().message();
  EXPECT_FALSE(after.registry->service("ollama")->runtime.last_used);
  EXPECT_FALSE(after.registry->service("redis")->runtime.last_used);
  auto model = after.registry->model(after.key("llama3.2:3b"))->runtime;
  EXPECT_FALSE(model.last_used);
  EXPECT_FALSE(model.loaded);  // a loaded model always has a last use
  EXPECT_FALSE(model.keep_alive_seconds);
  EXPECT_TRUE(warned(*restored, "services.ollama.last_used", "1e+300"));
  EXPECT_TRUE(warned(*restored, "services.redis.last_used", "100"));
  EXPECT_TRUE(warned(*restored, "models.ollama.llama3.2:3b.keep_alive_seconds", "-5"));

  // A day ahead is still fine (a clock stepped back a little).
  doc["services"]["ollama"]["last_used"] = to_unix_seconds(kNow) + 3600;
  Built again = build(kConfig);
  ASSERT_TRUE(restore_state(doc, again.baseline, *again.registry, kNow));
  EXPECT_TRUE(again.registry->service("ollama")->runtime.last_used);
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(StateFile, SaveReplacesAtomicallyAndLeavesNoTempFile) {
  const fs::path path = dir_ / "state.json";
  StateStore store(path.string());
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 1}}));
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 2}}));
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"state.json"});
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_EQ((**loaded)["n"], 2);
}

TEST_F(StateFile, AnUnwritableDirectoryIsAnErrorValue) {
  StateStore store("/nonexistent-dir/state.json");
  Status st = store.save({{"format", "siesta-state/1"}});
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_NE(st.message().find("cannot write /nonexistent-dir/state.json"), std::string::npos)
      << st.message();
}

// Whoever can write in the state directory plants a symlink where the temp file used to be
// (a fixed name): siesta, perhaps root, must not write through it.
TEST_F(StateFile, SaveDoesNotFollowASymlinkPlantedAtTheTempName) {
  const fs::path path = dir_ / "state.json";
  const fs::path victim = dir_ / "victim";
  std::ofstream(victim) << "precious\n";
  fs::create_symlink(victim, path.string() + ".tmp");
  StateStore store(path.string());
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 1}}));
  EXPECT_EQ(slurp(victim), "precious\n");
  EXPECT_FALSE(fs::is_symlink(path));
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_EQ((**loaded)["n"], 1);
}

// A file pre-created mode 0666 at the temp name must not become the state file (its creator
// could then rewrite siesta's state at will).
TEST_F(StateFile, AFilePreCreatedAtTheTempNameDoesNotBecomeTheStateFile) {
  const fs::path path = dir_ / "state.json";
  const std::string planted = path.string() + ".tmp";
  std::ofstream(planted) << "attacker's\n";
  fs::permissions(planted, fs::perms(0666));
  struct stat planted_st {};
  ASSERT_EQ(::stat(planted.c_str(), &planted_st), 0);
  StateStore store(path.string());
  ASSERT_TRUE(store.save({{"format", "siesta-state/1"}, {"n", 1}}));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_NE(st.st_ino, planted_st.st_ino);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(StateFile, TheStateFileIsMode0600AndOwnedBySiestasUser) {
  const fs::path path = dir_ / "state.json";
  const mode_t old_umask = ::umask(0);  // whatever the umask, the file is 0600
  StateStore store(path.string());
  Status saved = store.save({{"format", "siesta-state/1"}});
  ::umask(old_umask);
  ASSERT_TRUE(saved);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
}

TEST_F(StateFile, AFailedSaveRemovesItsTempFile) {
  const fs::path path = dir_ / "state.json";
  fs::create_directories(path / "in-the-way");  // rename() over a non-empty directory fails
  StateStore store(path.string());
  Status st = store.save({{"format", "siesta-state/1"}});
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"state.json"});
}

// When siesta first knew of a model (what the model list siesta answers for a sleeping vLLM says
// as `created`) survives a restart; a file written before has none, and a configured model keeps
// the moment siesta read its config.
TEST_F(StateFile, WhenAModelWasFirstKnownSurvivesARestart) {
  Built before = build(kConfig);
  const WallTime first = from_unix_seconds(1'690'000'000);
  before.registry->update_model(before.key("llama3.2:3b"),
                                [&](const ModelSpec&, ModelRuntime& rt) { rt.first_seen = first; });
  ModelRuntime learned;
  learned.first_seen = from_unix_seconds(1'695'000'000);
  before.registry->add_model({"qwen2:7b", "ollama", std::nullopt}, learned);
  json doc = encode_state(before.registry->snapshot(), before.baseline, {});
  EXPECT_EQ(doc["models"]["ollama"]["llama3.2:3b"]["first_seen"], 1'690'000'000);

  Built after = build(kConfig);
  ASSERT_TRUE(restore_state(doc, after.baseline, *after.registry, kNow));
  EXPECT_EQ(after.registry->model(after.key("llama3.2:3b"))->runtime.first_seen, first);
  EXPECT_EQ(after.registry->model(after.key("qwen2:7b"))->runtime.first_seen,
            from_unix_seconds(1'695'000'000));

  // A file from before first_seen: the configured model keeps what it had.
  doc["models"]["ollama"]["llama3.2:3b"].erase("first_seen");
  Built older = build(kConfig);
  older.registry->update_model(older.key("llama3.2:3b"),
                               [&](const ModelSpec&, ModelRuntime& rt) { rt.first_seen = kNow; });
  ASSERT_TRUE(restore_state(doc, older.baseline, *older.registry, kNow));
  EXPECT_EQ(older.registry->model(older.key("llama3.2:3b"))->runtime.first_seen, kNow);
}

}  // namespace
}  // namespace siesta
