#include "siesta/bootstrap/bootstrap.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/api/admin_server.h"
#include "siesta/backends/docker_backend.h"
#include "siesta/backends/kube_backend.h"
#include "siesta/backends/process_backend.h"
#include "siesta/backends/swarm_backend.h"
#include "siesta/config/labels.h"
#include "siesta/core/gpu.h"
#include "siesta/discovery/docker_sync.h"
#include "siesta/discovery/kube_sync.h"
#include "siesta/discovery/swarm_sync.h"
#include "siesta/providers/ollama_api.h"
#include "siesta/providers/ollama_provider.h"
#include "siesta/providers/openai_api.h"
#include "siesta/providers/openai_provider.h"
#include "siesta/providers/vllm_api.h"
#include "siesta/providers/vllm_provider.h"
#include "siesta/proxy/proxy.h"
#include "siesta/runtime/event_log.h"

namespace siesta {

std::string prepare_config(Config& config, const Getenv& env, bool insecure, GpuProbe* gpu) {
  if (!config.state_file.empty()) {
    if (Status st = check_state_directory(config.state_file); !st) {
      throw ConfigError("config error in " + config.source + ": state_file: " + st.message());
    }
  }
  if (std::any_of(config.gpu.devices.begin(), config.gpu.devices.end(),
                  [](const GpuDevice& d) { return d.memory_mib <= 0; })) {
    const char* tool = env("SIESTA_NVIDIA_SMI");
    std::string why;
    GpuProbe probe;
    if (tool != nullptr && *tool == '\0') {
      why = kNoNvidiaSmi;
    } else {
      probe.rows = query_gpu_memory(tool != nullptr ? tool : "nvidia-smi", why);
    }
    for (const auto& d : config.gpu.devices) {
      if (d.memory_mib <= 0) probe.from_total.insert(d.id);
    }
    resolve_gpu_totals(config, gpu_totals(probe.rows), why);
    if (gpu != nullptr) *gpu = std::move(probe);
  }
  return admin_token_policy(config, env("SIESTA_ADMIN_TOKEN"), insecure);
}

void say_to_log(bool warning, const std::string& line) {
  if (warning) {
    spdlog::warn("{}", line);
  } else {
    spdlog::info("{}", line);
  }
}

void say_to_terminal(bool warning, const std::string& line) {
  std::fprintf(warning ? stderr : stdout, "%s%s\n", warning ? "siesta: warning: " : "",
               line.c_str());
}

void gpu_less_unmanaged(Config& config, const Snapshot* running, const GpuProbe& probe,
                        const Say& say) {
  if (probe.from_total.empty()) return;
  std::map<int, double> siesta_holds;  // what siesta's services and models found running hold
  if (running != nullptr) {
    for (const GpuDeviceUse& use : gpu_use(config.gpu, gpu_holders(config.gpu, *running))) {
      siesta_holds[use.id] = use.held_mib;
    }
  }
  const UnmanagedMemory unmanaged =
      budget_less_unmanaged(config.gpu.devices, probe.rows, probe.from_total, siesta_holds);
  for (const std::string& line : unmanaged.info) say(false, line);
  for (const std::string& line : unmanaged.warnings) say(true, line);
  check_gpu_sizes(config, unmanaged.why);
}

void start_gpu_budget(Config& config, const GpuProbe& probe, Controller& controller,
                      const Registry& registry, const Say& say) {
  if (!probe.from_total.empty()) {
    controller.reconcile();
    const Snapshot found = registry.snapshot();
    gpu_less_unmanaged(config, &found, probe, say);
  }
  controller.set_gpu(config.gpu);
}

Backends::Backends() = default;
Backends::Backends(Backends&&) noexcept = default;
Backends& Backends::operator=(Backends&&) noexcept = default;
Backends::~Backends() = default;

Controller::BackendMap Backends::map() const {
  Controller::BackendMap backends{{"process", process.get()}};
  if (docker) backends["docker"] = docker.get();
  if (swarm) backends["swarm"] = swarm.get();
  if (kube) backends["kubernetes"] = kube.get();
  return backends;
}

Result<Backends> make_backends(Config& config, const Clock& clock, const Getenv& env) {
  {
    // What labels and annotations may ask of siesta's ports (docs/security.md).
    LabelBounds bounds;
    bounds.bind_host = config.listen.host;
    bounds.admin_port = config.listen.port;
    bounds.wake_port = config.proxy.wake_listen_port;
    bounds.timezone = config.timezone;
    for (const auto& s : config.services) {
      if (s.spec.listen_port != 0) bounds.taken[s.spec.listen_port] = s.spec.name;
    }
    set_label_bounds(std::move(bounds));
  }
  Backends made;
  made.process = std::make_unique<ProcessBackend>(clock);
  made.configured = config.services.size();
  bool uses_docker = config.docker.configured;
  bool uses_swarm = config.docker.swarm;
  for (const auto& s : config.services) {
    uses_docker |= s.spec.backend == "docker";
    uses_swarm |= s.spec.backend == "swarm";
  }
  if (uses_docker || uses_swarm) {
    auto endpoint = docker_endpoint(config, env("DOCKER_HOST"));
    if (!endpoint) return endpoint.status();
    if (uses_swarm) {
      made.swarm = std::make_unique<SwarmBackend>(*endpoint, clock);
      spdlog::info("Swarm backend: engine at {}", endpoint->to_string());
      if (config.docker.label_discovery) {
        for (auto& found : find_labelled_swarm_services(made.swarm->client(), config.services)) {
          config.services.push_back(std::move(found));
        }
      }
    }
    if (uses_docker) {
      made.docker = std::make_unique<DockerBackend>(*endpoint);
      spdlog::info("Docker backend: engine at {}", endpoint->to_string());
      if (config.docker.label_discovery) {
        for (auto& found : find_labelled_services(made.docker->client(), config.services)) {
          config.services.push_back(std::move(found));
        }
      }
    }
  }
  bool uses_kube = config.kubernetes.configured;
  for (const auto& s : config.services) uses_kube |= s.spec.backend == "kubernetes";
  if (uses_kube) {
    auto credentials = resolve_kube_credentials(config.kubernetes.kubeconfig,
                                                config.kubernetes.namespace_name, env);
    if (!credentials) {
      return Status{credentials.status().code(), "kubernetes: " + credentials.status().message()};
    }
    spdlog::info("Kubernetes backend: API at {}, namespace {} ({})", credentials->server(),
                 credentials->namespace_name, credentials->source);
    made.kube = std::make_unique<KubeBackend>(*credentials, clock);
    if (config.kubernetes.label_discovery) {
      for (auto& found : find_labelled_workloads(made.kube->client(), config.services)) {
        config.services.push_back(std::move(found));
      }
    }
  }
  return made;
}

Seeded seed(const Config& config, const Controller::BackendMap& backends, WallTime now) {
  // A model may name a labelled container's service as provider; it may come later.
  for (const auto& m : config.models) {
    bool found = false;
    for (const auto& s : config.services) found |= s.spec.name == m.provider;
    if (!found) {
      spdlog::warn(
          "Model {}: its provider {} is no service yet; a container labelled siesta.enable=true "
          "and siesta.model-api=ollama named {} will be its server when it is created",
          m.name, m.provider, m.provider);
    }
  }
  Seeded seeded;
  seeded.registry = make_registry(config, now);
  seeded.baseline = baseline_of(config);
  if (config.state_file.empty()) {
    spdlog::warn("No state_file in the config: runtime changes will not survive a restart");
  } else {
    seeded.store = std::make_unique<StateStore>(config.state_file);
    restore_state_file(*seeded.store, seeded.baseline, *seeded.registry, backends, now);
  }
  return seeded;
}

std::unique_ptr<ModelProvider> make_model_provider(const ServiceSpec& spec) {
  using Api = ServiceSpec::ModelApi;
  switch (spec.model_api) {
    case Api::kOllama:
      return std::make_unique<OllamaProvider>(spec.upstream_host, spec.upstream_port);
    case Api::kVllm:
      return std::make_unique<VllmProvider>(spec.upstream_host, spec.upstream_port);
    case Api::kOpenAi:
      return std::make_unique<OpenAiProvider>(spec.upstream_host, spec.upstream_port);
    case Api::kNone:
      break;
  }
  return nullptr;
}

const ModelApi* model_api_for(ServiceSpec::ModelApi api) {
  switch (api) {
    case ServiceSpec::ModelApi::kVllm:  // OpenAI's model routes, dev routes refused
      return &vllm_api();
    case ServiceSpec::ModelApi::kOpenAi:
      return &openai_api();
    default:
      return model_api_of(api);
  }
}

std::uint64_t raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

int fit_connections(int configured, std::uint64_t open_files) {
  constexpr std::uint64_t kReserved = 256;
  const std::uint64_t room =
      open_files > kReserved * 2 ? (open_files - kReserved) / 2 : open_files / 4;
  if (static_cast<std::uint64_t>(configured) <= room) return configured;
  spdlog::warn(
      "proxy.max_connections {} needs more open files than the limit of {}: using {} (raise the "
      "hard limit, e.g. ulimit -Hn or the container's nofile, to allow more)",
      configured, open_files, room);
  return static_cast<int>(room);
}

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

}  // namespace

