// The policy simulator (`siesta simulate`): trace parsing and its errors, and exact counts on
// hand-made traces; then the goal of issue 20 on the checked-in synthetic traces
// (tests/unit/data/traces, made by tools/gen_trace.py): counts, never timings.
#include "siesta/sim/simulator.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace siesta::sim {
namespace {

std::vector<TraceRequest> parse(std::string_view text) {
  auto t = parse_trace(text, "t.csv");
  EXPECT_TRUE(t) << t.status().message();
  return t ? *t : std::vector<TraceRequest>{};
}

std::string parse_error(std::string_view text) {
  auto t = parse_trace(text, "t.csv");
  EXPECT_FALSE(t);
  return t.status().message();
}

PolicyResult run(const std::vector<TraceRequest>& trace, const std::string& policy,
                 double cold_start = 60) {
  SimOptions options;
  options.cold_start_seconds = cold_start;
  return simulate(trace, *parse_policy_arg(policy), options);
}

TEST(SimulatorTrace, CsvWithAndWithoutHeaderAndJsonl) {
  auto t = parse("# a comment\n10,a\n\n5,b,llama,2.5\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].service, "b");  // sorted by time
  EXPECT_EQ(t[0].model, "llama");
  EXPECT_EQ(t[0].duration, 2.5);
  t = parse("service,duration,time\na,3,7\n");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].time, 7);
  EXPECT_EQ(t[0].duration, 3);
  t = parse(R"({"time": 1, "service": "a", "duration": 4}
{"time": 2, "service": "a", "model": "m"})");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].model, "m");
}

TEST(SimulatorTrace, BadLinesNameFileLineAndReason) {
  EXPECT_EQ(parse_error("1,a\nx1,a\n"), "t.csv:2: time: must be a number, got \"x1\"");
  EXPECT_EQ(parse_error("1,a\n2,,\n"), "t.csv:2: service: must not be empty");
  EXPECT_EQ(parse_error("1\n"), "t.csv:1: expected 2 to 4 fields, got 1");
  EXPECT_EQ(parse_error("-1,a\n"), "t.csv:1: time: must be at least 0");
  EXPECT_EQ(parse_error("1,a,,-3\n"), "t.csv:1: duration: must be at least 0");
  // Milliseconds, or values past what a clock holds, would all fold into one burst (a new
  // user's trial: a millisecond trace gave 1 cold start for every policy).
  EXPECT_EQ(parse_error("1764530720900,a\n"),
            "t.csv:1: time: 1764530720900 is past the year 2286: times are in seconds "
            "(milliseconds?)");
  EXPECT_EQ(parse_error("1,a,,1e12\n"), "t.csv:1: duration: must be at most 2592000 (30 days)");
  EXPECT_EQ(parse_error("when,service\n"),
            "t.csv:1: unknown column \"when\" (time, service, model, duration)");
  EXPECT_EQ(parse_error("{\"time\": 1}\n"), "t.csv:1: service: missing");
  EXPECT_EQ(parse_error("{\"time\": \"1\", \"service\": \"a\"}\n"),
            "t.csv:1: time: must be a number");
  EXPECT_EQ(parse_error("{nope\n"), "t.csv:1: not a JSON object");
  EXPECT_EQ(parse_error("# nothing\n"), "t.csv: no requests in the trace");
  EXPECT_FALSE(load_trace("/nonexistent/trace.csv"));
}

// Traces as other tools write them (a new user's trial): a spreadsheet's UTF-8 byte order
// mark and quoted fields, a JSON array instead of JSON lines.
TEST(SimulatorTrace, AByteOrderMarkQuotedFieldsAndAJsonArrayAreRead) {
  auto t = parse("\xEF\xBB\xBFtime,service,model\n\"1\",\"web\",\"llama3, 8b \"\"q4\"\"\"\n");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].time, 1);
  EXPECT_EQ(t[0].service, "web");
  EXPECT_EQ(t[0].model, "llama3, 8b \"q4\"");
  t = parse("\xEF\xBB\xBF{\"time\": 1, \"service\": \"a\"}\n");
  ASSERT_EQ(t.size(), 1u);
  t = parse(R"([{"time": 2, "service": "a"},
  {"time": 1, "service": "b", "duration": 3}])");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].service, "b");
  EXPECT_EQ(t[0].duration, 3);
  EXPECT_EQ(parse_error("[{\"time\": 1, \"service\": \"a\"}, 3]"),
            "t.csv: element 2: not a JSON object");
  EXPECT_EQ(parse_error("[{\"time\": 1}]"), "t.csv: element 1: service: missing");
  EXPECT_EQ(parse_error("[1, 2"), "t.csv: not a JSON array (a '[' starts the file)");
  EXPECT_EQ(parse_error("1,\"a\n"), "t.csv:1: a quoted field is not closed");
  EXPECT_EQ(parse_error("1,\"a\"b\n"), "t.csv:1: text after a quoted field's closing quote");
}

