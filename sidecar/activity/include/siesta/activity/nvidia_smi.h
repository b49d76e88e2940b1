// nvidia-smi's CSV output, for the GPU activity signal:
//   nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used --format=csv,noheader,nounits
//   nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits
// and for the GPU budget (docs/gpu.md):
//   nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv,noheader,nounits
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace siesta {

struct GpuRow {
  int index = 0;
  std::string uuid;
  std::optional<double> utilization_percent;  // "[N/A]" on some boards
  std::optional<double> memory_used_mib;
};
struct ComputeApp {
  long pid = 0;
  std::string gpu_uuid;
  std::optional<double> used_memory_mib;
};

// Rows that do not parse are an error naming the line.
struct GpuParse {
  std::vector<GpuRow> gpus;
  std::vector<ComputeApp> apps;
  std::string error;
};
GpuParse parse_query_gpu(const std::string& csv);

// One physical GPU's memory, in MiB. With MIG on, nvidia-smi still lists the physical GPU (its
// instances are not rows of --query-gpu), so the total is the whole card's.
struct GpuMemoryRow {
  int index = 0;
  double total_mib = 0;
  std::optional<double> used_mib;  // "[N/A]" possible
};
struct GpuMemoryParse {
  std::vector<GpuMemoryRow> gpus;
  std::string error;
};
GpuMemoryParse parse_query_gpu_memory(const std::string& csv);
// index -> total MiB, for resolve_gpu_totals (config.h).
std::map<int, double> gpu_totals(const std::vector<GpuMemoryRow>& gpus);
// Runs `tool` (nvidia-smi) with the budget's query: the totals, or empty with `error` saying why
// (not found, a non-zero exit, output that does not parse). Blocks for at most 10 s.
std::map<int, double> query_gpu_totals(const std::string& tool, std::string& error);
GpuParse parse_query_compute_apps(const std::string& csv);

// The signal's value for the processes `pids` (a service's): "memory": the MiB they hold;
// "utilization": the busiest GPU they run on (every GPU when `pids` is empty). Nothing of theirs
// on a GPU is 0.
double gpu_value(const std::vector<GpuRow>& gpus, const std::vector<ComputeApp>& apps,
                 const std::set<long>& pids, const std::string& metric);

}  // namespace siesta
