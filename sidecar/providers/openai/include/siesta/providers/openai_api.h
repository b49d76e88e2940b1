// The OpenAI-compatible API as the proxy sees it (core/model_api.h), for servers whose model is
// the process: vLLM, llama.cpp's llama-server, LocalAI, LM Studio. /v1/chat/completions,
// /v1/completions and /v1/embeddings name a model in the body's "model"; no request carries a
// keep-alive the server reads, and none is set after one (the server has no unload API: the
// service's sleep tiers free the model), and no answer says what a load cost.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "siesta/core/model_api.h"

namespace siesta {

// The one OpenAiApi (stateless; lives as long as the program).
const ModelApi& openai_api();

// The model an OpenAI-compatible request names: POST to one of the three routes (a query string
// is ignored) with a JSON object body whose "model" is a non-empty string of at most 256 bytes.
std::optional<std::string> openai_model_of(std::string_view method, std::string_view target,
                                           const std::string& body);
bool openai_model_route(std::string_view method, std::string_view target);

}  // namespace siesta
