// The Docker client's parsing and version negotiation, against answers recorded from a real
// engine (tests/unit/data/docker, Docker 20.10 / API 1.41), and model servers joined with their
// containers (container labels as config: labels_test.cpp).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "siesta/backends/docker_client.h"
#include "siesta/config/labels.h"
#include "siesta/providers/model_servers.h"
#include "siesta/providers/ollama_provider.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/tests/unit/data/docker/" + name);
  EXPECT_TRUE(in) << name;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json recorded(const std::string& name) { return json::parse(read_data(name)); }

TEST(DockerHost, UnixAndTcpAndDefault) {
  auto def = parse_docker_host("");
  ASSERT_TRUE(def);
  EXPECT_EQ(def->kind, DockerEndpoint::Kind::kUnix);
  EXPECT_EQ(def->path, "/var/run/docker.sock");
  EXPECT_EQ(def->to_string(), "unix:///var/run/docker.sock");

  auto unix_ep = parse_docker_host("unix:///tmp/x/docker.sock");
  ASSERT_TRUE(unix_ep);
  EXPECT_EQ(unix_ep->path, "/tmp/x/docker.sock");

  auto tcp = parse_docker_host("tcp://127.0.0.1:2375");
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->kind, DockerEndpoint::Kind::kTcp);
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, 2375);
  auto v6 = parse_docker_host("tcp://[::1]:2375/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
}

TEST(DockerHost, RejectsWhatItCannotUse) {
  for (const char* bad : {"http://localhost:2375", "unix://relative.sock", "tcp://host",
                          "tcp://host:0", "tcp://host:99999", "tcp://:2375", "npipe:////./pipe"}) {
    auto ep = parse_docker_host(bad);
    EXPECT_FALSE(ep) << bad;
    if (!ep) {
      EXPECT_NE(ep.status().message().find(bad), std::string::npos) << bad;
    }
  }
  EXPECT_FALSE(parse_docker_host("unix://" + std::string(200, 'a')));
}

TEST(DockerApiVersion, NegotiatesWithinBothRanges) {
  // Debian 12's engine: speaks up to 1.41.
  auto debian = negotiate_api_version("1.41", "1.12");
  ASSERT_TRUE(debian);
  EXPECT_EQ(debian->to_string(), "1.41");
  // Docker 29 refuses anything below 1.44.
  auto docker29 = negotiate_api_version("1.52", "1.44");
  ASSERT_TRUE(docker29);
  EXPECT_EQ(docker29->to_string(), "1.52");
  // A newer engine than siesta knows: siesta speaks its newest.
  auto newer = negotiate_api_version("1.60", "1.44");
  ASSERT_TRUE(newer);
  EXPECT_EQ(newer->to_string(), kNewestApi.to_string());
  // The recorded /version answer.
  const json v = recorded("version_20.10.json");
  auto from_file = negotiate_api_version(v["ApiVersion"], v["MinAPIVersion"]);
  ASSERT_TRUE(from_file);
  EXPECT_EQ(from_file->to_string(), "1.41");
}

TEST(DockerApiVersion, RefusesEnginesOutsideTheRange) {
  auto too_new = negotiate_api_version("1.70", "1.60");
  ASSERT_FALSE(too_new);
  EXPECT_NE(too_new.status().message().find("1.60 to 1.70"), std::string::npos);
  EXPECT_FALSE(negotiate_api_version("1.20", "1.12"));
  EXPECT_FALSE(negotiate_api_version("one", "1.12"));
  EXPECT_FALSE(negotiate_api_version("1.41", "x"));
  EXPECT_TRUE(parse_api_version("1.9") < parse_api_version("1.10"));  // numeric, not text
}

TEST(DockerInspect, RunningWithHealthCheck) {
  auto c = parse_inspect(recorded("inspect_running_healthy.json"));
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->name, "rec-health");
  EXPECT_EQ(c->status, "running");
  ASSERT_TRUE(c->health.has_value());
  EXPECT_EQ(*c->health, "healthy");
  EXPECT_EQ(c->labels.at("siesta.enable"), "true");
  EXPECT_EQ(c->id.size(), 64u);
}

