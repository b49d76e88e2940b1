#include "siesta/providers/ollama_api.h"

#include <cmath>

#include "siesta/providers/keep_alive.h"
#include "siesta/providers/load_duration.h"

namespace siesta {

namespace {

class OllamaLoadMeter final : public LoadMeter {
 public:
  void feed(std::string_view piece) override { scanner_.feed(piece); }
  std::optional<double> seconds() override { return scanner_.seconds(); }

 private:
  LoadDurationScanner scanner_;
};

class OllamaApi final : public ModelApi {
 public:
  bool names_model(std::string_view method, std::string_view target) const override {
    return model_route(std::string(method), std::string(target)) != ModelRoute::kNone;
  }

  std::optional<Request> read(std::string_view target, const std::string& body) const override {
    const ModelRoute route = model_route("POST", std::string(target));
    if (route == ModelRoute::kNone) return std::nullopt;
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object() || !doc.contains("model") || !doc["model"].is_string()) {
      return std::nullopt;
    }
    Request r;
    r.model = doc["model"].get<std::string>();
    if (r.model.empty() || r.model.size() > 256) return std::nullopt;
    const AskedKeepAlive asked = asked_keep_alive(route, doc);
    r.asked_keep_alive = asked.seconds;
    // A value Ollama rejects goes on unchanged, so the client gets Ollama's own 400.
    r.carries_keep_alive = route == ModelRoute::kOllama && !asked.invalid;
    r.keep_alive_after = route == ModelRoute::kOpenAi;
    r.doc = std::move(doc);
    return r;
  }

  std::optional<std::string> with_keep_alive(Request& request,
                                             double enforced_seconds) const override {
    if (!request.carries_keep_alive) return std::nullopt;
    request.doc["keep_alive"] =
        static_cast<long long>(std::ceil(server_keep_alive(enforced_seconds)));
    return request.doc.dump();
  }

  double server_keep_alive(double enforced_seconds) const override {
    return upstream_keep_alive(enforced_seconds);
  }

  bool reports_load() const override { return true; }  // load_duration

  std::optional<double> load_seconds(std::string_view whole_answer) const override {
    return load_duration_of(whole_answer);
  }

  std::unique_ptr<LoadMeter> load_meter() const override {
    return std::make_unique<OllamaLoadMeter>();
  }
};

}  // namespace

const ModelApi& ollama_api() {
  static const OllamaApi api;
  return api;
}

const ModelApi* model_api_of(ServiceSpec::ModelApi api) {
  switch (api) {
    case ServiceSpec::ModelApi::kOllama:
      return &ollama_api();
    default:  // another API's (providers/openai, providers/vllm)
      break;
  }
  return nullptr;
}

}  // namespace siesta
