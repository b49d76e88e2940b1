// Start-up: from a parsed config to a registry ready to run, shared by main() and the tests'
// World so that the two cannot drift. main() only wires what these return.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/activity/probes.h"
#include "siesta/backends/docker_client.h"
#include "siesta/config/config.h"
#include "siesta/core/model_provider.h"
#include "siesta/core/registry.h"
#include "siesta/runtime/controller.h"
#include "siesta/runtime/power_meter.h"
#include "siesta/state/state_store.h"

namespace siesta {

class DockerBackend;
class SwarmBackend;
class KubeBackend;
class ProcessBackend;
class DockerSync;
class SwarmSync;
class KubeSync;
class DiscoveryActions;
class ModelApi;
class Proxy;
struct ProxyOptions;
struct AdminOptions;
class EventLog;

// The environment start-up reads ($DOCKER_HOST, $SIESTA_ADMIN_TOKEN, $SIESTA_NVIDIA_SMI, the
// Kubernetes variables): std::getenv in main(), anything in a test.
using Getenv = std::function<const char*(const char*)>;

// nvidia-smi's rows, and the devices whose budget was taken from a card's total: the memory
// other processes use there is taken off once the services found running are known.
struct GpuProbe {
  std::vector<GpuMemoryRow> rows;
  std::set<int> from_total;
};

// Checks and completes a parsed config before anything starts, as --check-config does: the
// state file's directory, each GPU device without a budget given its total by nvidia-smi
// ($SIESTA_NVIDIA_SMI: another path to the tool; its rows in `gpu` if given), and the admin
// token under admin_token_policy, which it returns. Throws ConfigError naming the file, key and
// reason.
std::string prepare_config(Config& config, const Getenv& env, bool insecure,
                           GpuProbe* gpu = nullptr);

// Where start-up's GPU lines go: a line to note, or a warning.
using Say = std::function<void(bool warning, const std::string& line)>;
// To the log: info, or warn.
void say_to_log(bool warning, const std::string& line);
// As --check-config prints them: a line on stdout, a warning on stderr ("siesta: warning: ").
void say_to_terminal(bool warning, const std::string& line);

// The budgets taken from a card's total (nvidia-smi at start-up), less the memory processes siesta
// does not manage use there: memory.used less what siesta's services and models found running
// hold (`running`: the registry after the first reconcile; nullptr for --check-config, which
// finds none running). Then every service's and model's size is checked against the budgets.
// `say` gets a line for the log per device in use, and a warning for one the others fill (its
// budget is 0). Throws ConfigError naming the key of a size that could never fit, and how the
// budget came to be (docs/gpu.md).
void gpu_less_unmanaged(Config& config, const Snapshot* running, const GpuProbe& probe,
                        const Say& say);

// The GPU budget at start-up, once the backends are made and before anything is woken: when a
// budget was taken from a card's total, the services found running (controller.reconcile())
// and their models are siesta's share of nvidia-smi's memory.used, the rest other processes'
// (gpu_less_unmanaged); then the controller gets the budget (Controller::set_gpu). Without such
// a budget nothing is reconciled here (the monitor's first pass does it). Throws ConfigError as
// gpu_less_unmanaged does (exit 2).
void start_gpu_budget(Config& config, const GpuProbe& probe, Controller& controller,
                      const Registry& registry, const Say& say);

// The backends the config uses: the process backend always; the Docker backend with a "docker"
// section or a container service; the Swarm backend with "swarm": true or a Swarm service; the
// Kubernetes backend with a "kubernetes" section or a workload service.
struct Backends {
  Backends();
  Backends(Backends&&) noexcept;
  Backends& operator=(Backends&&) noexcept;
  ~Backends();

  std::unique_ptr<ProcessBackend> process;
  std::unique_ptr<DockerBackend> docker;
  std::unique_ptr<SwarmBackend> swarm;
  std::unique_ptr<KubeBackend> kube;
  // config.services[configured..] were found by their labels, not written in the config.
  std::size_t configured = 0;

