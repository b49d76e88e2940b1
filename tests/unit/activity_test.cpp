// Activity signals: the sampler on a fake clock (a busy sample is a use, a failing one is
// neither), the config's "activity" lists, and the parsers of /proc, utmp, nvidia-smi and
// Prometheus answers on recorded or written inputs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utmp.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/activity/proc_stats.h"
#include "siesta/activity/prometheus_query.h"
#include "siesta/activity/run_command.h"
#include "siesta/activity/utmp.h"
#include "siesta/api/status_json.h"
#include "siesta/config/labels.h"
#include "siesta/core/gpu.h"
#include "siesta/runtime/activity_sampler.h"
#include "siesta/state/state_store.h"
#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

// Answers from a script shared with the test; the last answer repeats.
class ScriptedProbe final : public SignalProbe {
 public:
  explicit ScriptedProbe(std::shared_ptr<std::deque<SignalSample>> script)
      : script_(std::move(script)) {}
  SignalSample sample(const ServiceSpec&) override {
    ++calls;
    SignalSample s = script_->front();
    if (script_->size() > 1) script_->pop_front();
    return s;
  }
  int calls = 0;

 private:
  std::shared_ptr<std::deque<SignalSample>> script_;
};

// Keeps the posted tasks until the test runs them: a sample still running.
class HeldExecutor final : public Executor {
 public:
  void post(std::function<void()> task) override { tasks.push_back(std::move(task)); }
  void run_all() {
    auto now = std::move(tasks);
    tasks.clear();
    for (auto& t : now) t();
  }
  std::vector<std::function<void()>> tasks;
};

SignalSample busy() { return {100.0, ""}; }
SignalSample idle() { return {0.0, ""}; }
SignalSample broken() { return {std::nullopt, "exited with 3"}; }

// One service "a" with a 10-minute timeout and a command signal sampled every 60 s.
struct ActivityWorld {
  explicit ActivityWorld(std::deque<SignalSample> answers)
      : world(R"({"idle_timeout_minutes": 10, "idle_check_interval_minutes": 60,
                 "services": {"a": {"command": ["a"], "activity": [
                   {"kind": "command", "command": ["probe"], "interval_seconds": 60}]}}})"),
        script(std::make_shared<std::deque<SignalSample>>(std::move(answers))),
        sampler(*world.registry, world.clock, world.config.activity,
                [this](const ServiceSpec&, const SignalSpec&) {
                  ++probes_made;
                  return std::make_unique<ScriptedProbe>(script);
                }) {
    world.monitor->set_activity(&sampler);
  }
  World world;
  std::shared_ptr<std::deque<SignalSample>> script;
  int probes_made = 0;
  ActivitySampler sampler;
};

