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

std::map<int, double> query_gpu_totals(const std::string& tool, std::string& error) {
  const CommandResult r = run_command(
      {tool, "--query-gpu=index,memory.total,memory.used", "--format=csv,noheader,nounits"},
      Seconds(10));
  if (r.outcome == CommandResult::Outcome::kNotFound) {
    error = tool + " not found";
    return {};
  }
  if (r.outcome != CommandResult::Outcome::kExited || r.exit_code != 0) {
    error = tool + " failed (exit code " + std::to_string(r.exit_code) + ")";
    return {};
  }
  GpuMemoryParse parsed = parse_query_gpu_memory(r.output);
  if (!parsed.error.empty()) {
    error = parsed.error;
    return {};
  }
  return gpu_totals(parsed.gpus);
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
