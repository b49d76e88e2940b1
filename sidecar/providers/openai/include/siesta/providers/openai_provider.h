// OpenAiProvider: the models of one OpenAI-compatible server whose model is the process
// (llama-server, LocalAI, LM Studio; vLLM builds on it). It has no load or unload API:
//   loaded = list_installed = GET /v1/models ({"data": [{"id": ...}]}): what a running server
//            serves is in memory; each entry's JSON is kept as LoadedModel::card (vLLM's
//            ModelCard), for the list siesta answers while the server sleeps;
//   load   = succeeds for a model it serves (nothing to do), kNotFound otherwise;
//   unload = kUnavailable: only a stop (or vLLM's sleep mode) frees the model.
// Thread-safe: every call opens its own connection.
#pragma once

#include <string>
#include <vector>

#include "siesta/core/model_provider.h"

namespace siesta {

class OpenAiProvider final : public ModelProvider {
 public:
  // `what` names the server in errors ("OpenAI-compatible server", "vLLM").
  OpenAiProvider(std::string host, int port, std::string what = "OpenAI-compatible server");

  Status load(const std::string& model, double keep_alive_seconds) override;
  Status unload(const std::string& model) override;
  Result<std::vector<LoadedModel>> loaded() override;
  Result<std::vector<std::string>> list_installed() override;

  std::string where() const;
  const std::string& host() const { return host_; }
  int port() const { return port_; }

 private:
  std::string host_;
  int port_;
  std::string what_;
};

// The message of an OpenAI-shaped error body ({"error": {"message": ...}}, or vLLM's older flat
// {"message": ...}), else "HTTP <status>".
std::string openai_error_message(int status, const std::string& body);

}  // namespace siesta