AdminOptions admin_options(const Config& config, std::string token, const EventLog* events) {
  AdminOptions options;
  options.threads = static_cast<size_t>(config.admin_threads);
  options.request_timeout = ms(config.admin_request_timeout_seconds);
  options.max_connections = static_cast<size_t>(config.admin_max_connections);
  options.token = std::move(token);
  options.protect_metrics = config.protect_metrics;
  options.events = events;
  options.currency = config.currency;
  return options;
}

ProxyOptions proxy_options(const Config& config, int max_connections, const EventLog& events) {
  ProxyOptions options;
  options.threads = config.proxy.threads;
  options.wake_host = config.proxy.wake_listen_host;
  options.wake_port = config.proxy.wake_listen_port;
  options.connect_timeout = ms(config.proxy.connect_timeout_seconds);
  options.idle_timeout = ms(config.proxy.idle_connection_timeout_seconds);
  options.header_timeout = ms(config.proxy.client_header_timeout_seconds);
  options.body_timeout = ms(config.proxy.client_body_timeout_seconds);
  options.keepalive_timeout = ms(config.proxy.keepalive_timeout_seconds);
  options.max_connections = max_connections;
  options.upstream_max_connecting = config.proxy.upstream_max_connecting;
  options.upstream_idle_connections = config.proxy.upstream_idle_connections;
  options.upstream_idle_timeout = ms(config.proxy.upstream_idle_timeout_seconds);
  options.model_api_of = model_api_for;
  options.expected_wake_seconds = [&events](const std::string& service) {
    return events.expected_wake_seconds(service);
  };
  return options;
}

