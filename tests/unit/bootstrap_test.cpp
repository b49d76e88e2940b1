// Start-up (siesta/bootstrap): what main() does before it wires the parts, and World with it.
#include "siesta/bootstrap/bootstrap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <filesystem>
#include <fstream>

#include "siesta/proxy/proxy.h"
#include "temp_dir.h"
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

// World seeds its registry through seed(), as main() does: a config's state file is restored,
// handles into their backends.
TEST(Bootstrap, AWorldWithAStateFileStartsFromItAsMainDoes) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("siesta-bootstrap-seed-" + std::to_string(::getpid()) + ".json"))
                               .string();
  const std::string config =
      R"({"state_file": ")" + path + R"(", "services": {"a": {"command": ["a"]}}})";
  {
    World before(config);
    before.backend.handles["a"] = {{"pid", 7}};
    ASSERT_TRUE(before.controller->set_desired("a", Desired::kOn));
    const Controller::BackendMap backends{{"process", &before.backend}};
    ASSERT_TRUE(
        StateStore(path).save(encode_state(before.registry->snapshot(), baseline_of(before.config),
                                           handles_of(*before.registry, backends))));
  }
  World after(config);
  EXPECT_EQ(after.service("a").desired, Desired::kOn);
  EXPECT_EQ(after.backend.handles["a"], (nlohmann::json{{"pid", 7}}));
  std::filesystem::remove(path);
}

TEST(Bootstrap, TheBackendsAreThoseTheConfigUses) {
  Config config = parse_config(R"({"services": {"a": {"command": ["a"]}}})", "test.json");
  FakeClock clock;
  const auto no_env = [](const char*) -> const char* { return nullptr; };
  auto made = make_backends(config, clock, no_env);
  ASSERT_TRUE(made);
  EXPECT_EQ(made->configured, 1u);
  const auto map = made->map();
  ASSERT_EQ(map.size(), 1u);
  EXPECT_EQ(map.begin()->first, "process");
  EXPECT_NE(map.begin()->second, nullptr);

  Config docker = parse_config(R"({"docker": {"host": "tcp://127.0.0.1:1", "label_discovery":
      false}, "services": {"c": {"container": "c"}}})",
                               "test.json");
  auto with_docker = make_backends(docker, clock, no_env);
  ASSERT_TRUE(with_docker);
  EXPECT_EQ(with_docker->map().count("docker"), 1u);
  EXPECT_EQ(with_docker->map().count("swarm"), 0u);
}

TEST(Bootstrap, ProxyConnectionsFitTheOpenFileLimit) {
  EXPECT_EQ(fit_connections(100, 1024), 100);
  EXPECT_EQ(fit_connections(4096, 1024), 384);  // (1024 - 256) / 2
  EXPECT_EQ(fit_connections(4096, 300), 75);    // a quarter of a tiny limit
}

TEST(Bootstrap, EachModelApiHasItsProviderAndItsRoutes) {
  ServiceSpec spec;
  spec.upstream_host = "127.0.0.1";
  spec.upstream_port = 1;
  EXPECT_EQ(make_model_provider(spec), nullptr);
  EXPECT_EQ(model_api_for(ServiceSpec::ModelApi::kNone), nullptr);
  for (auto api : {ServiceSpec::ModelApi::kOllama, ServiceSpec::ModelApi::kVllm,
                   ServiceSpec::ModelApi::kOpenAi}) {
    spec.model_api = api;
    EXPECT_NE(make_model_provider(spec), nullptr) << to_string(api);
    EXPECT_NE(model_api_for(api), nullptr) << to_string(api);
  }
  EXPECT_NE(model_api_for(ServiceSpec::ModelApi::kVllm),
            model_api_for(ServiceSpec::ModelApi::kOpenAi));
}

// The GPU budget at start-up (docs/gpu.md): a fake nvidia-smi, a shell script printing `csv` as
// `--query-gpu=index,memory.total,memory.used` would.
class BootstrapGpu : public TempDir {
 protected:
  // A shell script whose body is `body`; its path.
  std::string fake_nvidia_smi_doing(const std::string& body) {
    const std::string path = (dir_ / "nvidia-smi").string();
    std::ofstream(path) << "#!/bin/sh\n" << body;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    return path;
  }
  std::string fake_nvidia_smi(const std::string& csv) {
    return fake_nvidia_smi_doing("echo '" + csv + "'\n");
  }
  Getenv env_with(std::string tool) {
    tool_ = std::move(tool);
    return [this](const char* name) -> const char* {
      return std::string(name) == "SIESTA_NVIDIA_SMI" ? tool_.c_str() : nullptr;
    };
  }
  std::vector<std::string> said_;
  std::function<void(bool, const std::string&)> say() {
    return [this](bool warning, const std::string& line) {
      said_.push_back((warning ? "warning: " : "") + line);
    };
  }
  std::string tool_;
};

constexpr const char* kComfy = R"({"gpu": {"devices": [{"id": 0}]},
  "services": {"comfyui": {"command": ["comfy"], "gpu_memory_mib": 12000}}})";

