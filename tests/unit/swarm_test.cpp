// The Swarm parts of the Docker client, against answers recorded from a real single-node swarm
// (tests/unit/data/swarm, Docker 20.10 / API 1.41): services, tasks, the scale update's body,
// events, the not-in-a-swarm answer, and Swarm service labels as config.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "siesta/backends/docker_client.h"
#include "siesta/backends/swarm_backend.h"
#include "siesta/config/labels.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

json recorded(const std::string& name) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/tests/unit/data/swarm/" + name);
  EXPECT_TRUE(in) << name;
  std::ostringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

TEST(SwarmService, ParsesTheRecordedInspect) {
  auto s = parse_service(recorded("service_inspect.json"));
  ASSERT_TRUE(s) << s.status().message();
  EXPECT_EQ(s->id, "8bq8fqfozw5c27anaevatu4eh");
  EXPECT_EQ(s->name, "rec");
  EXPECT_EQ(s->version, 12u);
  ASSERT_TRUE(s->replicas);
  EXPECT_EQ(*s->replicas, 1);
  EXPECT_FALSE(s->remembered);
  EXPECT_EQ(s->labels.at("siesta.idle-timeout"), "1m");
}

TEST(SwarmService, ZeroReplicasGlobalModeAndTheRememberedLabel) {
  json doc = recorded("service_inspect.json");
  // The engine leaves Replicas out at 0.
  doc["Spec"]["Mode"] = {{"Replicated", json::object()}};
  doc["Spec"]["Labels"]["siesta.replicas"] = "3";
  auto zero = parse_service(doc);
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->replicas, 0);
  EXPECT_EQ(zero->remembered, 3);
  EXPECT_EQ(wake_replicas(*zero, 5), 3);  // the label first
  doc["Spec"]["Labels"]["siesta.replicas"] = "zero";
  auto bad_label = parse_service(doc);
  ASSERT_TRUE(bad_label);
  EXPECT_FALSE(bad_label->remembered);
  EXPECT_EQ(wake_replicas(*bad_label, 5), 5);  // then the state file's
  EXPECT_EQ(wake_replicas(*bad_label, std::nullopt), 1);
  // A label must not make a wake start a hundred thousand tasks (docs/security.md).
  doc["Spec"]["Labels"]["siesta.replicas"] = "100000";
  auto huge = parse_service(doc);
  ASSERT_TRUE(huge);
  EXPECT_FALSE(huge->remembered);
  EXPECT_EQ(wake_replicas(*huge, 5), 5);
  doc["Spec"]["Labels"]["siesta.replicas"] = "1000";
  EXPECT_EQ(parse_service(doc)->remembered, 1000);

  doc["Spec"]["Mode"] = {{"Global", json::object()}};
  auto global = parse_service(doc);
  ASSERT_TRUE(global);
  EXPECT_FALSE(global->replicas);

  EXPECT_FALSE(parse_service(json::object({{"ID", "x"}})));
  json no_version = recorded("service_inspect.json");
  no_version.erase("Version");
  EXPECT_FALSE(parse_service(no_version));
}

TEST(SwarmService, ParsesTheRecordedList) {
  auto list = parse_service_list(recorded("service_list.json"));
  ASSERT_TRUE(list) << list.status().message();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().name, "rec");
  EXPECT_FALSE(parse_service_list(json::object()));
}

TEST(SwarmService, TheScaleBodyIsTheWholeSpecWithTheCountAndTheLabel) {
  auto s = parse_service(recorded("service_inspect.json"));
  ASSERT_TRUE(s);
  json down = scaled_spec(*s, 0, 1);
  EXPECT_EQ(down["Mode"]["Replicated"]["Replicas"], 0);
  EXPECT_EQ(down["Labels"]["siesta.replicas"], "1");
  EXPECT_EQ(down["Labels"]["siesta.enable"], "true");
  // Everything else goes back as it was (a partial spec is refused with 400).
  json rest = down;
  json original = s->spec;
  rest.erase("Mode");
  rest.erase("Labels");
  original.erase("Mode");
  original.erase("Labels");
  EXPECT_EQ(rest, original);

  json up = scaled_spec(*s, 3, std::nullopt);
  EXPECT_EQ(up["Mode"]["Replicated"]["Replicas"], 3);
  EXPECT_FALSE(up["Labels"].contains("siesta.replicas"));
  // A spec without labels gets the label object.
  SwarmService bare = *s;
  bare.spec.erase("Labels");
  EXPECT_EQ(scaled_spec(bare, 0, 2)["Labels"]["siesta.replicas"], "2");
}