  // By the name services give as "backend", for the Controller.
  Controller::BackendMap map() const;
};

// Makes the backends `config` uses and appends to config.services the services their labels
// and annotations describe (when label discovery is on), before the state file is restored so
// that their runtime changes survive a restart like any other service's. First sets what labels
// may ask of siesta's ports (set_label_bounds, docs/security.md). An error is the Docker
// endpoint's or the Kubernetes credentials' (exit 2).
Result<Backends> make_backends(Config& config, const Clock& clock, const Getenv& env);

// The registry ready to run and the state file it is saved to: make_registry, then the state
// file (if the config has one) restored into it with restore_state_file. Warns about a model
// whose provider is no service yet (a labelled container may come later) and about a config
// without a state file. main() and the tests' World both start here.
struct Seeded {
  std::unique_ptr<Registry> registry;
  std::unique_ptr<StateStore> store;  // nullptr without state_file
  Baseline baseline;
};
Seeded seed(const Config& config, const Controller::BackendMap& backends, WallTime now);

// The provider of a model server by its model_api (Ollama, vLLM, OpenAI-compatible); nullptr
// for a service that is none.
std::unique_ptr<ModelProvider> make_model_provider(const ServiceSpec& spec);
// The API the proxy reads a model server's requests with, by its model_api; nullptr for none.
const ModelApi* model_api_for(ServiceSpec::ModelApi api);

// Raises the soft limit on open files to the hard one (every proxied connection holds two) and
// returns the limit in force.
std::uint64_t raise_open_file_limit();
// proxy.max_connections, lowered to what `open_files` allows: two descriptors a connection
// (client and upstream) and 256 kept for the admin API, state file and probes. Warns when lower.
int fit_connections(int configured, std::uint64_t open_files);

// The admin server's options from the config: threads, timeouts, connections, `token`, the
// event history `events`.
AdminOptions admin_options(const Config& config, std::string token, const EventLog* events);
// The proxy's options from the config, `max_connections` already fitted, with its model APIs
// (model_api_for) and the waking page's estimate from `events`.
ProxyOptions proxy_options(const Config& config, int max_connections, const EventLog& events);

// The proxy's ports at start-up: the configured services' (config.services[..configured]), one
// that cannot be bound stops the start (its error, exit 1); then those of the services found by
// their labels (config.services[configured..]), through add_listener.
Status bind_listeners(Proxy& proxy, Registry& registry, const Clock& clock, const Config& config,
                      std::size_t configured);

// Opens the proxy port of a service found at runtime: one that cannot be bound puts that
// service's error in its status (someone else's container must not stop siesta, nor the other
// services).
void add_listener(Proxy& proxy, Registry& registry, const Clock& clock, const ServiceSpec& spec);

// The label discovery and event watches of the backends in use (DockerSync, SwarmSync, KubeSync),
// started; `added` is called for each service found after start-up, `container` when a Docker
// service's container is destroyed (false) or created again (true).
class Discovery {
 public:
  Discovery(Registry& registry, DiscoveryActions& actions, Backends& backends, const Config& config,
            std::function<void(const ServiceSpec&)> added,
            std::function<void(const ServiceSpec&, bool exists)> container);
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;
  void stop();

 private:
  std::unique_ptr<DockerSync> docker_;
  std::unique_ptr<SwarmSync> swarm_;
  std::unique_ptr<KubeSync> kube_;
};

// What the activity probes need of this host: `clock`, a process service's pid (the process
// backend's), the Docker engine's client when the Docker backend is in use, and the GPU tool
// the budget uses ($SIESTA_NVIDIA_SMI; set but empty: none, the GPU signal is unavailable).
// `backends` must outlive the context.
ProbeContext probe_context(const Clock& clock, const Backends& backends, const Getenv& env);
// The PowerMeter's reader (measured idle power): nvidia-smi's power.draw, run as the context's
// tool (SIESTA_NVIDIA_SMI).
PowerMeter::Reader gpu_power_reader(const ProbeContext& context);

// The start-up log line saying how the admin API is protected (docs/security.md): a bearer
// token on /admin (and /metrics with protect_metrics), or none (loopback, or --insecure).
std::string admin_auth_line(const Config& config, const std::string& token);

// The admin token ($SIESTA_ADMIN_TOKEN, else admin_token_file; empty: none) under the exposure
// rule: an admin API on an address other machines can reach needs one, unless `insecure`.
// Throws ConfigError naming the file, key and reason.
std::string admin_token_policy(const Config& config, const char* env_token, bool insecure);

// The Docker engine to talk to: docker.host, else `env_host` ($DOCKER_HOST), else the local
// socket. An error says which of the two it came from.
Result<DockerEndpoint> docker_endpoint(const Config& config, const char* env_host);

// The registry the config describes: every service with its configured idle-sleep switch and
// desired state, in its state since `now`.
std::unique_ptr<Registry> make_registry(const Config& config, WallTime now);

// The config's values for what can change at runtime (the state file's precedence).
Baseline baseline_of(const Config& config);

// Restores `store`'s file into `registry` and each saved handle into its service's backend.
// Logs what was restored and what was ignored; a file that cannot be read or restored leaves
// the registry as the config made it (and says so).
void restore_state_file(StateStore& store, const Baseline& baseline, Registry& registry,
                        const Controller::BackendMap& backends, WallTime now);

// What the state file saves of the backends: each service's handle, where there is one.
Handles handles_of(const Registry& registry, const Controller::BackendMap& backends);

}  // namespace siesta