TEST(Activity, ABusySignalKeepsTheServiceUpPastItsTimeoutAndAnIdleOneLetsItSleep) {
  ActivityWorld a({busy()});
  a.world.run("a");
  const WallTime t0 = a.world.clock.wall_now();
  // Busy for 15 minutes: every sample is a use, so the 10-minute timeout never runs out.
  for (int i = 0; i < 15; ++i) {
    const WallTime next = a.world.monitor->step();
    EXPECT_EQ(next, a.world.clock.wall_now() + seconds(60));  // the next sample, not the timeout
    a.world.clock.advance(seconds(60));
  }
  a.world.monitor->step();
  EXPECT_EQ(a.world.service("a").state, ServiceState::kRunning);
  const WallTime last_busy = a.world.clock.wall_now();
  EXPECT_EQ(a.world.service("a").last_used, last_busy);
  ASSERT_EQ(a.world.service("a").activity.size(), 1u);
  EXPECT_TRUE(a.world.service("a").activity[0].busy);
  EXPECT_EQ(a.world.service("a").activity[0].last_busy_at, last_busy);
  EXPECT_GT(last_busy, t0 + minutes(10));

  // It stops burning: idle samples are no use, and it sleeps 10 minutes after the last busy one.
  a.script->assign({idle()});
  for (int i = 0; i < 9; ++i) {
    a.world.clock.advance(seconds(60));
    a.world.monitor->step();
  }
  EXPECT_EQ(a.world.service("a").state, ServiceState::kRunning);
  EXPECT_FALSE(a.world.service("a").activity[0].busy);
  EXPECT_EQ(a.world.service("a").activity[0].last_busy_at, last_busy);
  a.world.clock.advance(seconds(60));
  a.world.monitor->step();
  EXPECT_EQ(a.world.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(a.world.recorder.events(), (std::vector<std::string>{"slept a idle"}));
}

TEST(Activity, AFailingSignalNeitherKeepsTheServiceAwakeNorPutsItToSleep) {
  ActivityWorld a({broken()});
  a.world.run("a");
  const WallTime t0 = a.world.clock.wall_now();
  a.world.monitor->step();
  ServiceRuntime rt = a.world.service("a");
  ASSERT_EQ(rt.activity.size(), 1u);
  EXPECT_EQ(rt.activity[0].error, "exited with 3");
  EXPECT_EQ(rt.activity[0].errors, 1u);
  EXPECT_FALSE(rt.activity[0].busy);
  // Not put to sleep early: still running until the timeout of its last use.
  for (int i = 0; i < 9; ++i) {
    a.world.clock.advance(seconds(60));
    a.world.monitor->step();
    EXPECT_EQ(a.world.service("a").state, ServiceState::kRunning) << i;
  }
  EXPECT_EQ(a.world.service("a").activity[0].errors, 10u);  // every failure counted
  a.world.clock.advance(seconds(60));
  a.world.monitor->step();
  EXPECT_EQ(a.world.service("a").state, ServiceState::kStopped);  // nor kept awake
  EXPECT_FALSE(a.world.service("a").last_used);  // never used: its deadline ran from t0
  EXPECT_EQ(a.world.service("a").state_since, t0 + minutes(10));
}

TEST(Activity, ARecoveredSignalClearsItsErrorAndCountsAgain) {
  ActivityWorld a({broken(), busy()});
  a.world.run("a");
  a.world.monitor->step();
  EXPECT_FALSE(a.world.service("a").activity[0].error.empty());
  a.world.clock.advance(seconds(60));
  a.world.monitor->step();
  const SignalState s = a.world.service("a").activity[0];
  EXPECT_TRUE(s.error.empty());
  EXPECT_TRUE(s.busy);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(a.world.service("a").last_used, a.world.clock.wall_now());
}

TEST(Activity, AStoppedServiceIsNotSampledAndItsFirstSampleAfterAStartIsAtOnce) {
  ActivityWorld a({busy()});
  const WallTime t0 = a.world.clock.wall_now();
  a.world.monitor->step();                              // stopped: nothing sampled, nothing due
  EXPECT_EQ(a.probes_made, 1);                          // its probe exists ...
  EXPECT_EQ(a.world.service("a").activity.size(), 1u);  // ... and shows as pending
  EXPECT_FALSE(a.world.service("a").activity[0].sampled_at);
  EXPECT_FALSE(a.world.service("a").last_used);
  a.world.clock.advance(minutes(30));
  a.world.run("a");
  a.world.monitor->step();
  EXPECT_EQ(a.world.service("a").activity[0].sampled_at, t0 + minutes(30));
}

TEST(Activity, ASlowSampleIsNeverPostedTwiceAndNeverHoldsTheMonitor) {
  ActivityWorld a({busy()});
  HeldExecutor held;
  Monitor monitor(*a.world.registry, *a.world.controller, a.world.clock, a.world.recorder, held);
  monitor.set_activity(&a.sampler);
  a.world.run("a");
  monitor.step();
  EXPECT_EQ(held.tasks.size(), 1u);  // posted, not run: step() returned without it
  a.world.clock.advance(seconds(120));
  monitor.step();
  EXPECT_EQ(held.tasks.size(), 1u);  // still running: not posted again
  held.run_all();
  EXPECT_TRUE(a.world.service("a").activity[0].busy);
  a.world.clock.advance(seconds(60));
  monitor.step();
  EXPECT_EQ(held.tasks.size(), 1u);  // the next one
}

// "gpu_memory_mib": "measured" (docs/gpu.md): a sample of the service's processes' GPU memory
// after its activity signals, every 10 s while it runs; the budget counts the most seen. It is
// no activity: no use, no signal state; a failing sample keeps the last size.
TEST(GpuMeasure, TheMostItsProcessesHeldIsItsSizeInTheBudgetAndNoUse) {
  World w(R"({"idle_timeout_minutes": 10,
             "gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
             "services": {"a": {"command": ["a"], "gpu_memory_mib": "measured"},
                          "b": {"command": ["b"], "gpu_memory_mib": 100}}})");
  auto script = std::make_shared<std::deque<SignalSample>>(
      std::deque<SignalSample>{{0.0, ""}, {300.0, ""}, {200.0, ""}, broken()});
  std::vector<SignalSpec> asked;
  ActivitySampler sampler(*w.registry, w.clock, w.config.activity,
                          [&](const ServiceSpec&, const SignalSpec& signal) {
                            asked.push_back(signal);
                            return std::make_unique<ScriptedProbe>(script);
                          });
  w.monitor->set_activity(&sampler);
  w.monitor->step();
  ASSERT_EQ(asked.size(), 1u);  // a's measure only: b declares its size, neither has signals
  EXPECT_EQ(asked[0].kind, SignalKind::kGpu);
  EXPECT_EQ(asked[0].gpu_metric, "memory");
  EXPECT_FALSE(w.service("a").gpu_measured_mib);  // stopped: not sampled
  EXPECT_TRUE(gpu_holders(w.config.gpu, w.registry->snapshot()).empty());

  w.run("a");
  const std::optional<WallTime> used = w.service("a").last_used;
  w.monitor->step();
  EXPECT_EQ(w.service("a").gpu_measured_mib, 0.0);
  for (double expect : {300.0, 300.0, 300.0}) {  // 300, then 200 and a failure keep the most
    w.clock.advance(seconds(10));
    w.monitor->step();
    EXPECT_EQ(w.service("a").gpu_measured_mib, expect);
  }
  EXPECT_TRUE(w.service("a").activity.empty());
  EXPECT_EQ(w.service("a").last_used, used);  // no use
  const auto holders = gpu_holders(w.config.gpu, w.registry->snapshot());
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].name, "a");
  EXPECT_EQ(holders[0].mib, 300);
  const Snapshot snap = w.registry->snapshot();
  const nlohmann::json status =
      nlohmann::json::parse(idle_status_text(snap, decide(snap, w.clock.wall_now()), {}));
  EXPECT_EQ(status["services"]["a"]["gpu_memory_mib"], 300);
  EXPECT_EQ(status["services"]["a"]["gpu_memory_source"], "measured");
  EXPECT_EQ(status["services"]["b"]["gpu_memory_source"], "configured");

  // Kept in the state file: a restart knows its size before it runs again.
  const nlohmann::json doc = encode_state(w.registry->snapshot(), Baseline{}, {});
  EXPECT_EQ(doc["services"]["a"]["gpu_measured_mib"], 300);
  World after(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
                 "services": {"a": {"command": ["a"], "gpu_memory_mib": "measured"},
                              "b": {"command": ["b"], "gpu_memory_mib": 100}}})");
  Baseline base;
  base.services["a"] = {true, Desired::kOff};
  base.services["b"] = {true, Desired::kOff};
  ASSERT_TRUE(restore_state(doc, base, *after.registry, after.clock.wall_now()));
  EXPECT_EQ(after.service("a").gpu_measured_mib, 300);
}