Status bind_listeners(Proxy& proxy, Registry& registry, const Clock& clock, const Config& config,
                      std::size_t configured) {
  std::vector<ServiceSpec> configured_specs;
  for (std::size_t i = 0; i < configured; ++i) configured_specs.push_back(config.services[i].spec);
  if (Status st = proxy.bind(configured_specs); !st) return st;
  for (std::size_t i = configured; i < config.services.size(); ++i) {
    add_listener(proxy, registry, clock, config.services[i].spec);
  }
  return Status::ok();
}

void add_listener(Proxy& proxy, Registry& registry, const Clock& clock, const ServiceSpec& spec) {
  if (Status st = proxy.add(spec); !st) {
    spdlog::error("Service {}: {}", spec.name, st.message());
    registry.update_service(spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      set_error(rt, ServiceErrorKind::kListen, st.code(), st.message(), clock.wall_now());
    });
  }
}

Discovery::Discovery(Registry& registry, DiscoveryActions& actions, Backends& backends,
                     const Config& config, std::function<void(const ServiceSpec&)> added,
                     std::function<void(const ServiceSpec&, bool exists)> container) {
  if (backends.docker) {
    DockerSync::Hooks hooks;
    hooks.added = added;
    hooks.container = std::move(container);
    docker_ = std::make_unique<DockerSync>(registry, actions, *backends.docker,
                                           config.docker.label_discovery, std::move(hooks));
    docker_->start();
  }
  if (backends.swarm) {
    swarm_ = std::make_unique<SwarmSync>(registry, actions, *backends.swarm,
                                         config.docker.label_discovery, added);
    swarm_->start();
  }
  if (backends.kube) {
    std::set<std::string> configured_names;
    for (std::size_t i = 0; i < backends.configured; ++i) {
      configured_names.insert(config.services[i].spec.name);
    }
    kube_ = std::make_unique<KubeSync>(registry, actions, *backends.kube,
                                       config.kubernetes.label_discovery, added,
                                       std::move(configured_names));
    kube_->start();
  }
}

Discovery::~Discovery() = default;

void Discovery::stop() {
  if (docker_) docker_->stop();
  if (swarm_) swarm_->stop();
  if (kube_) kube_->stop();
}