TEST(SwarmTasks, RunningAndBeingRemoved) {
  auto running = parse_task_list(recorded("tasks_running.json"));
  ASSERT_TRUE(running) << running.status().message();
  ASSERT_EQ(running->size(), 1u);
  EXPECT_EQ(running->front().state, "running");
  EXPECT_EQ(running->front().desired_state, "running");
  EXPECT_TRUE(task_alive(running->front()));

  // Just after a scale to 0 the task is still up for its grace period.
  auto down = parse_task_list(recorded("tasks_scaled_down.json"));
  ASSERT_TRUE(down);
  ASSERT_EQ(down->size(), 1u);
  EXPECT_EQ(down->front().desired_state, "remove");
  EXPECT_TRUE(task_alive(down->front()));

  for (const char* final_state : {"complete", "shutdown", "failed", "rejected", "orphaned"}) {
    EXPECT_FALSE(task_alive({"t", final_state, "shutdown", ""})) << final_state;
  }
  EXPECT_FALSE(parse_task_list(json::array({json::object({{"ID", "t"}})})));
}

TEST(SwarmEvents, ServiceAndTaskContainerEvents) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/tests/unit/data/swarm/events.ndjson");
  std::vector<DockerEvent> events;
  for (std::string line; std::getline(in, line);) {
    if (auto e = parse_event(json::parse(line))) events.push_back(*e);
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "service");
  EXPECT_EQ(events[0].action, "update");
  EXPECT_EQ(events[0].name, "rec");
  EXPECT_EQ(events[0].id, "8bq8fqfozw5c27anaevatu4eh");
  EXPECT_EQ(events[0].attributes.at("replicas.new"), "0");
  EXPECT_EQ(events[1].type, "container");
  EXPECT_EQ(events[1].action, "start");
  EXPECT_EQ(events[1].attributes.at("com.docker.swarm.service.name"), "rec");
  EXPECT_EQ(events[2].type, "service");
  EXPECT_EQ(events[2].action, "remove");
  EXPECT_FALSE(parse_event(json{{"Type", "network"}, {"Action", "create"}}));
}

TEST(SwarmLabels, BecomeASwarmServiceLikeAConfigEntry) {
  auto sc = service_from_swarm_labels("stack_web", {{"siesta.enable", "true"},
                                                    {"siesta.idle-timeout", "90s"},
                                                    {"siesta.replicas", "3"},  // siesta's own
                                                    {"siesta.upstream", "127.0.0.1:8080"},
                                                    {"com.docker.stack.namespace", "stack"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.name, "stack_web");
  EXPECT_EQ(sc->spec.backend, "swarm");
  EXPECT_EQ(sc->spec.swarm_service, "stack_web");
  EXPECT_DOUBLE_EQ(*sc->spec.idle_timeout_minutes, 1.5);

  auto bad = service_from_swarm_labels("web", {{"siesta.enable", "true"}, {"siesta.idle", "1m"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("swarm service web: label siesta.idle: unknown label"),
            std::string::npos)
      << bad.status().message();
  // The pause tier needs a backend that can freeze a container in place.
  auto pause = service_from_swarm_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.sleep-tiers", "pause:1m,stop:1h"}});
  ASSERT_FALSE(pause);
  EXPECT_NE(pause.status().message().find("cannot be paused"), std::string::npos)
      << pause.status().message();
  // A container's labels still may not carry siesta.replicas.
  EXPECT_FALSE(service_from_labels("c", {{"siesta.enable", "true"}, {"siesta.replicas", "2"}}));
}

TEST(SwarmErrors, TheNotInASwarmAnswerIsRecorded) {
  // What the engine answers every Swarm call once it left the swarm (503); the backend names it.
  EXPECT_NE(recorded("not_in_swarm.json")["message"].get<std::string>().find("not a swarm manager"),
            std::string::npos);
}

}  // namespace
}  // namespace siesta::testing
