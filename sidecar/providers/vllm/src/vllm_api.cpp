#include "siesta/providers/vllm_api.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "siesta/providers/openai_api.h"

namespace siesta {

namespace {

// The routes vLLM attaches only with VLLM_SERVER_DEV_MODE set, from its source
// (github.com/vllm-project/vllm):
//   vllm/entrypoints/serve/dev/api_router.py @ 1b1a3461: /sleep /wake_up /is_sleeping /reconfigure
//   vllm/frontend/entrypoints/serve/dev/{sleep,cache,rpc,rlhf}/api_router.py @ 055e47c2:
//     /reset_prefix_cache /reset_mm_cache /reset_encoder_cache, /collective_rpc, /pause /resume
//     /abort_requests /is_paused, the weight-transfer routes, /weight_info /get_world_size
//   vllm/entrypoints/openai/api_server.py (older releases): /server_info
constexpr std::array<std::string_view, 21> kDevRoutes = {
    "/sleep",
    "/wake_up",
    "/is_sleeping",
    "/reconfigure",
    "/collective_rpc",
    "/reset_prefix_cache",
    "/reset_mm_cache",
    "/reset_encoder_cache",
    "/server_info",
    "/pause",
    "/resume",
    "/is_paused",
    "/abort_requests",
    "/init_weight_transfer_engine",
    "/start_weight_update",
    "/start_draft_weight_update",
    "/update_weights",
    "/finish_weight_update",
    "/update_weight_version",
    "/weight_info",
    "/get_world_size",
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The path as the server's router matches it: uvicorn percent-decodes it before routing.
std::string decoded_path(std::string_view target) {
  if (const auto scheme = target.find("://");
      scheme != std::string_view::npos && scheme < target.find('/')) {
    // Absolute form ("http://host/sleep"): the path starts after the authority.
    const auto slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  target = target.substr(0, std::min(target.find('?'), target.find('#')));
  std::string out;
  out.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] == '%' && i + 2 < target.size()) {
      const int hi = hex_value(target[i + 1]);
      const int lo = hex_value(target[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(target[i]);
  }
  // Then as anything on the way may have normalized it: empty and "." segments dropped ("//sleep",
  // "/./sleep": Python's http.server merges slashes), ".." resolved (RFC 3986, 5.2.4), a trailing
  // slash ignored. Refusing a path some router would not match costs nothing.
  std::vector<std::string_view> segments;
  std::string_view rest = out;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      continue;
    }
    segments.push_back(segment);
  }
  std::string path;
  for (const auto segment : segments) {
    path += '/';
    path += segment;
  }
  return path.empty() ? "/" : path;
}

// vLLM's ModelPermission id: "modelperm-" and random_uuid() (uuid4's 32 hex digits).
std::string permission_id() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random()));
  return std::string("modelperm-") + hex;
}

// A model of /v1/models as siesta answers it while the server sleeps: the server's own entry
// from its last list, else the fields vLLM always sends with what siesta knows. From vLLM's
// source (github.com/vllm-project/vllm):
//   vllm/entrypoints/openai/engine/protocol.py @ 040a2cc2: ModelCard {id, object "model",
//     created (int(time.time())), owned_by "vllm", root, parent, max_model_len, permission},
//     ModelPermission {id "modelperm-<uuid hex>", object "model_permission", created,
//     allow_create_engine false, allow_sampling true, allow_logprobs true,
//     allow_search_indices false, allow_view true, allow_fine_tuning false, organization "*",
//     group null, is_blocking false}
//   vllm/entrypoints/openai/models/serving.py @ 00153c8b: show_available_models() sends each
//     served model with max_model_len, root (the model's path) and one ModelPermission().
// Unknown values are null (root: the path vLLM loaded it from; max_model_len: the engine's),
// and `created` is when siesta first knew of the model, not the time of the answer.
nlohmann::json model_card(const ModelApi::KnownModel& m) {
  if (!m.card.empty()) {
    auto card = nlohmann::json::parse(m.card, nullptr, /*allow_exceptions=*/false);
    if (card.is_object()) return card;
  }
  const nlohmann::json permission = {{"id", permission_id()},
                                     {"object", "model_permission"},
                                     {"created", m.first_seen},
                                     {"allow_create_engine", false},
                                     {"allow_sampling", true},
                                     {"allow_logprobs", true},
                                     {"allow_search_indices", false},
                                     {"allow_view", true},
                                     {"allow_fine_tuning", false},
                                     {"organization", "*"},
                                     {"group", nullptr},
                                     {"is_blocking", false}};
  return {{"id", m.name},
          {"object", "model"},
          {"created", m.first_seen},
          {"owned_by", "vllm"},
          {"root", nullptr},
          {"parent", nullptr},
          {"max_model_len", nullptr},
          {"permission", nlohmann::json::array({permission})}};
}

