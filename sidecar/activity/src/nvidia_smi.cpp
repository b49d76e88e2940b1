#include "siesta/activity/nvidia_smi.h"

#include <algorithm>
#include <sstream>

#include "siesta/activity/run_command.h"

namespace siesta {

namespace {

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r");
  const auto b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string f;
  while (std::getline(in, f, ',')) out.push_back(trim(f));
  return out;
}

// A number, or nullopt for "[N/A]", "[Not Supported]" and the like. False: not a number.
bool number(const std::string& text, std::optional<double>& out) {
  if (!text.empty() && text.front() == '[') {
    out.reset();
    return true;
  }
  try {
    std::size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

template <class Row, class Parse = GpuParse, class Fn>
Parse parse_rows(const std::string& csv, std::size_t columns, std::vector<Row> Parse::*rows,
                 Fn fill) {
  Parse out;
  std::istringstream lines(csv);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    if (trim(line).empty()) continue;
    const auto f = fields(line);
    Row row;
    if (f.size() != columns || !fill(f, row)) {
      out.error = "unexpected nvidia-smi output, line " + std::to_string(n) + ": " + line;
      return out;
    }
    (out.*rows).push_back(std::move(row));
  }
  return out;
}

}  // namespace

GpuParse parse_query_gpu(const std::string& csv) {
  return parse_rows<GpuRow>(csv, 4, &GpuParse::gpus, [](const auto& f, GpuRow& row) {
    std::optional<double> index;
    if (!number(f[0], index) || !index) return false;
    row.index = static_cast<int>(*index);
    row.uuid = f[1];
    return number(f[2], row.utilization_percent) && number(f[3], row.memory_used_mib);
  });
}

GpuMemoryParse parse_query_gpu_memory(const std::string& csv) {
  return parse_rows<GpuMemoryRow, GpuMemoryParse>(
      csv, 3, &GpuMemoryParse::gpus, [](const auto& f, GpuMemoryRow& row) {
        std::optional<double> index, total;
        if (!number(f[0], index) || !index || !number(f[1], total) || !total) return false;
        row.index = static_cast<int>(*index);
        row.total_mib = *total;
        return number(f[2], row.used_mib);
      });
}

std::map<int, double> gpu_totals(const std::vector<GpuMemoryRow>& gpus) {
  std::map<int, double> out;
  for (const GpuMemoryRow& g : gpus) out[g.index] = g.total_mib;
  return out;
}

std::vector<GpuMemoryRow> query_gpu_memory(const std::string& tool, std::string& error) {
  const Seconds timeout(kNvidiaSmiTimeoutSeconds);
  const CommandResult r = run_command(
      {tool, "--query-gpu=index,memory.total,memory.used", "--format=csv,noheader,nounits"},
      timeout);
  if (r.outcome != CommandResult::Outcome::kExited || r.exit_code != 0) {
    error = tool + " " + describe_failure(r, timeout);
    return {};
  }
  GpuMemoryParse parsed = parse_query_gpu_memory(r.output);
  if (!parsed.error.empty()) {
    error = parsed.error;
    return {};
  }
  return parsed.gpus;
}

GpuPowerParse parse_query_gpu_power(const std::string& csv) {
  return parse_rows<GpuPowerRow, GpuPowerParse>(csv, 2, &GpuPowerParse::gpus,
                                                [](const auto& f, GpuPowerRow& row) {
                                                  std::optional<double> index;
                                                  if (!number(f[0], index) || !index) return false;
                                                  row.index = static_cast<int>(*index);
                                                  return number(f[1], row.watts);
                                                });
}

std::optional<std::map<int, double>> query_gpu_power(const std::string& tool, std::string& error) {
  if (tool.empty()) {
    error = kNoNvidiaSmi;
    return std::nullopt;
  }
  const Seconds timeout(kNvidiaSmiTimeoutSeconds);
  const CommandResult r =
      run_command({tool, "--query-gpu=index,power.draw", "--format=csv,noheader,nounits"}, timeout);
  if (r.outcome != CommandResult::Outcome::kExited || r.exit_code != 0) {
    error = tool + " " + describe_failure(r, timeout);
    return std::nullopt;
  }
  GpuPowerParse parsed = parse_query_gpu_power(r.output);
  if (!parsed.error.empty()) {
    error = parsed.error;
    return std::nullopt;
  }
  std::map<int, double> out;
  for (const GpuPowerRow& g : parsed.gpus) {
    if (g.watts) out[g.index] = *g.watts;
  }
  return out;
}

UnmanagedMemory budget_less_unmanaged(std::vector<GpuDevice>& devices,
                                      const std::vector<GpuMemoryRow>& gpus,
                                      const std::set<int>& from_total,
                                      const std::map<int, double>& siesta_holds) {
  UnmanagedMemory out;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    GpuDevice& d = devices[i];
    if (from_total.count(d.id) == 0) continue;
    auto row = std::find_if(gpus.begin(), gpus.end(),
                            [&](const GpuMemoryRow& g) { return g.index == d.id; });
    if (row == gpus.end() || !row->used_mib || *row->used_mib <= 0) continue;
    const double used = *row->used_mib;
    const auto held = siesta_holds.find(d.id);
    const double mine = std::min(used, held == siesta_holds.end() ? 0.0 : held->second);
    const double others = used - mine;
    std::ostringstream line;
    line << "GPU " << d.id << ": " << used << " of " << row->total_mib << " MiB in use at start-up";
    if (others <= 0) {
      line << ", all of it by siesta's own services and models: the budget is the total, "
           << d.memory_mib << " MiB";
      out.info.push_back(line.str());
      continue;
    }
    if (mine > 0) {
      line << ", " << others << " by processes siesta does not manage (siesta's services and "
           << "models found running hold " << mine << ")";
    } else {
      line << " by processes siesta does not manage";
    }
    d.memory_mib = std::max(0.0, d.memory_mib - others);
    std::ostringstream why;
    why << "the total, " << row->total_mib << " MiB, less " << others
        << " MiB used by other processes at start-up";
    out.why[d.id] = why.str();
    if (d.memory_mib > 0) {
      line << ": the budget is the total less that, " << d.memory_mib << " MiB";
      out.info.push_back(line.str());
      continue;
    }
    // Nothing left: the whole card would be a budget the others' memory already fills, and
    // siesta's wakes would fail on out-of-memory errors instead of its own refusal.
    line << ": nothing is left for siesta's services and models, so its budget is 0 MiB and every "
         << "wake or load that needs memory on it is refused. If those processes will leave room, "
         << "set gpu.devices[" << i << "].memory_mib to what siesta may use";
    out.warnings.push_back(line.str());
  }
  return out;
}

GpuParse parse_query_compute_apps(const std::string& csv) {
  return parse_rows<ComputeApp>(csv, 3, &GpuParse::apps, [](const auto& f, ComputeApp& row) {
    std::optional<double> pid;
    if (!number(f[0], pid) || !pid) return false;
    row.pid = static_cast<long>(*pid);
    row.gpu_uuid = f[1];
    return number(f[2], row.used_memory_mib);
  });
}

double gpu_value(const std::vector<GpuRow>& gpus, const std::vector<ComputeApp>& apps,
                 const std::set<long>& pids, const std::string& metric) {
  std::set<std::string> used;
  double memory = 0;
  for (const ComputeApp& app : apps) {
    if (!pids.empty() && pids.count(app.pid) == 0) continue;
    used.insert(app.gpu_uuid);
    memory += app.used_memory_mib.value_or(0);
  }
  if (metric == "memory") return memory;
  double busiest = 0;
  for (const GpuRow& gpu : gpus) {
    if (!pids.empty() && used.count(gpu.uuid) == 0) continue;
    busiest = std::max(busiest, gpu.utilization_percent.value_or(0));
  }
  return busiest;
}

}  // namespace siesta
