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

}  // namespace siesta
