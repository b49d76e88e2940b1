// Models: tracked per name; a model is served by a provider service (e.g. "ollama").
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "siesta/core/clock.h"

namespace siesta {

struct ModelSpec {
  std::string name;
  std::string provider;                    // name of the service that serves it
  std::optional<double> keep_alive_hours;  // overrides the global setting
  // Bounds on a keep-alive a client asks for in its request (Ollama's keep_alive).
  double keep_alive_min_seconds = 60;
  double keep_alive_max_seconds = 86400;
  // Not in the config: learned from traffic, the provider's lists, the admin API or the state
  // file. Only these are forgotten (max_learned_models).
  bool learned = false;
  // The GPU budget's estimate of its size before its server first reports size_vram.
  std::optional<double> gpu_memory_mib{};
};

// How many learned models are kept by default (the config's max_learned_models).
inline constexpr std::size_t kDefaultMaxLearnedModels = 256;

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
  std::optional<double> size_bytes;  // as the provider reports it (Ollama's /api/ps)
  std::optional<double> vram_bytes;
};

}  // namespace siesta
