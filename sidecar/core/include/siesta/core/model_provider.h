// ModelProvider: loads and unloads models on the service that serves them, and lists what it
// holds and what it could load (Ollama gets its own implementation). Implementations are
// thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/engine_sleep.h"
#include "siesta/core/status.h"

namespace siesta {

struct LoadedModel {
  std::string name;
  std::optional<double> size_bytes;
  std::optional<double> vram_bytes;
  // The server's own entry for it in its model list, as JSON text (an OpenAI-compatible
  // server's /v1/models object; vLLM's ModelCard); empty when it has none.
  std::string card{};
};

class ModelProvider {
 public:
  virtual ~ModelProvider() = default;
  // Loads `model` and asks the provider to keep it for `keep_alive_seconds`.
  virtual Status load(const std::string& model, double keep_alive_seconds) = 0;
  // Unloads `model` from memory (VRAM). Unloading a model that is not loaded is not an error.
  virtual Status unload(const std::string& model) = 0;
  // The models the provider has in memory right now.
  virtual Result<std::vector<LoadedModel>> loaded() = 0;
  // The names of the models installed on the provider: those it can load.
  virtual Result<std::vector<std::string>> list_installed() = 0;
  // The server's own sleep mode (vLLM's), nullptr when it has none. Lives as long as the provider.
  virtual EngineSleep* engine_sleep() { return nullptr; }
};

}  // namespace siesta
