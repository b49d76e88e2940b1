// The policy simulator (`siesta simulate`): replays a request trace through the same decide()
// the monitor runs, on a simulated clock, once per timeout policy, and counts what each policy
// cost: cold starts, their seconds, and service-hours awake but unused. Pure: no clock, no
// processes; a start takes the configured cold-start seconds and nothing else.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "siesta/core/status.h"

namespace siesta::sim {

// One request of a trace: when it arrived (seconds; any epoch), the service it used, the model
// it named (may be empty), and how long it ran once the service was up (seconds).
struct TraceRequest {
  double time = 0;
  std::string service;
  std::string model;
  double duration = 0;
};

// CSV (time,service[,model][,duration]; a header line names the columns, any order) or JSONL
// ({"time":..,"service":..,"model":..,"duration":..} a line); '#' lines and blank lines are
// skipped. Sorted by time. An error names "FILE:LINE: reason".
Result<std::vector<TraceRequest>> parse_trace(std::string_view text, const std::string& name);
Result<std::vector<TraceRequest>> load_trace(const std::string& path);

// --policy: "fixed:60m", "fixed:900s", "adaptive" (fixed fallback: the default timeout),
// "adaptive:15m" (that fallback). A bare number is minutes.
struct PolicyArg {
  std::string label;   // as given
  std::string policy;  // "fixed", "adaptive"
  std::optional<double> timeout_minutes;
};
Result<PolicyArg> parse_policy_arg(const std::string& text);

struct SimOptions {
  double cold_start_seconds = 60;               // every service's ...
  std::map<std::string, double> cold_start_of;  // ... unless named here
  double default_timeout_minutes = 60;          // a policy without its own timeout
};

struct Counts {
  int requests = 0;
  int cold_starts = 0;  // requests that found the service asleep
  double cold_start_seconds = 0;
  int prewarms = 0;        // starts the policy made before a predicted use
  double idle_hours = 0;   // awake (up or starting) with nothing in flight
  double awake_hours = 0;  // awake at all
  void add(const Counts& other);
};

struct PolicyResult {
  std::string label;
  Counts total;
  std::map<std::string, Counts> services;
  std::map<std::string, std::string> final_reason;  // each service's policy reason at the end
};

PolicyResult simulate(const std::vector<TraceRequest>& trace, const PolicyArg& policy,
                      const SimOptions& options);

// The comparison table, one row per policy.
std::string table(const std::vector<PolicyResult>& results);
nlohmann::json to_json(const std::vector<PolicyResult>& results);

// The `siesta simulate` command: 0, or 2 with the reason on `err` (a bad trace names its file
// and line; a bad --policy or --cold-start its value). No policy given: fixed:60m, fixed:15m and
// adaptive.
struct SimulateArgs {
  std::string trace;
  std::vector<std::string> policies;
  std::vector<std::string> cold_start;  // "SECONDS" or "SERVICE=SECONDS"
  double default_timeout_minutes = 60;
  bool json = false;
};
int run_simulate(const SimulateArgs& args, std::ostream& out, std::ostream& err);

}  // namespace siesta::sim
