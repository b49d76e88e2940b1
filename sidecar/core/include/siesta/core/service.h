// Services: what the config says about one (ServiceSpec) and what siesta knows of it now
// (ServiceRuntime).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

enum class ServiceState { kStopped, kStarting, kRunning, kStopping, kError };
inline constexpr ServiceState kAllServiceStates[] = {
    ServiceState::kStopped, ServiceState::kStarting, ServiceState::kRunning,
    ServiceState::kStopping, ServiceState::kError};
const char* to_string(ServiceState state);

// What siesta asks of a service's backend; a failed one puts the service in kError.
enum class ServiceOperation { kStart, kStop, kInspect };
inline constexpr ServiceOperation kAllServiceOperations[] = {
    ServiceOperation::kStart, ServiceOperation::kStop, ServiceOperation::kInspect};
const char* to_string(ServiceOperation operation);  // "start", "stop", "inspect"

// "on": the user wants it running; siesta starts it and never puts it to sleep.
// "off": siesta may put it to sleep when idle and wakes it on demand.
enum class Desired { kOff, kOn };
const char* to_string(Desired desired);
std::optional<Desired> parse_desired(const std::string& text);

struct HealthCheck {
  enum class Kind { kNone, kTcp, kHttp };
  Kind kind = Kind::kNone;
  std::string http_path;  // for kHttp, e.g. "/health"
};

// How the proxy forwards a service's listen port to its upstream.
enum class Protocol { kHttp, kTcp };

struct ServiceSpec {
  std::string name;
  std::string backend = "process";
  std::vector<std::string> command;  // argv for the process backend
  std::string container;             // for the docker backend; empty: the service name
  std::string upstream_host;         // where the service listens; empty if not given
  int upstream_port = 0;
  std::string listen_host;  // siesta's proxy port for this service; empty: no proxy
  int listen_port = 0;
  Protocol protocol = Protocol::kHttp;
  // The model API the service speaks: set for a service that models name as their provider.
  enum class ModelApi { kNone, kOllama };
  ModelApi model_api = ModelApi::kNone;
  // For a model server: the keep-alive of the models it serves that have no "models" entry of
  // their own (learned ones); unset: the global model_keep_alive_hours.
  std::optional<double> model_keep_alive_hours;
  HealthCheck health;
  std::optional<double> idle_timeout_minutes;  // overrides the global setting
  double start_timeout_seconds = 60;
  double stop_timeout_seconds = 10;
  // Proxy: how long the upstream may take to send its response header (a cold model load
  // included) before the client gets a 504.
  double response_timeout_seconds = 300;
  // Proxy: keep a client's Forwarded, X-Forwarded-Host and X-Forwarded-Proto (siesta sits
  // behind a proxy that sets them); otherwise they are replaced.
  bool trust_forwarded_headers = false;
  // Proxy: connections open at once on `listen`; more are refused (HTTP: 503).
  int max_connections = 1024;
  // Proxy, TCP mode: a connection with nothing moving either way for this long is closed.
  std::optional<double> tcp_idle_timeout_seconds;
  // Proxy, HTTP mode: an upgraded connection (a WebSocket) with nothing moving either way for
  // this long is closed; off, an open one keeps the service awake however quiet it is.
  std::optional<double> upgraded_idle_timeout_seconds;
};

struct ServiceRuntime {
  bool idle_sleep_enabled = true;
  Desired desired = Desired::kOff;
  ServiceState state = ServiceState::kStopped;
  std::optional<WallTime> last_used;  // absent until the first use or the first sighting running
  WallTime state_since{};             // when `state` last changed
  int in_flight = 0;                  // requests or connections open through siesta
  int upgraded = 0;                   // of which upgraded connections (WebSockets) now relayed
  std::string last_error;             // kept after recovery, for the operator
  std::optional<WallTime> last_error_at;
  std::optional<WallTime> retry_at;                  // after a failed start of a desired-on service
  std::optional<ServiceOperation> failed_operation;  // what failed, while state is kError
};

}  // namespace siesta
