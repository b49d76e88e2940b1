// The GPU budget's pure decision (plan_room) on the issue's scenarios, with holders built from a
// registry snapshot (gpu_holders) whose uses happen on a fake clock: Ollama with two models and
// Whisper on a 24 GiB card, a wake that needs two evictions, one that cannot fit while
// everything is in flight, pinned holders and exclusive groups.
#include "siesta/core/gpu.h"

#include <gtest/gtest.h>

#include <thread>

#include "fakes.h"
#include "siesta/config/config.h"
#include "world.h"

namespace siesta {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

class GpuBudget : public ::testing::Test {
 protected:
  GpuBudget() { gpu.devices = {{0, 24576}}; }

  // A running service holding `mib`, used `minutes_ago` (absent: never).
  ServiceView& add_service(const std::string& name, double mib) {
    auto spec = std::make_shared<ServiceSpec>();
    spec->name = name;
    spec->gpu_memory_mib = mib;
    ServiceRuntime rt;
    rt.state = ServiceState::kRunning;
    snap.services.push_back({spec, rt});
    return snap.services.back();
  }
  ModelView& add_model(const std::string& name, const std::string& server, double vram_mib) {
    auto spec = std::make_shared<ModelSpec>();
    spec->name = name;
    spec->provider = server;
    ModelRuntime rt;
    rt.loaded = true;
    rt.vram_bytes = vram_mib * kMiB;  // Ollama's size_vram is in bytes
    snap.models.push_back({spec, rt});
    return snap.models.back();
  }
  void use_service(const std::string& name) {
    clock.advance_minutes(1);
    for (auto& s : snap.services) {
      if (s.spec->name == name) s.runtime.last_used = clock.wall_now();
    }
  }
  void use_model(const std::string& name) {
    clock.advance_minutes(1);
    for (auto& m : snap.models) {
      if (m.spec->name == name) m.runtime.last_used = clock.wall_now();
    }
  }
  ServiceRuntime& rt(const std::string& name) {
    for (auto& s : snap.services) {
      if (s.spec->name == name) return s.runtime;
    }
    throw std::runtime_error("no service " + name);
  }
  RoomPlan wake(const std::string& name, double mib) {
    return plan_room(gpu, gpu_holders(gpu, snap),
                     {GpuHolder::Kind::kService, name, name, mib, {0}});
  }
  static std::vector<std::string> names(const RoomPlan& plan) {
    std::vector<std::string> out;
    for (const auto& h : plan.evict) out.push_back(h.name);
    return out;
  }

  // Ollama (1 GiB of its own) with llama3.1:8b (6 GiB) and qwen2.5:14b (10 GiB), and Whisper
  // (4 GiB) on a 24 GiB card: 21 GiB held, 3 GiB free. Used in the order: Ollama's llama,
  // Whisper, qwen (which uses Ollama too).
  void ollama_two_models_and_whisper() {
    add_service("ollama", 1024);
    add_service("whisper", 4096);
    add_model("llama3.1:8b", "ollama", 6144);
    add_model("qwen2.5:14b", "ollama", 10240);
    use_model("llama3.1:8b");
    use_service("whisper");
    use_model("qwen2.5:14b");
    use_service("ollama");
  }

  testing::FakeClock clock;
  GpuConfig gpu;
  Snapshot snap;
};

TEST_F(GpuBudget, HoldersComeFromTheSnapshotSizedBySizeVram) {
  ollama_two_models_and_whisper();
  add_service("stopped", 9000);
  rt("stopped").state = ServiceState::kStopped;
  const auto holders = gpu_holders(gpu, snap);
  ASSERT_EQ(holders.size(), 4u);  // not the stopped one
  const auto use = gpu_use(gpu, holders);
  ASSERT_EQ(use.size(), 1u);
  EXPECT_DOUBLE_EQ(use[0].held_mib, 1024 + 4096 + 6144 + 10240);
  EXPECT_DOUBLE_EQ(use[0].free_mib, 24576 - 21504);
  for (const auto& h : holders) {
    if (h.name == "qwen2.5:14b") {
      EXPECT_EQ(h.kind, GpuHolder::Kind::kModel);
      EXPECT_EQ(h.service, "ollama");
      EXPECT_DOUBLE_EQ(h.mib, 10240);
    }
  }
}

TEST_F(GpuBudget, AWakeThatFitsEvictsNothing) {
  ollama_two_models_and_whisper();
  const RoomPlan plan = wake("comfyui", 3072);
  EXPECT_EQ(plan.verdict, RoomVerdict::kFits);
  EXPECT_TRUE(plan.evict.empty());
}

TEST_F(GpuBudget, TheLeastRecentlyUsedIdleHolderGoesFirst) {
  ollama_two_models_and_whisper();
  const RoomPlan plan = wake("comfyui", 8192);  // 3 GiB free: llama's 6 GiB makes 9
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"llama3.1:8b"}));
}

TEST_F(GpuBudget, AWakeThatNeedsTwoEvictions) {
  ollama_two_models_and_whisper();
  const RoomPlan plan = wake("comfyui", 12288);  // 3 + 6 (llama) + 4 (whisper) = 13 GiB
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"llama3.1:8b", "whisper"}));
}