// A measured peak past the budget (a new user's trial: every wake was refused for good, the
// peak kept across restarts): its wake makes room for the whole budget instead.
TEST(GpuMeasure, APeakPastTheBudgetMakesRoomForTheWholeBudgetNotARefusal) {
  World w(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
             "services": {"a": {"command": ["a"], "gpu_memory_mib": "measured"},
                          "b": {"command": ["b"], "gpu_memory_mib": 100}}})");
  w.controller->set_gpu(w.config.gpu);
  w.registry->update_service(
      "a", [](const ServiceSpec&, ServiceRuntime& rt) { rt.gpu_measured_mib = 1800; });
  ASSERT_TRUE(w.controller->wake("b", Reason::kManual));
  const Status st = w.controller->wake("a", Reason::kManual);
  EXPECT_TRUE(st) << st.message();
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  EXPECT_EQ(w.service("b").state, ServiceState::kStopped);  // stopped for room
}

TEST(GpuMeasure, OnlyAProcessServiceInABudgetIsMeasured) {
  auto refused = [](const std::string& text) {
    try {
      parse_config(text, "siesta.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
      "services": {"c": {"container": "c", "gpu_memory_mib": "measured"}}})"),
            "config error in siesta.json: services.c.gpu_memory_mib: \"measured\" is for a "
            "process service (nvidia-smi's per-process usage is matched to its process group); "
            "give a docker service's size in MiB");
  EXPECT_NE(refused(R"({"services": {"a": {"command": ["a"], "gpu_memory_mib": "measured"}}})")
                .find("services.a.gpu_memory_mib: needs a \"gpu\" section"),
            std::string::npos);
  // A misspelt "measured" is told what the key takes (a new user's re-trial: "Measured" was
  // refused as "must be a number").
  EXPECT_EQ(refused(R"({"gpu": {"devices": [{"id": 0, "memory_mib": 1000}]},
      "services": {"a": {"command": ["a"], "gpu_memory_mib": "Measured"}}})"),
            "config error in siesta.json: services.a.gpu_memory_mib: must be a number of MiB or "
            "\"measured\", got \"Measured\"");
}

TEST(Activity, IdleStatusShowsEachSignal) {
  ActivityWorld a({busy()});
  a.world.run("a");
  a.world.monitor->step();
  const Snapshot snap = a.world.registry->snapshot();
  const Decision d = decide(snap, a.world.clock.wall_now());
  const auto doc = nlohmann::json::parse(idle_status_text(snap, d, {}));
  const auto& sig = doc["services"]["a"]["activity"][0];
  EXPECT_EQ(sig["name"], "command");
  EXPECT_EQ(sig["kind"], "command");
  EXPECT_EQ(sig["state"], "busy");
  EXPECT_EQ(sig["value"], 100);
  EXPECT_EQ(sig["threshold"], 0);
  EXPECT_EQ(sig["last_busy_at"], 1'700'000'000);
  EXPECT_TRUE(sig["error"].is_null());
}

// --- config ---

Config parse(const std::string& text) { return parse_config(text, "t.json"); }

std::string config_error(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ActivityConfig, ReadsEachKindAndTheGlobalDefault) {
  const Config c = parse(R"j({
    "activity": [{"kind": "users", "utmp": "/tmp/u", "active_within_minutes": 5}],
    "services": {
      "a": {"command": ["a"], "upstream": "127.0.0.1:9", "activity": [
        {"kind": "cpu", "threshold": 20, "interval_seconds": 2},
        {"kind": "network"},
        {"kind": "gpu", "metric": "memory", "threshold": 100},
        {"kind": "prometheus", "url": "http://127.0.0.1:9090", "query": "sum(up)"},
        {"kind": "command", "name": "batch", "command": ["/bin/true"], "timeout_seconds": 1}]},
      "b": {"command": ["b"]},
      "c": {"command": ["c"], "activity": []}}})j");
  ASSERT_EQ(c.activity.size(), 1u);
  EXPECT_EQ(c.activity[0].kind, SignalKind::kUsers);
  EXPECT_EQ(c.activity[0].utmp_path, "/tmp/u");
  EXPECT_EQ(c.activity[0].active_within_minutes, 5);
  const auto& a = *c.services[0].spec.activity;
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a[0].kind, SignalKind::kCpu);
  EXPECT_EQ(a[0].threshold, 20);
  EXPECT_EQ(a[0].interval_seconds, 2);
  EXPECT_EQ(a[1].name, "network");
  EXPECT_EQ(a[2].gpu_metric, "memory");
  EXPECT_EQ(a[3].query, "sum(up)");
  EXPECT_EQ(a[4].name, "batch");
  EXPECT_EQ(a[4].command, std::vector<std::string>{"/bin/true"});
  EXPECT_FALSE(c.services[1].spec.activity);          // b: the global list
  EXPECT_TRUE(c.services[2].spec.activity->empty());  // c: none at all
  World w("{}");
  ActivitySampler sampler(*w.registry, w.clock, c.activity, nullptr);
  EXPECT_EQ(sampler.signals_of(c.services[1].spec).size(), 1u);
  EXPECT_TRUE(sampler.signals_of(c.services[2].spec).empty());
}

