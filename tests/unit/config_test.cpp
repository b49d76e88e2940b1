// The config loader: the seed's examples load unchanged; every kind of bad input is rejected
// with one message naming the file, the key path and what is wrong.
#include "siesta/config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace siesta {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string kExamples = std::string(SIESTA_SOURCE_DIR) + "/examples/seed/";

TEST(SeedExamples, ConservativeLoads) {
  Config c = load_config_file(kExamples + "conservative.json");
  EXPECT_FALSE(c.settings.idle_sleep_enabled);
  EXPECT_EQ(c.settings.idle_timeout_minutes, 120);
  EXPECT_EQ(c.settings.model_keep_alive_hours, 4);
  EXPECT_EQ(c.settings.idle_check_interval_minutes, 5);  // not given: the Balanced default
}

TEST(SeedExamples, BalancedLoadsAndEqualsTheDefaults) {
  Config c = load_config_file(kExamples + "balanced.json");
  EXPECT_EQ(c.settings, default_config().settings);
  EXPECT_EQ(c.listen.to_string(), "127.0.0.1:8081");
}

TEST(SeedExamples, AggressiveLoadsWithFractionalHours) {
  Config c = load_config_file(kExamples + "aggressive.json");
  EXPECT_EQ(c.settings.idle_timeout_minutes, 15);
  EXPECT_EQ(c.settings.model_keep_alive_hours, 0.5);
  EXPECT_EQ(c.settings.idle_check_interval_minutes, 2);
}

TEST(SeedExamples, ServiceSpecificLoadsWithItsComments) {
  Config c = load_config_file(kExamples + "service-specific.json");
  ASSERT_EQ(c.services.size(), 4u);
  std::map<std::string, bool> enabled;
  for (const auto& s : c.services) enabled[s.spec.name] = s.idle_sleep_enabled;
  EXPECT_EQ(enabled, (std::map<std::string, bool>{
                         {"ollama", true}, {"qdrant", true}, {"redis", false}, {"whisper", true}}));
  EXPECT_EQ(c.services[0].spec.backend, "docker");  // no command: a container
}

// The example files are the seed's own blocks, byte for byte.
TEST(SeedExamples, FilesAreTheSeedsBlocksUnchanged) {
  const std::string seed_path =
      std::string(SIESTA_SOURCE_DIR) + "/../shared/seed/idle-sleep-feature.md";
  std::ifstream probe(seed_path);
  if (!probe) GTEST_SKIP() << "the seed document is not beside this checkout: " << seed_path;
  const std::string doc = read(seed_path);
  const std::pair<const char*, const char*> blocks[] = {
      {"Conservative (Always On)", "conservative"},
      {"Balanced (Default)", "balanced"},
      {"Aggressive (Maximum Savings)", "aggressive"},
      {"Service-Specific Configuration", "service-specific"}};
  for (const auto& [title, file] : blocks) {
    auto head = doc.find(std::string("### ") + title + "\n```json\n");
    ASSERT_NE(head, std::string::npos) << title;
    auto start = doc.find('\n', doc.find("```json", head)) + 1;
    auto end = doc.find("```", start);
    EXPECT_EQ(doc.substr(start, end - start), read(kExamples + file + ".json")) << file;
  }
}

TEST(Config, NoConfigMeansBalancedDefaultsAndAnEmptyRegistry) {
  Config c = default_config();
  EXPECT_TRUE(c.settings.idle_sleep_enabled);
  EXPECT_EQ(c.settings.idle_timeout_minutes, 60);
  EXPECT_EQ(c.settings.model_keep_alive_hours, 2);
  EXPECT_EQ(c.settings.idle_check_interval_minutes, 5);
  EXPECT_TRUE(c.services.empty());
  EXPECT_TRUE(c.models.empty());
}