// --check-config compared a size with memory.total, while start-up's budget is the total less
// what other processes use: a service that passed the check had every wake refused (issue 21's
// re-trial). Both check against the budget start-up uses, and say how it came to be.
TEST_F(BootstrapGpu, SizesAreCheckedAgainstTheBudgetLessWhatOthersUse) {
  Config config = parse_config(kComfy, "gpu.json");
  GpuProbe probe;
  prepare_config(config, env_with(fake_nvidia_smi("0, 24576, 20000")), false, &probe);
  EXPECT_EQ(config.gpu.devices[0].memory_mib, 24576);  // the total: 12000 fits in it
  try {
    gpu_less_unmanaged(config, nullptr, probe, say());  // nothing of siesta's found running
    FAIL() << "accepted 12000 MiB beside 20000 used by others on a 24576 MiB card";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "config error in gpu.json: services.comfyui.gpu_memory_mib: 12000 MiB is more "
                 "than GPU 0's budget of 4576 MiB (the total, 24576 MiB, less 20000 MiB used by "
                 "other processes at start-up): it could never fit; set "
                 "gpu.devices[0].memory_mib if those processes leave it more room");
  }
  // comfyui itself was found running (left by an earlier siesta) and holds 12000 of the 20000:
  // others use 8000, and 16576 is left for siesta.
  Config adopted = parse_config(kComfy, "gpu.json");
  prepare_config(adopted, env_with(fake_nvidia_smi("0, 24576, 20000")), false, &probe);
  auto registry = make_registry(adopted, WallTime{});
  registry->update_service(
      "comfyui", [](const ServiceSpec&, ServiceRuntime& rt) { rt.state = ServiceState::kRunning; });
  const Snapshot running = registry->snapshot();
  said_.clear();
  gpu_less_unmanaged(adopted, &running, probe, say());
  EXPECT_EQ(adopted.gpu.devices[0].memory_mib, 16576);
  ASSERT_EQ(said_.size(), 1u);
  EXPECT_EQ(said_[0],
            "GPU 0: 20000 of 24576 MiB in use at start-up, 8000 by processes siesta does not "
            "manage (siesta's services and models found running hold 12000): the budget is the "
            "total less that, 16576 MiB");
}

// SIESTA_NVIDIA_SMI set to an empty string means no nvidia-smi: it ran "" before, and the error
// read "is required without nvidia-smi ( no command)".
TEST_F(BootstrapGpu, AnEmptySiestaNvidiaSmiMeansNoNvidiaSmi) {
  Config config = parse_config(kComfy, "gpu.json");
  try {
    prepare_config(config, env_with(""), false);
    FAIL() << "a budget without nvidia-smi";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "config error in gpu.json: gpu.devices[0].memory_mib: is required without "
                 "nvidia-smi (SIESTA_NVIDIA_SMI is set but empty: no nvidia-smi is run)");
  }
}

// What nvidia-smi says on stderr alone is in the error (it said only "exited with code 18").
TEST_F(BootstrapGpu, WhatNvidiaSmiSaysOnStderrIsInTheError) {
  const std::string path = fake_nvidia_smi_doing(
      "echo 'Failed to initialize NVML: Driver/library version mismatch' >&2\nexit 18\n");
  Config config = parse_config(kComfy, "gpu.json");
  try {
    prepare_config(config, env_with(path), false);
    FAIL() << "a budget without nvidia-smi's answer";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "config error in gpu.json: gpu.devices[0].memory_mib: is required without "
              "nvidia-smi (" +
                  path +
                  " exited with code 18: Failed to initialize NVML: Driver/library version "
                  "mismatch)");
  }
}

// start_gpu_budget as main() runs it: comfyui, left running by an earlier siesta, is found by
// the reconcile, so its 12000 MiB of the 20000 in use are siesta's; the controller gets the
// budget of the total less the 8000 others use.
TEST(Bootstrap, TheGpuBudgetAtStartUpCountsWhatTheServicesFoundRunningHold) {
  World w(kComfy);
  w.backend.running.insert("comfyui");
  GpuProbe probe;
  probe.rows = {{0, 24576, 20000}};
  probe.from_total = {0};
  w.config.gpu.devices[0].memory_mib = 24576;  // as prepare_config took it from the total
  std::vector<std::string> said;
  start_gpu_budget(w.config, probe, *w.controller, *w.registry,
                   [&](bool warning, const std::string& line) {
                     said.push_back((warning ? "warning: " : "") + line);
                   });
  EXPECT_EQ(w.service("comfyui").state, ServiceState::kRunning);
  ASSERT_EQ(w.controller->gpu().devices.size(), 1u);
  EXPECT_EQ(w.controller->gpu().devices[0].memory_mib, 16576);
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("8000 by processes siesta does not manage"));

  // A size that cannot fit beside what others use stops the start, as --check-config does.
  World full(kComfy);
  probe.rows = {{0, 24576, 20000}};
  full.config.gpu.devices[0].memory_mib = 24576;
  EXPECT_THROW(start_gpu_budget(full.config, probe, *full.controller, *full.registry,
                                [](bool, const std::string&) {}),
               ConfigError);
}