TEST(ActivityConfig, BadEntriesNameTheKeyAndTheReason) {
  auto svc = [](const std::string& activity) {
    return R"({"services": {"a": {"command": ["a"], "activity": )" + activity + "}}}";
  };
  EXPECT_EQ(config_error(svc(R"([{"kind": "disk"}])")),
            "config error in t.json: services.a.activity[0].kind: must be \"cpu\", \"network\", "
            "\"gpu\", \"prometheus\", \"users\" or \"command\", got \"disk\"");
  EXPECT_EQ(config_error(svc(R"([{"kind": "cpu", "url": "http://x"}])")).substr(0, 63),
            "config error in t.json: services.a.activity[0].url: unknown key");
  EXPECT_EQ(config_error(svc(R"([{"kind": "cpu"}, {"kind": "cpu", "threshold": 5}])")),
            "config error in t.json: services.a.activity[1].name: \"cpu\" is already "
            "services.a.activity[0] (give each signal of one kind its own \"name\")");
  EXPECT_EQ(config_error(svc(R"([{"kind": "cpu", "threshold": -1}])")).substr(0, 65),
            "config error in t.json: services.a.activity[0].threshold: must be");
  EXPECT_EQ(config_error(svc(R"([{"kind": "command"}])")),
            "config error in t.json: services.a.activity[0].command: is required for kind "
            "\"command\"");
  EXPECT_EQ(config_error(svc(R"([{"kind": "prometheus", "query": "up"}])")),
            "config error in t.json: services.a.activity[0].url: is required: \"http://host:port\" "
            "of the Prometheus server");
  EXPECT_EQ(
      config_error(svc(R"([{"kind": "prometheus", "url": "https://p:9090", "query": "up"}])")),
      "config error in t.json: services.a.activity[0].url: https is not supported: give the "
      "Prometheus server's plain \"http://host:port\" (e.g. on loopback, or through a local "
      "TLS-terminating proxy)");
  EXPECT_EQ(config_error(svc(R"([{"kind": "gpu", "metric": "fan"}])")),
            "config error in t.json: services.a.activity[0].metric: must be \"utilization\" or "
            "\"memory\", got \"fan\"");
  EXPECT_EQ(config_error(R"({"activity": {"kind": "cpu"}})"),
            "config error in t.json: activity: must be an array of {\"kind\": ..., ...}");
  EXPECT_EQ(config_error(svc(R"([{"kind": "users", "input_idle_command": ["xprintidle"]}])")),
            "config error in t.json: services.a.activity[0].input_idle_command: needs "
            "active_within_minutes");
}

// --- parsers on recorded and written inputs ---

std::string data(const std::string& name) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/tests/unit/data/" + name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ProcStats, ReadsAStatLineWhoseCommandHoldsSpacesAndParentheses) {
  const auto st = parse_proc_stat(
      "4242 (my (odd) cmd) R 1 4240 4240 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pgrp, 4240);
  EXPECT_EQ(st->ticks, 325u);
  EXPECT_FALSE(parse_proc_stat("garbage"));
}

TEST(ProcStats, CountsDirectConnectionsButNotSiestasOwn) {
  // /proc/net/tcp as the kernel writes it: a listener on 8080 (0x1F90), a client of siesta's
  // (local 127.0.0.1:40000 -> 8080, inode 111 held by siesta) and its server side, a direct
  // client from 127.0.0.1:40002 and its server side, and a closed one (TIME_WAIT).
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode\n"
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000   0 100 "
      "1 0 100 0 0 10 0\n"
      "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000   0 111 "
      "1 0 20 4 30 10 -1\n"
      "   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000   0 112 "
      "1 0 20 4 30 10 -1\n"
      "   3: 0100007F:9C42 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000   0 121 "
      "1 0 20 4 30 10 -1\n"
      "   4: 0100007F:1F90 0100007F:9C42 01 00000000:00000000 00:00000000 00000000  1000   0 122 "
      "1 0 20 4 30 10 -1\n"
      "   5: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 03:00000000 00000000     0   0 0 "
      "3 0000000000000000\n";
  const auto entries = parse_proc_net_tcp(tcp);
  ASSERT_EQ(entries.size(), 6u);
  EXPECT_EQ(entries[0].local_port, 8080);
  EXPECT_EQ(entries[1].state, 1);
  EXPECT_EQ(entries[1].inode, 111u);
  EXPECT_EQ(direct_connections(entries, 8080, {111}), 1);  // only the direct client
  EXPECT_EQ(direct_connections(entries, 8080, {}), 2);
  EXPECT_EQ(direct_connections(entries, 9090, {}), 0);
}

TEST(NvidiaSmi, ParsesRecordedOutputs) {
  const GpuParse gpus = parse_query_gpu(data("nvidia-smi/query-gpu-two.csv"));
  ASSERT_TRUE(gpus.error.empty()) << gpus.error;
  ASSERT_EQ(gpus.gpus.size(), 2u);
  EXPECT_EQ(gpus.gpus[0].utilization_percent, 87);
  EXPECT_EQ(gpus.gpus[1].memory_used_mib, 512);
  const GpuParse apps = parse_query_compute_apps(data("nvidia-smi/query-compute-apps-two.csv"));
  ASSERT_TRUE(apps.error.empty()) << apps.error;
  ASSERT_EQ(apps.apps.size(), 2u);
  EXPECT_EQ(apps.apps[0].pid, 4242);
  // The service's process 4242 runs on GPU 0 (87 %), holding 9728 MiB.
  EXPECT_EQ(gpu_value(gpus.gpus, apps.apps, {4242}, "utilization"), 87);
  EXPECT_EQ(gpu_value(gpus.gpus, apps.apps, {4242}, "memory"), 9728);
  EXPECT_EQ(gpu_value(gpus.gpus, apps.apps, {5151}, "utilization"), 3);
  EXPECT_EQ(gpu_value(gpus.gpus, apps.apps, {}, "utilization"), 87);  // every GPU
  EXPECT_EQ(gpu_value(gpus.gpus, apps.apps, {}, "memory"), 10228);

  const GpuParse na = parse_query_gpu(data("nvidia-smi/query-gpu-na.csv"));
  ASSERT_TRUE(na.error.empty()) << na.error;
  EXPECT_FALSE(na.gpus[0].utilization_percent);  // "[N/A]"
  EXPECT_EQ(gpu_value(na.gpus, {}, {}, "utilization"), 0);
  EXPECT_TRUE(
      parse_query_compute_apps(data("nvidia-smi/query-compute-apps-none.csv")).apps.empty());
  EXPECT_EQ(parse_query_gpu(data("nvidia-smi/no-driver.txt")).error.substr(0, 40),
            "unexpected nvidia-smi output, line 1: NV");
}

// The GPU budget's query: totals per physical GPU, with and without MIG, and the budget of a
// device without memory_mib filled in from them (or a config error naming the key).
TEST(NvidiaSmi, ParsesMemoryTotalsWithAndWithoutMig) {
  const GpuMemoryParse two = parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-two.csv"));
  ASSERT_TRUE(two.error.empty()) << two.error;
  ASSERT_EQ(two.gpus.size(), 2u);
  EXPECT_EQ(two.gpus[0].index, 0);
  EXPECT_EQ(two.gpus[0].total_mib, 24564);
  EXPECT_EQ(two.gpus[0].used_mib, 22118);
  EXPECT_EQ(two.gpus[1].index, 1);
  EXPECT_EQ(gpu_totals(two.gpus), (std::map<int, double>{{0, 24564}, {1, 24564}}));

  // MIG on: one row, the physical card; per-process memory unknown ([N/A]) in its instances.
  const GpuMemoryParse mig = parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-mig.csv"));
  ASSERT_TRUE(mig.error.empty()) << mig.error;
  ASSERT_EQ(mig.gpus.size(), 1u);
  EXPECT_EQ(mig.gpus[0].total_mib, 81920);
  const GpuParse apps = parse_query_compute_apps(data("nvidia-smi/query-compute-apps-mig.csv"));
  ASSERT_TRUE(apps.error.empty()) << apps.error;
  ASSERT_EQ(apps.apps.size(), 2u);
  EXPECT_FALSE(apps.apps[0].used_memory_mib);
  EXPECT_EQ(gpu_value({}, apps.apps, {3117}, "memory"), 0);

  EXPECT_EQ(parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-bad.csv")).error,
            "unexpected nvidia-smi output, line 1: 0, [N/A], 0");
  EXPECT_EQ(parse_query_gpu_memory(data("nvidia-smi/no-driver.txt")).error.substr(0, 40),
            "unexpected nvidia-smi output, line 1: NV");
  EXPECT_EQ(parse_query_gpu_memory(data("nvidia-smi/query-gpu-two.csv")).error.substr(0, 38),
            "unexpected nvidia-smi output, line 1: ");  // four columns, not three
}

// nvidia-smi's failures in words (issue 21's trial: a timeout read "exit code -1"): a fake
// nvidia-smi (a shell script) that hangs, fails like a machine without the driver, or is missing.
TEST(NvidiaSmi, FailuresSayWhatHappened) {
  CommandResult r = run_command({"/bin/sh", "-c", "exec >/dev/null; sleep 30"}, Seconds(0.3));
  EXPECT_EQ(describe_failure(r, Seconds(0.3)), "timed out after 0.3 s");
  r = run_command({"/bin/sh", "-c",
                   "echo 'NVIDIA-SMI has failed because it could not communicate "
                   "with the NVIDIA driver.'; echo second; exit 9"},
                  Seconds(5));
  EXPECT_EQ(describe_failure(r, Seconds(5)),
            "exited with code 9: NVIDIA-SMI has failed because it could not communicate with the "
            "NVIDIA driver.");
  r = run_command({"/bin/sh", "-c", "kill -9 $$"}, Seconds(5));
  EXPECT_EQ(describe_failure(r, Seconds(5)), "was killed by signal 9");
  // Said on stderr only (a wrapper, a missing library): in the message too (issue 21's
  // re-trial: "exited with code 12" alone).
  r = run_command(
      {"/bin/sh", "-c",
       "echo 'nvidia-smi: error while loading shared libraries: libnvidia-ml.so.1' >&2; "
       "exit 12"},
      Seconds(5));
  EXPECT_EQ(describe_failure(r, Seconds(5)),
            "exited with code 12: nvidia-smi: error while loading shared libraries: "
            "libnvidia-ml.so.1");
  EXPECT_EQ(describe_failure(run_command({"/bin/true"}, Seconds(5)), Seconds(5)), "");
  std::string error;
  EXPECT_TRUE(query_gpu_memory("/nonexistent/nvidia-smi", error).empty());
  EXPECT_EQ(error, "/nonexistent/nvidia-smi not found");
  // A file that cannot be run (not executable): its path said once (issue 21's re-trial: "/x
  // cannot run /x: Permission denied").
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("siesta-nvsmi-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string tool = (dir / "nvidia-smi").string();
  std::ofstream(tool) << "#!/bin/sh\necho 0, 1000, 0\n";
  fs::permissions(tool, fs::perms::owner_read | fs::perms::owner_write);
  error.clear();
  EXPECT_TRUE(query_gpu_memory(tool, error).empty());
  EXPECT_EQ(error, tool + " cannot be run: Permission denied");
  fs::remove_all(dir);
}

// memory.used at start-up: what processes siesta does not manage use comes off a budget taken
// from the total; a configured budget is never changed.
TEST(NvidiaSmi, MemoryInUseByOthersComesOffABudgetTakenFromTheTotal) {
  const auto rows = parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-two.csv")).gpus;
  std::vector<GpuDevice> devices = {{0, 24564}, {1, 24564}, {2, 8000}};
  // GPU 0 and 1 from the total, nothing of siesta's found running; GPU 2 configured.
  const UnmanagedMemory out = budget_less_unmanaged(devices, rows, {0, 1}, {});
  EXPECT_EQ(devices[0].memory_mib, 24564 - 22118);
  EXPECT_EQ(devices[1].memory_mib, 24564 - 1);
  EXPECT_EQ(devices[2].memory_mib, 8000);
  ASSERT_EQ(out.info.size(), 2u);
  EXPECT_EQ(out.info[0],
            "GPU 0: 22118 of 24564 MiB in use at start-up by processes siesta does not manage: "
            "the budget is the total less that, 2446 MiB");
  EXPECT_TRUE(out.warnings.empty());
  EXPECT_EQ(out.why.at(0),
            "the total, 24564 MiB, less 22118 MiB used by other processes at start-up");
}

// Issue 21's re-trial: services of siesta's left running by an earlier siesta (on_exit "leave")
// hold part of memory.used. That part is siesta's, counted by its holders: only the rest comes
// off (it was all taken off, then counted again as holders). Before, a device with any of them
// kept its whole total instead, the others' share and all.
TEST(NvidiaSmi, WhatSiestasOwnHoldersHoldIsNotTakenOffTwice) {
  const auto rows = parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-two.csv")).gpus;
  std::vector<GpuDevice> devices = {{0, 24564}, {1, 24564}};
  // GPU 0: 22118 used, 20000 of it by siesta's adopted holders; GPU 1: 1 used, all siesta's.
  const UnmanagedMemory out = budget_less_unmanaged(devices, rows, {0, 1}, {{0, 20000}, {1, 600}});
  EXPECT_EQ(devices[0].memory_mib, 24564 - 2118);
  EXPECT_EQ(devices[1].memory_mib, 24564);
  ASSERT_EQ(out.info.size(), 2u);
  EXPECT_EQ(out.info[0],
            "GPU 0: 22118 of 24564 MiB in use at start-up, 2118 by processes siesta does not "
            "manage (siesta's services and models found running hold 20000): the budget is the "
            "total less that, 22446 MiB");
  EXPECT_EQ(out.info[1],
            "GPU 1: 1 of 24564 MiB in use at start-up, all of it by siesta's own services and "
            "models: the budget is the total, 24564 MiB");
  EXPECT_EQ(out.why.count(1), 0u);
}

// Others use the whole card (memory.used >= memory.total): the budget is what they leave, 0, with
// a warning saying what to configure. It silently stayed the whole card before.
TEST(NvidiaSmi, OthersFillingTheCardLeaveNoBudgetAndAWarning) {
  std::vector<GpuDevice> devices = {{0, 24576}};
  const UnmanagedMemory out = budget_less_unmanaged(devices, {{0, 24576, 24576}}, {0}, {});
  EXPECT_EQ(devices[0].memory_mib, 0);
  EXPECT_TRUE(out.info.empty());
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_EQ(out.warnings[0],
            "GPU 0: 24576 of 24576 MiB in use at start-up by processes siesta does not manage: "
            "nothing is left for siesta's services and models, so its budget is 0 MiB and every "
            "wake or load that needs memory on it is refused. If those processes will leave room, "
            "set gpu.devices[0].memory_mib to what siesta may use");
  devices = {{0, 24576}};
  (void)budget_less_unmanaged(devices, {{0, 24576, 30000}}, {0}, {});  // more than the total
  EXPECT_EQ(devices[0].memory_mib, 0);
}

TEST(NvidiaSmi, ADeviceWithoutABudgetTakesItsTotal) {
  const std::string text = R"({"gpu": {"devices": [{"id": 0}, {"id": 1, "memory_mib": 8000}]}})";
  Config config = parse_config(text, "gpu.json");
  EXPECT_EQ(config.gpu.devices[0].memory_mib, 0);  // to be filled in
  resolve_gpu_totals(
      config, gpu_totals(parse_query_gpu_memory(data("nvidia-smi/query-gpu-memory-two.csv")).gpus),
      "");
  EXPECT_EQ(config.gpu.devices[0].memory_mib, 24564);
  EXPECT_EQ(config.gpu.devices[1].memory_mib, 8000);  // configured: kept

  Config without = parse_config(text, "gpu.json");
  try {
    resolve_gpu_totals(without, {}, "nvidia-smi not found");
    FAIL() << "accepted without nvidia-smi";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "config error in gpu.json: gpu.devices[0].memory_mib: is required without "
                 "nvidia-smi (nvidia-smi not found)");
  }
  Config other = parse_config(R"({"gpu": {"devices": [{"id": 3}]}})", "gpu.json");
  try {
    resolve_gpu_totals(other, {{0, 24564}}, "");
    FAIL() << "accepted a GPU nvidia-smi does not report";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "config error in gpu.json: gpu.devices[0].memory_mib: is required: nvidia-smi "
                 "reports no GPU 3");
  }
  // A service larger than the total nvidia-smi reports: refused once the total is known.
  Config big = parse_config(
      R"({"gpu": {"devices": [{"id": 0}]},
          "services": {"a": {"command": ["a"], "gpu_memory_mib": 30000}}})",
      "gpu.json");
  try {
    resolve_gpu_totals(big, {{0, 24564}}, "");
    FAIL() << "accepted a service larger than the card";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "config error in gpu.json: services.a.gpu_memory_mib: 30000 MiB is more than GPU "
                 "0's budget of 24564 MiB: it could never fit");
  }
}

