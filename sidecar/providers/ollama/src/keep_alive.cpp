#include "siesta/providers/keep_alive.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>

#include "siesta/core/decide.h"
#include "siesta/core/units.h"

namespace siesta {

Result<double> parse_ollama_keep_alive(const nlohmann::json& value) {
  auto bad = [&](const std::string& why) {
    return Status{ErrorCode::kInvalidArgument, "keep_alive " + value.dump() + ": " + why};
  };
  double seconds = 0;
  if (value.is_number()) {
    seconds = value.get<double>();
    if (!std::isfinite(seconds)) return bad("must be finite");
  } else if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "0" || text == "-0" || text == "+0") return 0.0;
    // Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?unit)+, a digit on one side of the dot.
    static const std::regex kDuration(
        R"(([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+))");
    static const std::regex kPart(R"((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))");
    std::smatch m;
    if (!std::regex_match(text, m, kDuration)) return bad("a duration needs a unit, e.g. \"5m\"");
    const std::string parts = m[2].str();
    for (std::sregex_iterator it(parts.begin(), parts.end(), kPart), end; it != end; ++it) {
      const std::string unit = (*it)[2].str();
      const double n = std::stod((*it)[1].str());
      seconds += n * duration_suffix(unit)->seconds;
    }
    if (m[1].str() == "-") seconds = -seconds;
  } else {
    return bad("must be a number of seconds or a duration string");
  }
  return seconds < 0 ? std::numeric_limits<double>::infinity() : seconds;
}

AskedKeepAlive asked_keep_alive(ModelRoute route, const nlohmann::json& doc) {
  AskedKeepAlive asked;
  if (route != ModelRoute::kOllama || !doc.is_object()) return asked;
  auto it = doc.find("keep_alive");
  if (it == doc.end() || it->is_null()) return asked;
  auto parsed = parse_ollama_keep_alive(*it);
  if (parsed) {
    asked.seconds = *parsed;
  } else {
    asked.invalid = true;
  }
  return asked;
}

ModelRoute model_route(const std::string& method, const std::string& path) {
  if (method != "POST") return ModelRoute::kNone;
  const std::string p = path.substr(0, path.find('?'));
  if (p == "/api/generate" || p == "/api/chat" || p == "/api/embed" || p == "/api/embeddings") {
    return ModelRoute::kOllama;
  }
  if (p == "/v1/chat/completions" || p == "/v1/completions" || p == "/v1/embeddings") {
    return ModelRoute::kOpenAi;
  }
  return ModelRoute::kNone;
}

double bounded_keep_alive(std::optional<double> client_seconds, double configured_seconds,
                          double min_seconds, double max_seconds) {
  return clamp_keep_alive(client_seconds.value_or(configured_seconds), min_seconds, max_seconds);
}

}  // namespace siesta