TEST(SimulatorTrace, AColdStartForAServiceNotInTheTraceIsWarned) {
  const std::string path = testing::TempDir() + "/siesta-sim-warn.csv";
  {
    std::ofstream f(path);
    f << "0,web\n600,web\n";
  }
  SimulateArgs args;
  args.trace = path;
  args.policies = {"fixed:15m"};
  args.cold_start = {"wbe=30", "web=20"};
  std::ostringstream out, err;
  EXPECT_EQ(run_simulate(args, out, err), 0);
  EXPECT_EQ(err.str(),
            "siesta simulate: warning: --cold-start wbe=30: no service \"wbe\" in the trace "
            "(services: web)\n");
  EXPECT_NE(out.str().find("fixed:15m"), std::string::npos);
  std::remove(path.c_str());
}

TEST(SimulatorTrace, PolicyArguments) {
  EXPECT_EQ(*parse_policy_arg("fixed:60m")->timeout_minutes, 60);
  EXPECT_EQ(*parse_policy_arg("fixed:90s")->timeout_minutes, 1.5);
  EXPECT_EQ(*parse_policy_arg("fixed:2h")->timeout_minutes, 120);
  EXPECT_EQ(*parse_policy_arg("fixed:15")->timeout_minutes, 15);
  EXPECT_FALSE(parse_policy_arg("adaptive")->timeout_minutes);
  EXPECT_EQ(parse_policy_arg("lru").status().message(),
            "--policy: unknown policy \"lru\" (fixed, adaptive)");
  EXPECT_FALSE(parse_policy_arg("fixed:0m"));
  EXPECT_FALSE(parse_policy_arg("fixed:2562048h"));  // past ten years: an overflow before
  EXPECT_FALSE(parse_policy_arg("fixed:soon"));
}

TEST(Simulator, FixedCountsColdStartsAndIdleHoursExactly) {
  // Uses at 0, 30 min, 2 h (1 s each): fixed 60 m cold-starts at 0 and 2 h; awake-idle after
  // each use until the next use or the timeout.
  const auto trace = parse("0,a,,1\n1800,a,,1\n7200,a,,1\n");
  PolicyResult r = run(trace, "fixed:60m", 10);
  EXPECT_EQ(r.total.requests, 3);
  EXPECT_EQ(r.total.cold_starts, 2);
  EXPECT_EQ(r.total.cold_start_seconds, 20);
  EXPECT_EQ(r.total.prewarms, 0);
  // Idle: 0+11 s .. 1800 s, 1801 .. 1801+3600, 7211 .. 7211+3600.
  EXPECT_NEAR(r.total.idle_hours * 3600, (1800 - 11) + 3600 + 3600, 1e-6);
  r = run(trace, "fixed:15m", 10);
  EXPECT_EQ(r.total.cold_starts, 3);
  EXPECT_NEAR(r.total.idle_hours * 3600, 3 * 900, 1e-6);
}

TEST(Simulator, AdaptivePreWarmsAPeriodicJobAndFixedCannot) {
  // A job every 30 minutes, 40 times.
  std::ostringstream text;
  for (int i = 0; i < 40; ++i) text << i * 1800 << ",job,,5\n";
  const auto trace = parse(text.str());
  const PolicyResult fixed15 = run(trace, "fixed:15m");
  const PolicyResult fixed60 = run(trace, "fixed:60m");
  const PolicyResult adaptive = run(trace, "adaptive");
  EXPECT_EQ(fixed15.total.cold_starts, 40);  // every use finds it asleep
  EXPECT_EQ(fixed60.total.cold_starts, 1);
  // The first ten gaps are its history (the fallback is fixed 60 m), then pre-warmed.
  EXPECT_EQ(adaptive.total.cold_starts, 1);
  EXPECT_GE(adaptive.total.prewarms, 25);
  EXPECT_LT(adaptive.total.idle_hours, fixed60.total.idle_hours / 2);
  EXPECT_NE(adaptive.final_reason.at("job").find("pre-warmed"), std::string::npos)
      << adaptive.final_reason.at("job");
}