TEST(PrometheusAnswer, ReadsVectorsScalarsAndErrors) {
  auto v = parse_prometheus_answer(
      R"({"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"a":"1"},"value":[1700000000,"0.5"]},{"metric":{},"value":[1700000000,"3"]}]}})");
  EXPECT_EQ(v.value, 3);
  v = parse_prometheus_answer(R"({"status":"success","data":{"resultType":"vector","result":[]}})");
  EXPECT_EQ(v.value, 0);  // empty: idle
  v = parse_prometheus_answer(
      R"({"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}})");
  EXPECT_EQ(v.value, 0);
  v = parse_prometheus_answer(
      R"({"status":"error","errorType":"bad_data","error":"parse error at char 4"})");
  EXPECT_EQ(v.error, "query failed: bad_data: parse error at char 4");
  EXPECT_EQ(parse_prometheus_answer("<html>").error, "answer is not JSON");
}

// A utmp file written the way login writes it, and terminals whose atime the test sets.
TEST(Utmp, CountsLoggedInSessionsAndThoseActiveWithinTheWindow) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("siesta-utmp-" + std::to_string(::getpid()));
  fs::create_directories(dir / "dev" / "pts");
  auto record = [](short type, const char* user, const char* line) {
    utmp u{};
    u.ut_type = type;
    std::strncpy(u.ut_user, user, sizeof u.ut_user);
    std::strncpy(u.ut_line, line, sizeof u.ut_line);
    return u;
  };
  {
    std::ofstream out(dir / "utmp", std::ios::binary);
    for (const utmp& u :
         {record(BOOT_TIME, "reboot", "~"), record(USER_PROCESS, "ann", "pts/0"),
          record(LOGIN_PROCESS, "LOGIN", "tty1"), record(USER_PROCESS, "bob", "pts/1"),
          record(DEAD_PROCESS, "", "pts/2"), record(USER_PROCESS, "gone", "pts/9")}) {
      out.write(reinterpret_cast<const char*>(&u), sizeof u);
    }
  }
  const WallTime now = from_unix_seconds(1'700'000'000);
  auto touch = [&](const char* line, WallTime at) {
    std::ofstream(dir / "dev" / line).put('x');
    const timespec times[2] = {{static_cast<time_t>(to_unix_seconds(at)), 0},
                               {static_cast<time_t>(to_unix_seconds(at)), 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir / "dev" / line).c_str(), times, 0), 0);
  };
  touch("pts/0", now - minutes(2));
  touch("pts/1", now - minutes(30));
  const UtmpRead read = read_utmp((dir / "utmp").string(), (dir / "dev").string());
  ASSERT_TRUE(read.error.empty()) << read.error;
  ASSERT_EQ(read.sessions.size(), 3u);
  EXPECT_EQ(read.sessions[0].user, "ann");
  EXPECT_EQ(read.sessions[1].line, "pts/1");
  // Logged in: all three records (as `who` says); with input: never "gone", whose terminal no
  // longer exists (a crashed session's record; found by a new user's trial).
  EXPECT_EQ(active_sessions(read.sessions, now, std::nullopt), 3);
  EXPECT_EQ(active_sessions(read.sessions, now, Seconds(5 * 60)), 1);  // ann only
  EXPECT_EQ(active_sessions(read.sessions, now, Seconds(60 * 60)), 2);
  EXPECT_FALSE(read_utmp((dir / "none").string()).error.empty());
  // Only a regular file: a device or a FIFO would never end (a trial's /dev/zero spun a core).
  EXPECT_EQ(read_utmp("/dev/zero").error, "cannot read /dev/zero: not a regular file");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(read_utmp((dir / "fifo").string()).error,
            "cannot read " + (dir / "fifo").string() + ": not a regular file");
  fs::remove_all(dir);
}