TEST(Config, AFullServiceAndModel) {
  Config c = parse_config(R"({
    "idle_timeout_minutes": 0.02, "listen": "[::1]:9000", "state_file": "/tmp/s.json",
    "on_exit": "leave",
    "services": {"whisper": {
      "command": ["whisper-server", "--port", "9001"], "upstream": "127.0.0.1:9001",
      "health": "/health", "desired": "on", "idle_timeout_minutes": 30,
      "start_timeout_seconds": 90, "stop_timeout_seconds": 5}},
    "models": {"library/llama3.2:3b": {"provider": "whisper", "keep_alive_hours": 0.5}}})",
                          "x.json");
  EXPECT_EQ(c.listen.host, "::1");
  EXPECT_EQ(c.listen.port, 9000);
  EXPECT_EQ(c.on_exit, OnExit::kLeave);
  const ServiceSpec& s = c.services.at(0).spec;
  EXPECT_EQ(s.backend, "process");
  EXPECT_EQ(s.command.size(), 3u);
  EXPECT_EQ(s.upstream_port, 9001);
  EXPECT_EQ(s.health.kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(s.health.http_path, "/health");
  EXPECT_EQ(*s.idle_timeout_minutes, 30);
  EXPECT_EQ(c.services[0].desired, Desired::kOn);
  EXPECT_EQ(c.models.at(0).name, "library/llama3.2:3b");
  EXPECT_EQ(*c.models[0].keep_alive_hours, 0.5);
  EXPECT_FALSE(s.upgraded_idle_timeout_seconds);  // off unless set
}

TEST(Config, AnUpgradedIdleTimeoutIsReadPerService) {
  Config c = parse_config(R"({"services": {"ui": {"command": ["ui"],
    "upgraded_idle_timeout_seconds": 1800}}})",
                          "x.json");
  EXPECT_EQ(c.services.at(0).spec.upgraded_idle_timeout_seconds, 1800);
}

TEST(Config, AModelMayNameALabelledContainersServiceAsProvider) {
  // Issue 17: per-model settings for a model server found by its labels.
  Config c = parse_config(R"({"docker": {}, "models": {"llama3.2:3b": {"provider": "ollama",
    "keep_alive_hours": 0.5}}})",
                          "x.json");
  ASSERT_EQ(c.models.size(), 1u);
  EXPECT_EQ(c.models[0].provider, "ollama");
  EXPECT_EQ(c.models[0].keep_alive_hours, 0.5);
  EXPECT_TRUE(c.services.empty());
}