TEST(Simulator, ServicesAreSimulatedApartWithTheirOwnColdStart) {
  const auto trace = parse("0,a\n0,b\n7200,a\n");
  SimOptions options;
  options.cold_start_of["b"] = 100;
  const PolicyResult r = simulate(trace, *parse_policy_arg("fixed:60m"), options);
  EXPECT_EQ(r.services.at("a").cold_starts, 2);
  EXPECT_EQ(r.services.at("a").cold_start_seconds, 120);
  EXPECT_EQ(r.services.at("b").cold_starts, 1);
  EXPECT_EQ(r.services.at("b").cold_start_seconds, 100);
  EXPECT_EQ(r.total.cold_starts, 3);
}

// Energy per policy (docs/policies.md#energy-and-cost), on the tiny trace above: fixed 60 m is
// awake and idle 1789 + 3600 + 3600 s and cold-starts twice (20 s); at 100 W that is
// 0.24969 kWh idle and 0.000556 kWh in starts; at 0.5 a kWh, their sum costs 0.12512.
TEST(SimulatorEnergy, IdleEnergyAndCostPerPolicy) {
  const auto trace = parse("0,a,,1\n1800,a,,1\n7200,a,,1\n");
  SimOptions options;
  options.cold_start_seconds = 10;
  options.idle_power_watts = 100;
  options.price_per_kwh = 0.5;
  PolicyResult r = simulate(trace, *parse_policy_arg("fixed:60m"), options);
  const double idle_kwh = ((1800 - 11) + 3600 + 3600) * 100.0 / 3.6e6;
  const double start_kwh = 20 * 100.0 / 3.6e6;
  ASSERT_TRUE(r.total.idle_kwh);
  EXPECT_NEAR(*r.total.idle_kwh, idle_kwh, 1e-9);
  EXPECT_NEAR(*r.total.cold_start_kwh, start_kwh, 1e-12);
  EXPECT_NEAR(*r.total.cost, (idle_kwh + start_kwh) * 0.5, 1e-9);
  EXPECT_NEAR(*r.services.at("a").idle_kwh, idle_kwh, 1e-9);
  // Fixed 15 m: 3 × 900 s idle, 3 starts.
  r = simulate(trace, *parse_policy_arg("fixed:15m"), options);
  EXPECT_NEAR(*r.total.idle_kwh, 2700 * 100.0 / 3.6e6, 1e-9);
  EXPECT_NEAR(*r.total.cold_start_kwh, 30 * 100.0 / 3.6e6, 1e-12);

  // No power: nothing estimated (not zero).
  r = run(trace, "fixed:60m", 10);
  EXPECT_FALSE(r.total.idle_kwh);
  EXPECT_FALSE(r.total.cost);
  EXPECT_TRUE(to_json({r})[0]["idle_kwh"].is_null());
}