// The command signal's runner, on real processes.
TEST(RunCommand, ExitCodesTimeoutsAndMissingTools) {
  auto r = run_command({"/bin/sh", "-c", "echo 1234; exit 0"}, Seconds(5));
  EXPECT_EQ(r.outcome, CommandResult::Outcome::kExited);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "1234\n");
  r = run_command({"/bin/sh", "-c", "exit 1"}, Seconds(5));
  EXPECT_EQ(r.exit_code, 1);
  // The command's exit decides, not a child it left behind holding its output (which is
  // killed with its group).
  r = run_command({"/bin/sh", "-c", "echo 7; sleep 30 & exit 1"}, Seconds(5));
  EXPECT_EQ(r.outcome, CommandResult::Outcome::kExited);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "7\n");
  // A command that closes its output and then hangs is a timeout, not a wait without end (a
  // review found the sample, and so siesta's shutdown, could hang).
  const auto t1 = std::chrono::steady_clock::now();
  r = run_command({"/bin/sh", "-c", "exec >/dev/null; sleep 30"}, Seconds(0.3));
  EXPECT_EQ(r.outcome, CommandResult::Outcome::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, seconds(5));
  // A hung command and its child are killed at the deadline.
  const auto t0 = std::chrono::steady_clock::now();
  r = run_command({"/bin/sh", "-c", "sleep 30 & sleep 30"}, Seconds(0.3));
  EXPECT_EQ(r.outcome, CommandResult::Outcome::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(5));
  r = run_command({"/nonexistent/nvidia-smi"}, Seconds(1));
  EXPECT_EQ(r.outcome, CommandResult::Outcome::kNotFound);
}

}  // namespace
}  // namespace siesta::testing

