// A measured GPU size end to end (docs/gpu.md#measured-sizes): the real binary, real processes
// and a fake nvidia-smi that reports the service's real pid as a compute app. The most the
// service's processes were seen to hold is its size in the budget: a later wake of another
// service makes room for it, and it is kept across a stop and a restart (the state file).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

TEST(GpuMeasured, TheMostAProcessServiceHeldIsItsSizeForTheNextWakes) {
  TempDir dir;
  const fs::path pid_file = dir / "whisper.pid";
  const fs::path held_file = dir / "held";
  std::ofstream(held_file) << "750\n";
  // GPU 0 (uuid GPU-0): the service's pid holds what `held` says once it wrote its pid.
  const fs::path tool = dir / "nvidia-smi";
  std::ofstream(tool) << "#!/bin/sh\n"
                         "case \"$1\" in\n"
                         "  --query-gpu=index,uuid,*) echo '0, GPU-0, 5, 800' ;;\n"
                         "  --query-compute-apps=*)\n"
                         "    [ -s '"
                      << pid_file.string() << "' ] && echo \"$(cat '" << pid_file.string()
                      << "'), GPU-0, $(cat '" << held_file.string()
                      << "')\" ;;\n"
                         "  *) echo '0, 4000, 0' ;;\n"
                         "esac\n"
                         "exit 0\n";
  fs::permissions(tool, fs::perms::owner_all);
  ::setenv("SIESTA_NVIDIA_SMI", tool.c_str(), 1);

  const int whisper_port = free_port();
  const int big_port = free_port();
  const std::string state = (dir / "state.json").string();
  // whisper writes its pid (exec keeps it: the pid is its process group's) and serves.
  const json whisper_cmd =
      json::array({"sh", "-c",
                   "echo $$ > '" + pid_file.string() + "'; exec " + std::string(SIESTA_TESTSERVER) +
                       " --port " + std::to_string(whisper_port)});
  const json big_cmd = json::array({SIESTA_TESTSERVER, "--port", std::to_string(big_port)});
  const json config = {{"state_file", state},
                       {"gpu", {{"devices", json::array({{{"id", 0}, {"memory_mib", 4000}}})}}},
                       {"services",
                        {{"whisper",
                          {{"command", whisper_cmd},
                           {"upstream", "127.0.0.1:" + std::to_string(whisper_port)},
                           {"health", "/health"},
                           {"gpu_memory_mib", "measured"}}},
                         {"big",
                          {{"command", big_cmd},
                           {"upstream", "127.0.0.1:" + std::to_string(big_port)},
                           {"health", "/health"},
                           {"gpu_memory_mib", 3500}}}}}};
  const auto wake = [](const SiestaProcess& s, const std::string& name) {
    auto client = s.client();
    client.set_read_timeout(seconds(30));
    return client.Post("/admin/services/" + name + "/wake");
  };
  {
    SiestaProcess siesta(dir.path(), config.dump());
    ASSERT_TRUE(siesta.start()) << siesta.log();
    EXPECT_TRUE(status_of(siesta, "whisper")["gpu_memory_mib"].is_null());
    ASSERT_EQ(wake(siesta, "whisper")->status, 200);
    // Sampled at once after its start, then every 10 s: 750 MiB.
    ASSERT_TRUE(eventually([&] { return status_of(siesta, "whisper")["gpu_memory_mib"] == 750; },
                           seconds(15)))
        << status_of(siesta, "whisper").dump() << siesta.log();
    EXPECT_EQ(status_of(siesta, "whisper")["gpu_memory_source"], "measured");
    EXPECT_TRUE(siesta.wait_log("Service whisper: holds 750 MiB of GPU memory (measured)"))
        << siesta.log();
    // big (3500) does not fit beside whisper's 750 on 4000: whisper is stopped for room.
    auto res = wake(siesta, "big");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body << siesta.log();
    EXPECT_EQ(status_of(siesta, "whisper")["actual"], "stopped");
    EXPECT_TRUE(siesta.wait_log("Stopping service whisper (make_room)...")) << siesta.log();
    EXPECT_EQ(status_of(siesta, "whisper")["gpu_memory_mib"], 750);  // kept while stopped
    EXPECT_EQ(siesta.stop(SIGINT), 0);
  }
  // A restart knows whisper's size before it runs: its wake stops big for room at once.
  std::ofstream(pid_file, std::ios::trunc);  // no pid: nvidia-smi lists nothing meanwhile
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_EQ(status_of(siesta, "whisper")["gpu_memory_mib"], 750);
  ASSERT_EQ(wake(siesta, "big")->status, 200);
  auto res = wake(siesta, "whisper");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body << siesta.log();
  EXPECT_EQ(status_of(siesta, "big")["actual"], "stopped") << siesta.log();
  ::unsetenv("SIESTA_NVIDIA_SMI");
}

