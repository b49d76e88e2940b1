// The GPU budget's pure decision (plan_room) on the issue's scenarios, with holders built from a
// registry snapshot (gpu_holders) whose uses happen on a fake clock: Ollama with two models and
// Whisper on a 24 GiB card, a wake that needs two evictions, one that cannot fit while
// everything is in flight, pinned holders and exclusive groups.
#include "siesta/core/gpu.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "fakes.h"
#include "siesta/config/config.h"
#include "siesta/core/schedule.h"
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

// A schedule window that keeps a service on pins it as desired "on" does: a wake must not stop
// it for room (the new user's re-trial, from reading: it was evicted).
TEST_F(GpuBudget, AServiceKeptOnByItsScheduleWindowIsPinned) {
  auto& comfy = add_service("comfyui", 20000);
  auto spec = std::make_shared<ServiceSpec>(*comfy.spec);
  ASSERT_FALSE(parse_schedule(nlohmann::json::parse(
                                  R"([{"days": "mon-sun", "from": "00:00", "to": "24:00",
                                       "desired": "on"}])"),
                              "UTC", spec->schedule));
  comfy.spec = spec;
  use_service("comfyui");
  const RoomPlan plan = plan_room(gpu, gpu_holders(gpu, snap, clock.wall_now()),
                                  {GpuHolder::Kind::kService, "whisper", "whisper", 8192, {0}});
  EXPECT_EQ(plan.verdict, RoomVerdict::kCannotFit);
  EXPECT_TRUE(plan.evict.empty());
  ASSERT_EQ(plan.held_by.size(), 1u);
  EXPECT_NE(plan.held_by[0].find("kept on by its schedule (mon-sun 00:00-24:00)"),
            std::string::npos)
      << plan.held_by[0];
  // Without a time, schedules are not looked at (the budget's totals at start-up).
  EXPECT_EQ(wake("whisper", 8192).verdict, RoomVerdict::kEvict);
}

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

// Models before their service: when unloading a server's models frees enough, the server keeps
// running, though it is chosen first (a new user's re-trial: Ollama and its model, both never
// used, were a tie broken by name, and the server was stopped with its model when the model alone
// was enough).
TEST_F(GpuBudget, AServerIsNotStoppedWhenUnloadingItsModelsIsEnough) {
  add_service("ollama", 1024);
  add_model("qwen2.5:14b", "ollama", 10240);
  add_service("whisper", 4096);
  // All never used: a tie. 9 GiB free; comfyui needs 12: qwen alone makes 19.
  RoomPlan plan = wake("comfyui", 12288);
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"qwen2.5:14b"}));
  // The server used least recently of all, its model later: still the model alone.
  rt("ollama").last_used = clock.wall_now();
  use_model("qwen2.5:14b");
  use_service("whisper");
  plan = wake("comfyui", 12288);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"qwen2.5:14b"}));
  // Not enough without the server: then it goes too, after its model.
  plan = wake("comfyui", 20480);  // 9 + 10 + 1 = 20 GiB
  EXPECT_EQ(names(plan), (std::vector<std::string>{"qwen2.5:14b", "ollama"}));
}

// Among holders used at the same time, the least disruption that frees enough: a model's unload
// before a service's stop, and one holder that frees enough alone before two.
TEST_F(GpuBudget, AmongEqualsTheLeastDisruptionThatFreesEnoughGoesFirst) {
  gpu.devices = {{0, 10000}};
  add_service("a", 1000);
  add_service("b", 5000);
  add_service("o", 100);
  add_model("m", "o", 2000);  // 1900 free
  // All never used. 3000 needed: a (by name) frees too little, b or m alone enough; m is a model.
  EXPECT_EQ(names(wake("w", 3000)), (std::vector<std::string>{"m"}));
  // 5000 needed: m (a model) first, then b alone is enough, not a and b.
  EXPECT_EQ(names(wake("w", 5000)), (std::vector<std::string>{"m", "b"}));
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
  EXPECT_EQ(plan.held_by, (std::vector<std::string>{"service ollama (1024 MiB, desired on)",
                                                    "service whisper (4096 MiB, desired on)",
                                                    "model llama3.1:8b (6144 MiB, in flight)",
                                                    "model qwen2.5:14b (10240 MiB, in flight)"}));
  // More than the card: never.
  const RoomPlan huge = wake("comfyui", 30000);
  EXPECT_EQ(huge.verdict, RoomVerdict::kCannotFit);
  EXPECT_NE(huge.reason.find("more than its budget of 24576 MiB"), std::string::npos);
}

