// vLLM's HTTP API as the proxy sees it (core/model_api.h): its model routes are OpenAI's
// (openai_api.h), and its development routes are refused. A server run with
// VLLM_SERVER_DEV_MODE=1 (which siesta's vllm_sleep tier needs) serves, next to the OpenAI API,
// routes that control the engine: /sleep, /wake_up and /is_sleeping, but also /collective_rpc,
// the cache resets, /pause and /resume, the weight updates and more (vllm_dev_route). A client's
// POST /sleep through siesta's port would put the engine to sleep behind siesta's back, and the
// next requests would hang; only siesta may use them, on the upstream address.
#pragma once

#include <string_view>

#include "siesta/core/model_api.h"

namespace siesta {

// The one VllmApi (stateless; lives as long as the program).
const ModelApi& vllm_api();

// Whether a request target (origin or absolute form, with or without a query) is one of vLLM's
// development routes, read as vLLM's server reads it: percent-decoded, a trailing slash ignored
// (Starlette redirects "/sleep/" to "/sleep"). Any method: FastAPI answers 405 to another, but
// none of these is a client's business.
bool vllm_dev_route(std::string_view target);

}  // namespace siesta