TEST_F(GpuBudget, InFlightAndPinnedHoldersAreSkipped) {
  ollama_two_models_and_whisper();
  snap.models[0].runtime.in_flight = 1;  // llama answers a request
  rt("whisper").desired = Desired::kOn;
  const RoomPlan plan = wake("comfyui", 8192);  // qwen (10 GiB) is next
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"qwen2.5:14b"}));
  rt("whisper").desired = Desired::kOff;
  rt("whisper").idle_sleep_enabled = false;
  EXPECT_EQ(names(wake("comfyui", 8192)), (std::vector<std::string>{"qwen2.5:14b"}));
}

TEST_F(GpuBudget, AServiceGoesAfterItsModels) {
  ollama_two_models_and_whisper();
  // Ollama used least recently of all (its models were used through the admin API, say).
  rt("ollama").last_used = clock.wall_now() - std::chrono::hours(1);
  const RoomPlan plan = wake("comfyui", 20480);  // 3 + 1 + 6 + 10 = 20 GiB
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"llama3.1:8b", "qwen2.5:14b", "ollama"}));
  EXPECT_EQ(plan.evict.back().kind, GpuHolder::Kind::kService);
}

TEST_F(GpuBudget, AModelLoadNeverEvictsItsOwnServer) {
  ollama_two_models_and_whisper();
  rt("ollama").last_used.reset();  // never used: would be first for anyone else
  const RoomPlan plan = plan_room(gpu, gpu_holders(gpu, snap),
                                  {GpuHolder::Kind::kModel, "mistral:7b", "ollama", 8192, {0}});
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"llama3.1:8b"}));
}

TEST_F(GpuBudget, AWakeThatCannotFitWhileEverythingIsInFlightWaits) {
  ollama_two_models_and_whisper();
  for (auto& s : snap.services) s.runtime.in_flight = 1;
  for (auto& m : snap.models) m.runtime.in_flight = 1;
  const RoomPlan plan = wake("comfyui", 8192);
  EXPECT_EQ(plan.verdict, RoomVerdict::kWait);
  EXPECT_TRUE(plan.evict.empty());
  ASSERT_EQ(plan.held_by.size(), 4u);
  EXPECT_EQ(plan.held_by[0], "service ollama (1024 MiB, in flight)");
}

TEST_F(GpuBudget, PinnedHoldersLeaveNoRoomCannotFitNamingThem) {
  ollama_two_models_and_whisper();
  rt("ollama").desired = Desired::kOn;
  rt("whisper").desired = Desired::kOn;
  for (auto& m : snap.models) m.runtime.in_flight = 1;
  // 24 - 1 - 4 = 19 GiB at most, even once the models' requests end: 20 never fits.
  const RoomPlan plan = wake("comfyui", 20480);
  EXPECT_EQ(plan.verdict, RoomVerdict::kCannotFit);
  EXPECT_EQ(plan.held_by, (std::vector<std::string>{
                              "service ollama (1024 MiB, desired on or idle sleep disabled)",
                              "service whisper (4096 MiB, desired on or idle sleep disabled)",
                              "model llama3.1:8b (6144 MiB, in flight)",
                              "model qwen2.5:14b (10240 MiB, in flight)"}));
  // More than the card: never.
  const RoomPlan huge = wake("comfyui", 30000);
  EXPECT_EQ(huge.verdict, RoomVerdict::kCannotFit);
  EXPECT_NE(huge.reason.find("more than its budget of 24576 MiB"), std::string::npos);
}

TEST_F(GpuBudget, OtherDevicesAreNotTouched) {
  gpu.devices.push_back({1, 24576});
  ollama_two_models_and_whisper();
  auto& w = snap.services[1];
  auto spec = std::make_shared<ServiceSpec>(*w.spec);
  spec->gpu_devices = {1};
  w.spec = spec;
  // Whisper is on GPU 1 now: an 8 GiB wake on GPU 0 evicts llama; on GPU 1 it fits.
  EXPECT_EQ(names(wake("comfyui", 8192)), (std::vector<std::string>{"llama3.1:8b"}));
  const RoomPlan on1 = plan_room(gpu, gpu_holders(gpu, snap),
                                 {GpuHolder::Kind::kService, "comfyui", "comfyui", 8192, {1}});
  EXPECT_EQ(on1.verdict, RoomVerdict::kFits);
}

// A request on two devices evicts only on the one short of room (a new user's trial: the
// models and server on GPU 0, which had room, were stopped too).
TEST_F(GpuBudget, ARequestOnTwoDevicesEvictsOnlyWhereRoomIsShort) {
  gpu.devices = {{0, 6000}, {1, 1000}};
  add_service("ollama", 500);
  add_model("qwen2.5:7b", "ollama", 4000);
  add_service("d1", 900);
  auto& d1 = snap.services[1];
  auto spec = std::make_shared<ServiceSpec>(*d1.spec);
  spec->gpu_devices = {1};
  d1.spec = spec;
  use_model("qwen2.5:7b");
  use_service("d1");
  const RoomPlan plan = plan_room(gpu, gpu_holders(gpu, snap),
                                  {GpuHolder::Kind::kService, "both", "both", 200, {0, 1}});
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"d1"}));
}

