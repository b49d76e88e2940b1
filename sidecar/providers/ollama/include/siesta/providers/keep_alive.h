// Ollama's keep_alive values, and the policy siesta applies to them. Pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "siesta/core/decide.h"
#include "siesta/core/status.h"

namespace siesta {

// A keep_alive as Ollama reads it: a JSON number of seconds, or a Go duration string ("5m",
// "1h30m", "-1m", "+.5h", "0"; a string without a unit is an error, as in Ollama). Negative
// means forever: +infinity here.
Result<double> parse_ollama_keep_alive(const nlohmann::json& value);

// Which requests name a model, and whether Ollama reads keep_alive from them.
enum class ModelRoute { kNone, kOllama, kOpenAi };
ModelRoute model_route(const std::string& method, const std::string& path);

// The keep_alive a model request asks for, as Ollama reads it from the request object `doc`.
struct AskedKeepAlive {
  std::optional<double> seconds;  // absent: the client left it to the server's policy
  bool invalid = false;           // a value Ollama answers 400 to
};
// Absent and null are the same (Ollama's Go decoder leaves the field unset for null), and so is
// anything on a /v1 route, where Ollama reads no keep_alive.
AskedKeepAlive asked_keep_alive(ModelRoute route, const nlohmann::json& doc);

// The keep-alive siesta enforces for one request: the client's own if it sent one, else the
// model's configured keep-alive; either within [min, max] (clamp_keep_alive, decide.h).
double bounded_keep_alive(std::optional<double> client_seconds, double configured_seconds,
                          double min_seconds, double max_seconds);

// What siesta tells Ollama: model_server_keep_alive (decide.h), siesta's own deadline plus a
// grace, so Ollama never unloads first, yet finite, so a model is not pinned forever should
// siesta be gone.
inline double upstream_keep_alive(double enforced_seconds) {
  return model_server_keep_alive(enforced_seconds);
}

}  // namespace siesta
