// The config file: one JSON document (with // comments) holding the seed's settings, the
// listen address, the state file and the services and models to manage.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "siesta/core/gpu.h"
#include "siesta/core/model.h"
#include "siesta/core/service.h"
#include "siesta/core/settings.h"

namespace siesta {

// Thrown by the loader only; main() turns it into exit code 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ListenAddress {
  std::string host = "127.0.0.1";
  int port = 8081;
  std::string to_string() const;
};

// What a service starts with before runtime changes (state file, admin API) apply.
struct ServiceConfig {
  ServiceSpec spec;
  bool idle_sleep_enabled = true;
  Desired desired = Desired::kOff;
  bool model_policy_given = false;  // "model_policy" was in its entry (for a model server only)
};

enum class OnExit { kStop, kLeave };

// The "proxy" section: the data plane (services' listen ports and /wake).
struct ProxyConfig {
  int threads = 2;               // I/O threads of the data plane
  std::string wake_listen_host;  // GET /wake/{service} for nginx auth_request; empty: off
  int wake_listen_port = 0;
  double connect_timeout_seconds = 5;            // to the upstream
  double idle_connection_timeout_seconds = 300;  // nothing moving while relaying
  double client_header_timeout_seconds = 60;     // to receive a whole request header
  double client_body_timeout_seconds = 60;       // between two reads of a request body
  double keepalive_timeout_seconds = 75;         // idle between two requests
  int max_connections = 4096;                    // client connections on all proxy ports
  int upstream_max_connecting = 4;     // unproven new connections to one upstream after a wake
  int upstream_idle_connections = 16;  // idle keep-alive connections kept per upstream
  double upstream_idle_timeout_seconds = 4;  // an idle upstream connection is not used after
};

// The "docker" section. The Docker backend runs when it is present or a service uses it.
struct DockerConfig {
  bool configured = false;      // the section is present
  std::string host;             // empty: $DOCKER_HOST, else unix:///var/run/docker.sock
  bool label_discovery = true;  // containers labelled siesta.enable=true become services
  // The engine is a swarm manager: the Swarm backend runs, and (with label_discovery) Swarm
  // services labelled siesta.enable=true become services too.
  bool swarm = false;
};

// The "kubernetes" section. The Kubernetes backend runs when it is present or a service uses it.
struct KubernetesConfig {
  bool configured = false;  // the section is present
  // Empty: in the cluster (service account) when KUBERNETES_SERVICE_HOST is set, else
  // $KUBECONFIG, else ~/.kube/config.
  std::string kubeconfig;
  std::string namespace_name;   // empty: the service account's namespace, else the context's
  bool label_discovery = true;  // workloads labelled siesta.io/enable=true become services
};

struct Config {
  std::string source = "(defaults)";  // the file it came from, for messages
  Settings settings;
  ListenAddress listen;
  std::string state_file;  // empty: runtime changes are not persisted
  OnExit on_exit = OnExit::kStop;
  DockerConfig docker;
  KubernetesConfig kubernetes;
  ProxyConfig proxy;
  int admin_threads = 8;  // the admin API's own pool, separate from the data plane
  double admin_request_timeout_seconds = 10;  // an admin request's header and body, in all
  int admin_max_connections = 512;            // open admin connections at most
  std::string admin_token_file;               // a file holding the admin bearer token; empty: none
  bool protect_metrics = false;               // /metrics needs the token too (when there is one)
  // Models not in the config kept at most (learned from traffic, /api/ps, the admin API).
  std::size_t max_learned_models = kDefaultMaxLearnedModels;
  // The "gpu" section (docs/gpu.md); a device whose memory_mib is 0 takes the device's total
  // from nvidia-smi at start-up (resolve_gpu_totals).
  GpuConfig gpu;
  // The currency of the cost saved (energy.h, the price_per_kwh setting), shown beside it;
  // empty: none said.
  std::string currency;
  // The config's "timezone": the zone of a service's schedule that names none (also for the
  // schedules of labels and annotations); empty: the system's.
  std::string timezone;
  // Activity signals of every service that has no "activity" list of its own.
  std::vector<SignalSpec> activity;
  std::vector<ServiceConfig> services;
  std::vector<ModelSpec> models;
};

// The seed's Balanced defaults and an empty registry.
Config default_config();
// Parses `text`; `source` names it in error messages. Throws ConfigError.
Config parse_config(const std::string& text, const std::string& source);
// One entry of "services" (also built from container labels); a schedule without its own
// "timezone" is in `default_timezone` (empty: the system's). Throws ConfigError.
ServiceConfig parse_service(const std::string& name, const nlohmann::json& value,
                            const std::string& source, const std::string& default_timezone = "");
// Reads and parses a file. Throws ConfigError naming the file.
Config load_config_file(const std::string& path);

// Fills in the budget of each "gpu" device that has no memory_mib with the device's total as
// nvidia-smi reports it (`totals`: index -> MiB; `tool_error`: why nvidia-smi gave none). Throws
// ConfigError naming the device's key when a device needs a total that is not there.
void resolve_gpu_totals(Config& config, const std::map<int, double>& totals,
                        const std::string& tool_error);
// Throws ConfigError naming the key of the first service or model larger than the budget of a
// device it uses (it could never be woken or loaded). `why`: per device whose budget nvidia-smi's
// memory.used brought down, how (budget_less_unmanaged), for the message.
void check_gpu_sizes(const Config& config, const std::map<int, std::string>& why = {});

// The admin API's bearer token: $SIESTA_ADMIN_TOKEN when set (`env_token`), else the contents
// of admin_token_file (one line; surrounding whitespace ignored), else empty (no auth). Throws
// ConfigError naming the file, key and reason when the file cannot be read or the token is
// shorter than 16 characters or holds a control character.
std::string resolve_admin_token(const Config& config, const char* env_token);

// True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost).
bool is_loopback_host(const std::string& host);

// The model keep-alive rule, written once for the config file and the labels: a service's
// model_keep_alive_hours (and a model's keep_alive_hours) needs a model server that unloads a
// model and keeps running (Ollama). A vLLM or OpenAI-compatible server's model is the process.
enum class KeepAliveRefusal { kNone, kNotAModelServer, kNoUnload };
KeepAliveRefusal model_keep_alive_refusal(const ServiceSpec& spec);
// The same for "model_policy" (the policy of a server's learned models), when it was given.
KeepAliveRefusal model_policy_refusal(const ServiceConfig& sc);
// Whether a server of this API can keep a model for a while and then unload it.
bool keeps_models_alive(ServiceSpec::ModelApi api);
// Why kNoUnload, as the config says it ("a \"vllm\" server has no unload API: ...").
std::string no_unload_reason(ServiceSpec::ModelApi api);

// Shared with the admin API, which validates the same names and values.
bool valid_service_name(const std::string& name);
bool valid_model_name(const std::string& name);
bool valid_container_name(const std::string& name);
// A Kubernetes namespace (a DNS-1123 label: a-z, 0-9, '-', at most 63).
bool valid_dns_label(const std::string& name);
// A Kubernetes workload: "deployment/NAME" or "statefulset/NAME", NAME a DNS-1123 subdomain.
bool valid_workload(const std::string& workload);
bool parse_listen(const std::string& text, ListenAddress& out);

}  // namespace siesta