// A refusal says why each holder stays (issue 21's re-trial): what pins a pinned one (a model has
// no "desired on"), and a model load's own server is "its server", not "idle".
TEST_F(GpuBudget, ARefusalSaysWhyEachHolderStays) {
  ollama_two_models_and_whisper();
  rt("whisper").desired = Desired::kOn;
  snap.models[0].runtime.in_flight = 1;  // llama
  // 3 GiB free; qwen (10) could go, llama (6) once its request ends: 19 GiB, never 20.
  const RoomPlan plan = plan_room(gpu, gpu_holders(gpu, snap),
                                  {GpuHolder::Kind::kModel, "mistral", "ollama", 20480, {0}});
  EXPECT_EQ(plan.verdict, RoomVerdict::kCannotFit);
  EXPECT_EQ(plan.held_by,
            (std::vector<std::string>{
                "service ollama (1024 MiB, its server)", "service whisper (4096 MiB, desired on)",
                "model llama3.1:8b (6144 MiB, in flight)", "model qwen2.5:14b (10240 MiB, idle)"}));
  rt("whisper").desired = Desired::kOff;
  rt("whisper").idle_sleep_enabled = false;
  snap.settings.idle_sleep_enabled = false;
  snap.models[0].runtime.in_flight = 0;
  const RoomPlan none = wake("comfyui", 4096);
  EXPECT_EQ(none.verdict, RoomVerdict::kCannotFit);
  EXPECT_EQ(none.held_by, (std::vector<std::string>{
                              "service ollama (1024 MiB, idle sleep disabled globally)",
                              "service whisper (4096 MiB, idle sleep disabled globally)",
                              "model llama3.1:8b (6144 MiB, idle sleep disabled globally)",
                              "model qwen2.5:14b (10240 MiB, idle sleep disabled globally)"}));
  snap.settings.idle_sleep_enabled = true;
  EXPECT_EQ(gpu_holders(gpu, snap)[1].pinned_by, "idle sleep disabled for it");  // whisper
  // Larger than the budget: no holder named, so no "held by" at all.
  EXPECT_EQ(refusal_text(wake("comfyui", 30000)),
            "comfyui needs 30000 MiB on GPU 0, more than its budget of 24576 MiB");
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

// An exclusive partner in flight (here: starting) holding the memory the wake needs: the wake
// waits for it, as for any holder in flight (a new user's re-trial: an immediate "cannot fit",
// "held by services that must keep running", on a 16 GiB card).
TEST_F(GpuBudget, AWakeWaitsForAnExclusivePartnerInFlightThatHoldsTheMemoryItNeeds) {
  gpu.devices = {{0, 16000}};
  add_service("comfyui", 12000);
  rt("comfyui").state = ServiceState::kStarting;
  gpu.exclusive = {{"comfyui", "vllm"}};
  const RoomPlan plan = wake("vllm", 6000);
  EXPECT_EQ(plan.verdict, RoomVerdict::kWait) << plan.reason;
  EXPECT_EQ(
      plan.held_by,
      (std::vector<std::string>{"service comfyui (12000 MiB, exclusive with it; in flight)"}));
  EXPECT_FALSE(plan.exclusive_only);  // the memory is missing too
}

// A wait names every holder its room comes from: the busy ones it waits for, and the idle ones it
// frees too once they end (a new user's re-trial: the idle ones were missing from the list).
TEST_F(GpuBudget, AWaitNamesTheIdleHoldersItFreesTooOnceTheWorkEnds) {
  gpu.devices = {{0, 1000}};
  add_service("a", 600);
  add_service("c", 300);
  rt("a").in_flight = 1;
  const RoomPlan plan = wake("b", 900);
  EXPECT_EQ(plan.verdict, RoomVerdict::kWait) << plan.reason;
  EXPECT_FALSE(plan.exclusive_only);
  EXPECT_EQ(plan.held_by,
            (std::vector<std::string>{"service a (600 MiB, in flight)",
                                      "service c (300 MiB, idle, freed too once they end)"}));
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
  // The memory is there: the wait is for the partner's work, and says so (a new user's re-trial:
  // "no room in the GPU budget ... needs 1024 MiB" on a card with 22 GiB free).
  EXPECT_TRUE(plan.exclusive_only);
  EXPECT_EQ(plan.reason,
            "comfyui is exclusive with a service that has requests in flight: it starts once they "
            "end");
  rt("vllm").in_flight = 0;
  rt("vllm").desired = Desired::kOn;
  plan = wake("comfyui", 1024);
  EXPECT_EQ(plan.verdict, RoomVerdict::kCannotFit);
  EXPECT_TRUE(plan.evict.empty());
  // Not in the group: untouched.
  EXPECT_EQ(wake("whisper", 1024).verdict, RoomVerdict::kFits);
}

// One queue for the budget, but a wake that fits now goes ahead of one that waits for in-flight
// work, unless it would take the room that one waits for (issue 21: a small wake waited behind a
// big one until the big one's wait ended).
TEST_F(GpuBudget, AWakeThatFitsGoesAheadOnlyWithoutTakingTheRoomAnEarlierOneWaitsFor) {
  gpu.devices = {{0, 1000}};
  add_service("a", 500);
  rt("a").in_flight = 1;
  const GpuRequest big{GpuHolder::Kind::kService, "b", "b", 600, {0}};
  ASSERT_EQ(plan_room(gpu, gpu_holders(gpu, snap), big).verdict, RoomVerdict::kWait);
  const auto later = [&](double mib) {
    return may_go_ahead(gpu, gpu_holders(gpu, snap),
                        {GpuHolder::Kind::kService, "c", "c", mib, {0}}, {big});
  };
  EXPECT_TRUE(later(400));   // 500 free; once a ends, 600 are left for b
  EXPECT_FALSE(later(450));  // fits now, but b could then never fit: it waits its turn
  EXPECT_FALSE(later(600));  // does not fit now either
  // An earlier request that can never fit holds nobody back.
  const GpuRequest huge{GpuHolder::Kind::kService, "h", "h", 2000, {0}};
  EXPECT_TRUE(may_go_ahead(gpu, gpu_holders(gpu, snap),
                           {GpuHolder::Kind::kService, "c", "c", 450, {0}}, {huge}));
  // A group mate of b never passes it: b would have to stop it, and it counts as never leaving.
  gpu.exclusive = {{"b", "c"}};
  EXPECT_FALSE(later(100));
}

// A later wake goes ahead only on room nobody waits for: the earlier one must not have to evict
// more for it (a new user's re-trial: the head's plan with the later one counted still "could
// fit", by evicting one more holder, so the later one took the room and the head evicted again).
TEST_F(GpuBudget, AWakeGoesAheadOnlyOnRoomTheEarlierOnesDoNotNeed) {
  gpu.devices = {{0, 1300}};
  add_service("x", 600);
  add_service("y", 300);
  use_service("x");
  use_service("y");  // 400 free; the head needs 800: x goes for it (least recently used)
  const GpuRequest head{GpuHolder::Kind::kService, "h", "h", 800, {0}};
  ASSERT_EQ(names(plan_room(gpu, gpu_holders(gpu, snap), head)), (std::vector<std::string>{"x"}));
  const auto later = [&](double mib) {
    return may_go_ahead(gpu, gpu_holders(gpu, snap),
                        {GpuHolder::Kind::kService, "l", "l", mib, {0}}, {head});
  };
  EXPECT_TRUE(later(200));   // 200 + 600 (x) are left for the head: x alone still
  EXPECT_FALSE(later(250));  // the head would have to stop y too
  // Once the head waits for x's request to end, it will stop y and x (x used last then): a later
  // one that leaves it that much goes ahead.
  rt("x").in_flight = 1;
  ASSERT_EQ(plan_room(gpu, gpu_holders(gpu, snap), head).verdict, RoomVerdict::kWait);
  EXPECT_TRUE(later(400));
}

// A member of an exclusive group without a size is still stopped for its partners (a new user's
// re-trial: waking a while an unsized b ran left both running; b was no holder).
TEST_F(GpuBudget, AnUnsizedMemberOfAnExclusiveGroupIsStoppedForItsPartner) {
  gpu.exclusive = {{"a", "b"}};
  add_service("b", 0);
  auto b = std::make_shared<ServiceSpec>(*snap.services.back().spec);
  b->gpu_memory_mib.reset();  // no size declared
  snap.services.back().spec = b;
  const auto holders = gpu_holders(gpu, snap);
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].mib, 0);
  const RoomPlan plan = wake("a", 100);
  EXPECT_EQ(plan.verdict, RoomVerdict::kEvict);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"b"}));
  // Not in a group and unsized: no holder, as before.
  gpu.exclusive.clear();
  EXPECT_TRUE(gpu_holders(gpu, snap).empty());
}