// A budget the config gives is used as it is: nothing is reconciled or asked at start-up.
TEST(Bootstrap, AGivenGpuBudgetIsSetWithoutLookingAtTheServices) {
  World w(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 8000}]},
    "services": {"comfyui": {"command": ["comfy"], "gpu_memory_mib": 6000}}})");
  w.backend.running.insert("comfyui");
  const ServiceState before = w.service("comfyui").state;
  int said = 0;
  start_gpu_budget(w.config, GpuProbe{}, *w.controller, *w.registry,
                   [&](bool, const std::string&) { ++said; });
  EXPECT_EQ(w.service("comfyui").state, before);
  EXPECT_EQ(said, 0);
  ASSERT_EQ(w.controller->gpu().devices.size(), 1u);
  EXPECT_EQ(w.controller->gpu().devices[0].memory_mib, 8000);
}

// The activity probes' host: the process backend's pids, no Docker client without the Docker
// backend, and the GPU tool SIESTA_NVIDIA_SMI names (set but empty: none), as the budget's.
TEST(Bootstrap, TheProbeContextIsTheHostsBackendsAndGpuTool) {
  Config config = parse_config(R"({"services": {"a": {"command": ["a"]}}})", "test.json");
  FakeClock clock;
  auto made = make_backends(config, clock, [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(made);
  const auto no_env = [](const char*) -> const char* { return nullptr; };
  ProbeContext context = probe_context(clock, *made, no_env);
  EXPECT_EQ(context.clock, &clock);
  EXPECT_EQ(context.docker, nullptr);
  EXPECT_EQ(context.nvidia_smi, "nvidia-smi");
  ASSERT_TRUE(context.pid_of);
  EXPECT_EQ(context.pid_of("a"), -1);  // not running
  const auto tool = [](const char* name) -> const char* {
    return std::string(name) == "SIESTA_NVIDIA_SMI" ? "/opt/nv/nvidia-smi" : nullptr;
  };
  EXPECT_EQ(probe_context(clock, *made, tool).nvidia_smi, "/opt/nv/nvidia-smi");
  const auto empty = [](const char* name) -> const char* {
    return std::string(name) == "SIESTA_NVIDIA_SMI" ? "" : nullptr;
  };
  EXPECT_EQ(probe_context(clock, *made, empty).nvidia_smi, "");

  Config docker = parse_config(R"({"docker": {"host": "tcp://127.0.0.1:1", "label_discovery":
      false}, "services": {"c": {"container": "c"}}})",
                               "test.json");
  auto with_docker = make_backends(docker, clock, no_env);
  ASSERT_TRUE(with_docker);
  EXPECT_NE(probe_context(clock, *with_docker, no_env).docker, nullptr);
}

TEST(Bootstrap, TheLogSaysHowTheAdminApiIsProtected) {
  Config config;
  config.listen = {"127.0.0.1", 8081};
  EXPECT_EQ(admin_auth_line(config, ""),
            "Admin API without a token (loopback): see docs/security.md");
  config.listen = {"0.0.0.0", 8081};
  EXPECT_EQ(admin_auth_line(config, ""),
            "Admin API without a token (loopback, --insecure): see docs/security.md");
  EXPECT_EQ(admin_auth_line(config, "0123456789abcdef"),
            "Admin API requires a bearer token on /admin");
  config.protect_metrics = true;
  EXPECT_EQ(admin_auth_line(config, "0123456789abcdef"),
            "Admin API requires a bearer token on /admin and /metrics");
}

// The proxy's ports at start-up: a configured service's port that is taken stops the start; a
// labelled one's (config.services[configured..]) only puts the error in that service's status.
TEST(Bootstrap, AConfiguredPortThatIsTakenStopsTheStartALabelledOnesDoesNot) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor holder(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const std::string taken = std::to_string(holder.local_endpoint().port());
  const std::string config =
      R"({"services": {"a": {"command": ["a"], "upstream": "127.0.0.1:1", "listen": )"
      R"("127.0.0.1:0"}, "b": {"command": ["b"], "upstream": "127.0.0.1:1", "listen": )"
      R"("127.0.0.1:)" +
      taken + R"("}}})";
  {
    World w(config);  // b as if found by its labels
    Proxy proxy(*w.registry, *w.controller, w.recorder, w.clock, ProxyOptions{});
    ASSERT_TRUE(bind_listeners(proxy, *w.registry, w.clock, w.config, 1));
    EXPECT_GT(proxy.port_of("a"), 0);
    EXPECT_THAT(w.service("b").last_error, HasSubstr(taken));
    EXPECT_TRUE(w.service("a").last_error.empty());
  }
  {
    World w(config);  // both configured
    Proxy proxy(*w.registry, *w.controller, w.recorder, w.clock, ProxyOptions{});
    Status st = bind_listeners(proxy, *w.registry, w.clock, w.config, 2);
    ASSERT_FALSE(st);
    EXPECT_THAT(st.message(), HasSubstr(taken));
  }
}

}  // namespace
}  // namespace siesta::testing