struct BadCase {
  const char* text;
  const char* message;  // the whole message after "config error in bad.json: "
};

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, IsRejectedWithFileKeyAndReason) {
  try {
    parse_config(GetParam().text, "bad.json");
    FAIL() << "accepted: " << GetParam().text;
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              std::string("config error in bad.json: ") + GetParam().message);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfig,
    ::testing::Values(
        // model_api and the vllm_sleep tier (tests/unit/vllm_test.cpp has the rest).
        // From a new user's trial: vllm_sleep with nowhere to send /sleep, a keep-alive on a
        // server that cannot unload, a service forwarding to its own port.
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep", "level": 1}]}}})",
            "services.s.sleep_tiers[0].action: \"vllm_sleep\" needs \"upstream\": siesta "
            "calls the server's /sleep and /wake_up there"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "upstream": "127.0.0.1:8001", "model_api": "vllm", "model_keep_alive_hours": 2}}})",
            "services.s.model_keep_alive_hours: a \"vllm\" server has no unload API: its model "
            "stays while the server runs; free it with the service's sleep_tiers (vllm_sleep, "
            "stop) instead"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "upstream": "127.0.0.1:8001", "model_api": "vllm"}}, "models": {"Qwen/Qwen3-0.6B": {"provider": "s", "keep_alive_hours": 2}}})",
            "models.Qwen/Qwen3-0.6B.keep_alive_hours: a \"vllm\" server has no unload API: its "
            "model stays while the server runs; free it with the service's sleep_tiers "
            "(vllm_sleep, stop) instead"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "upstream": "127.0.0.1:8000", "listen": "0.0.0.0:8000"}}})",
            "services.s.listen: is the upstream's own address (127.0.0.1:8000): siesta would "
            "forward each request to itself; give the server another port and \"upstream\" "
            "that one"},
        BadCase{R"({"services": {"s": {"command": ["s"], "model_api": "tgi"}}})",
                "services.s.model_api: must be \"ollama\", \"vllm\" or \"openai\", got \"tgi\""},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep"}]}}})",
            "services.s.sleep_tiers[0].level: is required for \"vllm_sleep\": 1 or 2"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep", "level": 3}]}}})",
            "services.s.sleep_tiers[0].level: must be 1 (weights offloaded to CPU RAM) or "
            "2 (weights dropped), got 3"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep", "level": "1"}]}}})",
            "services.s.sleep_tiers[0].level: must be 1 (weights offloaded to CPU RAM) or "
            "2 (weights dropped), got \"1\""},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "pause", "level": 1}]}}})",
            "services.s.sleep_tiers[0].level: is for the \"vllm_sleep\" action only"},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "ollama", "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep", "level": 1}]}}})",
            "services.s.sleep_tiers[0].action: \"vllm_sleep\" is for a vLLM server: set "
            "\"model_api\": \"vllm\""},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "sleep_tiers": [{"after_minutes": 1, "action": "vllm_sleep", "level": 1}]}}})",
            "services.s.sleep_tiers[0].action: \"vllm_sleep\" is for a vLLM server: set "
            "\"model_api\": \"vllm\""},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "openai", "sleep_tiers": [{"after_minutes": 1, "action": "unload_models"}]}}})",
            "services.s.sleep_tiers[0].action: \"unload_models\" needs a server that can "
            "unload a model and keep running (\"ollama\"); an \"openai\" server holds its "
            "model as long as it runs: use \"vllm_sleep\" (vllm) or \"stop\""},
        BadCase{
            R"({"services": {"s": {"command": ["s"], "model_api": "vllm", "sleep_tiers": [{"after_minutes": 1, "action": "unload_models"}]}}})",
            "services.s.sleep_tiers[0].action: \"unload_models\" needs a server that can "
            "unload a model and keep running (\"ollama\"); a \"vllm\" server holds its "
            "model as long as it runs: use \"vllm_sleep\" (vllm) or \"stop\""},
        BadCase{R"({"idle_timeout_minutes": 0})",
                "idle_timeout_minutes: must be greater than 0, got 0"},
        BadCase{R"({"idle_timeout_minutes": -5})",
                "idle_timeout_minutes: must be greater than 0, got -5"},
        BadCase{R"({"idle_timeout_minutes": "60"})",
                "idle_timeout_minutes: must be a number, got \"60\""},
        BadCase{R"({"idle_timeout_minutes": 1e300})",
                "idle_timeout_minutes: must be at most 5.256e+06, got 1e+300"},
        BadCase{R"({"idle_check_interval_minutes": 0})",
                "idle_check_interval_minutes: must be at least 0.01, got 0"},
        BadCase{R"({"idle_check_interval_minutes": 1e-300})",
                "idle_check_interval_minutes: must be at least 0.01, got 1e-300"},
        BadCase{R"({"model_keep_alive_hours": -1})",
                "model_keep_alive_hours: must be at least 0, got -1"},
        BadCase{R"({"idle_sleep_enabled": "yes"})",
                "idle_sleep_enabled: must be true or false, got \"yes\""},
        BadCase{
            R"({"idle_timout_minutes": 5})",
            "idle_timout_minutes: unknown key (known keys: activity, admin_max_connections, "
            "admin_request_timeout_seconds, admin_threads, admin_token_file, currency, "
            "docker, gpu, idle_check_interval_minutes, idle_sleep_enabled, idle_timeout_minutes, "
            "kubernetes, listen, max_learned_models, model_keep_alive_hours, models, on_exit, "
            "price_per_kwh, protect_metrics, proxy, services, state_file, timezone)"},
        BadCase{R"([1, 2])", "(top level): must be a JSON object"},
        BadCase{R"({"idle_timeout_minutes": 1E400})",
                "(top level): invalid JSON: [json.exception.out_of_range.406] number overflow "
                "parsing '1E400'"},
        BadCase{R"({"admin_token_file": ""})",
                "admin_token_file: must not be empty (omit it for none)"},
        BadCase{R"({"protect_metrics": "yes"})",
                "protect_metrics: must be true or false, got \"yes\""},
        BadCase{R"({"listen": "8081"})",
                "listen: must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"8081\""},
        BadCase{R"({"on_exit": "kill"})", "on_exit: must be \"stop\" or \"leave\", got \"kill\""},
        BadCase{R"({"services": {"a": {"command": "a"}}})",
                "services.a.command: must be a non-empty array of strings (argv)"},
        BadCase{R"({"services": {"a": {"command": ["a"], "desired": "maybe"}}})",
                "services.a.desired: must be \"on\" or \"off\", got \"maybe\""},
        BadCase{R"({"services": {"a": {"backend": "process"}}})",
                "services.a.command: is required for backend \"process\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "upstream": "localhost"}}})",
                "services.a.upstream: must be \"host:port\" with a port from 1 to 65535, got "
                "\"localhost\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "health": "/x"}}})",
                "services.a.health: needs \"upstream\" (the host:port to probe)"},
        BadCase{R"({"services": {"a": {"command": ["a"], "stop_timeout_seconds": -1}}})",
                "services.a.stop_timeout_seconds: must be at least 0, got -1"},
        BadCase{
            R"({"services": {"a": {"command": ["a"], "colour": 1}}})",
            "services.a.colour: unknown key (known keys: activity, backend, cold_start_seconds, "
            "command, container, desired, gpu_devices, gpu_memory_mib, health, "
            "idle_power_watts, idle_sleep_enabled, idle_timeout_minutes, listen, max_connections, "
            "model_api, "
            "model_keep_alive_hours, model_policy, policy, protocol, "
            "response_timeout_seconds, schedule, sleep_tiers, "
            "start_timeout_seconds, stop_timeout_seconds, swarm_service, "
            "tcp_idle_timeout_seconds, timezone, "
            "trust_forwarded_headers, upgraded_idle_timeout_seconds, upstream, wake_page, "
            "workload)"},
        BadCase{R"({"services": {"a": {"command": ["a"], "protocol": "tcp",
                   "upgraded_idle_timeout_seconds": 60}}})",
                "services.a.upgraded_idle_timeout_seconds: is for HTTP mode (upgraded "
                "connections); a \"tcp\" service has tcp_idle_timeout_seconds"},
        BadCase{R"({"services": {"a": {"command": ["a"], "tcp_idle_timeout_seconds": 60}}})",
                "services.a.tcp_idle_timeout_seconds: is for \"protocol\": \"tcp\"; an HTTP "
                "service's upgraded connections have upgraded_idle_timeout_seconds"},
        BadCase{R"({"services": {"a": {"command": ["a"], "wake_page": "yes"}}})",
                "services.a.wake_page: must be true or false, got \"yes\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "upstream": "127.0.0.1:1",
                    "listen": "127.0.0.1:2", "protocol": "tcp", "wake_page": true}}})",
                "services.a.wake_page: needs protocol \"http\" (a page is an HTTP answer)"},
        BadCase{R"({"services": {"a": {"command": ["a"], "upgraded_idle_timeout_seconds": 0}}})",
                "services.a.upgraded_idle_timeout_seconds: must be greater than 0, got 0"},
        BadCase{R"({"services": {"a": {"command": ["a"], "upgraded_idle_timeout_seconds": "1h"}}})",
                "services.a.upgraded_idle_timeout_seconds: must be a number, got \"1h\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "response_timeout_seconds": 0}}})",
                "services.a.response_timeout_seconds: must be greater than 0, got 0"},
        BadCase{R"({"services": {"a": {"command": ["a"], "max_connections": 0}}})",
                "services.a.max_connections: must be at least 1, got 0"},
        BadCase{R"({"proxy": {"max_connections": 1.5}})",
                "proxy.max_connections: must be a whole number"},
        BadCase{R"({"services": {"a": {"command": ["a"], "model_keep_alive_hours": 1}}})",
                "services.a.model_keep_alive_hours: is for a model server: set \"model_api\": "
                "\"ollama\" or name the service as a model's provider"},
        BadCase{R"({"services": {"a": {"command": ["a"], "model_api": "ollama",
                "model_keep_alive_hours": -1}}})",
                "services.a.model_keep_alive_hours: must be at least 0, got -1"},
        BadCase{R"({"services": {"o": {"command": ["o"]}}, "models": {"m": {"provider": "o",
                "keep_alive_min_seconds": 600, "keep_alive_max_seconds": 60}}})",
                "models.m.keep_alive_max_seconds: must be at least keep_alive_min_seconds"},
        BadCase{R"({"services": {"a": {"command": ["a"], "listen": "127.0.0.1:9001"}}})",
                "services.a.listen: needs \"upstream\" (where to forward to)"},
        BadCase{
            R"({"services": {"a": {"command": ["a"], "upstream": "127.0.0.1:1", "listen": "9001"}}})",
            "services.a.listen: must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"9001\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "protocol": "udp"}}})",
                "services.a.protocol: must be \"http\" or \"tcp\", got \"udp\""},
        // A new user's trial (issue 24): accepted before, and its models were never tracked.
        BadCase{R"({"services": {"v": {"command": ["v"], "upstream": "127.0.0.1:1",
                    "listen": "127.0.0.1:2", "protocol": "tcp", "model_api": "vllm"}}})",
                "services.v.protocol: \"tcp\" cannot serve a \"vllm\" model server (its models "
                "are tracked from HTTP requests): use \"http\""},
        BadCase{R"({"services": {"v": {"command": ["v"], "upstream": "127.0.0.1:1",
                    "listen": "127.0.0.1:2", "protocol": "tcp", "model_api": "openai"}}})",
                "services.v.protocol: \"tcp\" cannot serve an \"openai\" model server (its "
                "models are tracked from HTTP requests): use \"http\""},
        BadCase{
            R"({"services": {"a": {"command": ["a"], "upstream": "127.0.0.1:1", "listen": "127.0.0.1:9001"},
                                 "b": {"command": ["b"], "upstream": "127.0.0.1:2", "listen": "127.0.0.1:9001"}}})",
            "services.b.listen: 127.0.0.1:9001 is already the listen address of service a"},
        BadCase{
            R"({"listen": "127.0.0.1:9001", "services": {"a": {"command": ["a"], "upstream": "127.0.0.1:1", "listen": "127.0.0.1:9001"}}})",
            "services.a.listen: 127.0.0.1:9001 is already the admin API's listen address"},
        BadCase{R"({"proxy": {"threads": 0}})", "proxy.threads: must be at least 1, got 0"},
        BadCase{R"({"proxy": {"threads": 1.5}})", "proxy.threads: must be a whole number"},
        BadCase{R"({"proxy": {"wake_listen": "x"}})",
                "proxy.wake_listen: must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"x\""},
        BadCase{R"({"proxy": {"buffering": true}})",
                "proxy.buffering: unknown key (known keys: client_body_timeout_seconds, "
                "client_header_timeout_seconds, connect_timeout_seconds, "
                "idle_connection_timeout_seconds, keepalive_timeout_seconds, max_connections, "
                "threads, upstream_idle_connections, upstream_idle_timeout_seconds, "
                "upstream_max_connecting, wake_listen)"},
        BadCase{R"({"proxy": {"upstream_idle_timeout_seconds": 0}})",
                "proxy.upstream_idle_timeout_seconds: must be greater than 0, got 0"},
        BadCase{R"({"proxy": {"upstream_max_connecting": 0}})",
                "proxy.upstream_max_connecting: must be at least 1, got 0"},
        BadCase{R"({"proxy": {"upstream_idle_connections": 2.5}})",
                "proxy.upstream_idle_connections: must be a whole number"},
        BadCase{R"({"admin_threads": 0})", "admin_threads: must be at least 1, got 0"},
        BadCase{R"({"max_learned_models": 2.5})", "max_learned_models: must be a whole number"},
        BadCase{R"({"max_learned_models": -1})", "max_learned_models: must be at least 0, got -1"},
        BadCase{R"({"services": {"a": {"command": ["a"], "container": "a"}}})",
                "services.a.container: is for backend \"docker\" only"},
        BadCase{R"({"services": {"a": {"container": "a", "swarm_service": "a"}}})",
                "services.a.swarm_service: is for backend \"swarm\" only"},
        BadCase{R"({"services": {"a": {"backend": "swarm", "swarm_service": "a b"}}})",
                "services.a.swarm_service: must be a Swarm service name or id (letters, digits, "
                "'.', '-', '_'), got \"a b\""},
        BadCase{
            R"({"services": {"a": {"backend": "swarm", "sleep_tiers": [)"
            R"({"after_minutes": 1, "action": "pause"}, {"after_minutes": 2, "action": "stop"}]}}})",
            "services.a.sleep_tiers: a Swarm service cannot be paused (its tasks are scaled "
            "to 0): use stop only"},
        BadCase{
            R"({"services": {"a": {"backend": "kube"}}})",
            "services.a.backend: must be \"process\", \"docker\", \"swarm\" or \"kubernetes\", got "
            "\"kube\""},
        BadCase{R"({"docker": {"swarm": "yes"}})",
                "docker.swarm: must be true or false, got \"yes\""},
        BadCase{R"({"services": {"a": {"container": "a/b"}}})",
                "services.a.container: must be a container name or id (letters, digits, '.', "
                "'-', '_'), got \"a/b\""},
        BadCase{R"({"docker": {"host": "http://x:2375"}})",
                "docker.host: must be \"unix:///path/to/docker.sock\" or \"tcp://host:port\", "
                "got \"http://x:2375\""},
        BadCase{R"({"docker": {"label_discovery": "yes"}})",
                "docker.label_discovery: must be true or false, got \"yes\""},
        BadCase{R"({"docker": {"hots": "unix:///x"}})",
                "docker.hots: unknown key (known keys: host, label_discovery, swarm)"},
        BadCase{R"({"services": {"../etc": {"command": ["a"]}}})",
                "services.../etc: invalid service name (letters, digits, '.', '-', '_'; starting "
                "with a letter or digit; at most 128)"},
        BadCase{R"({"services": {"a": {"command": ["a"]}}, "models": {"m": {"provider": "b"}}})",
                "models.m.provider: names no service: \"b\" is not under \"services\", and no "
                "labelled container can be it (no \"docker\" section, or label_discovery off)"},
        BadCase{R"({"docker": {"label_discovery": false}, "models": {"m": {"provider": "b"}}})",
                "models.m.provider: names no service: \"b\" is not under \"services\", and no "
                "labelled container can be it (no \"docker\" section, or label_discovery off)"},
        BadCase{R"({"models": {"m": {}}})",
                "models.m.provider: is required (the service that serves the model)"},
        BadCase{
            R"({"services": {"a": {"command": ["a"]}}, "models": {"x/../y": {"provider": "a"}}})",
            "models.x/../y: invalid model name (letters, digits, '.', '-', '_', ':', '/'; no "
            "empty, '.' or '..' path segments; at most 256)"}));

