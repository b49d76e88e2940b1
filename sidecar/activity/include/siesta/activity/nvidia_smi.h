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

#include "siesta/core/gpu.h"

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
// Runs `tool` (nvidia-smi) with the budget's query: total and used per GPU, or empty with `error`
// saying why ("nvidia-smi not found", "nvidia-smi timed out after 10 s", "nvidia-smi exited
// with code 9: <its first line>", output that does not parse). Blocks for at most 10 s.
std::vector<GpuMemoryRow> query_gpu_memory(const std::string& tool, std::string& error);
inline constexpr double kNvidiaSmiTimeoutSeconds = 10;

// memory.used at start-up, for the budgets taken from a card's total (`from_total`: their ids).
// What siesta's own services and models found running hold there (`siesta_holds`: device ->
// MiB, by what they declare or report) is siesta's; the rest of what is in use belongs to
// processes siesta does not manage, and the budget is the total less it (never below 0).
struct UnmanagedMemory {
  std::vector<std::string> info;      // per device in use: what was taken off, for the log
  std::vector<std::string> warnings;  // per device the others leave nothing: configure memory_mib
  // Per device whose budget came down: how, for a size error ("the total, 24576 MiB, less 20000
  // MiB used by other processes at start-up").
  std::map<int, std::string> why;
};
UnmanagedMemory budget_less_unmanaged(std::vector<GpuDevice>& devices,
                                      const std::vector<GpuMemoryRow>& gpus,
                                      const std::set<int>& from_total,
                                      const std::map<int, double>& siesta_holds);
GpuParse parse_query_compute_apps(const std::string& csv);

// Each GPU's power draw, for a measured idle power (docs/policies.md#energy-and-cost):
//   nvidia-smi --query-gpu=index,power.draw --format=csv,noheader,nounits
// "[N/A]" (a board that does not report it) is no value.
struct GpuPowerRow {
  int index = 0;
  std::optional<double> watts;
};
struct GpuPowerParse {
  std::vector<GpuPowerRow> gpus;
  std::string error;
};
GpuPowerParse parse_query_gpu_power(const std::string& csv);
// What is said when SIESTA_NVIDIA_SMI is set to "" (no nvidia-smi wanted): `tool` empty.
inline constexpr const char* kNoNvidiaSmi =
    "SIESTA_NVIDIA_SMI is set but empty: no nvidia-smi is run";

// Runs `tool` with that query: watts by GPU index (GPUs without a reading left out), or nullopt
// with `error` saying why (kNoNvidiaSmi for an empty `tool`). Blocks for at most
// kNvidiaSmiTimeoutSeconds.
std::optional<std::map<int, double>> query_gpu_power(const std::string& tool, std::string& error);

// The signal's value for the processes `pids` (a service's): "memory": the MiB they hold;
// "utilization": the busiest GPU they run on (every GPU when `pids` is empty). Nothing of theirs
// on a GPU is 0.
double gpu_value(const std::vector<GpuRow>& gpus, const std::vector<ComputeApp>& apps,
                 const std::set<long>& pids, const std::string& metric);

}  // namespace siesta
