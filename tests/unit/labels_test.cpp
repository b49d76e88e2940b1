// Container labels as config (sidecar/config labels.h): a labelled container becomes a service
// like a config entry, with Go-style durations; bad values name the label.
#include "siesta/config/labels.h"

#include <gtest/gtest.h>

#include <tuple>

#include "siesta/core/settings_schema.h"

namespace siesta::testing {
namespace {

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
      {{{"siesta.model-api", "vllm"}, {"siesta.protocol", "tcp"}},
       "label siesta.protocol: \"tcp\" cannot serve a \"vllm\" model server"},
      {{{"siesta.model-api", "openai"}, {"siesta.protocol", "tcp"}},
       "label siesta.protocol: \"tcp\" cannot serve an \"openai\" model server"},
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

// A schedule, its zone, the timeout policy and the cold start, as a label (and an annotation):
// the config's own forms and rules; a schedule without a zone label is in the config's zone.
TEST(Labels, AScheduleItsZoneAndThePolicyAsLabels) {
  LabelBounds b;
  b.timezone = "America/New_York";
  set_label_bounds(b);
  const std::string office =
      R"([{"days": "mon-fri", "from": "08:30", "to": "18:00", "desired": "on"},
          {"days": "sat,sun", "idle_timeout_minutes": 10}])";
  auto sc = service_from_labels(
      "web",
      {{"siesta.schedule", office}, {"siesta.policy", "adaptive"}, {"siesta.cold-start", "1m30s"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.schedule.windows.size(), 2u);
  EXPECT_EQ(sc->spec.schedule.timezone, "America/New_York");
  EXPECT_EQ(sc->spec.policy, "adaptive");
  EXPECT_EQ(sc->spec.cold_start_seconds, 90);
  auto own = service_from_annotations(
      "deployment/web", {{"siesta.io/schedule", office}, {"siesta.io/timezone", "Europe/Berlin"}});
  ASSERT_TRUE(own) << own.status().message();
  EXPECT_EQ(own->spec.schedule.timezone, "Europe/Berlin");

  const std::pair<std::map<std::string, std::string>, std::string> bad[] = {
      {{{"siesta.schedule", "mon-fri 08:30-18:00"}},
       "label siesta.schedule: must be a JSON array of windows"},
      {{{"siesta.schedule", R"([{"days": "someday", "desired": "on"}])"}},
       "schedule[0].days: must be day names"},
      {{{"siesta.schedule", office}, {"siesta.timezone", "Mars/Olympus"}}, "timezone"},
      {{{"siesta.timezone", "UTC"}}, "timezone: is for a \"schedule\" (it has none)"},
      {{{"siesta.policy", "lru"}}, "policy: must be one of"},
      {{{"siesta.cold-start", "soon"}}, "label siesta.cold-start: must be a duration"},
      {{{"siesta.cold-start", "48h"}}, "label siesta.cold-start: must be at most 86400"},
      {{{"siesta.policy", "adaptive"}, {"siesta.sleep-tiers", "pause:1m,stop:1h"}},
       "not together with sleep_tiers"},
  };
  for (const auto& [labels, expect] : bad) {
    auto refused = service_from_labels("web", labels);
    ASSERT_FALSE(refused) << expect;
    EXPECT_NE(refused.status().message().find(expect), std::string::npos)
        << refused.status().message() << "\n  expected: " << expect;
  }
  set_label_bounds({});
}

// The model keep-alive rule is written once (config.h): labels refuse what the config file
// refuses, a keep-alive on a server whose model is the process included (accepted before).
// The tiers it names are the server's own (a new user's trial: an openai server was told of
// vllm_sleep, which is vLLM's alone).
TEST(Labels, AModelKeepAliveFollowsTheConfigFilesRule) {
  for (const auto& [api, article, tiers] :
       {std::tuple{"vllm", "a", "vllm_sleep, stop"}, std::tuple{"openai", "an", "stop"}}) {
    for (const char* label : {"siesta.model-keep-alive", "siesta.model-policy"}) {
      const std::string value = std::string(label) == "siesta.model-policy" ? "adaptive" : "2h";
      auto sc = service_from_labels("web", {{"siesta.model-api", api}, {label, value}});
      ASSERT_FALSE(sc) << api << " " << label;
      EXPECT_EQ(sc.status().message(),
                std::string("container web: label ") + label + ": " + article + " \"" + api +
                    "\" server has no unload API: its model stays while the server runs; free it "
                    "with the service's sleep_tiers (" +
                    tiers + ") instead");
    }
  }
  EXPECT_TRUE(service_from_labels(
      "web", {{"siesta.model-api", "ollama"}, {"siesta.model-keep-alive", "2h"}}));
  EXPECT_TRUE(service_from_labels(
      "web", {{"siesta.model-api", "ollama"}, {"siesta.model-policy", "adaptive"}}));
  // A model policy on a service that serves no model API (a new user's trial: accepted silently).
  auto plain = service_from_labels("web", {{"siesta.model-policy", "adaptive"}});
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.status().message(),
            "container web: label siesta.model-policy: is for a model server: add "
            "siesta.model-api=ollama");
}

// One unit table (core/units.h): the schema's units, the labels' and Ollama's duration suffixes.
TEST(Units, TheSchemasDurationUnitsAndGosSuffixes) {
  EXPECT_EQ(seconds_per("seconds"), 1);
  EXPECT_EQ(seconds_per("minutes"), 60);
  EXPECT_EQ(seconds_per("hours"), 3600);
  EXPECT_EQ(seconds_per("MiB"), 0);
  // Every number setting is a duration (its gauge in seconds) but the price, which is a number
  // per kWh and shown as it is.
  for (const auto& field : kSettingFields) {
    if (field.number != nullptr && field.number != &Settings::price_per_kwh) {
      EXPECT_GT(seconds_per(field.rule.unit), 0) << field.key;
    }
  }
  Settings priced;
  priced.price_per_kwh = 0.25;
  EXPECT_EQ(setting_gauge(*find_setting("price_per_kwh"), priced), 0.25);
  EXPECT_EQ(setting_gauge(*find_setting("idle_timeout_minutes"), priced), 3600);
  EXPECT_EQ(parse_duration("1h1m1s"), 3661);
  EXPECT_EQ(parse_duration("2\xC2\xB5s"), 2e-6);
  EXPECT_EQ(parse_duration("2\xCE\xBCs"), 2e-6);  // Greek mu, as Go (and Ollama's keep_alive)
  EXPECT_EQ(parse_duration("3x"), std::nullopt);
  EXPECT_EQ(number_text(5.256e6), "5.256e+06");
  EXPECT_EQ(number_text(0.01), "0.01");
}

// Found by a new user's trial: labels and annotations could pick any listen address or
// upstream, siesta's admin port included. The same rules for a container's labels, a Swarm
// service's and a workload's annotations (one parser).
TEST(Labels, ListenAndUpstreamAreBoundedToLoopbackOrSiestasBindAndNeverSiestasPorts) {
  LabelBounds b;
  b.bind_host = "127.0.0.1";
  b.admin_port = 8081;
  b.wake_port = 8082;
  b.taken = {{9000, "configured"}};
  set_label_bounds(b);
  // A listen needs an upstream: another host's, which no bound concerns.
  auto with = [](const std::string& prefix, const std::string& key, const std::string& value) {
    std::map<std::string, std::string> labels = {{prefix + key, value}};
    if (key == "listen") labels[prefix + "upstream"] = "10.0.0.5:80";
    return labels;
  };
  auto docker = [&](const std::string& key, const std::string& value) {
    return service_from_labels("c", with("siesta.", key, value));
  };
  auto kube = [&](const std::string& key, const std::string& value) {
    return service_from_annotations("deployment/w", with("siesta.io/", key, value));
  };
  auto swarm = [&](const std::string& key, const std::string& value) {
    return service_from_swarm_labels("s", with("siesta.", key, value));
  };
  EXPECT_TRUE(docker("listen", "127.0.0.1:9090"));
  EXPECT_TRUE(kube("listen", "127.0.0.1:9090"));
  EXPECT_TRUE(docker("upstream", "10.0.0.5:8081"));  // another host's 8081 is not siesta's
  struct Case {
    const char* key;
    const char* value;
    const char* why;
  };
  for (const Case& c : {Case{"listen", "0.0.0.0:9090", "may listen on loopback or on 127.0.0.1"},
                        Case{"listen", "127.0.0.1:8081", "siesta's admin API port 8081"},
                        Case{"listen", "127.0.0.1:8082", "siesta's /wake port 8082"},
                        Case{"listen", "127.0.0.1:9000", "port 9000 of service configured"},
                        Case{"upstream", "127.0.0.1:8081", "may not lead to siesta's admin API"},
                        Case{"upstream", "localhost:9000", "port 9000 of service configured"},
                        Case{"upstream", "0.0.0.0:8082", "siesta's /wake port"}}) {
    for (const auto& [what, found] :
         {std::pair{"siesta." + std::string(c.key), docker(c.key, c.value)},
          std::pair{"siesta.io/" + std::string(c.key), kube(c.key, c.value)},
          std::pair{"siesta." + std::string(c.key), swarm(c.key, c.value)}}) {
      ASSERT_FALSE(found) << c.key << "=" << c.value;
      EXPECT_NE(found.status().message().find(what + ": "), std::string::npos)
          << found.status().message();
      EXPECT_NE(found.status().message().find(c.why), std::string::npos)
          << found.status().message();
    }
  }
  // siesta listening beyond loopback (in a pod: 0.0.0.0) lets labels listen there too.
  b.bind_host = "0.0.0.0";
  set_label_bounds(b);
  EXPECT_TRUE(kube("listen", "0.0.0.0:9090"));
  EXPECT_FALSE(kube("listen", "10.1.2.3:9090"));
  set_label_bounds({});
}

}  // namespace
}  // namespace siesta::testing
