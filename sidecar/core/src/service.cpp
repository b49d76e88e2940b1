#include "siesta/core/service.h"

namespace siesta {

const char* to_string(ServiceState state) {
  switch (state) {
    case ServiceState::kStopped:
      return "stopped";
    case ServiceState::kStarting:
      return "starting";
    case ServiceState::kRunning:
      return "running";
    case ServiceState::kStopping:
      return "stopping";
    case ServiceState::kError:
      return "error";
    case ServiceState::kPaused:
      return "paused";
  }
  return "error";
}

const char* to_string(ServiceOperation operation) {
  switch (operation) {
    case ServiceOperation::kStart:
      return "start";
    case ServiceOperation::kStop:
      return "stop";
    case ServiceOperation::kInspect:
      return "inspect";
    case ServiceOperation::kPause:
      return "pause";
    case ServiceOperation::kResume:
      return "resume";
  }
  return "inspect";
}

const char* to_string(TierAction action) {
  switch (action) {
    case TierAction::kPause:
      return "pause";
    case TierAction::kUnloadModels:
      return "unload_models";
    case TierAction::kStop:
      return "stop";
    case TierAction::kVllmSleep:
      return "vllm_sleep";
  }
  return "stop";
}

const char* to_string(ServiceSpec::ModelApi api) {
  switch (api) {
    case ServiceSpec::ModelApi::kOllama:
      return "ollama";
    case ServiceSpec::ModelApi::kVllm:
      return "vllm";
    case ServiceSpec::ModelApi::kOpenAi:
      return "openai";
    case ServiceSpec::ModelApi::kNone:
      break;
  }
  return "";
}

std::optional<ServiceSpec::ModelApi> parse_model_api(const std::string& text) {
  for (auto api : {ServiceSpec::ModelApi::kOllama, ServiceSpec::ModelApi::kVllm,
                   ServiceSpec::ModelApi::kOpenAi}) {
    if (text == to_string(api)) return api;
  }
  return std::nullopt;
}

bool can_unload_models(ServiceSpec::ModelApi api) { return api == ServiceSpec::ModelApi::kOllama; }

std::optional<TierAction> parse_tier_action(const std::string& text) {
  for (TierAction action : kAllTierActions) {
    if (text == to_string(action)) return action;
  }
  return std::nullopt;
}

const char* to_string(Desired desired) { return desired == Desired::kOn ? "on" : "off"; }

std::optional<Desired> parse_desired(const std::string& text) {
  if (text == "on") return Desired::kOn;
  if (text == "off") return Desired::kOff;
  return std::nullopt;
}

}  // namespace siesta
