#include "siesta/activity/nvidia_smi.h"

#include <algorithm>
#include <sstream>

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

template <class Row, class Fn>
GpuParse parse_rows(const std::string& csv, std::size_t columns, std::vector<Row> GpuParse::*rows,
                    Fn fill) {
  GpuParse out;
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