namespace siesta::testing {
namespace {

TEST(ActivityLabels, AContainerCarriesItsSignalsAsJsonButNoCommand) {
  auto svc = service_from_labels(
      "web", {{"siesta.enable", "true"},
              {"siesta.activity", R"([{"kind": "cpu", "threshold": 15}, {"kind": "network"}])"}});
  ASSERT_TRUE(svc) << svc.status().message();
  ASSERT_EQ(svc->spec.activity->size(), 2u);
  EXPECT_EQ((*svc->spec.activity)[0].threshold, 15);
  EXPECT_EQ((*svc->spec.activity)[1].kind, SignalKind::kNetwork);

  auto cmd = service_from_labels(
      "web", {{"siesta.enable", "true"},
              {"siesta.activity", R"([{"kind": "command", "command": ["rm", "-rf", "/"]}])"}});
  ASSERT_FALSE(cmd);
  EXPECT_EQ(cmd.status().message(),
            "container web: label siesta.activity: only cpu, network and gpu signals can be "
            "given in labels (users, prometheus and command signals read or run things on the "
            "host as siesta: give them in the config file), got \"command\"");
  // Nor what reads the host: any file as root, any URL (a new user's trial).
  for (const char* signal : {R"([{"kind": "users", "utmp": "/dev/zero"}])",
                             R"([{"kind": "prometheus", "url": "http://127.0.0.1:8081",
                                  "query": "x"}])"}) {
    EXPECT_FALSE(
        service_from_labels("web", {{"siesta.enable", "true"}, {"siesta.activity", signal}}))
        << signal;
  }
  auto bad = service_from_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.activity", R"([{"kind": "cpu", "x": 1}])"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("label siesta.activity[0].x: unknown key"),
            std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(service_from_labels("web", {{"siesta.enable", "true"}, {"siesta.activity", "cpu"}}));
}

