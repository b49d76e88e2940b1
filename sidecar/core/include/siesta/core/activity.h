// Activity signals: what else than a request through siesta says a service is in use (its CPU,
// direct connections, a GPU, a Prometheus query, people logged in, a command). The config holds
// the specs (per service, and a global default list); the activity sampler (sidecar/activity)
// samples them on the monitor's executor and records each result in the service's runtime, and
// a busy sample is a use of the service. decide() never reads them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

enum class SignalKind { kCpu, kNetwork, kGpu, kPrometheus, kUsers, kCommand };
inline constexpr SignalKind kAllSignalKinds[] = {SignalKind::kCpu,   SignalKind::kNetwork,
                                                 SignalKind::kGpu,   SignalKind::kPrometheus,
                                                 SignalKind::kUsers, SignalKind::kCommand};
// "cpu", "network", "gpu", "prometheus", "users", "command": the config's "kind"
const char* to_string(SignalKind kind);
std::optional<SignalKind> parse_signal_kind(const std::string& text);

struct SignalSpec {
  SignalKind kind = SignalKind::kCommand;
  std::string name;  // unique within the service; default: the kind
  // Busy when the sampled value is above this. Units by kind: cpu percent of one core; network
  // connections (process) or bytes per second (container); gpu percent or MiB; prometheus the
  // query's largest value; users sessions; command 1 busy, 0 idle.
  double threshold = 0;
  double interval_seconds = 10;
  double timeout_seconds = 5;
  std::vector<std::string> command;        // kCommand: argv; exit 0 busy, 1 idle, else an error
  std::string url;                         // kPrometheus: http://host:port of the Prometheus server
  std::string query;                       // kPrometheus: the PromQL expression
  std::string gpu_metric = "utilization";  // kGpu: "utilization" (percent) or "memory" (MiB)
  std::string utmp_path;                   // kUsers: empty: /var/run/utmp
  // kUsers: count only sessions whose terminal saw input within this many minutes.
  std::optional<double> active_within_minutes;
  // kUsers, optional: a command printing the desktop's input idle time in milliseconds (as
  // xprintidle does); busy when it is under active_within_minutes.
  std::vector<std::string> input_idle_command;

  bool operator==(const SignalSpec&) const = default;
};

// The last result of one signal of one service, kept in its ServiceRuntime for idle-status and
// /metrics. `value` is meaningful only when `error` is empty.
struct SignalState {
  std::string name;
  SignalKind kind = SignalKind::kCommand;
  double threshold = 0;
  std::optional<WallTime> sampled_at;  // absent until the first sample ends
  double value = 0;
  bool busy = false;
  std::optional<WallTime> last_busy_at;  // the last sample that saw activity
  std::string error;                     // the last sample's failure ("unavailable: ...")
  std::uint64_t errors = 0;              // failed samples so far
};

}  // namespace siesta
