// EngineSleep: a model server's own light sleep, kept in its process (vLLM's sleep mode: the
// weights go to CPU RAM or are dropped, the KV cache is dropped, the server stays up). The
// vllm_sleep tier uses it through the service's ModelProvider (ModelProvider::engine_sleep).
// Implementations are thread-safe.
#pragma once

#include "siesta/core/status.h"

namespace siesta {

class EngineSleep {
 public:
  virtual ~EngineSleep() = default;
  // Puts the engine to sleep at `level` (1 or 2). kNotFound: the server has no such route (vLLM
  // without VLLM_SERVER_DEV_MODE=1).
  virtual Status sleep(int level) = 0;
  // Asks the engine to wake, waiting at most `timeout_seconds` for the answer; it serves again
  // once is_sleeping() answers false.
  virtual Status wake_up(double timeout_seconds) = 0;
  // Whether the engine reports itself asleep. kNotFound as for sleep().
  virtual Result<bool> is_sleeping() = 0;
};

}  // namespace siesta
