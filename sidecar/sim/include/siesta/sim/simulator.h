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

#include "siesta/config/config.h"
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

// CSV (time,service[,model][,duration]; a header line names the columns, any order; RFC 4180
// quoting), a JSON array of request objects, or JSONL
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
  // Energy (docs/policies.md#energy-and-cost): every service's idle power in watts, unless
  // named in idle_power_of; a service with neither is not estimated. Cost at price_per_kwh.
  std::optional<double> idle_power_watts{};
  std::map<std::string, double> idle_power_of{};
  std::optional<double> price_per_kwh{};
  // Services as a siesta config has them (`--config`): a trace's service named here keeps its
  // schedule (windows, time zone), desired state, idle sleep switch, cold_start_seconds and
  // idle_power_watts (the command line's per-service values win); the timeout and policy are
  // the compared policy's. Tiers are not simulated: one idle timeout, then stopped.
  std::map<std::string, ServiceConfig> configured{};
  bool idle_sleep_enabled = true;  // the config's global switch (`--config`)
};

struct Counts {
  int requests = 0;
  int cold_starts = 0;  // requests that found the service asleep
  double cold_start_seconds = 0;
  int prewarms = 0;          // starts the policy made before a predicted use
  int scheduled_starts = 0;  // starts a schedule window made (at its start: `desired: on`)
  double idle_hours = 0;     // awake (up or starting) with nothing in flight
  double awake_hours = 0;    // awake at all
  // With an idle power (absent: not estimated): idle_hours and cold_start_seconds at it, and
  // their sum at the price per kWh. A total sums the services that have one.
  std::optional<double> idle_kwh{};
  std::optional<double> cold_start_kwh{};
  std::optional<double> cost{};
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

// The comparison table, one row per policy (idle kWh and cost when estimated).
std::string table(const std::vector<PolicyResult>& results);
nlohmann::json to_json(const std::vector<PolicyResult>& results);

// The `siesta simulate` command: 0, or 2 with the reason on `err` (a bad trace names its file
// and line; a bad --policy or --cold-start its value). No policy given: fixed:60m, fixed:15m and
// adaptive.
struct SimulateArgs {
  std::string trace;
  std::vector<std::string> policies;
  std::vector<std::string> cold_start;    // "SECONDS" or "SERVICE=SECONDS"
  std::vector<std::string> idle_power{};  // "WATTS" or "SERVICE=WATTS"
  std::optional<double> price_per_kwh{};
  std::string config{};  // a siesta config whose services' schedules apply (SimOptions)
  double default_timeout_minutes = 60;
  bool json = false;
};
int run_simulate(const SimulateArgs& args, std::ostream& out, std::ostream& err);

}  // namespace siesta::sim