// The GPU budget's keys (docs/gpu.md; tests/unit/gpu_test.cpp has the rest).
INSTANTIATE_TEST_SUITE_P(
    Gpu, BadConfig,
    ::testing::Values(
        BadCase{R"({"gpu": {}})",
                "gpu.devices: is required: a non-empty array of {\"id\": GPU index, "
                "\"memory_mib\": budget}"},
        BadCase{R"({"gpu": {"devices": [{"memory_mib": 100}]}})",
                "gpu.devices[0].id: is required (nvidia-smi's index)"},
        BadCase{R"({"gpu": {"devices": [{"id": 0}, {"id": 0}]}})",
                "gpu.devices[1].id: GPU 0 is listed twice"},
        BadCase{R"({"gpu": {"devices": [{"id": 0, "memory_mib": -1}]}})",
                "gpu.devices[0].memory_mib: must be greater than 0, got -1"},
        BadCase{R"({"gpu": {"devices": [{"id": 0, "vram": 1}]}})",
                "gpu.devices[0].vram: unknown key (known keys: id, memory_mib)"},
        BadCase{R"({"gpu": {"devices": [{"id": 0}], "exclusive": [["a"]]}})",
                "gpu.exclusive[0]: must be an array of at least two service names, got [\"a\"]"},
        BadCase{R"({"gpu": {"devices": [{"id": 0}], "exclusive": [["a", "b"]]},
                   "services": {"a": {"command": ["a"]}}})",
                "gpu.exclusive[0]: names no service: \"b\" is not under \"services\""},
        BadCase{R"({"services": {"a": {"command": ["a"], "gpu_memory_mib": 100}}})",
                "services.a.gpu_memory_mib: needs a \"gpu\" section (the devices and their "
                "budget, docs/gpu.md)"},
        BadCase{R"({"gpu": {"devices": [{"id": 0}]},
                   "services": {"a": {"command": ["a"], "gpu_memory_mib": "6G"}}})",
                "services.a.gpu_memory_mib: must be a number of MiB or \"measured\", got \"6G\""},
        BadCase{R"({"gpu": {"devices": [{"id": 0}]},
                   "services": {"a": {"command": ["a"], "gpu_devices": [1]}}})",
                "services.a.gpu_devices: names GPU 1, not in gpu.devices"},
        BadCase{R"({"gpu": {"devices": [{"id": 0}]},
                   "services": {"a": {"command": ["a"], "gpu_devices": [0.5]}}})",
                "services.a.gpu_devices: must hold GPU indexes (whole numbers from 0 to 1023), got "
                "0.5"},
        BadCase{R"({"services": {"a": {"command": ["a"]}},
                   "models": {"m": {"provider": "a", "gpu_memory_mib": 10}}})",
                "models.m.gpu_memory_mib: needs a \"gpu\" section (the devices and their budget, "
                "docs/gpu.md)"},
        // Larger than a budget of its devices: it could never be woken (issue 21's trial).
        BadCase{R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
                   "services": {"a": {"command": ["a"], "gpu_memory_mib": 1200}}})",
                "services.a.gpu_memory_mib: 1200 MiB is more than GPU 0's budget of 1000 MiB: it "
                "could never fit"},
        BadCase{
            R"({"gpu": {"devices": [{"id": 0, "memory_mib": 24000}, {"id": 1, "memory_mib": 8000}]},
                   "services": {"a": {"command": ["a"], "gpu_memory_mib": 9000.5, "gpu_devices": [0, 1]}}})",
            "services.a.gpu_memory_mib: 9000.5 MiB is more than GPU 1's budget of 8000 MiB: "
            "it could never fit"},
        BadCase{R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
                   "services": {"o": {"command": ["o"], "gpu_memory_mib": 100}},
                   "models": {"m": {"provider": "o", "gpu_memory_mib": 1001}}})",
                "models.m.gpu_memory_mib: 1001 MiB is more than GPU 0's budget of 1000 MiB: it "
                "could never fit"},
        // A model's size under a server outside the budget would never count (docs/gpu.md): it
        // was ignored without a word (issue 21's re-trial).
        BadCase{R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
                   "services": {"o": {"command": ["o"]}},
                   "models": {"m": {"provider": "o", "gpu_memory_mib": 500}}})",
                "models.m.gpu_memory_mib: its provider o takes no part in the GPU budget, so this "
                "size would never count: give services.o gpu_memory_mib (what it holds of its "
                "own) or gpu_devices"}));

TEST(Config, InvalidJsonNamesTheFileAndThePosition) {
  try {
    parse_config("{\"idle_timeout_minutes\": 5,,}", "bad.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("config error in bad.json: (top level): invalid JSON"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("line 1, column 28"), std::string::npos) << e.what();
  }
}

TEST(Config, AMissingFileIsAClearError) {
  EXPECT_THROW(
      {
        try {
          load_config_file("/nonexistent/siesta.json");
        } catch (const ConfigError& e) {
          EXPECT_STREQ(e.what(), "config error in /nonexistent/siesta.json: cannot open the file");
          throw;
        }
      },
      ConfigError);
}

}  // namespace
}  // namespace siesta