// vLLM's OpenAI routes name a model as OpenAI's do; its development routes are refused.
class VllmApi final : public ModelApi {
 public:
  std::optional<std::string> refusal(std::string_view, std::string_view target) const override {
    if (!vllm_dev_route(target)) return std::nullopt;
    return "vLLM's development route " + decoded_path(target) +
           " is refused through siesta: siesta alone controls the engine's sleep (see "
           "docs/tiers.md)";
  }
  // GET (or HEAD) /health, and vLLM's SageMaker twin /ping: a load balancer's health check. GET
  // /v1/models: clients list the models before they ask. vLLM's API server answers both
  // without its engine; siesta answers them while the engine sleeps or the server is stopped.
  bool is_probe(std::string_view method, std::string_view target) const override {
    if (method != "GET" && method != "HEAD") return false;
    const std::string path = decoded_path(target);
    return path == "/health" || path == "/ping" || path == "/v1/models";
  }
  std::optional<Reply> asleep_reply(std::string_view method, std::string_view target,
                                    const std::vector<KnownModel>& models) const override {
    if (!is_probe(method, target)) return std::nullopt;
    const std::string path = decoded_path(target);
    // vLLM's /health is 200 with an empty body: the server would serve, after siesta's wake.
    if (path != "/v1/models") return Reply{};
    // The models siesta has seen it serve; none known yet: the server is asked (a wake).
    if (models.empty()) return std::nullopt;
    nlohmann::json data = nlohmann::json::array();
    for (const auto& m : models) data.push_back(model_card(m));
    return Reply{200, "application/json",
                 nlohmann::json({{"object", "list"}, {"data", data}}).dump()};
  }
  // vLLM serves the names it was started with (--served-model-name, else the model) and the
  // LoRA adapters it holds, and answers any other with 404 (_check_model). The list it last
  // answered (the cards siesta keeps) is that set, plus what siesta saw it serve and what the
  // config names; none listed since siesta started: not known, it is asked.
  bool serves_only(const std::vector<KnownModel>& models) const override {
    return std::any_of(models.begin(), models.end(),
                       [](const KnownModel& m) { return !m.card.empty(); });
  }
  // vLLM's answer, from its source (github.com/vllm-project/vllm):
  //   vllm/entrypoints/openai/engine/serving.py @ 00bd1493: OpenAIServing._check_model():
  //     create_error_response(message=f"The model `{request.model}` does not exist.",
  //     err_type="NotFoundError", status_code=HTTPStatus.NOT_FOUND, param="model"), written as
  //     ErrorResponse(error=ErrorInfo(message, type, param, code=404)).
  Reply unknown_model_reply(const std::string& model) const override {
    return Reply{404, "application/json",
                 nlohmann::json({{"error",
                                  {{"message", "The model `" + model + "` does not exist."},
                                   {"type", "NotFoundError"},
                                   {"param", "model"},
                                   {"code", 404}}}})
                     .dump()};
  }
  bool names_model(std::string_view method, std::string_view target) const override {
    return openai_api().names_model(method, target);
  }
  std::optional<Request> read(std::string_view target, const std::string& body) const override {
    return openai_api().read(target, body);
  }
  std::optional<std::string> with_keep_alive(Request& request,
                                             double enforced_seconds) const override {
    return openai_api().with_keep_alive(request, enforced_seconds);
  }
  double server_keep_alive(double enforced_seconds) const override {
    return openai_api().server_keep_alive(enforced_seconds);
  }
  bool reports_load() const override { return openai_api().reports_load(); }
  std::optional<double> load_seconds(std::string_view whole_answer) const override {
    return openai_api().load_seconds(whole_answer);
  }
  std::unique_ptr<LoadMeter> load_meter() const override { return openai_api().load_meter(); }
};

}  // namespace

bool vllm_dev_route(std::string_view target) {
  const std::string path = decoded_path(target);
  return std::find(kDevRoutes.begin(), kDevRoutes.end(), path) != kDevRoutes.end();
}

const ModelApi& vllm_api() {
  static const VllmApi api;
  return api;
}

}  // namespace siesta
