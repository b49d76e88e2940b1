// The Docker client's parsing and version negotiation, against answers recorded from a real
// engine (tests/unit/data/docker, Docker 20.10 / API 1.41), and container labels as config.
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

TEST(Durations, GoSyntax) {
  EXPECT_EQ(parse_duration("30m"), 1800);
  EXPECT_EQ(parse_duration("1h30m"), 5400);
  EXPECT_EQ(parse_duration("90s"), 90);
  EXPECT_EQ(parse_duration("1.5h"), 5400);
  EXPECT_EQ(parse_duration("250ms"), 0.25);
  EXPECT_EQ(parse_duration("0"), 0);
  for (const char* bad : {"", "30", "m", "-5m", "5 m", "5d", "1h-30m", "1..5s", "5mm"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(Labels, BecomeAServiceLikeAConfigEntry) {
  auto sc = service_from_labels("ollama-1", {{"siesta.enable", "true"},
                                             {"siesta.name", "ollama"},
                                             {"siesta.idle-timeout", "30m"},
                                             {"siesta.idle-sleep", "false"},
                                             {"siesta.desired", "on"},
                                             {"siesta.upstream", "127.0.0.1:11434"},
                                             {"siesta.health", "/api/version"},
                                             {"siesta.start-timeout", "2m"},
                                             {"siesta.stop-timeout", "20s"},
                                             {"siesta.listen", "127.0.0.1:11435"},
                                             {"siesta.protocol", "http"},
                                             {"siesta.wake-page", "true"},
                                             {"com.docker.compose.service", "ollama"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.name, "ollama");
  EXPECT_EQ(sc->spec.backend, "docker");
  EXPECT_EQ(sc->spec.container, "ollama-1");
  EXPECT_EQ(sc->spec.idle_timeout_minutes, 30);
  EXPECT_FALSE(sc->idle_sleep_enabled);
  EXPECT_EQ(sc->desired, Desired::kOn);
  EXPECT_EQ(sc->spec.upstream_port, 11434);
  EXPECT_EQ(sc->spec.health.kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(sc->spec.health.http_path, "/api/version");
  EXPECT_EQ(sc->spec.start_timeout_seconds, 120);
  EXPECT_EQ(sc->spec.stop_timeout_seconds, 20);
  EXPECT_EQ(sc->spec.listen_port, 11435);
  EXPECT_EQ(sc->spec.protocol, Protocol::kHttp);
  EXPECT_TRUE(sc->spec.wake_page);

  auto minimal = service_from_labels("redis", {{"siesta.enable", "true"}});
  ASSERT_TRUE(minimal);
  EXPECT_EQ(minimal->spec.name, "redis");
  EXPECT_FALSE(minimal->spec.idle_timeout_minutes.has_value());  // the global timeout
  EXPECT_TRUE(labels_enable({{"siesta.enable", "true"}}));
  EXPECT_FALSE(labels_enable({{"siesta.enable", "false"}}));
  EXPECT_FALSE(labels_enable({}));
}

TEST(Labels, AModelServerAndItsModelsKeepAlive) {
  auto sc = service_from_labels("stack-ollama-1", {{"siesta.enable", "true"},
                                                   {"siesta.upstream", "127.0.0.1:11435"},
                                                   {"siesta.model-api", "ollama"},
                                                   {"siesta.model-keep-alive", "90m"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.model_api, ServiceSpec::ModelApi::kOllama);
  EXPECT_EQ(sc->spec.model_keep_alive_hours, 1.5);
  auto plain = service_from_labels("web", {{"siesta.enable", "true"}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->spec.model_api, ServiceSpec::ModelApi::kNone);
  EXPECT_FALSE(plain->spec.model_keep_alive_hours);
}

TEST(Labels, ComposeContainersAreNamedAfterTheirComposeService) {
  const std::map<std::string, std::string> compose = {{"siesta.enable", "true"},
                                                      {"com.docker.compose.service", "ollama"},
                                                      {"com.docker.compose.project", "stack"}};
  auto sc = service_from_labels("stack-ollama-1", compose);
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.name, "ollama");
  EXPECT_EQ(sc->spec.container, "stack-ollama-1");
  EXPECT_EQ(compose_qualified_name(compose), "stack-ollama");
  // siesta.name wins, and then the project is never added.
  auto named = compose;
  named["siesta.name"] = "llm";
  EXPECT_EQ(service_from_labels("stack-ollama-1", named)->spec.name, "llm");
  EXPECT_FALSE(compose_qualified_name(named));
  // Not a Compose container: the container's name.
  EXPECT_FALSE(compose_qualified_name({{"siesta.enable", "true"}}));
  EXPECT_EQ(service_from_labels("qdrant", {{"siesta.enable", "true"}})->spec.name, "qdrant");
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

TEST(Labels, BadValuesNameTheLabel) {
  struct Case {
    std::map<std::string, std::string> labels;
    std::string expect;
  };
  const Case cases[] = {
      {{{"siesta.idle-timout", "30m"}}, "label siesta.idle-timout: unknown label"},
      {{{"siesta.idle-timeout", "30"}}, "label siesta.idle-timeout: must be a duration"},
      {{{"siesta.idle-timeout", "0"}}, "label siesta.idle-timeout: must be greater than 0"},
      {{{"siesta.idle-sleep", "maybe"}}, "label siesta.idle-sleep: must be true or false"},
      {{{"siesta.desired", "sometimes"}}, "label siesta.desired: must be \"on\" or \"off\""},
      {{{"siesta.upstream", "localhost"}}, "label siesta.upstream: must be \"host:port\""},
      {{{"siesta.health", "/x"}}, "label siesta.health: needs \"upstream\""},
      {{{"siesta.name", "../etc"}}, "label siesta.name: invalid service name"},
      {{{"siesta.enable", "perhaps"}}, "label siesta.enable: must be true or false"},
      {{{"siesta.protocol", "udp"}}, "label siesta.protocol: must be \"http\" or \"tcp\""},
      {{{"siesta.wake-page", "please"}}, "label siesta.wake-page: must be true or false"},
      {{{"siesta.wake-page", "true"}, {"siesta.protocol", "tcp"}},
       "label siesta.wake-page: needs protocol \"http\""},
      {{{"siesta.model-api", "tgi"}},
       "label siesta.model-api: must be \"ollama\", \"vllm\" or \"openai\""},
      {{{"siesta.model-keep-alive", "2h"}},
       "label siesta.model-keep-alive: is for a model server: add siesta.model-api=ollama"},
      {{{"siesta.model-api", "ollama"}, {"siesta.model-keep-alive", "soon"}},
       "label siesta.model-keep-alive: must be a duration"},
  };
  for (const auto& c : cases) {
    auto sc = service_from_labels("web", c.labels);
    ASSERT_FALSE(sc) << c.expect;
    EXPECT_NE(sc.status().message().find(c.expect), std::string::npos)
        << sc.status().message() << "\n  expected: " << c.expect;
    EXPECT_NE(sc.status().message().find("container web"), std::string::npos);
  }
}

}  // namespace
}  // namespace siesta::testing