// Per service: a power for b only; a is not estimated and the totals are b's alone.
TEST(SimulatorEnergy, PerServicePowerAndTheCommand) {
  const auto trace = parse("0,a\n0,b\n7200,a\n");
  SimOptions options;
  options.idle_power_of["b"] = 200;
  const PolicyResult r = simulate(trace, *parse_policy_arg("fixed:60m"), options);
  EXPECT_FALSE(r.services.at("a").idle_kwh);
  // b: used once at 0 (a 60 s start), then idle 3600 s.
  EXPECT_NEAR(*r.services.at("b").idle_kwh, 3600 * 200.0 / 3.6e6, 1e-9);
  EXPECT_NEAR(*r.total.idle_kwh, *r.services.at("b").idle_kwh, 1e-12);
  EXPECT_FALSE(r.total.cost);  // no price

  const std::string path = testing::TempDir() + "/siesta-sim-energy.csv";
  {
    std::ofstream f(path);
    f << "0,a,,1\n1800,a,,1\n7200,a,,1\n";
  }
  SimulateArgs args;
  args.trace = path;
  args.policies = {"fixed:60m"};
  args.cold_start = {"10"};
  args.idle_power = {"100"};
  args.price_per_kwh = 0.5;
  std::ostringstream out, err;
  ASSERT_EQ(run_simulate(args, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("idle kWh"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("0.2497"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("0.1251"), std::string::npos) << out.str();
  args.json = true;
  std::ostringstream jout;
  ASSERT_EQ(run_simulate(args, jout, err), 0);
  const auto j = nlohmann::json::parse(jout.str());
  EXPECT_NEAR(j["policies"][0]["idle_kwh"].get<double>(), 0.249694, 1e-6);
  EXPECT_NEAR(j["policies"][0]["cost"].get<double>(), 0.125125, 1e-6);
  EXPECT_EQ(j["price_per_kwh"], 0.5);

  // Bad values exit 2 naming the option.
  args.idle_power = {"b=-5"};
  std::ostringstream bad_err;
  EXPECT_EQ(run_simulate(args, out, bad_err), 2);
  EXPECT_EQ(bad_err.str(),
            "siesta simulate: --idle-power b=-5: must be WATTS or SERVICE=WATTS, watts from 0 to "
            "100000\n");
  args.idle_power = {"100"};
  args.price_per_kwh = -1;
  std::ostringstream price_err;
  EXPECT_EQ(run_simulate(args, out, price_err), 2);
  EXPECT_EQ(price_err.str(), "siesta simulate: --price -1: must be from 0 to 1e+06 per kWh\n");
  std::remove(path.c_str());
}

// `--config`: a service's schedule in its config applies in every policy's run. Two weeks of an
// office tool used hourly 09:30-16:30 on weekdays (UTC): with fixed:15m every use is a cold
// start; with a window that keeps it on 09:00-17:00 it is started at each window (the first
// one, already open when the trace begins, at once) and no use finds it asleep.
TEST(SimulatorSchedule, AConfiguredWindowKeepsTheServiceOnAndStartsItWhenItOpens) {
  const double monday = 1795996800;  // 2026-11-30 00:00 UTC, a Monday
  std::string csv = "time,service,model,duration\n";
  for (int day = 0; day < 14; ++day) {
    if (day % 7 >= 5) continue;  // Saturday, Sunday
    for (int hour = 9; hour <= 16; ++hour) {
      csv += std::to_string(monday + day * 86400 + hour * 3600 + 1800) + ",office,,1\n";
    }
  }
  const std::string trace = testing::TempDir() + "/siesta-sim-office.csv";
  const std::string config = testing::TempDir() + "/siesta-sim-office.json";
  {
    std::ofstream(trace) << csv;
    std::ofstream(config) << R"({"timezone": "UTC", "services": {"office": {
        "command": ["true"], "idle_timeout_minutes": 120, "cold_start_seconds": 30,
        "schedule": [{"days": "mon-fri", "from": "09:00", "to": "17:00", "desired": "on"}]}}})";
  }
  SimulateArgs args;
  args.trace = trace;
  args.policies = {"fixed:15m"};
  args.json = true;
  std::ostringstream plain, err;
  ASSERT_EQ(run_simulate(args, plain, err), 0) << err.str();
  const auto without = nlohmann::json::parse(plain.str())["policies"][0];
  EXPECT_EQ(without["cold_starts"], 80);  // 8 uses a day, an hour apart, each one cold
  EXPECT_EQ(without["scheduled_starts"], 0);

  args.config = config;
  std::ostringstream out;
  ASSERT_EQ(run_simulate(args, out, err), 0) << err.str();
  const auto with = nlohmann::json::parse(out.str())["policies"][0];
  EXPECT_EQ(with["requests"], 80);
  EXPECT_EQ(with["cold_starts"], 0);
  EXPECT_EQ(with["scheduled_starts"], 10);
  // Awake 09:00-17:00 each weekday (the first day from 09:30, when the trace begins); the
  // config's own idle timeout (120 min) is not the compared policy's: the service sleeps at
  // 17:00, its last use 30 minutes before.
  EXPECT_NEAR(with["awake_service_hours"].get<double>(), 10 * 8 - 0.5, 1e-6);
  args.json = false;
  std::ostringstream table_out;
  ASSERT_EQ(run_simulate(args, table_out, err), 0);
  EXPECT_NE(table_out.str().find("scheduled"), std::string::npos) << table_out.str();

  // A bad config exits 2 naming its file, key and reason; a trace's service it lacks is warned.
  {
    std::ofstream(config) << R"({"services": {"office": {"command": ["true"],
        "schedule": [{"days": "someday", "desired": "on"}]}}})";
  }
  std::ostringstream bad_err;
  EXPECT_EQ(run_simulate(args, out, bad_err), 2);
  EXPECT_EQ(bad_err.str().rfind("siesta simulate: config error in " + config + ": ", 0), 0)
      << bad_err.str();
  EXPECT_NE(bad_err.str().find("schedule[0].days"), std::string::npos) << bad_err.str();
  { std::ofstream(config) << R"({"services": {"other": {"command": ["true"]}}})"; }
  std::ostringstream warn;
  EXPECT_EQ(run_simulate(args, out, warn), 0);
  EXPECT_EQ(warn.str(), "siesta simulate: warning: service \"office\" of the trace is not in " +
                            config + ": simulated without its schedule\n");
  // A measured idle power has no figure in a simulation: said, not silently left out (a new
  // user's trial); --idle-power gives one.
  {
    std::ofstream(config) << R"({"services": {"office": {"command": ["true"],
        "idle_power_watts": "measured"}}})";
  }
  std::ostringstream measured;
  EXPECT_EQ(run_simulate(args, out, measured), 0);
  EXPECT_EQ(measured.str(),
            "siesta simulate: warning: service \"office\" has \"idle_power_watts\": "
            "\"measured\" in " +
                config +
                ": a simulation has no measurement, so its energy is not counted; give it one "
                "with --idle-power office=WATTS (idle-status shows the measured figure)\n");
  args.idle_power = {"office=80"};
  std::ostringstream given;
  EXPECT_EQ(run_simulate(args, out, given), 0);
  EXPECT_EQ(given.str(), "");
  std::remove(trace.c_str());
  std::remove(config.c_str());
}

