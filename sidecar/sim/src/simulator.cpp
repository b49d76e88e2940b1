#include "siesta/sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>

#include "siesta/core/decide.h"
#include "siesta/core/policy.h"

namespace siesta::sim {

namespace {

Status line_error(const std::string& name, std::size_t line, const std::string& reason) {
  return {ErrorCode::kInvalidArgument, name + ":" + std::to_string(line) + ": " + reason};
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> split_csv(std::string_view line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    fields.push_back(
        trim(line.substr(start, comma == std::string_view::npos ? line.npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return fields;
}

// Unix seconds up to 1e10 (the year 2286): a millisecond time is past it. A request lasts at
// most 30 days.
constexpr double kMaxTraceTime = 1e10;
constexpr double kMaxDuration = 30 * 86400.0;

std::string fmt_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::optional<double> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Checks and stores one request; empty when fine, else why not.
std::string check_request(const TraceRequest& r) {
  if (r.service.empty()) return "service: must not be empty";
  if (r.time < 0) return "time: must be at least 0";
  if (r.time >= kMaxTraceTime) {
    return "time: " + fmt_number(r.time) +
           " is past the year 2286: times are in seconds (milliseconds?)";
  }
  if (r.duration < 0) return "duration: must be at least 0";
  if (r.duration > kMaxDuration) return "duration: must be at most 2592000 (30 days)";
  return "";
}

}  // namespace

Result<std::vector<TraceRequest>> parse_trace(std::string_view text, const std::string& name) {
  std::vector<TraceRequest> out;
  // CSV columns: time, service, model, duration unless a header names them.
  std::vector<std::string> columns = {"time", "service", "model", "duration"};
  bool first = true;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    TraceRequest r;
    if (line[0] == '{') {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return line_error(name, line_no, "not a JSON object");
      for (const auto& [key, value] : j.items()) {
        if (key == "time" || key == "duration") {
          if (!value.is_number()) return line_error(name, line_no, key + ": must be a number");
          (key == "time" ? r.time : r.duration) = value.get<double>();
        } else if (key == "service" || key == "model") {
          if (!value.is_string()) return line_error(name, line_no, key + ": must be a string");
          (key == "service" ? r.service : r.model) = value.get<std::string>();
        } else {
          return line_error(name, line_no,
                            "unknown key \"" + key + "\" (time, service, model, duration)");
        }
      }
      if (!j.contains("time")) return line_error(name, line_no, "time: missing");
      if (!j.contains("service")) return line_error(name, line_no, "service: missing");
    } else {
      std::vector<std::string> fields = split_csv(line);
      if (first && !number(fields[0])) {  // a header
        first = false;
        columns = fields;
        for (const auto& c : columns) {
          if (c != "time" && c != "service" && c != "model" && c != "duration") {
            return line_error(name, line_no,
                              "unknown column \"" + c + "\" (time, service, model, duration)");
          }
        }
        if (std::find(columns.begin(), columns.end(), "time") == columns.end() ||
            std::find(columns.begin(), columns.end(), "service") == columns.end()) {
          return line_error(name, line_no, "the header must name time and service");
        }
        continue;
      }
      if (fields.size() < 2 || fields.size() > columns.size()) {
        return line_error(name, line_no,
                          "expected 2 to " + std::to_string(columns.size()) + " fields, got " +
                              std::to_string(fields.size()));
      }
      for (std::size_t i = 0; i < fields.size(); ++i) {
        const std::string& c = columns[i];
        if (c == "time" || c == "duration") {
          if (c == "duration" && fields[i].empty()) continue;
          auto v = number(fields[i]);
          if (!v)
            return line_error(name, line_no, c + ": must be a number, got \"" + fields[i] + "\"");
          (c == "time" ? r.time : r.duration) = *v;
        } else {
          (c == "service" ? r.service : r.model) = fields[i];
        }
      }
    }
    first = false;
    if (std::string why = check_request(r); !why.empty()) return line_error(name, line_no, why);
    out.push_back(std::move(r));
  }
  if (out.empty()) return Status{ErrorCode::kInvalidArgument, name + ": no requests in the trace"};
  std::stable_sort(out.begin(), out.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.time < b.time; });
  return out;
}

Result<std::vector<TraceRequest>> load_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status{ErrorCode::kNotFound, path + ": cannot be read"};
  std::ostringstream text;
  text << in.rdbuf();
  return parse_trace(text.str(), path);
}

Result<PolicyArg> parse_policy_arg(const std::string& text) {
  PolicyArg arg;
  arg.label = text;
  const std::size_t colon = text.find(':');
  arg.policy = text.substr(0, colon);
  if (find_policy(arg.policy) == nullptr) {
    return Status{ErrorCode::kInvalidArgument,
                  "--policy: unknown policy \"" + arg.policy + "\" (" + policy_names() + ")"};
  }
  if (colon != std::string::npos) {
    std::string value = text.substr(colon + 1);
    double unit = 1;  // minutes
    if (!value.empty() && (value.back() == 's' || value.back() == 'm' || value.back() == 'h')) {
      unit = value.back() == 's' ? 1.0 / 60 : value.back() == 'h' ? 60 : 1;
      value.pop_back();
    }
    auto v = number(value);
    if (!v || *v <= 0 || *v * unit > kMaxMinutes) {
      return Status{ErrorCode::kInvalidArgument,
                    "--policy " + text +
                        ": the timeout must be a positive duration up to ten years (90s, 15m, "
                        "1h)"};
    }
    arg.timeout_minutes = *v * unit;
  }
  return arg;
}

void Counts::add(const Counts& o) {
  requests += o.requests;
  cold_starts += o.cold_starts;
  cold_start_seconds += o.cold_start_seconds;
  prewarms += o.prewarms;
  idle_hours += o.idle_hours;
  awake_hours += o.awake_hours;
}

PolicyResult simulate(const std::vector<TraceRequest>& trace, const PolicyArg& policy,
                      const SimOptions& options) {
  PolicyResult result;
  result.label = policy.label;
  if (trace.empty()) return result;
  const WallTime start = from_unix_seconds(trace.front().time);
  Snapshot snap;
  snap.settings.idle_timeout_minutes =
      policy.timeout_minutes.value_or(options.default_timeout_minutes);
  std::map<std::string, std::size_t> index;
  for (const auto& r : trace) {
    if (index.count(r.service) != 0) continue;
    auto spec = std::make_shared<ServiceSpec>();
    spec->name = r.service;
    spec->policy = policy.policy;
    auto cs = options.cold_start_of.find(r.service);
    spec->cold_start_seconds =
        cs != options.cold_start_of.end() ? cs->second : options.cold_start_seconds;
    ServiceRuntime rt;
    rt.state_since = start;
    index[r.service] = snap.services.size();
    snap.services.push_back({spec, rt});
  }
  std::vector<Counts> counts(snap.services.size());

  using End = std::pair<WallTime, std::size_t>;  // a request's end, its service
  std::priority_queue<End, std::vector<End>, std::greater<>> ends;
  std::size_t next = 0;
  WallTime now = start;
  int rounds = 0;  // decisions at this `now`: a guard against actions that change nothing
  auto advance = [&](WallTime to) {
    const double hours = Seconds(to - now).count() / 3600;
    for (std::size_t i = 0; i < snap.services.size(); ++i) {
      const ServiceRuntime& rt = snap.services[i].runtime;
      if (rt.state == ServiceState::kStopped) continue;
      counts[i].awake_hours += hours;
      if (rt.in_flight == 0) counts[i].idle_hours += hours;
    }
    if (to != now) rounds = 0;
    now = to;
  };
  while (true) {
    Decision decision = decide(snap, now);
    // The monitor's part, done at once: a sleep stops, a pre-warm starts (taking its cold-start
    // seconds, awake but unused: counted idle).
    for (const Action& a : decision.actions) {
      ServiceView& view = snap.services[index.at(a.name)];
      if (a.kind == ActionKind::kSleepService) {
        set_state(view.runtime, ServiceState::kStopped, now);
      } else if (a.kind == ActionKind::kStartService) {
        set_state(view.runtime, ServiceState::kRunning, now);
        ++counts[index.at(a.name)].prewarms;
      }
    }
    if (!decision.actions.empty() && ++rounds < 8) continue;  // decide again on the new states
    std::optional<WallTime> at = decision.next_deadline;
    if (next < trace.size()) {
      const WallTime arrival = from_unix_seconds(trace[next].time);
      if (!at || arrival < *at) at = arrival;
    }
    if (!ends.empty() && (!at || ends.top().first < *at)) at = ends.top().first;
    if (!at) break;
    advance(std::max(now, *at));
    // Ends first: a request that ends as another arrives leaves a gap of zero.
    while (!ends.empty() && ends.top().first <= now) {
      ServiceRuntime& rt = snap.services[ends.top().second].runtime;
      rt.in_flight = std::max(0, rt.in_flight - 1);
      rt.last_used = ends.top().first;
      ends.pop();
    }
    while (next < trace.size() && from_unix_seconds(trace[next].time) <= now) {
      const TraceRequest& r = trace[next++];
      const std::size_t i = index.at(r.service);
      ServiceView& view = snap.services[i];
      ServiceRuntime& rt = view.runtime;
      Counts& c = counts[i];
      ++c.requests;
      if (rt.in_flight == 0) record_idle_gap(rt.idle_gaps, rt.last_used, now);
      double delay = 0;
      if (rt.state == ServiceState::kStopped) {
        delay = *view.spec->cold_start_seconds;
        ++c.cold_starts;
        c.cold_start_seconds += delay;
        set_state(rt, ServiceState::kRunning, now);
      }
      ++rt.in_flight;
      ends.push({now + to_wall_duration(Seconds(delay + r.duration)), i});
    }
  }
  const Decision last = decide(snap, now);
  for (std::size_t i = 0; i < snap.services.size(); ++i) {
    const std::string& name = snap.services[i].spec->name;
    result.services[name] = counts[i];
    result.total.add(counts[i]);
    result.final_reason[name] =
        std::string(last.services[i].policy) + ": " + last.services[i].policy_reason;
  }
  return result;
}

std::string table(const std::vector<PolicyResult>& results) {
  std::string out;
  char line[200];
  std::snprintf(line, sizeof line, "%-16s %9s %11s %14s %9s %17s %12s\n", "policy", "requests",
                "cold starts", "cold-start s", "pre-warms", "idle service-h", "awake svc-h");
  out += line;
  for (const auto& r : results) {
    const Counts& t = r.total;
    std::snprintf(line, sizeof line, "%-16s %9d %11d %14.0f %9d %17.2f %12.2f\n", r.label.c_str(),
                  t.requests, t.cold_starts, t.cold_start_seconds, t.prewarms, t.idle_hours,
                  t.awake_hours);
    out += line;
  }
  return out;
}

nlohmann::json to_json(const std::vector<PolicyResult>& results) {
  auto counts = [](const Counts& c) {
    return nlohmann::json{{"requests", c.requests},
                          {"cold_starts", c.cold_starts},
                          {"cold_start_seconds", c.cold_start_seconds},
                          {"prewarms", c.prewarms},
                          {"idle_service_hours", c.idle_hours},
                          {"awake_service_hours", c.awake_hours}};
  };
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json j = counts(r.total);
    j["policy"] = r.label;
    j["services"] = nlohmann::json::object();
    for (const auto& [name, c] : r.services) {
      j["services"][name] = counts(c);
      j["services"][name]["reason"] = r.final_reason.at(name);
    }
    out.push_back(std::move(j));
  }
  return out;
}

int run_simulate(const SimulateArgs& args, std::ostream& out, std::ostream& err) {
  SimOptions options;
  if (!(args.default_timeout_minutes > 0) || args.default_timeout_minutes > kMaxMinutes) {
    err << "siesta simulate: --timeout " << args.default_timeout_minutes
        << ": must be more than 0 and at most " << kMaxMinutes << " minutes\n";
    return 2;
  }
  options.default_timeout_minutes = args.default_timeout_minutes;
  for (const std::string& text : args.cold_start) {
    const std::size_t eq = text.find('=');
    const std::string value = eq == std::string::npos ? text : text.substr(eq + 1);
    auto v = number(value);
    if (!v || *v < 0 || *v > 86400 || (eq != std::string::npos && eq == 0)) {
      err << "siesta simulate: --cold-start " << text
          << ": must be SECONDS or SERVICE=SECONDS, seconds from 0 to 86400\n";
      return 2;
    }
    if (eq == std::string::npos) {
      options.cold_start_seconds = *v;
    } else {
      options.cold_start_of[text.substr(0, eq)] = *v;
    }
  }
  std::vector<PolicyArg> policies;
  for (const std::string& text : args.policies) {
    auto p = parse_policy_arg(text);
    if (!p) {
      err << "siesta simulate: " << p.status().message() << "\n";
      return 2;
    }
    policies.push_back(*p);
  }
  if (policies.empty()) {
    for (const char* text : {"fixed:60m", "fixed:15m", "adaptive"}) {
      policies.push_back(*parse_policy_arg(text));
    }
  }
  auto trace = load_trace(args.trace);
  if (!trace) {
    err << "siesta simulate: " << trace.status().message() << "\n";
    return 2;
  }
  std::vector<PolicyResult> results;
  for (const auto& p : policies) results.push_back(simulate(*trace, p, options));
  if (args.json) {
    out << nlohmann::json{{"trace", args.trace}, {"policies", to_json(results)}}.dump(2) << "\n";
  } else {
    out << args.trace << ": " << trace->size() << " requests\n" << table(results);
  }
  return 0;
}

}  // namespace siesta::sim
