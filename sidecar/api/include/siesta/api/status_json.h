// The JSON views of a Decision: the seed's GET /admin/idle-status shape, with precise
// _seconds twins and the reason a service or model will not sleep.
//
// These answers grow with the fleet (10,000 services make idle-status ~10 MB), so they are
// written straight to text by a streaming writer, never built as a document first
// (docs/benchmarks.md). Each returns the answer's text, indented by two like every admin
// answer, ending in a newline.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "siesta/core/decide.h"
#include "siesta/core/error_json.h"
#include "siesta/core/gpu.h"
#include "siesta/core/registry.h"
#include "siesta/metrics/metrics.h"

namespace siesta {

nlohmann::json settings_json(const Settings& settings);
// One service or model, with its name.
std::string service_text(const std::string& name, const ServiceView& view,
                         const ServiceTimer& timer);
std::string model_text(const std::string& name, const ModelView& view, const ModelTimer& timer);
// {name: service} and {name: model} for every entry of the decision.
std::string services_text(const Snapshot& snapshot, const Decision& decision);
std::string models_text(const Snapshot& snapshot, const Decision& decision);
struct IdleStatusExtras {
  MonitorStatus monitor;
  bool state_file = false;
  const GpuConfig* gpu = nullptr;  // the GPU budget; absent or empty: no "gpu" key
  int gpu_waiting = 0;             // wakes and loads waiting for room in it now
  std::string currency{};          // of the cost saved (the config's "currency"); empty: none
};
// "gpu" of idle-status: per device budget, held and free MiB; the holders; the waits.
nlohmann::json gpu_json(const GpuConfig& gpu, const Snapshot& snapshot, int waiting);
std::string idle_status_text(const Snapshot& snapshot, const Decision& decision,
                             const IdleStatusExtras& extras);

}  // namespace siesta
