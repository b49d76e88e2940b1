#include "siesta/core/activity.h"

namespace siesta {

const char* to_string(SignalKind kind) {
  switch (kind) {
    case SignalKind::kCpu:
      return "cpu";
    case SignalKind::kNetwork:
      return "network";
    case SignalKind::kGpu:
      return "gpu";
    case SignalKind::kPrometheus:
      return "prometheus";
    case SignalKind::kUsers:
      return "users";
    case SignalKind::kCommand:
      return "command";
  }
  return "command";
}

std::optional<SignalKind> parse_signal_kind(const std::string& text) {
  for (SignalKind kind : kAllSignalKinds) {
    if (text == to_string(kind)) return kind;
  }
  return std::nullopt;
}

}  // namespace siesta