// A model being loaded (a request in flight on it, not loaded yet) counts at once, by its size
// now, else the last size_vram seen (kept after an unload), else its configured size; a model
// with none is not counted (issue 21: a proxied load counted only at the next reconcile).
TEST_F(GpuBudget, AModelBeingLoadedCountsAtOnceByItsLastSeenSize) {
  add_service("ollama", 1024);
  ModelView& m = add_model("llama3.1:8b", "ollama", 6144);
  m.runtime.loaded = false;
  m.runtime.vram_bytes.reset();
  m.runtime.vram_bytes_seen = 6144 * kMiB;
  EXPECT_EQ(gpu_holders(gpu, snap).size(), 1u);  // not loaded, not in flight: nothing held
  m.runtime.in_flight = 1;
  // Its request still waits for room: it holds nothing yet (a new user's re-trial: counted, it
  // held the wakes queued ahead of it, and they it, until the timeout).
  EXPECT_EQ(gpu_holders(gpu, snap).size(), 1u);
  m.runtime.load_room = true;  // room made: forwarded, being loaded
  auto holders = gpu_holders(gpu, snap);
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_EQ(holders[1].name, "llama3.1:8b");
  EXPECT_DOUBLE_EQ(holders[1].mib, 6144);
  EXPECT_TRUE(holders[1].in_flight);  // never evicted under the load
  // No size seen: the configured one; neither: not counted.
  m.runtime.vram_bytes_seen.reset();
  EXPECT_EQ(gpu_holders(gpu, snap).size(), 1u);
  auto spec = std::make_shared<ModelSpec>(*m.spec);
  spec->gpu_memory_mib = 5000;
  m.spec = spec;
  holders = gpu_holders(gpu, snap);
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_DOUBLE_EQ(holders[1].mib, 5000);
  EXPECT_EQ(model_gpu_mib(*spec, m.runtime), 5000);
}

// Held past the budget (adopted holders at start-up): over_mib says by how much; free is 0.
TEST_F(GpuBudget, HeldPastTheBudgetIsShownAsOver) {
  gpu.devices = {{0, 800}};
  add_service("a", 600);
  add_service("c", 300);
  const auto use = gpu_use(gpu, gpu_holders(gpu, snap));
  ASSERT_EQ(use.size(), 1u);
  EXPECT_DOUBLE_EQ(use[0].held_mib, 900);
  EXPECT_DOUBLE_EQ(use[0].free_mib, 0);
  EXPECT_DOUBLE_EQ(use[0].over_mib, 100);
}

// The controller acts on the plan: on fakes and the fake clock (its waits advance fake time).
// a and b (600 MiB each) on a 1000 MiB card: never both.
std::string two_on_one_card(double wait_seconds) {
  return R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": )" +
         std::to_string(wait_seconds) + R"(},
             "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
                          "b": {"command": ["b"], "gpu_memory_mib": 600}}})";
}
const std::string kTwoOnOneCard = two_on_one_card(2);

TEST(GpuController, AWakeStopsTheIdleHolderFirst) {
  testing::World w(kTwoOnOneCard);
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->wake("b", Reason::kRequest));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
}

// Ollama (100 MiB, `ollama_extra` in its entry) with qwen (500) loaded, and w (600), on a 1000
// MiB card: w fits once qwen is unloaded.
std::string ollama_qwen_and_w(const std::string& ollama_extra) {
  return R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": 2},
             "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 100)" +
         ollama_extra + R"(},
                          "w": {"command": ["w"], "gpu_memory_mib": 600}},
             "models": {"qwen": {"provider": "ollama", "gpu_memory_mib": 500}}})";
}

// The controller on the same rule: Ollama's model is unloaded for w, Ollama keeps running (it was
// stopped with its model: the two, used at the same time, were a tie broken by name).
TEST(GpuController, AWakeUnloadsAModelAndLeavesItsServerWhenThatIsEnough) {
  testing::World w(ollama_qwen_and_w(""));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->load_model(w.key("qwen")));  // wakes ollama: 600 of 1000 held
  ASSERT_TRUE(w.model("qwen").loaded);
  ASSERT_TRUE(w.controller->wake("w", Reason::kRequest));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start ollama", "start w"}));
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load qwen", "unload qwen"}));
  EXPECT_EQ(w.service("ollama").state, ServiceState::kRunning);
  EXPECT_FALSE(w.model("qwen").loaded);
}

// A model whose unload fails is left out of that make_room, not tried again and again (a new
// user's re-trial: 16 unloads in 60 ms, then a wait until wait_seconds): its idle server is
// stopped instead, which frees it.
TEST(GpuController, AModelWhoseUnloadFailedIsLeftOutOfThePlan) {
  testing::World w(ollama_qwen_and_w(""));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->load_model(w.key("qwen")));
  w.provider.fail_unload = true;
  const MonoTime t0 = w.clock.mono_now();
  ASSERT_TRUE(w.controller->wake("w", Reason::kRequest));
  EXPECT_EQ(w.clock.mono_now(), t0);  // no wait
  // Once for room, once as the server's stop unloads its models first.
  EXPECT_EQ(w.provider.calls,
            (std::vector<std::string>{"load qwen", "unload qwen", "unload qwen"}));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start ollama", "stop ollama", "start w"}));
}

