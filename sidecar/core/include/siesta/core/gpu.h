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
  // Why, for messages: "desired on", "idle sleep disabled for it", "idle sleep disabled
  // globally"; empty when not pinned.
  std::string pinned_by;
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
  // kWait for an exclusive partner's requests alone: the memory is there (the 503 says so).
  bool exclusive_only = false;
};

// The reason and what holds the memory, for the log and the 503: "REASON; held by A, B", or the
// reason alone when it names no holder (a request larger than the budget).
std::string refusal_text(const RoomPlan& plan);

// The order and the verdict. An evictable holder shares a device with the request, is idle (not
// in flight), not pinned, and is neither the request nor (for a model) its server. A service in
// the request's exclusive group is evicted whatever the memory; if it is in flight the request
// waits, if pinned it cannot fit. Eviction picks least recently used first (never used before
// any use; among equals a model before a service, then one that frees enough alone, then by
// name) until the request fits on every one of its devices. Choosing a service unloads its
// loaded models first, and stops it only if they do not free enough (an exclusive partner stops
// whatever they free); its models come before it in the order.
RoomPlan plan_room(const GpuConfig& gpu, const std::vector<GpuHolder>& holders,
                   const GpuRequest& request);

// A request as the holder it will be once served, and that never leaves (pinned, in flight): how
// a request that goes ahead is counted, and one whose room is being made (its evictions run).
GpuHolder as_holder(const GpuRequest& request);

// Whether `later`, queued behind `earlier` (in the order they asked), may go ahead of them now:
// it fits without evicting anything, and takes no room an earlier one needs: counting `later` as
// a holder that never leaves, every earlier request that could be served (by evictions, or once
// in-flight work ends) still could, evicting nothing it would not have evicted without `later`.
// So a small wake that fits passes a big one waiting for in-flight work, but never takes the room
// that the big one waits for (no starvation: the wake at the head is served as if the later one
// were not there, and a later one that would stand in its way waits its turn). Room being made
// for a request (its evictions running) is counted as held by it (as_holder) in `holders`.
bool may_go_ahead(const GpuConfig& gpu, const std::vector<GpuHolder>& holders,
                  const GpuRequest& later, const std::vector<GpuRequest>& earlier);

// Every holder in `snapshot`: services that are not stopped (or in error) and declare
// gpu_memory_mib; models of a service with GPU devices that are loaded, or being loaded (a
// request in flight on a model not loaded yet: counted from the moment it is forwarded), sized by
// model_gpu_mib. A service's gpu_devices default to the first device.
// `now`: a service that a schedule window keeps on at that time is pinned too (without it,
// schedules are not looked at: the budget's totals at start-up).
std::vector<GpuHolder> gpu_holders(const GpuConfig& gpu, const Snapshot& snapshot,
                                   std::optional<WallTime> now = std::nullopt);
// What a model holds, or will hold once loaded, in MiB: its size_vram now, else the last one
// seen, else its configured gpu_memory_mib; nullopt when none is known.
std::optional<double> model_gpu_mib(const ModelSpec& spec, const ModelRuntime& rt);
// What a service holds while it runs, in MiB: its gpu_memory_mib, or for a measured one the most
// its processes were seen to hold; nullopt when none is known (it is then no holder).
std::optional<double> service_gpu_mib(const ServiceSpec& spec, const ServiceRuntime& rt);
// Whether a service takes part in the budget (a size declared or measured, or GPU devices).
bool in_gpu_budget(const ServiceSpec& spec);
// The devices a service uses: its gpu_devices, else the first device (empty: no budget).
std::vector<int> gpu_devices_of(const GpuConfig& gpu, const ServiceSpec& spec);

// Per device: budget, held (by holders), free (never negative) and over (held past the budget,
// e.g. services adopted at start-up that hold more than a smaller budget; 0 normally).
struct GpuDeviceUse {
  int id = 0;
  double budget_mib = 0;
  double held_mib = 0;
  double free_mib = 0;
  double over_mib = 0;
};
std::vector<GpuDeviceUse> gpu_use(const GpuConfig& gpu, const std::vector<GpuHolder>& holders);

}  // namespace siesta