// A label must not make siesta sample ten times a second, nor hold its shutdown on a sample for
// an hour (a review: the config's bounds, 0.1 s and 3600 s, applied to labels too).
TEST(ActivityLabels, ALabelsSignalSamplesAtMostOnceASecondAndGivesUpWithin30s) {
  auto with = [](const std::string& signal) {
    return service_from_labels("web", {{"siesta.enable", "true"}, {"siesta.activity", signal}});
  };
  auto fast = with(R"([{"kind": "cpu", "interval_seconds": 0.1}])");
  ASSERT_FALSE(fast);
  EXPECT_EQ(fast.status().message(),
            "container web: label siesta.activity: interval_seconds must be a number of at least 1 "
            "in labels, got 0.1");
  auto stuck = with(R"([{"kind": "gpu", "timeout_seconds": 3600}])");
  ASSERT_FALSE(stuck);
  EXPECT_EQ(stuck.status().message(),
            "container web: label siesta.activity: timeout_seconds must be a number of at most 30 "
            "in labels, got 3600");
  EXPECT_TRUE(with(R"([{"kind": "cpu", "interval_seconds": 1, "timeout_seconds": 30}])"));
}

// A Swarm service's tasks run on any node: cpu and network cannot be read; gpu can (this host).
TEST(ActivityLabels, ASwarmServiceRefusesCpuAndNetworkSignals) {
  auto cpu = service_from_swarm_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.activity", R"([{"kind": "cpu"}])"}});
  ASSERT_FALSE(cpu);
  EXPECT_NE(
      cpu.status().message().find(
          "activity[0].kind: a Swarm service's cpu cannot be read: its tasks run on any node"),
      std::string::npos)
      << cpu.status().message();
  EXPECT_FALSE(service_from_swarm_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.activity", R"([{"kind": "network"}])"}}));
  EXPECT_TRUE(service_from_swarm_labels(
      "web", {{"siesta.enable", "true"}, {"siesta.activity", R"([{"kind": "gpu"}])"}}));
}

}  // namespace
}  // namespace siesta::testing
