#include "siesta/providers/openai_provider.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "siesta/core/http_client_error.h"

namespace siesta {

using nlohmann::json;

OpenAiProvider::OpenAiProvider(std::string host, int port, std::string what)
    : host_(std::move(host)), port_(port), what_(std::move(what)) {}

std::string OpenAiProvider::where() const {
  return what_ + " at " + host_ + ":" + std::to_string(port_);
}

std::string openai_error_message(int status, const std::string& body) {
  const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object()) {
    auto it = doc.find("error");
    if (it != doc.end() && it->is_object() && it->contains("message") &&
        (*it)["message"].is_string()) {
      return (*it)["message"].get<std::string>();
    }
    if (it != doc.end() && it->is_string()) return it->get<std::string>();
    if (doc.contains("message") && doc["message"].is_string()) {
      return doc["message"].get<std::string>();
    }
  }
  return "HTTP " + std::to_string(status);
}

// What a running server serves is in memory: GET /v1/models, each entry kept as the server
// wrote it (vLLM's ModelCard: max_model_len, root, permission...), for the list siesta answers
// while the server sleeps.
Result<std::vector<LoadedModel>> OpenAiProvider::loaded() {
  httplib::Client cli(host_, port_);
  cli.set_connection_timeout(std::chrono::seconds(2));
  cli.set_read_timeout(std::chrono::seconds(10));
  auto res = cli.Get("/v1/models");
  if (!res) {
    return Status{ErrorCode::kUnavailable,
                  where() + " did not answer (" + describe(res.error()) + ")"};
  }
  if (res->status != 200) {
    return Status{ErrorCode::kFailed,
                  where() + " answered " + std::to_string(res->status) +
                      " to /v1/models: " + openai_error_message(res->status, res->body)};
  }
  const json doc = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("data") || !doc["data"].is_array()) {
    return Status{ErrorCode::kFailed, where() + ": /v1/models is not {\"data\": [...]}"};
  }
  std::vector<LoadedModel> out;
  for (const auto& m : doc["data"]) {
    if (m.is_object() && m.contains("id") && m["id"].is_string()) {
      out.push_back(LoadedModel{m["id"].get<std::string>(), {}, {}, m.dump()});
    }
  }
  return out;
}

Result<std::vector<std::string>> OpenAiProvider::list_installed() {
  auto served = loaded();
  if (!served) return served.status();
  std::vector<std::string> out;
  for (auto& m : *served) out.push_back(std::move(m.name));
  return out;
}

Status OpenAiProvider::load(const std::string& model, double) {
  auto served = list_installed();
  if (!served) return served.status();
  for (const auto& name : *served) {
    if (name == model) return Status::ok();  // the model is the process: loaded while it runs
  }
  return {ErrorCode::kNotFound, where() + " does not serve model " + model};
}

Status OpenAiProvider::unload(const std::string& model) {
  return {ErrorCode::kUnavailable,
          where() + " cannot unload model " + model +
              ": the model is the process; put the service to sleep (its sleep tiers) instead"};
}

}  // namespace siesta
