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
  }
  return "inspect";
}

const char* to_string(Desired desired) { return desired == Desired::kOn ? "on" : "off"; }

std::optional<Desired> parse_desired(const std::string& text) {
  if (text == "on") return Desired::kOn;
  if (text == "off") return Desired::kOff;
  return std::nullopt;
}

}  // namespace siesta
