// Models: tracked per name; a model is served by a provider service (e.g. "ollama").
#pragma once

#include <optional>
#include <string>

#include "siesta/core/clock.h"

namespace siesta {

struct ModelSpec {
  std::string name;
  std::string provider;                    // name of the service that serves it
  std::optional<double> keep_alive_hours;  // overrides the global setting
};

struct ModelRuntime {
  bool loaded = false;
  std::optional<WallTime> last_used;
  // A per-use keep-alive (e.g. asked for by a client, within bounds); overrides the spec.
  std::optional<double> keep_alive_seconds;
  bool unloading = false;  // an unload has been claimed and is in progress
  int in_flight = 0;
  std::string last_error;
  std::optional<WallTime> last_error_at;
  std::optional<WallTime> retry_at;  // after a failed unload: not retried before then
};

}  // namespace siesta