PowerMeter::Reader gpu_power_reader(const ProbeContext& context) {
  return [tool = context.nvidia_smi](std::string& error) { return query_gpu_power(tool, error); };
}

ProbeContext probe_context(const Clock& clock, const Backends& backends, const Getenv& env) {
  ProbeContext context;
  context.clock = &clock;
  context.pid_of = [process = backends.process.get()](const std::string& service) {
    return process->pid_of(service);
  };
  context.docker = backends.docker ? &backends.docker->client() : nullptr;
  if (const char* tool = env("SIESTA_NVIDIA_SMI")) context.nvidia_smi = tool;
  return context;
}

std::string admin_auth_line(const Config& config, const std::string& token) {
  if (token.empty()) {
    return fmt::format("Admin API without a token (loopback{}): see docs/security.md",
                       is_loopback_host(config.listen.host) ? "" : ", --insecure");
  }
  return fmt::format("Admin API requires a bearer token on /admin{}",
                     config.protect_metrics ? " and /metrics" : "");
}

std::string admin_token_policy(const Config& config, const char* env_token, bool insecure) {
  std::string token = resolve_admin_token(config, env_token);
  if (token.empty() && !insecure && !is_loopback_host(config.listen.host)) {
    throw ConfigError(
        "the admin API would listen on " + config.listen.to_string() +
        " without a token, and whoever reaches it controls your services: set "
        "admin_token_file or SIESTA_ADMIN_TOKEN, listen on 127.0.0.1, or pass --insecure");
  }
  return token;
}

Result<DockerEndpoint> docker_endpoint(const Config& config, const char* env_host) {
  const std::string host =
      !config.docker.host.empty() ? config.docker.host : (env_host != nullptr ? env_host : "");
  auto endpoint = parse_docker_host(host);
  if (!endpoint) {
    return Status{endpoint.status().code(),
                  endpoint.status().message() +
                      (config.docker.host.empty() ? " (from DOCKER_HOST)" : " (docker.host)")};
  }
  return endpoint;
}

std::unique_ptr<Registry> make_registry(const Config& config, WallTime now) {
  std::vector<ServiceSpec> specs;
  for (const auto& s : config.services) specs.push_back(s.spec);
  auto registry = std::make_unique<Registry>(config.settings, specs, config.models);
  for (const auto& s : config.services) {
    registry->update_service(s.spec.name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      rt.idle_sleep_enabled = s.idle_sleep_enabled;
      rt.desired = s.desired;
      rt.state_since = now;
    });
  }
  // Siesta knows of a configured model from its start (a model list it answers says so).
  for (const auto& m : config.models) {
    registry->update_model(m.key(),
                           [&](const ModelSpec&, ModelRuntime& rt) { rt.first_seen = now; });
  }
  return registry;
}

Baseline baseline_of(const Config& config) {
  Baseline b;
  b.settings = config.settings;
  for (const auto& s : config.services) {
    b.services[s.spec.name] = {s.idle_sleep_enabled, s.desired};
  }
  return b;
}

void restore_state_file(StateStore& store, const Baseline& baseline, Registry& registry,
                        const Controller::BackendMap& backends, WallTime now) {
  auto loaded = store.load();
  if (!loaded) {
    spdlog::warn("State file: {}; starting from the config alone", loaded.status().message());
    return;
  }
  if (!*loaded) return;  // no file yet
  auto restored = restore_state(**loaded, baseline, registry, now);
  if (!restored) {
    spdlog::warn("{}; starting from the config alone", restored.status().message());
    return;
  }
  for (const auto& note : restored->notes) spdlog::info("State file: {}", note);
  for (const auto& warning : restored->warnings) {
    spdlog::warn("State file {}: {}", store.path(), warning);
  }
  for (const auto& [name, handle] : restored->handles) {
    auto view = registry.service(name);
    if (!view) continue;
    if (auto it = backends.find(view->spec->backend); it != backends.end()) {
      it->second->restore_handle(*view->spec, handle);
    }
  }
  spdlog::info("Restored runtime state from {}", store.path());
}

Handles handles_of(const Registry& registry, const Controller::BackendMap& backends) {
  Handles handles;
  for (const auto& view : registry.snapshot().services) {
    auto it = backends.find(view.spec->backend);
    if (it == backends.end()) continue;
    auto handle = it->second->save_handle(*view.spec);
    if (!handle.is_null()) handles[view.spec->name] = handle;
  }
  return handles;
}

}  // namespace siesta
