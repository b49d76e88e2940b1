// OllamaProvider: loads, unloads and lists the models of one Ollama server (the upstream of the
// service that provides them), through Ollama's own API:
//   load   = POST /api/generate {"model", "keep_alive": seconds}
//   unload = POST /api/generate {"model", "keep_alive": 0}
//   loaded = GET /api/ps
//   list_installed = GET /api/tags
// Thread-safe: every call opens its own connection.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "siesta/core/model_provider.h"

namespace siesta {

class OllamaProvider final : public ModelProvider {
 public:
  OllamaProvider(std::string host, int port);

  Status load(const std::string& model, double keep_alive_seconds) override;
  // An unknown model (404) is not loaded, so unloading it succeeds.
  Status unload(const std::string& model) override;
  Result<std::vector<LoadedModel>> loaded() override;
  Result<std::vector<std::string>> list_installed() override;

 private:
  Status generate(const std::string& model, double keep_alive_seconds, bool unload);
  std::string where() const;
  // GET `path`, answered 200 with {"models": [...]}: the array.
  Result<nlohmann::json> models_of(const std::string& path);
  std::string host_;
  int port_;
};

}  // namespace siesta
