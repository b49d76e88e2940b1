// Internal to sidecar/runtime: the answer to an admin change that was made and then saved.
#pragma once

#include "siesta/core/status.h"

namespace siesta {

// An operation that succeeded but could not be persisted is reported as a failure.
inline Status saved(Status op, Status save) {
  if (!op || save) return op;
  return {ErrorCode::kInternal, "the change was made but could not be saved: " + save.message()};
}

}  // namespace siesta
