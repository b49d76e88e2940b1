#include "siesta/providers/ollama_provider.h"

#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "siesta/core/http_client_error.h"

namespace siesta {

using nlohmann::json;

OllamaProvider::OllamaProvider(std::string host, int port) : host_(std::move(host)), port_(port) {}

std::string OllamaProvider::where() const {
  return "Ollama at " + host_ + ":" + std::to_string(port_);
}

namespace {

std::string ollama_error(const httplib::Response& res) {
  json doc = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_string()) {
    return doc["error"].get<std::string>();
  }
  return "HTTP " + std::to_string(res.status);
}

}  // namespace

Status OllamaProvider::generate(const std::string& model, double keep_alive_seconds, bool unload) {
  httplib::Client cli(host_, port_);
  cli.set_connection_timeout(std::chrono::seconds(2));
  // A load can take minutes (OLLAMA_LOAD_TIMEOUT is 5 min); an unload returns at once.
  cli.set_read_timeout(unload ? std::chrono::seconds(30) : std::chrono::seconds(330));
  json body = {{"model", model}};
  if (unload) {
    body["keep_alive"] = 0;
  } else if (std::isinf(keep_alive_seconds)) {
    body["keep_alive"] = -1;
  } else {
    body["keep_alive"] = static_cast<long long>(std::ceil(keep_alive_seconds));
  }
  auto res = cli.Post("/api/generate", body.dump(), "application/json");
  if (!res) {
    return {ErrorCode::kUnavailable, where() + " did not answer (" + describe(res.error()) + ")"};
  }
  if (res->status == 200) return Status::ok();
  if (unload && res->status == 404) return Status::ok();  // not installed: not loaded either
  return {res->status == 404 ? ErrorCode::kNotFound : ErrorCode::kFailed,
          where() + " answered " + std::to_string(res->status) + ": " + ollama_error(*res)};
}

Status OllamaProvider::load(const std::string& model, double keep_alive_seconds) {
  return generate(model, keep_alive_seconds, /*unload=*/false);
}

Status OllamaProvider::unload(const std::string& model) {
  return generate(model, 0, /*unload=*/true);
}

Result<json> OllamaProvider::models_of(const std::string& path) {
  httplib::Client cli(host_, port_);
  cli.set_connection_timeout(std::chrono::seconds(2));
  cli.set_read_timeout(std::chrono::seconds(10));
  auto res = cli.Get(path);
  if (!res) {
    return Status{ErrorCode::kUnavailable,
                  where() + " did not answer (" + describe(res.error()) + ")"};
  }
  if (res->status != 200) {
    return Status{ErrorCode::kFailed, where() + " answered " + std::to_string(res->status) +
                                          " to " + path + ": " + ollama_error(*res)};
  }
  json doc = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("models") || !doc["models"].is_array()) {
    return Status{ErrorCode::kFailed, where() + ": " + path + " is not {\"models\": [...]}"};
  }
  return doc["models"];
}

Result<std::vector<LoadedModel>> OllamaProvider::loaded() {
  auto models = models_of("/api/ps");
  if (!models) return models.status();
  std::vector<LoadedModel> out;
  for (const auto& m : *models) {
    if (!m.is_object() || !m.contains("name") || !m["name"].is_string()) continue;
    LoadedModel lm;
    lm.name = m["name"].get<std::string>();
    if (m.contains("size") && m["size"].is_number()) lm.size_bytes = m["size"].get<double>();
    if (m.contains("size_vram") && m["size_vram"].is_number()) {
      lm.vram_bytes = m["size_vram"].get<double>();
    }
    out.push_back(std::move(lm));
  }
  return out;
}

Result<std::vector<std::string>> OllamaProvider::list_installed() {
  auto models = models_of("/api/tags");
  if (!models) return models.status();
  std::vector<std::string> out;
  for (const auto& m : *models) {
    if (m.is_object() && m.contains("name") && m["name"].is_string()) {
      out.push_back(m["name"].get<std::string>());
    }
  }
  return out;
}

}  // namespace siesta