// A service whose stop for room failed still holds its memory (siesta knows no better): the wake
// is refused saying so, and the stop is not tried again and again. Before, the failed stop left
// it in error, out of the budget, and b started beside it: 1200 of 1000 MiB.
TEST(GpuController, AServiceWhoseStopFailedStillHoldsItsMemory) {
  testing::World w(kTwoOnOneCard);
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  w.backend.fail_stop = {"a"};
  const Status st = w.controller->wake("b", Reason::kRequest);
  EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
  EXPECT_NE(st.message().find("service a (600 MiB, its stop failed: stop refused)"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a"}));
  // Later wakes too: counted, and named, while it is in error.
  const Status again = w.controller->wake("b", Reason::kRequest);
  EXPECT_NE(again.message().find("service a (600 MiB, in error (stop failed: stop refused))"),
            std::string::npos)
      << again.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a"}));
}

// When nothing else can make the room, the refusal says the unload failed, at once; a later try
// may find it unloaded (siesta retries it): Retry-After.
TEST(GpuController, ARefusalSaysAnUnloadFailed) {
  testing::World w(ollama_qwen_and_w(R"(, "desired": "on")"));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->load_model(w.key("qwen")));
  w.provider.fail_unload = true;
  const MonoTime t0 = w.clock.mono_now();
  const Status st = w.controller->wake("w", Reason::kRequest);
  EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
  EXPECT_NE(st.message().find("model qwen (500 MiB, its unload failed: ollama did not answer)"),
            std::string::npos)
      << st.message();
  EXPECT_TRUE(st.retry_may_help());
  EXPECT_EQ(w.clock.mono_now(), t0);
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load qwen", "unload qwen"}));
}

// gpu.wait_seconds 0: a wake that would wait for in-flight work is refused at once, saying so
// (not "after waiting 0 s"), naming what holds the memory; Retry-After, as the work will end.
TEST(GpuController, WithNoWaitConfiguredTheRefusalSaysSo) {
  testing::World w(two_on_one_card(0));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  const Status st = w.controller->wake("b", Reason::kRequest);
  EXPECT_EQ(st.message(),
            "no room in the GPU budget now, and no wait is configured (gpu.wait_seconds is 0): b "
            "needs 600 MiB: it fits once requests in flight end; held by service a (600 MiB, "
            "in flight)");
  EXPECT_TRUE(st.retry_may_help());
  w.controller->end_request("a");
}

// A model's measured size_vram above its gpu_memory_mib estimate: warned once (the numbers and the
// key to raise), and the budget counts the measured size from then on (a new user's re-trial:
// nothing said so). FakeProvider reports 3e9 bytes (2861 MiB) for a loaded model.
TEST(GpuController, ASizeVramAboveTheEstimateIsWarnedOnceAndCounted) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 10000}]},
    "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 100}},
    "models": {"qwen": {"provider": "ollama", "gpu_memory_mib": 1000}}})");
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->load_model(w.key("qwen")));
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  w.controller->reconcile();
  w.controller->reconcile();
  spdlog::set_default_logger(previous);
  const std::string warning =
      "Model qwen (on ollama): its server reports a size_vram of 2861 MiB, more than its "
      "gpu_memory_mib estimate of 1000 MiB; the GPU budget counts the measured 2861 MiB from now "
      "on. Raise models.qwen.gpu_memory_mib to at least 2862";
  EXPECT_NE(log.str().find(warning), std::string::npos) << log.str();
  EXPECT_EQ(log.str().find(warning), log.str().rfind(warning)) << log.str();  // once
  const auto holders = gpu_holders(w.config.gpu, w.registry->snapshot());
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_NEAR(holders[1].mib, 3e9 / kMiB, 1e-6);
}

// Two desired-on services that cannot both fit: the one refused is a failed start, retried once
// per check interval like any other, not asked again at once (a new user's trial: the monitor
// retried it thousands of times a second, flooding the log).
TEST(GpuController, ADesiredOnStartThatCannotFitIsRetriedOncePerCheckNotAtOnce) {
  testing::World w(R"({
    "idle_check_interval_minutes": 5,
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": 2},
    "services": {"a": {"command": ["a"], "gpu_memory_mib": 800, "desired": "on"},
                 "b": {"command": ["b"], "gpu_memory_mib": 800, "desired": "on"}}})");
  w.controller->set_gpu(w.config.gpu);
  w.monitor->step();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a"}));
  const ServiceRuntime b = w.service("b");
  EXPECT_EQ(b.state, ServiceState::kError);
  EXPECT_NE(b.last_error.find("no room in the GPU budget"), std::string::npos) << b.last_error;
  ASSERT_TRUE(b.retry_at);
  // The next passes before the retry time ask nothing.
  for (int i = 0; i < 3; ++i) w.monitor->step();
  const std::vector<std::string> events = w.recorder.events();
  EXPECT_EQ(std::count(events.begin(), events.end(), "failed b start"), 1);
}

TEST(GpuController, AWakeWaitsForInFlightWorkThenFailsNamingTheHolder) {
  testing::World w(kTwoOnOneCard);
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  const MonoTime t0 = w.clock.mono_now();
  const Status st = w.controller->wake("b", Reason::kRequest);
  EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
  EXPECT_NE(st.message().find("held by service a (600 MiB, in flight)"), std::string::npos)
      << st.message();
  EXPECT_GE(w.clock.mono_now() - t0, Seconds(2));  // gpu.wait_seconds, on the fake clock
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a"}));  // a never stopped
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
  w.controller->end_request("a");
  ASSERT_TRUE(w.controller->wake("b", Reason::kRequest));  // idle now: a goes
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
}

// A wake larger than the budget in force is refused naming no holder, and its log line has no
// empty "held by" (it ended "...; held by ", issue 21's re-trial).
TEST(GpuController, ARefusalNamingNoHolderLogsNoEmptyHeldBy) {
  testing::World w(kTwoOnOneCard);
  GpuConfig gpu = w.config.gpu;
  gpu.devices[0].memory_mib = 500;  // e.g. what nvidia-smi's memory.used left
  w.controller->set_gpu(gpu);
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  const Status st = w.controller->wake("a", Reason::kRequest);
  spdlog::set_default_logger(previous);
  EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
  EXPECT_EQ(st.message(),
            "no room in the GPU budget: a needs 600 MiB on GPU 0, more than its budget of 500 MiB");
  EXPECT_NE(log.str().find("GPU: no room for a: a needs 600 MiB on GPU 0, more than its budget of "
                           "500 MiB\n"),
            std::string::npos)
      << log.str();
  EXPECT_EQ(log.str().find("held by"), std::string::npos) << log.str();
}

// A wait that outlasts many polls still ends in the evictions it waited for (a new user's trial:
// after ~16 polls, 0.8 s, eviction was no longer allowed and every such wake failed at the
// deadline, with an empty reason). The request on a ends 10 s into an hour's wait, on the fake
// clock, from another thread.
TEST(GpuController, AWakeThatWaitedStartsOnceTheRequestEnds) {
  testing::World w(two_on_one_card(3600));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  const MonoTime t0 = w.clock.mono_now();
  std::thread ender([&] {
    while (w.clock.mono_now() - t0 < Seconds(10)) std::this_thread::yield();
    w.controller->end_request("a");
  });
  const Status st = w.controller->wake("b", Reason::kRequest);
  ender.join();
  EXPECT_TRUE(st) << st.message();
  EXPECT_LT(w.clock.mono_now() - t0, Seconds(3600));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "stop a", "start b"}));
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
}

// a and b (600 MiB each) never fit together on 1000 MiB; c (300) fits beside either.
constexpr const char* kThreeOnOneCard = R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
    "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
                 "b": {"command": ["b"], "gpu_memory_mib": 600},
                 "c": {"command": ["c"], "gpu_memory_mib": 300}}})";

