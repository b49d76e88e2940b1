// Ollama's HTTP API as the proxy sees it (core/model_api.h): its native model routes
// (/api/generate, /api/chat, /api/embed, /api/embeddings), which carry keep_alive, and its
// OpenAI-compatible ones (/v1/chat/completions, /v1/completions, /v1/embeddings), which do not;
// the model in the body's "model"; the load's price in the answer's load_duration.
#pragma once

#include "siesta/core/model_api.h"
#include "siesta/core/service.h"

namespace siesta {

// The one OllamaApi (stateless; lives as long as the program).
const ModelApi& ollama_api();

// The API a service speaks (services.<name>.model_api), nullptr for none.
const ModelApi* model_api_of(ServiceSpec::ModelApi api);

}  // namespace siesta
