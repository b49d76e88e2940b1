// AdminActions: exactly what the admin API (sidecar/api) asks of the runtime, so that
// AdminServer depends on this and not on the Controller, and a test drives it in-process with a
// fake. Controller implements it; each method is documented there.
//
// Every change is saved to the state file before it returns; a failed save is an error
// (kInternal). Errors use the codes the admin API maps to HTTP statuses (kNotFound 404,
// kConflict 409, kUnavailable 503, ...).
#pragma once

#include <functional>
#include <string>

#include "siesta/core/gpu.h"
#include "siesta/core/reason.h"
#include "siesta/core/service.h"
#include "siesta/core/settings.h"
#include "siesta/core/status.h"

namespace siesta {

class AdminActions {
 public:
  virtual ~AdminActions() = default;

  // The GPU budget for idle-status (none by default) and the wakes waiting for room in it now.
  virtual const GpuConfig& gpu() const {
    static const GpuConfig none;
    return none;
  }
  virtual int gpu_waiting() const { return 0; }

  // Settings: `change` is applied to the registry's settings under its lock (validated before).
  virtual Status update_settings(const std::function<void(Settings&)>& change) = 0;
  // POST /admin/services/{name}/...
  virtual Status set_idle_sleep(const std::string& service, bool enabled) = 0;
  virtual Status set_desired(const std::string& service, Desired desired) = 0;
  virtual Status wake(const std::string& service, Reason reason) = 0;
  virtual Status sleep(const std::string& service) = 0;
  virtual Status touch_service(const std::string& service) = 0;
  virtual Status unload_models_of(const std::string& provider_service) = 0;
  // POST /admin/models/{name}/... on the model of that name on `model.service`. A load's
  // service may be empty: a model siesta does not know yet, looked for on the model servers.
  virtual Status load_model(const ModelKey& model) = 0;
  virtual Status unload_model(const ModelKey& model) = 0;
  virtual Status touch_model(const ModelKey& model) = 0;
};

}  // namespace siesta