// The controller's side of it: c (300 MiB) fits beside a (600, in flight) and starts at once,
// while b (600) waits for a's request to end; then b starts. Before, c waited behind b for as
// long as b waited (here: until a's request ended).
TEST(GpuController, ASmallWakeThatFitsDoesNotWaitBehindABigOneThatWaits) {
  testing::World w(kThreeOnOneCard);
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;  // b's wait never runs out on the fake clock, however fast it spins
  w.controller->set_gpu(gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  Status b_woke;
  std::thread b([&] { b_woke = w.controller->wake("b", Reason::kRequest); });
  while (w.controller->gpu_waiting() == 0) std::this_thread::yield();
  std::atomic<bool> c_done{false};
  Status c_woke;
  std::thread c([&] {
    c_woke = w.controller->wake("c", Reason::kRequest);
    c_done = true;
  });
  // c must be done while a is still in flight and b still waits (a real-time bound: before the
  // change, c never finished until the request on a ended).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!c_done && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  const bool c_went_ahead = c_done;
  const int waiting_then = w.controller->gpu_waiting();
  // c is used (in flight), so that a alone goes for b: c, used before a's request ended, would
  // otherwise be the least recently used.
  const bool c_in_use = c_went_ahead && w.controller->begin_request("c");
  w.controller->end_request("a");  // b's turn: a goes (idle now), b starts beside c
  b.join();
  c.join();
  if (c_in_use) w.controller->end_request("c");
  EXPECT_TRUE(c_went_ahead);
  EXPECT_EQ(waiting_then, 1);  // b still waited when c was done
  EXPECT_TRUE(c_woke) << c_woke.message();
  EXPECT_TRUE(b_woke) << b_woke.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "start c", "stop a", "start b"}));
  EXPECT_EQ(w.service("c").state, ServiceState::kRunning);
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
}

// A wake that went ahead is not then stopped for the one it went ahead of: it was let go on the
// promise that it leaves that one its room (a new user's re-trial: c started, and b's plan, once
// a's request ended, stopped c first, c having started before a's last use, and then a too).
// As above, but c is not in use when b's turn comes: b stops a alone, c keeps running.
TEST(GpuController, AWakeThatWentAheadIsEvictedLastForTheOneItPassed) {
  testing::World w(kThreeOnOneCard);
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;
  w.controller->set_gpu(gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  Status b_woke;
  std::thread b([&] { b_woke = w.controller->wake("b", Reason::kRequest); });
  while (w.controller->gpu_waiting() == 0) std::this_thread::yield();
  ASSERT_TRUE(w.controller->wake("c", Reason::kRequest));  // goes ahead of b
  w.clock.advance_minutes(1);
  w.controller->end_request("a");  // a used last: the LRU order alone would stop c first
  b.join();
  EXPECT_TRUE(b_woke) << b_woke.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "start c", "stop a", "start b"}));
  EXPECT_EQ(w.service("c").state, ServiceState::kRunning);
}

// Room made for the head of the queue is its own until it shows as starting (a new user's trial:
// big's evictions freed 800 MiB, and mid, next in the queue, saw them free before big counted and
// started too: 1300 of 1200 MiB held). Replayed from the backend's calls: never over the budget.
TEST(GpuController, RoomMadeForAWakeIsNotTakenByTheNextBeforeItStarts) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1200}]},
    "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
                 "big": {"command": ["big"], "gpu_memory_mib": 800},
                 "mid": {"command": ["mid"], "gpu_memory_mib": 500}}})");
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;
  w.controller->set_gpu(gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->begin_request("a"));
  Status big_woke, mid_woke;
  std::thread big([&] { big_woke = w.controller->wake("big", Reason::kRequest); });
  while (w.controller->gpu_waiting() < 1) std::this_thread::yield();
  std::thread mid([&] { mid_woke = w.controller->wake("mid", Reason::kRequest); });
  while (w.controller->gpu_waiting() < 2) std::this_thread::yield();
  w.controller->end_request("a");  // big's turn: a goes; then mid's, once big is idle
  big.join();
  mid.join();
  EXPECT_TRUE(big_woke) << big_woke.message();
  EXPECT_TRUE(mid_woke) << mid_woke.message();
  const std::map<std::string, double> mib = {{"a", 600}, {"big", 800}, {"mid", 500}};
  double held = 0, most = 0;
  for (const std::string& call : w.backend.calls) {
    const std::size_t space = call.find(' ');
    const double m = mib.at(call.substr(space + 1));
    held += call.substr(0, space) == "start" ? m : -m;
    most = std::max(most, held);
  }
  EXPECT_LE(most, 1200) << ::testing::PrintToString(w.backend.calls);
}

// Room being made for the head of the queue is its own until it starts: a later wake that fits
// in what the head's evictions freed waits its turn (a new user's re-trial: it went ahead while
// the head's second eviction ran, and the head had to stop one more holder). h needs x and z
// gone; l arrives while z is being stopped, when x's room is free.
TEST(GpuController, RoomBeingMadeForTheHeadIsNotTakenByALaterWake) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1400}]},
    "services": {"x": {"command": ["x"], "gpu_memory_mib": 400},
                 "z": {"command": ["z"], "gpu_memory_mib": 400},
                 "y": {"command": ["y"], "gpu_memory_mib": 500},
                 "h": {"command": ["h"], "gpu_memory_mib": 900},
                 "l": {"command": ["l"], "gpu_memory_mib": 300}}})");
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;
  w.controller->set_gpu(gpu);
  for (const char* s : {"x", "z", "y"}) {
    w.clock.advance_minutes(1);
    ASSERT_TRUE(w.controller->wake(s, Reason::kRequest));  // used in that order: 100 MiB free
  }
  std::atomic<bool> l_done{false};
  Status l_woke;
  std::thread l;
  w.backend.on_stop = [&](const std::string& name) {
    if (name != "z") return;
    l = std::thread([&] {
      l_woke = w.controller->wake("l", Reason::kRequest);
      l_done = true;
    });
    // Until l went ahead (before the change) or waits its turn.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!l_done && w.controller->gpu_waiting() == 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  };
  w.clock.advance_minutes(1);  // h used after y: y, not h, goes for l
  ASSERT_TRUE(w.controller->wake("h", Reason::kRequest));
  l.join();
  EXPECT_TRUE(l_woke) << l_woke.message();
  // h's room was made in one round, x and z, and counted as h's (starting) before l planned; l
  // then made its own room, y. (h's start call may be recorded before or after l's: it counts
  // from the moment its room is made.)
  std::vector<std::string> calls = w.backend.calls;
  const auto at = [&](const std::string& call) {
    return std::find(calls.begin(), calls.end(), call) - calls.begin();
  };
  std::vector<std::string> stops;
  std::copy_if(calls.begin(), calls.end(), std::back_inserter(stops),
               [](const std::string& c) { return c.rfind("stop ", 0) == 0; });
  EXPECT_EQ(stops, (std::vector<std::string>{"stop x", "stop z", "stop y"}))
      << ::testing::PrintToString(calls);
  EXPECT_GT(at("start l"), at("stop y")) << ::testing::PrintToString(calls);
  EXPECT_LT(at("start h"), static_cast<std::ptrdiff_t>(calls.size()));
}