TEST_F(GpuBudget, AnExclusiveGroupStopsTheOthersWhateverTheMemory) {
  add_service("vllm", 2048);
  use_service("vllm");
  gpu.exclusive = {{"comfyui", "vllm"}};
  RoomPlan plan = wake("comfyui", 1024);  // fits by memory; vllm must go all the same
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"vllm"}));
  rt("vllm").in_flight = 1;
  plan = wake("comfyui", 1024);
  EXPECT_EQ(plan.verdict, RoomVerdict::kWait);
  EXPECT_EQ(plan.held_by,
            (std::vector<std::string>{"service vllm (2048 MiB, exclusive with it; in flight)"}));
  rt("vllm").in_flight = 0;
  rt("vllm").desired = Desired::kOn;
  plan = wake("comfyui", 1024);
  EXPECT_EQ(plan.verdict, RoomVerdict::kCannotFit);
  EXPECT_TRUE(plan.evict.empty());
  // Not in the group: untouched.
  EXPECT_EQ(wake("whisper", 1024).verdict, RoomVerdict::kFits);
}

// The controller acts on the plan: on fakes and the fake clock (its waits advance fake time).
constexpr const char* kTwoOnOneCard = R"({
  "gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": 2},
  "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
               "b": {"command": ["b"], "gpu_memory_mib": 600}}})";

TEST(GpuController, AWakeStopsTheIdleHolderFirst) {
  testing::World w(kTwoOnOneCard);
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", "request"));
  ASSERT_TRUE(w.controller->wake("b", "request"));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
}

TEST(GpuController, AWakeWaitsForInFlightWorkThenFailsNamingTheHolder) {
  testing::World w(kTwoOnOneCard);
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", "request"));
  ASSERT_TRUE(w.controller->begin_request("a"));
  const MonoTime t0 = w.clock.mono_now();
  const Status st = w.controller->wake("b", "request");
  EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
  EXPECT_NE(st.message().find("held by service a (600 MiB, in flight)"), std::string::npos)
      << st.message();
  EXPECT_GE(w.clock.mono_now() - t0, Seconds(2));  // gpu.wait_seconds, on the fake clock
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a"}));  // a never stopped
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
  w.controller->end_request("a");
  ASSERT_TRUE(w.controller->wake("b", "request"));  // idle now: a goes
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
}

// A wait that outlasts many polls still ends in the evictions it waited for (a new user's trial:
// after ~16 polls, 0.8 s, eviction was no longer allowed and every such wake failed at the
// deadline, with an empty reason). The request on a ends 10 s into an hour's wait, on the fake
// clock, from another thread.
TEST(GpuController, AWakeThatWaitedStartsOnceTheRequestEnds) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": 3600},
    "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
                 "b": {"command": ["b"], "gpu_memory_mib": 600}}})");
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", "request"));
  ASSERT_TRUE(w.controller->begin_request("a"));
  const MonoTime t0 = w.clock.mono_now();
  std::thread ender([&] {
    while (w.clock.mono_now() - t0 < Seconds(10)) std::this_thread::yield();
    w.controller->end_request("a");
  });
  const Status st = w.controller->wake("b", "request");
  ender.join();
  EXPECT_TRUE(st) << st.message();
  EXPECT_LT(w.clock.mono_now() - t0, Seconds(3600));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
}

// The config: the section, a service's and a model's keys; bad values name file, key and reason.
TEST(GpuConfig, ReadsDevicesServicesModelsAndGroups) {
  const Config c = parse_config(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 24576}, {"id": 1}],
            "exclusive": [["comfyui", "vllm"]]},
    "services": {
      "ollama": {"command": ["ollama", "serve"], "gpu_memory_mib": 512},
      "comfyui": {"command": ["comfy"], "gpu_memory_mib": 12000, "gpu_devices": [1]},
      "vllm": {"command": ["vllm"], "gpu_memory_mib": 20000, "gpu_devices": [0, 1]}},
    "models": {"llama3.1:8b": {"provider": "ollama", "gpu_memory_mib": 6000}}})",
                                "gpu.json");
  ASSERT_EQ(c.gpu.devices.size(), 2u);
  EXPECT_EQ(c.gpu.devices[0].memory_mib, 24576);
  EXPECT_EQ(c.gpu.devices[1].memory_mib, 0);  // from nvidia-smi at start-up
  EXPECT_EQ(c.gpu.exclusive, (std::vector<std::vector<std::string>>{{"comfyui", "vllm"}}));
  EXPECT_EQ(c.services[0].spec.name, "comfyui");
  EXPECT_EQ(c.services[0].spec.gpu_memory_mib, 12000);
  EXPECT_EQ(c.services[0].spec.gpu_devices, (std::vector<int>{1}));
  EXPECT_EQ(gpu_devices_of(c.gpu, c.services[1].spec), (std::vector<int>{0}));  // the first
  EXPECT_EQ(c.models[0].gpu_memory_mib, 6000);
}

}  // namespace
}  // namespace siesta