TEST(DockerInspect, ExitedWithAndWithoutHealthCheck) {
  auto with = parse_inspect(recorded("inspect_exited_health.json"));
  ASSERT_TRUE(with);
  EXPECT_EQ(with->status, "exited");
  EXPECT_EQ(with->exit_code, 143);
  EXPECT_TRUE(with->health.has_value());

  auto without = parse_inspect(recorded("inspect_exited.json"));
  ASSERT_TRUE(without);
  EXPECT_EQ(without->status, "exited");
  EXPECT_FALSE(without->health.has_value());
  EXPECT_EQ(without->labels.at("siesta.upstream"), "127.0.0.1:18601");
}

TEST(DockerInspect, RejectsAnswersWithoutState) {
  EXPECT_FALSE(parse_inspect(json::array()));
  EXPECT_FALSE(parse_inspect(json{{"Id", "x"}}));
  EXPECT_FALSE(parse_inspect(json{{"Id", "x"}, {"State", {{"Running", true}}}}));
  // The engine's 404 body is not a container.
  EXPECT_FALSE(parse_inspect(recorded("inspect_404.json")));
}

TEST(DockerList, NamesWithoutSlashAndLabels) {
  auto list = parse_container_list(recorded("list_labelled.json"));
  ASSERT_TRUE(list);
  ASSERT_FALSE(list->empty());
  for (const auto& c : *list) {
    EXPECT_FALSE(c.name.empty());
    EXPECT_NE(c.name.front(), '/');
    EXPECT_EQ(c.labels.at("siesta.enable"), "true");
    EXPECT_FALSE(c.state.empty());
  }
  EXPECT_FALSE(parse_container_list(json::object()));
}

TEST(DockerEvents, ParsesTheRecordedStream) {
  std::istringstream lines(read_data("events.ndjson"));
  std::vector<std::string> actions;
  std::string line;
  while (std::getline(lines, line)) {
    auto e = parse_event(json::parse(line));
    ASSERT_TRUE(e) << line;
    EXPECT_EQ(e->name, "rec-health");
    EXPECT_EQ(e->attributes.at("siesta.enable"), "true");
    actions.push_back(e->action);
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"create", "start", "health_status", "die", "stop"}));
  EXPECT_FALSE(parse_event(json{{"Type", "network"}, {"Action", "connect"}}));
  EXPECT_FALSE(parse_event(json{{"Type", "container"}}));
}

TEST(ModelServers, JoinWithTheirServiceAndAreDroppedWhileTheirContainerIsGone) {
  ModelServers servers([](const ServiceSpec& spec) -> std::unique_ptr<ModelProvider> {
    return std::make_unique<OllamaProvider>(spec.upstream_host, spec.upstream_port);
  });
  ServiceSpec ollama;
  ollama.name = "ollama";
  ollama.upstream_host = "127.0.0.1";
  ollama.upstream_port = 11435;
  ollama.model_api = ServiceSpec::ModelApi::kOllama;
  ServiceSpec redis;
  redis.name = "redis";
  redis.upstream_port = 6379;
  EXPECT_FALSE(servers.add(redis));
  EXPECT_EQ(servers.find("redis"), nullptr);
  EXPECT_EQ(servers.find("ollama"), nullptr);
  ASSERT_TRUE(servers.add(ollama));
  ModelProvider* provider = servers.find("ollama");
  ASSERT_NE(provider, nullptr);
  servers.set_present("ollama", false);  // its container destroyed
  EXPECT_EQ(servers.find("ollama"), nullptr);
  servers.set_present("ollama", true);  // created again: the same provider
  EXPECT_EQ(servers.find("ollama"), provider);
  servers.set_present("unknown", true);
  EXPECT_EQ(servers.find("unknown"), nullptr);
}

}  // namespace
}  // namespace siesta::testing