// A service that never sleeps (desired on) beside one with a schedule: the run ends with the
// trace, not at the schedule's next change forever after (a new user's trial: 2.56 million idle
// service-hours from two requests); the config's global idle sleep switch applies too.
TEST(SimulatorSchedule, AServiceThatNeverSleepsEndsTheRunWithTheTrace) {
  const std::string trace = testing::TempDir() + "/siesta-sim-never.csv";
  const std::string config = testing::TempDir() + "/siesta-sim-never.json";
  std::ofstream(trace) << "0,a\n100,b\n";
  std::ofstream(config) << R"({"services": {"a": {"command": ["a"], "desired": "on"},
      "b": {"command": ["b"], "schedule": [{"days": "sat,sun", "idle_timeout_minutes": 1}]}}})";
  SimulateArgs args;
  args.trace = trace;
  args.config = config;
  args.policies = {"fixed:60m"};
  args.json = true;
  std::ostringstream out, err;
  ASSERT_EQ(run_simulate(args, out, err), 0) << err.str();
  auto j = nlohmann::json::parse(out.str())["policies"][0];
  // b: used at 100 (a 60 s start), asleep at 3760; a: awake from its start until then.
  EXPECT_LT(j["awake_service_hours"].get<double>(), 3) << j.dump();
  EXPECT_NEAR(j["services"]["b"]["awake_service_hours"].get<double>(), 3660.0 / 3600, 0.02)
      << j.dump();

  std::ofstream(config) << R"({"idle_sleep_enabled": false, "services": {"a": {"command": ["a"]},
      "b": {"command": ["b"]}}})";
  std::ofstream(trace) << "0,a\n7200,a\n100000,b\n";
  std::ostringstream off;
  ASSERT_EQ(run_simulate(args, off, err), 0) << err.str();
  j = nlohmann::json::parse(off.str())["policies"][0];
  EXPECT_EQ(j["cold_starts"], 2) << j.dump();  // a once, b once: nothing ever sleeps
  EXPECT_LT(j["awake_service_hours"].get<double>(), 2 * 100060.0 / 3600) << j.dump();
  std::remove(trace.c_str());
  std::remove(config.c_str());
}

std::vector<PolicyResult> compare(const std::string& file) {
  auto trace = load_trace(std::string(SIESTA_SOURCE_DIR) + "/tests/unit/data/traces/" + file);
  EXPECT_TRUE(trace) << trace.status().message();
  std::vector<PolicyResult> out;
  for (const char* p : {"fixed:60m", "fixed:15m", "adaptive"}) out.push_back(run(*trace, p));
  return out;
}

// Issue 20, point 5: fewer cold starts than fixed 15 m and fewer idle service-hours than
// fixed 60 m, both at once, on the diurnal and the bursty traces.
TEST(SimulatorGoal, AdaptiveBeatsFixedOnDiurnalAndBursty) {
  for (const char* file : {"diurnal.csv", "bursty.csv"}) {
    const auto r = compare(file);
    SCOPED_TRACE(std::string(file) + "\n" + table(r));
    EXPECT_LT(r[2].total.cold_starts, r[1].total.cold_starts);
    EXPECT_LT(r[2].total.idle_hours, r[0].total.idle_hours);
  }
}

TEST(SimulatorGoal, AdaptiveOnPeriodicAndPoisson) {
  auto r = compare("periodic.csv");
  SCOPED_TRACE("periodic\n" + table(r));
  EXPECT_LT(r[2].total.cold_starts, r[1].total.cold_starts);
  EXPECT_LT(r[2].total.idle_hours, r[0].total.idle_hours);
  EXPECT_GT(r[2].total.prewarms, 0);
}

}  // namespace
}  // namespace siesta::sim
