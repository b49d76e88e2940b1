// Models: tracked per service and name (ModelKey); a model is served by a provider service (e.g.
// "ollama"). Two services may serve models of the same name: they are two entries.
#pragma once

#include <compare>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

// A model entry's identity: the model's name on the service that serves it.
struct ModelKey {
  std::string name;
  std::string service;  // the provider service
  auto operator<=>(const ModelKey&) const = default;
  bool operator==(const ModelKey&) const = default;
};

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
  // The keep-alive policy (policy.h): "fixed" (the configured keep-alive) or "adaptive" (learned
  // from the model's idle gaps, the configured keep-alive while it cannot tell).
  std::string policy = "fixed";

  ModelKey key() const { return {name, provider}; }
};

// How many learned models are kept by default (the config's max_learned_models).
inline constexpr std::size_t kDefaultMaxLearnedModels = 256;

struct ModelRuntime {
  bool loaded = false;
  std::optional<WallTime> last_used;
  // A per-use keep-alive (a request's: the client's own, or its policy's then; within bounds);
  // overrides the spec. Which policy chose it and why: keep_alive_policy ("request" for the
  // client's), keep_alive_reason; empty with it unset, or restored from an older state file.
  std::optional<double> keep_alive_seconds;
  std::string keep_alive_policy{};
  std::string keep_alive_reason{};
  bool unloading = false;  // an unload has been claimed and is in progress
  int in_flight = 0;
  // A request in flight on it while not loaded, or an admin load, got its room in the GPU budget
  // (make_room): it is being loaded, and holds its size from then (gpu_holders). Until then it
  // only waits for room. Cleared when no request is in flight on it and no admin load runs.
  bool load_room = false;
  // Admin loads in progress that made room for it (Controller::load_model): while one runs the
  // model holds its room and is busy, as with a request in flight (an admin load held nothing,
  // and a request for another model took the room it had made).
  int admin_loads = 0;
  std::string last_error;
  std::optional<WallTime> last_error_at;
  std::optional<WallTime> retry_at;  // after a failed unload: not retried before then
  std::optional<double> size_bytes;  // as the provider reports it (Ollama's /api/ps)
  std::optional<double> vram_bytes;
  // The last size_vram the provider reported, kept after an unload: what a load of the model
  // will hold again, for the GPU budget (docs/gpu.md).
  std::optional<double> vram_bytes_seen{};
  // When siesta first knew of the model (its config entry read, or learned): what a model list
  // siesta answers for its sleeping server gives as `created` when the server never listed it.
  std::optional<WallTime> first_seen{};
  // The idle gaps between its requests, in seconds, oldest first (record_idle_gap; at most
  // kMaxIdleGaps): the adaptive policy's history, kept in the state file.
  std::vector<double> idle_gaps{};
  // The last load's duration, measured (a request that paid it, or an admin load): the adaptive
  // policy's cold start. 0 until one was; kept in the state file (the first keep-alive after a
  // restart is bounded by it as before).
  double load_seconds = 0;
  // The server's own entry for the model in its last model list (vLLM's ModelCard, a JSON
  // object's text); empty when it never listed it. Kept in memory only (not in the state file).
  std::string card{};
};

}  // namespace siesta
