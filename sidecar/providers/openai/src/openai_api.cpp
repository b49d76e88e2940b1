#include "siesta/providers/openai_api.h"

#include <nlohmann/json.hpp>

namespace siesta {

bool openai_model_route(std::string_view method, std::string_view target) {
  if (method != "POST") return false;
  const std::string_view path = target.substr(0, target.find('?'));
  return path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/embeddings";
}

std::optional<std::string> openai_model_of(std::string_view method, std::string_view target,
                                           const std::string& body) {
  if (!openai_model_route(method, target)) return std::nullopt;
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  auto it = doc.find("model");
  if (it == doc.end() || !it->is_string()) return std::nullopt;
  std::string model = it->get<std::string>();
  if (model.empty() || model.size() > 256) return std::nullopt;
  return model;
}

namespace {

// OpenAI's answers say nothing of a load (reports_load: false): no meter is asked for.
class NoLoadMeter final : public LoadMeter {
 public:
  void feed(std::string_view) override {}
  std::optional<double> seconds() override { return std::nullopt; }
};

class OpenAiApi final : public ModelApi {
 public:
  bool names_model(std::string_view method, std::string_view target) const override {
    return openai_model_route(method, target);
  }

  std::optional<Request> read(std::string_view target, const std::string& body) const override {
    auto model = openai_model_of("POST", target, body);
    if (!model) return std::nullopt;
    Request r;
    r.model = std::move(*model);
    // No keep-alive either way: the server keeps its model while it runs.
    return r;
  }

  std::optional<std::string> with_keep_alive(Request&, double) const override {
    return std::nullopt;
  }

  double server_keep_alive(double enforced_seconds) const override { return enforced_seconds; }

  bool reports_load() const override { return false; }
  std::optional<double> load_seconds(std::string_view) const override { return std::nullopt; }

  std::unique_ptr<LoadMeter> load_meter() const override { return std::make_unique<NoLoadMeter>(); }
};

}  // namespace

const ModelApi& openai_api() {
  static const OpenAiApi api;
  return api;
}

}  // namespace siesta
