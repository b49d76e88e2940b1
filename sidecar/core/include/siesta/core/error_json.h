// The one error shape of every HTTP answer siesta itself makes (admin API, proxy, /wake):
// {"error":{"code":...,"message":...,"source":"siesta"}}. "source" tells a client that the
// error came from siesta, not from the service behind it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace siesta {

inline nlohmann::json error_json(const std::string& code, const std::string& message) {
  return {{"error", {{"code", code}, {"message", message}, {"source", "siesta"}}}};
}

// What a failed wake or model load is said after, by the proxy, /wake and the admin API alike:
// "service X could not be woken: REASON", "model M could not be loaded: REASON".
inline std::string wake_failed(const std::string& service) {
  return "service " + service + " could not be woken: ";
}
inline std::string load_failed(const std::string& model) {
  return "model " + model + " could not be loaded: ";
}

}  // namespace siesta