// A measured idle power end to end (docs/policies.md#energy-and-cost): a fake nvidia-smi whose GPU
// draws 95.5 W while the service's process lives and 35.5 W once it is gone. siesta reads the
// draw while the service runs idle, puts it to sleep at its timeout, reads again once settled:
// 60 W, shown in idle-status and kept in the state file.
TEST(GpuMeasured, AServicesIdlePowerIsTheDropOfItsGpusDrawAtItsStop) {
  TempDir dir;
  const fs::path pid_file = dir / "whisper.pid";
  const fs::path tool = dir / "nvidia-smi";
  std::ofstream(tool) << "#!/bin/sh\n"
                         "case \"$1\" in\n"
                         "  --query-gpu=index,power.draw)\n"
                         "    if [ -s '"
                      << pid_file.string() << "' ] && kill -0 \"$(cat '" << pid_file.string()
                      << "')\" 2>/dev/null; then echo '0, 95.5'; else echo '0, 35.5'; fi ;;\n"
                         "  *) echo '0, 4000, 0' ;;\n"
                         "esac\n"
                         "exit 0\n";
  fs::permissions(tool, fs::perms::owner_all);
  ::setenv("SIESTA_NVIDIA_SMI", tool.c_str(), 1);
  const int port = free_port();
  const std::string state = (dir / "state.json").string();
  const json cmd =
      json::array({"sh", "-c",
                   "echo $$ > '" + pid_file.string() + "'; exec " + std::string(SIESTA_TESTSERVER) +
                       " --port " + std::to_string(port)});
  const json config = {{"state_file", state},
                       {"idle_check_interval_minutes", 0.01},
                       {"services",
                        {{"whisper",
                          {{"command", cmd},
                           {"upstream", "127.0.0.1:" + std::to_string(port)},
                           {"health", "/health"},
                           {"idle_timeout_minutes", 0.1},
                           {"idle_power_watts", "measured"}}}}}};
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_EQ(status_of(siesta, "whisper")["idle_power_source"], "measured");
  EXPECT_TRUE(status_of(siesta, "whisper")["idle_power_watts"].is_null());
  auto client = siesta.client();
  client.set_read_timeout(seconds(30));
  ASSERT_EQ(client.Post("/admin/services/whisper/wake")->status, 200);
  // Asleep after 6 s idle, measured 10 s after the stop.
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "whisper")["idle_power_watts"] == 60; },
                         seconds(40)))
      << status_of(siesta, "whisper").dump() << siesta.log();
  EXPECT_EQ(status_of(siesta, "whisper")["idle_power_measurements"], 1);
  EXPECT_TRUE(
      siesta.wait_log("Service whisper: idle power measured at its stop: 60.0 W (95.5 W "
                      "drawn before, 35.5 W after); counted at 60.0 W, the median of 1"))
      << siesta.log();
  // Read through a JSON pointer: the const operator[] of a key not there yet (the file is saved
  // before the measurement too) is undefined behaviour (nlohmann::json asserts it), which ended
  // this test in an abort on CI's machine.
  ASSERT_TRUE(eventually([&] {
    std::ifstream in(state);
    const json doc = json::parse(in, nullptr, false);
    const json::json_pointer samples("/services/whisper/idle_power_samples");
    return doc.is_object() && doc.contains(samples) && doc.at(samples) == json({60});
  })) << siesta.log();
  ::unsetenv("SIESTA_NVIDIA_SMI");
}

}  // namespace
}  // namespace siesta::testing