// Requests for a model that another request loaded meanwhile need no room: they go on, and do not
// hold the queue (found by replaying a new user's trial, Gpu.TwentyConcurrentRequests...: llama's
// request, at the head, waited for qwen's requests to end, and qwen's, queued behind it for room
// though qwen was loaded by then, for llama's; all until wait_seconds). On the fake clock: the
// head's waits advance it, so before the change r2 got its 503 after the hour.
TEST(GpuController, RequestsForAModelLoadedMeanwhileGoOnWithoutRoom) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
    "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 100}},
    "models": {"qwen": {"provider": "ollama", "gpu_memory_mib": 600},
               "llama": {"provider": "ollama", "gpu_memory_mib": 600}}})");
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;  // the head's polls advance the fake clock: never out of time here
  w.controller->set_gpu(gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey qwen = w.key("qwen"), llama = w.key("llama");
  const auto r1 = w.controller->begin_model_request(qwen);
  ASSERT_TRUE(w.controller->make_room_for_model(qwen));  // r1 forwarded: qwen being loaded
  // llama's request waits for qwen's to end (the head); r2, for qwen, queues behind it.
  (void)w.controller->begin_model_request(llama);
  Status llama_room;
  std::thread head([&] { llama_room = w.controller->make_room_for_model(llama); });
  while (w.controller->gpu_waiting() < 1) std::this_thread::yield();
  const auto r2 = w.controller->begin_model_request(qwen);
  std::atomic<bool> r2_done{false};
  Status r2_room;
  std::thread second([&] {
    r2_room = w.controller->make_room_for_model(qwen);
    r2_done = true;
  });
  while (!r2_done && w.controller->gpu_waiting() < 2) std::this_thread::yield();
  // r1's answer: qwen is loaded. r2 goes on at once (a real-time bound: before the change it
  // waited for llama's request, which waited for r2's).
  EXPECT_TRUE(w.controller->model_accepted(qwen, {300}, r1));
  w.controller->end_model_request(qwen, true);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!r2_done && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  const bool went_on = r2_done;
  EXPECT_TRUE(went_on);
  if (!went_on) {  // before the change: unblock it all (r2's request ends unanswered)
    w.controller->end_model_request(qwen, false);
    head.join();
    w.controller->end_model_request(llama, false);
    second.join();
    return;
  }
  second.join();
  EXPECT_TRUE(r2_room) << r2_room.message();
  w.controller->end_model_request(qwen, w.controller->model_accepted(qwen, {300}, r2));
  head.join();  // then llama's turn: qwen, idle now, is unloaded for it
  EXPECT_TRUE(llama_room) << llama_room.message();
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"unload qwen"}));
  w.controller->end_model_request(llama, false);
}

// Ollama (100) with m1 (300) and m2 (400), and w (950), on a 1000 MiB card.
constexpr const char* kOllamaTwoModelsAndW = R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
    "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 100},
                 "w": {"command": ["w"], "gpu_memory_mib": 950}},
    "models": {"m1": {"provider": "ollama", "gpu_memory_mib": 300},
               "m2": {"provider": "ollama", "gpu_memory_mib": 400}}})";

