// VllmProvider: one vLLM server (`vllm serve`). Its models are those of an OpenAI-compatible
// server (OpenAiProvider: GET /v1/models; no unload API), and its engine has a sleep mode
// (EngineSleep), through the development routes a server started with VLLM_SERVER_DEV_MODE=1 and
// --enable-sleep-mode has:
//   sleep       = POST /sleep?level=N       (200, empty body)
//   wake_up     = POST /wake_up             (200, empty body; it may answer before the engine
//                                            is awake, so the caller polls is_sleeping)
//   is_sleeping = GET /is_sleeping          ({"is_sleeping": true|false})
// Without dev mode those routes are absent: 404, reported as kNotFound with how to turn them on.
// Thread-safe: every call opens its own connection.
#pragma once

#include <string>
#include <vector>

#include "siesta/core/engine_sleep.h"
#include "siesta/core/model_provider.h"
#include "siesta/providers/openai_provider.h"

namespace siesta {

class VllmProvider final : public ModelProvider, public EngineSleep {
 public:
  VllmProvider(std::string host, int port);

  Status load(const std::string& model, double keep_alive_seconds) override;
  Status unload(const std::string& model) override;
  Result<std::vector<LoadedModel>> loaded() override;
  Result<std::vector<std::string>> list_installed() override;
  EngineSleep* engine_sleep() override { return this; }

  Status sleep(int level) override;
  Status wake_up(double timeout_seconds) override;
  Result<bool> is_sleeping() override;

 private:
  Status post(const std::string& path, int read_timeout_seconds);
  OpenAiProvider models_;
};

}  // namespace siesta
