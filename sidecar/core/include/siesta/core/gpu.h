// The GPU memory budget: one or more devices whose memory services and models share, and the
// pure decision of what to free before a wake or a model load (plan_room). Like decide(), it is
// a function of a snapshot and nothing else: the controller acts on its plan, and idle-status and
// /metrics render the same holders (docs/gpu.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/registry.h"

namespace siesta {

struct GpuDevice {
  int id = 0;             // nvidia-smi's index
  double memory_mib = 0;  // the budget; the config's, else the device's total (nvidia-smi)
};

// The config's "gpu" section. Empty `devices`: no budget (no section).
struct GpuConfig {
  std::vector<GpuDevice> devices;
  // Groups of services that never run together: waking one first stops the others.
  std::vector<std::vector<std::string>> exclusive;
  // How long a wake waits (in FIFO order) for in-flight work on the holders to end before its 503.
  double wait_seconds = 60;
  bool enabled() const { return !devices.empty(); }
};

// What holds GPU memory now, or could: a running service (its gpu_memory_mib) or a loaded model
// (its size_vram, else its gpu_memory_mib).
struct GpuHolder {
  enum class Kind { kService, kModel };
  Kind kind = Kind::kService;
  std::string name;
  std::string service;  // a model: the service that serves it; a service: its own name
  double mib = 0;       // on each of `devices`
  std::vector<int> devices;
  std::optional<WallTime> last_used;  // absent: never used (evicted first)
  bool in_flight = false;             // a request is open on it (a model: its server's count too)
  // Never evicted: desired "on", or idle sleep disabled (globally or for the service).
  bool pinned = false;
};

// What a wake or a load asks for.
struct GpuRequest {
  GpuHolder::Kind kind = GpuHolder::Kind::kService;
  std::string name;
  std::string service;  // a model: its server (never evicted for it); a service: its name
  double mib = 0;       // on each of `devices`
  std::vector<int> devices;
};

enum class RoomVerdict {
  kFits,       // nothing to free
  kEvict,      // free `evict`, in that order, then it fits
  kWait,       // it fits once in-flight work on `held_by` ends: wait, then ask again
  kCannotFit,  // pinned holders or the budget itself leave no room: `held_by` names them
};
const char* to_string(RoomVerdict verdict);  // "fits", "evict", "wait", "cannot_fit"

struct RoomPlan {
  RoomVerdict verdict = RoomVerdict::kFits;
  std::vector<GpuHolder> evict;  // in order: least recently used first, models before their server
  std::vector<std::string> held_by;  // kWait / kCannotFit: "name (N MiB, why)"
  std::string reason;                // a sentence for the log and the 503
};

// The order and the verdict. An evictable holder shares a device with the request, is idle (not
// in flight), not pinned, and is neither the request nor (for a model) its server. A service in
// the request's exclusive group is evicted whatever the memory; if it is in flight the request
// waits, if pinned it cannot fit. Eviction picks least recently used first (never used before
// any use; ties by name) until the request fits on every one of its devices; evicting a service
// frees its loaded models too, and they come before it in the order.
RoomPlan plan_room(const GpuConfig& gpu, const std::vector<GpuHolder>& holders,
                   const GpuRequest& request);

// Every holder in `snapshot`: services that are not stopped (or in error) and declare
// gpu_memory_mib; loaded models of a service with GPU devices, sized by size_vram (else their
// gpu_memory_mib). A service's gpu_devices default to the first device.
std::vector<GpuHolder> gpu_holders(const GpuConfig& gpu, const Snapshot& snapshot);
// The devices a service uses: its gpu_devices, else the first device (empty: no budget).
std::vector<int> gpu_devices_of(const GpuConfig& gpu, const ServiceSpec& spec);

// Per device: budget, held (by holders) and free (never negative).
struct GpuDeviceUse {
  int id = 0;
  double budget_mib = 0;
  double held_mib = 0;
  double free_mib = 0;
};
std::vector<GpuDeviceUse> gpu_use(const GpuConfig& gpu, const std::vector<GpuHolder>& holders);

}  // namespace siesta