// ollama up, and r1 on m1 in flight as the proxy counts it (on its server, then on its model,
// then its room), loaded. The budget waits 1e9 s: the head's polls advance the fake clock, and
// never that far.
void serve_r1_on_m1(testing::World& w) {
  GpuConfig gpu = w.config.gpu;
  gpu.wait_seconds = 1e9;
  w.controller->set_gpu(gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey m1 = w.key("m1");
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  const auto r1 = w.controller->begin_model_request(m1);
  ASSERT_TRUE(w.controller->make_room_for_model(m1));
  ASSERT_TRUE(w.controller->model_accepted(m1, {300}, r1));
}

// A wake that waits for a model server's requests to end does not wait for the ones queued behind
// it for room (a new user's re-trial, 3 runs in 6: a 950 MiB service's wake, at the head, waited
// for Ollama's in-flight requests, which were model requests queued behind it, and they for it,
// until gpu.wait_seconds; then every one of them got its 503). Here r2, for m2, arrives while w's
// wake waits for r1 (on m1); r1 ends: r2, the only work left on ollama, is served first (it fits
// beside m1 and ollama), then w stops them all. On the fake clock: before the change r2 never got
// its room (the head's polls advance fake time, but 1e9 s never pass).
TEST(GpuController, AWakeDoesNotWaitForModelRequestsQueuedBehindIt) {
  testing::World w(kOllamaTwoModelsAndW);
  serve_r1_on_m1(w);
  const ModelKey m1 = w.key("m1"), m2 = w.key("m2");
  Status w_woke;
  std::thread wake([&] { w_woke = w.controller->wake("w", Reason::kRequest); });
  while (w.controller->gpu_waiting() < 1) std::this_thread::yield();  // w waits for r1
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  const auto r2 = w.controller->begin_model_request(m2);
  ASSERT_TRUE(r2.has_value());  // m2 is not loaded: room first
  std::atomic<bool> r2_done{false};
  Status r2_room;
  std::thread second([&] {
    r2_room = w.controller->make_room_for_model(m2);
    r2_done = true;
  });
  while (!r2_done && w.controller->gpu_waiting() < 2) std::this_thread::yield();
  w.controller->end_model_request(m1, true);  // r1 ends: only r2, queued, is left on ollama
  w.controller->end_request("ollama");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!r2_done && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  const bool served = r2_done;
  EXPECT_TRUE(served);
  // r2 answered (or, before the change, given up on by its client): then w's turn.
  if (served) {
    EXPECT_TRUE(r2_room) << r2_room.message();
    w.controller->model_accepted(m2, {300}, r2);
  }
  w.controller->end_model_request(m2, served);
  w.controller->end_request("ollama");
  wake.join();
  second.join();
  EXPECT_TRUE(w_woke) << w_woke.message();
  if (!served) return;
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start ollama", "stop ollama", "start w"}));
  EXPECT_EQ(w.controller->gpu_waiting(), 0);
}

// Served first only while the head has time to spare: past half of its gpu.wait_seconds, a model
// request it waits for gives way (a 503 it may retry), so that the head, first in line, is
// served before its wait runs out (a new user's re-trial: a stream of model requests went ahead of
// a big wake, each with a model swap, until the wake's 503). As above, but w has waited over half
// its time (the fake clock moved on) when r2 arrives.
TEST(GpuController, AModelRequestGivesWayToAWakeThatWaitedHalfItsTime) {
  testing::World w(kOllamaTwoModelsAndW);
  serve_r1_on_m1(w);
  const ModelKey m1 = w.key("m1"), m2 = w.key("m2");
  Status w_woke;
  std::thread wake([&] { w_woke = w.controller->wake("w", Reason::kRequest); });
  while (w.controller->gpu_waiting() < 1) std::this_thread::yield();  // w waits for r1
  w.clock.advance(std::chrono::seconds(600'000'000));                 // over half its wait
  ASSERT_TRUE(w.controller->begin_request("ollama"));
  ASSERT_TRUE(w.controller->begin_model_request(m2).has_value());
  std::atomic<bool> r2_done{false};
  Status r2_room;
  std::thread second([&] {
    r2_room = w.controller->make_room_for_model(m2);
    r2_done = true;
  });
  while (!r2_done && w.controller->gpu_waiting() < 2) std::this_thread::yield();
  w.controller->end_model_request(m1, true);  // r1 ends: r2, queued, is all w waits for
  w.controller->end_request("ollama");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!r2_done && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  ASSERT_TRUE(r2_done);
  second.join();
  EXPECT_FALSE(r2_room);
  EXPECT_NE(r2_room.message().find("w is first in line"), std::string::npos) << r2_room.message();
  EXPECT_NE(r2_room.message().find("it gives way"), std::string::npos) << r2_room.message();
  EXPECT_TRUE(r2_room.retry_may_help());
  w.controller->end_model_request(m2, false);  // its 503 answered: nothing left on ollama
  w.controller->end_request("ollama");
  wake.join();
  EXPECT_TRUE(w_woke) << w_woke.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start ollama", "stop ollama", "start w"}));
}

// The same for a request for a loaded model, which needs no room and so never queued (a new
// user's re-trial: 2-3 clients streaming to the loaded model kept Ollama in flight, 125-131
// requests served, and the big wake got its 503 after gpu.wait_seconds). Before half of w's wait
// it goes on; past it, it gives way, and once the requests on ollama end, w starts.
TEST(GpuController, ARequestForALoadedModelGivesWayToAWakeThatWaitedHalfItsTime) {
  testing::World w(kOllamaTwoModelsAndW);
  serve_r1_on_m1(w);
  const ModelKey m1 = w.key("m1");
  Status w_woke;
  std::thread wake([&] { w_woke = w.controller->wake("w", Reason::kRequest); });
  while (w.controller->gpu_waiting() < 1) std::this_thread::yield();  // w waits for r1
  const auto request = [&] {  // the proxy's calls for a request on m1, loaded
    EXPECT_TRUE(w.controller->begin_request("ollama"));
    EXPECT_FALSE(w.controller->begin_model_request(m1).has_value());  // loaded: no room to make
    return w.controller->model_request_gives_way(m1);
  };
  const auto end = [&] {
    w.controller->end_model_request(m1, false);
    w.controller->end_request("ollama");
  };
  Status early = request();
  EXPECT_TRUE(early) << early.message();  // w has time to spare
  end();
  w.clock.advance(std::chrono::seconds(600'000'000));  // over half its wait
  for (int i = 0; i < 3; ++i) {
    Status late = request();
    EXPECT_FALSE(late);
    EXPECT_NE(late.message().find("w is first in line"), std::string::npos) << late.message();
    EXPECT_NE(late.message().find("it gives way"), std::string::npos) << late.message();
    EXPECT_TRUE(late.retry_may_help());
    end();
  }
  w.controller->end_model_request(m1, true);  // r1 ends: nothing left on ollama
  w.controller->end_request("ollama");
  wake.join();
  EXPECT_TRUE(w_woke) << w_woke.message();
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start ollama", "stop ollama", "start w"}));
  // Nobody waits: a request for m1 (on ollama, started again by it) would not give way.
  EXPECT_TRUE(w.controller->model_request_gives_way(m1));
}

// A request for a model that is being unloaded (for room, or its keep-alive) loads it again: it
// makes room first, as for a model not loaded (a new user's re-trial: it was forwarded without a
// plan, and the budget stayed over, 1400 of 1000 MiB). m (its server reported 500 MiB) unloads
// while a (450) is busy: m does not fit beside a and ollama again, so, with no wait configured,
// its request gets the refusal.
TEST(GpuController, ARequestForAModelBeingUnloadedMakesRoomForItsLoad) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": 0},
    "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 100},
                 "a": {"command": ["a"], "gpu_memory_mib": 450}},
    "models": {"m": {"provider": "ollama", "gpu_memory_mib": 450}}})");
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey m = w.key("m");
  ASSERT_TRUE(w.controller->load_model(m));
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));  // 1000 of 1000
  ASSERT_TRUE(w.controller->begin_request("a"));
  w.registry->update_model(m, [](const ModelSpec&, ModelRuntime& rt) {
    rt.vram_bytes = 500 * kMiB;  // what /api/ps said once it was loaded
    rt.unloading = true;         // its unload runs (for room, or its keep-alive ended)
  });
  const auto ticket = w.controller->begin_model_request(m);
  EXPECT_TRUE(ticket.has_value());  // a load: counted as one if its server accepts it
  const Status room = w.controller->make_room_for_model(m);
  EXPECT_FALSE(room);
  EXPECT_NE(room.message().find("no room in the GPU budget"), std::string::npos) << room.message();
  w.controller->end_model_request(m, false);
  w.controller->end_request("a");
}

// A load through the proxy asks for room as an admin load does: the request is in flight on the
// model already (so it counts), and its own plan leaves it out. a (600, idle) is stopped for m.
TEST(GpuController, AProxiedLoadMakesRoomFirst) {
  testing::World w(R"({
    "gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
    "services": {"a": {"command": ["a"], "gpu_memory_mib": 600},
                 "o": {"command": ["o"], "gpu_memory_mib": 100}},
    "models": {"m": {"provider": "o", "gpu_memory_mib": 500}}})");
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("a", Reason::kRequest));
  ASSERT_TRUE(w.controller->wake("o", Reason::kRequest));  // 700 of 1000
  (void)w.controller->begin_model_request({"m", "o"});
  ASSERT_TRUE(w.controller->make_room_for_model({"m", "o"}));
  EXPECT_EQ(w.backend.calls, (std::vector<std::string>{"start a", "start o", "stop a"}));
  // It counts while its request is in flight: o's 100 and m's 500.
  const auto use = gpu_use(w.config.gpu, gpu_holders(w.config.gpu, w.registry->snapshot()));
  EXPECT_DOUBLE_EQ(use[0].held_mib, 600);
  w.controller->end_model_request({"m", "o"}, false);
}

