// The policy simulator (`siesta simulate`): trace parsing and its errors, and exact counts on
// hand-made traces; then the goal of issue 20 on the checked-in synthetic traces
// (tests/unit/data/traces, made by tools/gen_trace.py): counts, never timings.
#include "siesta/sim/simulator.h"

#include <gtest/gtest.h>

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
