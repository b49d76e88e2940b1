// Services: what the config says about one (ServiceSpec) and what siesta knows of it now
// (ServiceRuntime).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/activity.h"
#include "siesta/core/clock.h"
#include "siesta/core/policy.h"
#include "siesta/core/schedule.h"
#include "siesta/core/status.h"

namespace siesta {

// kPaused: held by its backend in a light sleep (Docker pause, SIGSTOP of the process group):
// memory kept, no CPU, not serving; a wake resumes it in milliseconds.
enum class ServiceState { kStopped, kStarting, kRunning, kStopping, kError, kPaused };
inline constexpr ServiceState kAllServiceStates[] = {
    ServiceState::kStopped,  ServiceState::kStarting, ServiceState::kRunning,
    ServiceState::kStopping, ServiceState::kError,    ServiceState::kPaused};
const char* to_string(ServiceState state);

// What siesta asks of a service's backend; a failed one puts the service in kError.
enum class ServiceOperation { kStart, kStop, kInspect, kPause, kResume };
inline constexpr ServiceOperation kAllServiceOperations[] = {
    ServiceOperation::kStart, ServiceOperation::kStop, ServiceOperation::kInspect,
    ServiceOperation::kPause, ServiceOperation::kResume};
// "start", "stop", "inspect", "pause", "resume"
const char* to_string(ServiceOperation operation);

// What a service's last_error is about, kept beside its text (which is for the operator):
// decisions compare this and the cause's ErrorCode (last_error_code), never the text.
enum class ServiceErrorKind {
  kNone,
  kOperation,             // a backend operation failed: "<operation> failed: <why>"
  kTier,                  // a light sleep tier's action failed: "<action> failed: <why>"
  kVllmSleepUnavailable,  // the engine has no sleep routes: "vllm_sleep unavailable: <why>"
  kConfig,                // its labels or annotations have a bad value (config_error)
  kListen,                // its proxy port cannot be opened
};

// Graduated sleep: what one sleep tier does to an idle service. Each deeper tier keeps what the
// lighter ones did (a paused service whose models are unloaded stays paused); a wake undoes
// only that. kStop is the full stop of the seed and is always the last tier. kVllmSleep: vLLM's
// sleep mode (POST /sleep?level=N; a wake is POST /wake_up, then GET /is_sleeping false).
enum class TierAction { kPause, kUnloadModels, kStop, kVllmSleep };
inline constexpr TierAction kAllTierActions[] = {TierAction::kPause, TierAction::kUnloadModels,
                                                 TierAction::kStop, TierAction::kVllmSleep};
// "pause", "unload_models", "stop", "vllm_sleep": config and labels
const char* to_string(TierAction action);
std::optional<TierAction> parse_tier_action(const std::string& text);

struct SleepTier {
  double after_minutes = 0;  // of idleness
  TierAction action = TierAction::kStop;
  int level = 0;  // kVllmSleep: 1 (weights to CPU RAM) or 2 (weights dropped); else 0
  bool operator==(const SleepTier&) const = default;
};

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

// Defaults that parts holding no ServiceSpec (the proxy's listeners) fall back to as well.
inline constexpr double kDefaultStartTimeoutSeconds = 60;
inline constexpr double kDefaultResponseTimeoutSeconds = 300;

struct ServiceSpec {
  std::string name;
  std::string backend = "process";
  std::vector<std::string> command;  // argv for the process backend
  std::string container;             // for the docker backend; empty: the service name
  std::string swarm_service;         // for the swarm backend; empty: the service name
  std::string workload;       // for the kubernetes backend: "deployment/NAME" or "statefulset/NAME"
  std::string upstream_host;  // where the service listens; empty if not given
  int upstream_port = 0;
  std::string listen_host;  // siesta's proxy port for this service; empty: no proxy
  int listen_port = 0;
  Protocol protocol = Protocol::kHttp;
  // The model API the service speaks: set for a service that models name as their provider.
  // kVllm: vLLM's OpenAI-compatible server, with its sleep mode; kOpenAi: any other
  // OpenAI-compatible server (llama-server, LocalAI, LM Studio), whose model is the process.
  enum class ModelApi { kNone, kOllama, kVllm, kOpenAi };
  ModelApi model_api = ModelApi::kNone;
  // For a model server: the keep-alive of the models it serves that have no "models" entry of
  // their own (learned ones); unset: the global model_keep_alive_hours.
  std::optional<double> model_keep_alive_hours;
  // For a model server: the keep-alive policy (policy.h) of the models it serves that have no
  // "models" entry of their own (learned ones): "fixed" or "adaptive".
  std::string model_policy = "fixed";
  HealthCheck health;
  std::optional<double> idle_timeout_minutes;  // overrides the global setting
  // The timeout policy (policy.h): "fixed" (the idle timeout) or "adaptive" (learned from the
  // service's idle gaps, the idle timeout while it cannot tell). Only with one sleep tier.
  std::string policy = "fixed";
  AdaptiveParams adaptive;
  // How long a start takes, for the adaptive policy's break-even and pre-warm lead; unset: the
  // measured one (ServiceRuntime::cold_start_seconds).
  std::optional<double> cold_start_seconds;
  // Time windows that keep it on or give it another idle timeout (schedule.h); empty: none.
  Schedule schedule;
  // Graduated sleep (ascending after_minutes, kStop only last); empty: the one tier
  // {idle timeout, kStop} (effective_tiers()). Exclusive with idle_timeout_minutes.
  std::vector<SleepTier> sleep_tiers;
  double start_timeout_seconds = kDefaultStartTimeoutSeconds;
  double stop_timeout_seconds = 10;
  // Proxy: how long the upstream may take to send its response header (a cold model load
  // included) before the client gets a 504.
  double response_timeout_seconds = kDefaultResponseTimeoutSeconds;
  // Proxy: keep a client's Forwarded, X-Forwarded-Host and X-Forwarded-Proto (siesta sits
  // behind a proxy that sets them); otherwise they are replaced.
  bool trust_forwarded_headers = false;
  // Proxy: a browser's navigation to the sleeping service gets a "Waking ..." page after a
  // short grace instead of a blank tab for the whole start (docs/proxy.md#the-waking-page).
  bool wake_page = false;
  // Proxy: connections open at once on `listen`; more are refused (HTTP: 503).
  int max_connections = 1024;
  // Proxy, TCP mode: a connection with nothing moving either way for this long is closed.
  std::optional<double> tcp_idle_timeout_seconds;
  // Proxy, HTTP mode: an upgraded connection (a WebSocket) with nothing moving either way for
  // this long is closed; off, an open one keeps the service awake however quiet it is.
  std::optional<double> upgraded_idle_timeout_seconds;
  // Activity signals (activity.h); absent: the config's global "activity" list.
  std::optional<std::vector<SignalSpec>> activity;
  // The GPU budget (gpu.h): the MiB the service holds on each of its devices while it runs
  // (a model server: without its models, which count by their size_vram); absent: none.
  std::optional<double> gpu_memory_mib;
  // "gpu_memory_mib": "measured": what its processes hold, read from nvidia-smi while it runs
  // (ServiceRuntime::gpu_measured_mib); a process service only.
  bool gpu_memory_measured = false;
  std::vector<int> gpu_devices;  // nvidia-smi indexes; empty: the budget's first device
  // Energy and cost (energy.h): the power it draws while up and idle, in watts, which a sleep
  // saves and a cold start spends; absent: nothing is estimated for it.
  std::optional<double> idle_power_watts;
  // "idle_power_watts": "measured": the drop of its GPUs' draw at its stops (PowerMeter;
  // ServiceRuntime::idle_power_samples), instead of a configured figure.
  bool idle_power_measured = false;
};

struct ServiceRuntime {
  bool idle_sleep_enabled = true;
  Desired desired = Desired::kOff;
  ServiceState state = ServiceState::kStopped;
  std::optional<WallTime> last_used;  // absent until the first use or the first sighting running
  // last_used came from the state file and no inspection has seen the service since start-up:
  // found running then (left by an earlier siesta), it keeps that last use.
  bool last_used_restored = false;
  WallTime state_since{};  // when `state` last changed
  int in_flight = 0;       // requests or connections open through siesta
  int upgraded = 0;        // of which upgraded connections (WebSockets) now relayed
  std::string last_error;  // kept after recovery, for the operator; a good start clears a
                           // failed start's (the only error it answers)
  ServiceErrorKind last_error_kind = ServiceErrorKind::kNone;  // what last_error is about
  ErrorCode last_error_code = ErrorCode::kOk;                  // its cause's code
  std::optional<WallTime> last_error_at;
  std::optional<WallTime> retry_at;  // after a failed start of a desired-on service
  // The operation of the last kOperation error (what failed; while state is kError, what put it
  // there).
  std::optional<ServiceOperation> failed_operation;
  // In kError because its backend stopped answering (an inspect or a stop failed: the Docker
  // engine unreachable, the Kubernetes API refusing) while it was running: the control plane is
  // out, not the service, so the proxy still forwards to it (the data plane survives) and a
  // wake starts nothing. Cleared with any other state (set_state), e.g. when access returns.
  bool serving_in_error = false;
  // A discovered service's labels or annotations have a bad value (the message names the
  // object, the key and the reason): the spec in force is the last good one, or the bare
  // workload's when there was none. Empty once they are good again.
  std::string config_error;
  // Graduated sleep: how many of the service's tiers are in force (0: awake); a use resets it.
  std::size_t tier = 0;
  // The light tier `tier` is claimed and its action not done yet (from claim_light_sleep to
  // finish_light_sleep): out of service from the claim, but not shown as the tier in force
  // until its action succeeded (a vllm_sleep whose /sleep then fails never held it).
  bool tier_pending = false;
  // The backend holds the service paused (its pause tier); only a resume undoes it, so a
  // stop or a wake that finds it set resumes first.
  bool paused = false;
  // A vllm_sleep tier put its engine to sleep (state kPaused): a wake calls /wake_up and waits
  // for /is_sleeping false before any request goes through.
  bool engine_asleep = false;
  // Its engine has no sleep routes: GET /is_sleeping or POST /sleep answered 404 (vLLM without
  // VLLM_SERVER_DEV_MODE=1). Set by the first that says so, whose last_error then stays (a
  // reconcile does not overwrite a failed sleep's); cleared when /is_sleeping answers again.
  bool engine_sleep_unavailable = false;
  // The idle gaps between its uses, in seconds, oldest first (record_idle_gap; at most
  // kMaxIdleGaps): the adaptive policy's history, kept in the state file.
  std::vector<double> idle_gaps;
  // The last cold start's duration, measured; 0 until one was. Kept in the state file.
  double cold_start_seconds = 0;
  // A service whose GPU memory is measured (gpu_memory_measured): the most its processes were
  // seen to hold while it ran (nvidia-smi), kept in the state file; absent until a sample.
  std::optional<double> gpu_measured_mib;
  // Its idle power as measured at its last stops (energy.h, "idle_power_watts": "measured"),
  // watts, oldest first, at most kMaxIdlePowerSamples; kept in the state file.
  std::vector<double> idle_power_samples;
  // Energy and cost (energy.h), counted on the injected clock since siesta started (not kept in
  // the state file, like the /metrics counters): the seconds of the stops that ended (set_state
  // adds each when the service leaves kStopped; the open one is asleep_seconds(rt, now)), and
  // of its cold starts (start to ready).
  double asleep_seconds = 0;
  double start_seconds = 0;
  // The last result of each activity signal, in the order of its specs (written by the sampler).
  std::vector<SignalState> activity;
};

// "ollama", "vllm", "openai" (config and labels); "" for kNone.
const char* to_string(ServiceSpec::ModelApi api);
std::optional<ServiceSpec::ModelApi> parse_model_api(const std::string& text);
// Whether the server can unload one model and keep serving (Ollama): the unload_models tier and
// the models' keep-alive apply. vLLM and OpenAI-compatible servers hold their model for as long
// as the process runs; their sleep tiers free it.
bool can_unload_models(ServiceSpec::ModelApi api);
// The service is held in a light sleep a wake must undo: paused, or its engine asleep.
inline bool light_asleep(const ServiceRuntime& rt) { return rt.paused || rt.engine_asleep; }
// It does not serve now, so siesta answers for it what it can (a model server's probes, a model
// it does not serve): held in a light tier, stopped, starting (a load balancer's probe during a
// cold start of tens of seconds must not wait for it; a new user's trial), or in error with
// nothing up (a failed start: a probe would start it again and count as a use; a new user's
// trial). One served in error (its control plane out, the service up) is forwarded to.
inline bool not_serving(const ServiceRuntime& rt) {
  return rt.state != ServiceState::kRunning &&
         (light_asleep(rt) || rt.state == ServiceState::kStopped ||
          rt.state == ServiceState::kStarting ||
          (rt.state == ServiceState::kError && !rt.serving_in_error));
}

}  // namespace siesta