// Ollama (150) and two models of 500 on a 1000 MiB card: one model at a time beside the server.
std::string ollama_two_models(int wait_seconds) {
  return R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}], "wait_seconds": )" +
         std::to_string(wait_seconds) + R"(},
    "services": {"ollama": {"command": ["ollama"], "gpu_memory_mib": 150}},
    "models": {"qwen": {"provider": "ollama", "gpu_memory_mib": 500},
               "llama": {"provider": "ollama", "gpu_memory_mib": 500}}})";
}

// An admin load holds the room it made while it runs, and is busy: a request for another model
// meanwhile does not take that room (it held nothing: both loads went ahead, 1150 of 1000 MiB).
TEST(GpuController, AnAdminLoadInProgressHoldsItsRoom) {
  testing::World w(ollama_two_models(0));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey qwen = w.key("qwen"), llama = w.key("llama");
  double held_during = 0;
  Status qwen_room;
  w.provider.during_load = [&](const std::string& model) {
    if (model != "llama") return;
    held_during =
        gpu_use(w.config.gpu, gpu_holders(w.config.gpu, w.registry->snapshot()))[0].held_mib;
    (void)w.controller->begin_model_request(qwen);
    qwen_room = w.controller->make_room_for_model(qwen);
    w.controller->end_model_request(qwen, false);
  };
  ASSERT_TRUE(w.controller->load_model(llama));
  EXPECT_DOUBLE_EQ(held_during, 650);
  EXPECT_FALSE(qwen_room);  // no wait configured: llama's load is in the way, and busy
  EXPECT_NE(qwen_room.message().find("llama"), std::string::npos) << qwen_room.message();
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load llama"}));  // not unloaded for it
  // Loaded: it holds its size as a loaded model, and is idle (no admin load left counted).
  EXPECT_EQ(w.model("llama").admin_loads, 0);
  EXPECT_FALSE(w.model("llama").load_room);
  EXPECT_DOUBLE_EQ(
      gpu_use(w.config.gpu, gpu_holders(w.config.gpu, w.registry->snapshot()))[0].held_mib, 650);
}

// A new user's re-trial (5 runs in 85): an admin load of llama, already loaded, found it loaded
// and went on; an eviction for room unloaded it before the load reached Ollama, which loaded it
// again beside the model the room was made for (1150 of 1000 MiB). The admin load holds the
// loaded model from its look on, under the lock the eviction's claim takes: qwen finds no room.
TEST(GpuController, AnAdminLoadOfALoadedModelKeepsItFromAnEvictionForRoom) {
  testing::World w(ollama_two_models(0));
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey qwen = w.key("qwen"), llama = w.key("llama");
  ASSERT_TRUE(w.controller->load_model(llama));
  ASSERT_TRUE(w.model("llama").loaded);
  Status qwen_room;
  w.provider.during_load = [&](const std::string& model) {
    if (model != "llama") return;
    ASSERT_TRUE(w.controller->begin_request("ollama"));
    (void)w.controller->begin_model_request(qwen);
    qwen_room = w.controller->make_room_for_model(qwen);
    w.controller->end_model_request(qwen, false);
    w.controller->end_request("ollama");
  };
  ASSERT_TRUE(w.controller->load_model(llama));
  EXPECT_FALSE(qwen_room);  // no wait configured: llama's load is in the way
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load llama", "load llama"}));
  EXPECT_TRUE(w.model("llama").loaded);
  EXPECT_EQ(w.model("llama").admin_loads, 0);
  EXPECT_DOUBLE_EQ(
      gpu_use(w.config.gpu, gpu_holders(w.config.gpu, w.registry->snapshot()))[0].held_mib, 650);
}

// A new user's re-trial (4 runs in 10): an admin load of llama, then at once a request for qwen
// and one for llama. qwen's, at the head of the queue, waited for llama (being loaded, busy); the
// one for llama queued behind qwen for room its load already held, so llama stayed busy, until
// gpu.wait_seconds and a 503 for qwen. The request for a model being loaded needs no room: it
// goes on (its server finishes the load), ends, and qwen unloads llama for its room.
TEST(GpuController, ARequestForAModelBeingLoadedDoesNotQueueForItsRoom) {
  testing::World w(ollama_two_models(600));  // the head's polls advance the fake clock
  w.controller->set_gpu(w.config.gpu);
  ASSERT_TRUE(w.controller->wake("ollama", Reason::kRequest));
  const ModelKey qwen = w.key("qwen"), llama = w.key("llama");
  std::thread qwen_request;
  std::atomic<bool> qwen_done{false};
  Status qwen_room, llama_room;
  std::optional<std::uint64_t> llama_ticket;
  w.provider.during_load = [&](const std::string& model) {
    if (model != "llama" || qwen_request.joinable()) return;
    ASSERT_TRUE(w.controller->begin_request("ollama"));
    (void)w.controller->begin_model_request(qwen);
    qwen_request = std::thread([&] {
      qwen_room = w.controller->make_room_for_model(qwen);
      qwen_done = true;
    });
    while (!qwen_done && w.controller->gpu_waiting() < 1) std::this_thread::yield();
    ASSERT_TRUE(w.controller->begin_request("ollama"));
    llama_ticket = w.controller->begin_model_request(llama);
    llama_room = w.controller->make_room_for_model(llama);  // at once: its load holds the room
    EXPECT_FALSE(qwen_done) << "qwen waits for llama's load";
  };
  ASSERT_TRUE(w.controller->load_model(llama));
  EXPECT_TRUE(llama_room) << llama_room.message();
  // llama's request is answered and ends: qwen's turn, llama unloaded for it.
  w.controller->end_model_request(llama, w.controller->model_accepted(llama, {300}, llama_ticket));
  w.controller->end_request("ollama");
  qwen_request.join();
  EXPECT_TRUE(qwen_room) << qwen_room.message();
  EXPECT_EQ(w.provider.calls, (std::vector<std::string>{"load llama", "unload llama"}));
  w.controller->end_model_request(qwen, false);
  w.controller->end_request("ollama");
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
