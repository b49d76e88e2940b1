#include "siesta/providers/vllm_provider.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "siesta/core/http_client_error.h"

namespace siesta {

namespace {
// What an absent dev route means, and how to get it.
constexpr const char* kDevModeHint =
    " (vLLM's sleep routes exist only when the server runs with VLLM_SERVER_DEV_MODE=1 and "
    "--enable-sleep-mode)";
}  // namespace

VllmProvider::VllmProvider(std::string host, int port) : models_(std::move(host), port, "vLLM") {}

Status VllmProvider::load(const std::string& model, double keep_alive_seconds) {
  return models_.load(model, keep_alive_seconds);
}
Status VllmProvider::unload(const std::string& model) { return models_.unload(model); }
Result<std::vector<LoadedModel>> VllmProvider::loaded() { return models_.loaded(); }
Result<std::vector<std::string>> VllmProvider::list_installed() { return models_.list_installed(); }

Status VllmProvider::post(const std::string& path, int read_timeout_seconds) {
  httplib::Client cli(models_.host(), models_.port());
  cli.set_connection_timeout(std::chrono::seconds(2));
  cli.set_read_timeout(std::chrono::seconds(read_timeout_seconds));
  auto res = cli.Post(path, "", "application/json");
  if (!res) {
    return {ErrorCode::kUnavailable,
            models_.where() + " did not answer POST " + path + " (" + describe(res.error()) + ")"};
  }
  if (res->status == 200) return Status::ok();
  const std::string what = models_.where() + " answered " + std::to_string(res->status) +
                           " to POST " + path + ": " + openai_error_message(res->status, res->body);
  if (res->status == 404) return {ErrorCode::kNotFound, what + kDevModeHint};
  return {ErrorCode::kFailed, what};
}

// Offloading or dropping the weights of a large model takes seconds; a wake as long.
Status VllmProvider::sleep(int level) { return post("/sleep?level=" + std::to_string(level), 120); }

Status VllmProvider::wake_up(double timeout_seconds) {
  return post("/wake_up", std::max(1, static_cast<int>(std::ceil(timeout_seconds))));
}

Result<bool> VllmProvider::is_sleeping() {
  httplib::Client cli(models_.host(), models_.port());
  cli.set_connection_timeout(std::chrono::seconds(2));
  cli.set_read_timeout(std::chrono::seconds(10));
  auto res = cli.Get("/is_sleeping");
  if (!res) {
    return Status{ErrorCode::kUnavailable, models_.where() + " did not answer GET /is_sleeping (" +
                                               describe(res.error()) + ")"};
  }
  const std::string what =
      models_.where() + " answered " + std::to_string(res->status) + " to GET /is_sleeping";
  if (res->status == 404) return Status{ErrorCode::kNotFound, what + kDevModeHint};
  if (res->status != 200) {
    return Status{ErrorCode::kFailed, what + ": " + openai_error_message(res->status, res->body)};
  }
  const auto doc = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("is_sleeping") || !doc["is_sleeping"].is_boolean()) {
    return Status{ErrorCode::kFailed, what + ": not {\"is_sleeping\": true|false}"};
  }
  return doc["is_sleeping"].get<bool>();
}

}  // namespace siesta
