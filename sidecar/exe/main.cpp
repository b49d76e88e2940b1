// siesta: wires the modules together. The only code not shared with the tests.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/activity/probes.h"
#include "siesta/api/admin_server.h"
#include "siesta/backends/docker_backend.h"
#include "siesta/backends/kube_backend.h"
#include "siesta/backends/process_backend.h"
#include "siesta/backends/swarm_backend.h"
#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"
#include "siesta/config/labels.h"
#include "siesta/core/registry.h"
#include "siesta/discovery/docker_sync.h"
#include "siesta/discovery/kube_sync.h"
#include "siesta/discovery/swarm_sync.h"
#include "siesta/log/logging.h"
#include "siesta/metrics/metrics.h"
#include "siesta/providers/model_servers.h"
#include "siesta/providers/ollama_api.h"
#include "siesta/providers/ollama_provider.h"
#include "siesta/providers/openai_api.h"
#include "siesta/providers/openai_provider.h"
#include "siesta/providers/vllm_api.h"
#include "siesta/providers/vllm_provider.h"
#include "siesta/proxy/proxy.h"
#include "siesta/runtime/controller.h"
#include "siesta/runtime/event_log.h"
#include "siesta/runtime/executor.h"
#include "siesta/runtime/monitor.h"
#include "siesta/runtime/persister.h"
#include "siesta/sim/simulator.h"
#include "siesta/state/state_store.h"
#include "siesta/version.h"

namespace {

constexpr int kExitConfig = 2;   // bad command line or config: nothing was started
constexpr int kExitRuntime = 1;  // e.g. the listen address is in use

// Raises the soft limit on open files to the hard one: every proxied connection holds two.
// Returns the soft limit in force.
rlim_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

// proxy.max_connections, lowered to what the file limit allows: two descriptors a connection
// (client and upstream) and 256 kept for the admin API, state file and probes.
int fit_connections(int configured, rlim_t fd_limit) {
  constexpr rlim_t kReserved = 256;
  const rlim_t room = fd_limit > kReserved * 2 ? (fd_limit - kReserved) / 2 : fd_limit / 4;
  if (static_cast<rlim_t>(configured) <= room) return configured;
  spdlog::warn(
      "proxy.max_connections {} needs more open files than the limit of {}: using {} (raise the "
      "hard limit, e.g. ulimit -Hn or the container's nofile, to allow more)",
      configured, fd_limit, room);
  return static_cast<int>(room);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "siesta: puts idle services and models to sleep and wakes them on demand.\n"
      "Admin API, /metrics and /healthz are served on the config's \"listen\" address "
      "(default 127.0.0.1:8081)."};
  app.set_version_flag("--version", std::string("siesta ") + siesta::kVersion);
  std::string config_path;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string listen_override;
  bool check_only = false;
  bool insecure = false;
  app.add_option("-c,--config", config_path,
                 "JSON config file (// comments allowed). Without it: the seed's Balanced "
                 "defaults and no services")
      ->check(CLI::ExistingFile);
  app.add_option("--log-format", log_format, "Log as text lines or one JSON object a line")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--listen", listen_override, "Override the config's listen address (host:port)");
  app.add_flag("--check-config", check_only, "Validate the config and exit (0: valid, 2: not)");
  app.add_flag("--insecure", insecure,
               "Allow the admin API on a non-loopback address without an admin token");
  // `siesta simulate`: replays a trace through decide() per policy (docs/policies.md).
  siesta::sim::SimulateArgs sim_args;
  CLI::App* simulate =
      app.add_subcommand("simulate", "Replay a request trace through the timeout policies");
  simulate->add_option("--trace", sim_args.trace, "CSV or JSONL: time,service[,model][,duration]")
      ->required();
  simulate->add_option("--policy", sim_args.policies,
                       "fixed:60m, fixed:15m, adaptive, adaptive:30m (repeat; default: those "
                       "three without adaptive:30m)");
  simulate->add_option("--cold-start", sim_args.cold_start,
                       "Seconds a start takes: SECONDS, or SERVICE=SECONDS (repeat; default 60)");
  simulate->add_option("--timeout", sim_args.default_timeout_minutes,
                       "Minutes: the timeout of a policy that names none (default 60)");
  simulate->add_flag("--json", sim_args.json, "Print JSON instead of the table");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitConfig;
  }
  if (simulate->parsed()) return siesta::sim::run_simulate(sim_args, std::cout, std::cerr);

  siesta::Config config;
  std::string admin_token;
  try {
    config = config_path.empty() ? siesta::default_config() : siesta::load_config_file(config_path);
    if (!listen_override.empty() && !siesta::parse_listen(listen_override, config.listen)) {
      throw siesta::ConfigError("--listen: must be \"host:port\", got \"" + listen_override + "\"");
    }
    if (!config.state_file.empty()) {
      if (siesta::Status st = siesta::check_state_directory(config.state_file); !st) {
        throw siesta::ConfigError("config error in " + config.source +
                                  ": state_file: " + st.message());
      }
    }
    // A GPU device without a budget takes its total from nvidia-smi ($SIESTA_NVIDIA_SMI: another
    // path to the tool).
    if (std::any_of(config.gpu.devices.begin(), config.gpu.devices.end(),
                    [](const siesta::GpuDevice& d) { return d.memory_mib <= 0; })) {
      const char* tool = std::getenv("SIESTA_NVIDIA_SMI");
      std::string why;
      const auto totals = siesta::query_gpu_totals(tool != nullptr ? tool : "nvidia-smi", why);
      siesta::resolve_gpu_totals(config, totals, why);
    }
    admin_token = siesta::admin_token_policy(config, std::getenv("SIESTA_ADMIN_TOKEN"), insecure);
    // Read once, then gone from the environment that services and activity commands inherit.
    ::unsetenv("SIESTA_ADMIN_TOKEN");
  } catch (const siesta::ConfigError& e) {
    std::fprintf(stderr, "siesta: %s\n", e.what());
    return kExitConfig;
  }
  if (check_only) {
    std::printf("%s: OK (%zu services, %zu models)\n", config.source.c_str(),
                config.services.size(), config.models.size());
    return 0;
  }

  // Signals go to one thread (sigwait below); every other thread, and so every child process
  // until posix_spawn resets it, has them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  siesta::configure_logging(
      log_format == "json" ? siesta::LogFormat::kJson : siesta::LogFormat::kText, log_level);
  const rlim_t fd_limit = raise_fd_limit();
  spdlog::info("siesta {} starting with {} ({} services, {} models)", siesta::kVersion,
               config.source, config.services.size(), config.models.size());

  // The Docker backend runs when the config has a "docker" section or a container service;
  // the Swarm backend when the section says "swarm": true or a service is a Swarm service.
  siesta::SystemClock clock;
  {
    // What labels and annotations may ask of siesta's ports (docs/security.md).
    siesta::LabelBounds bounds;
    bounds.bind_host = config.listen.host;
    bounds.admin_port = config.listen.port;
    bounds.wake_port = config.proxy.wake_listen_port;
    for (const auto& s : config.services) {
      if (s.spec.listen_port != 0) bounds.taken[s.spec.listen_port] = s.spec.name;
    }
    siesta::set_label_bounds(std::move(bounds));
  }
  std::unique_ptr<siesta::DockerBackend> docker_backend;
  std::unique_ptr<siesta::SwarmBackend> swarm_backend;
  // config.services[configured..] were found by their labels, not written in the config.
  const std::size_t configured = config.services.size();
  bool uses_docker = config.docker.configured;
  bool uses_swarm = config.docker.swarm;
  for (const auto& s : config.services) {
    uses_docker |= s.spec.backend == "docker";
    uses_swarm |= s.spec.backend == "swarm";
  }
  if (uses_docker || uses_swarm) {
    auto endpoint = siesta::docker_endpoint(config, std::getenv("DOCKER_HOST"));
    if (!endpoint) {
      std::fprintf(stderr, "siesta: %s\n", endpoint.status().message().c_str());
      return kExitConfig;
    }
    if (uses_swarm) {
      swarm_backend = std::make_unique<siesta::SwarmBackend>(*endpoint, clock);
      spdlog::info("Swarm backend: engine at {}", endpoint->to_string());
      if (config.docker.label_discovery) {
        for (auto& found :
             siesta::find_labelled_swarm_services(swarm_backend->client(), config.services)) {
          config.services.push_back(std::move(found));
        }
      }
    }
  }
  if (uses_docker) {
    auto endpoint = siesta::docker_endpoint(config, std::getenv("DOCKER_HOST"));
    docker_backend = std::make_unique<siesta::DockerBackend>(*endpoint);
    spdlog::info("Docker backend: engine at {}", endpoint->to_string());
    // Labelled containers join before the state file is restored, so their runtime changes
    // survive a restart like any other service's.
    if (config.docker.label_discovery) {
      for (auto& found :
           siesta::find_labelled_services(docker_backend->client(), config.services)) {
        config.services.push_back(std::move(found));
      }
    }
  }

  // The Kubernetes backend: when the config has a "kubernetes" section or a workload service.
  std::unique_ptr<siesta::KubeBackend> kube_backend;
  bool uses_kube = config.kubernetes.configured;
  for (const auto& s : config.services) uses_kube |= s.spec.backend == "kubernetes";
  if (uses_kube) {
    auto credentials = siesta::resolve_kube_credentials(
        config.kubernetes.kubeconfig, config.kubernetes.namespace_name,
        [](const char* name) { return std::getenv(name); });
    if (!credentials) {
      std::fprintf(stderr, "siesta: kubernetes: %s\n", credentials.status().message().c_str());
      return kExitConfig;
    }
    spdlog::info("Kubernetes backend: API at {}, namespace {} ({})", credentials->server(),
                 credentials->namespace_name, credentials->source);
    kube_backend = std::make_unique<siesta::KubeBackend>(*credentials, clock);
    if (config.kubernetes.label_discovery) {
      for (auto& found : siesta::find_labelled_workloads(kube_backend->client(), config.services)) {
        config.services.push_back(std::move(found));
      }
    }
  }

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
  std::vector<siesta::ServiceSpec> specs;
  for (const auto& s : config.services) specs.push_back(s.spec);
  const std::unique_ptr<siesta::Registry> registry_owner =
      siesta::make_registry(config, clock.wall_now());
  siesta::Registry& registry = *registry_owner;

  siesta::ProcessBackend process_backend(clock);
  siesta::Controller::BackendMap backends{{"process", &process_backend}};
  if (docker_backend) backends["docker"] = docker_backend.get();
  if (swarm_backend) backends["swarm"] = swarm_backend.get();
  if (kube_backend) backends["kubernetes"] = kube_backend.get();
  const siesta::Baseline baseline = baseline_of(config);

  std::unique_ptr<siesta::StateStore> store;
  if (config.state_file.empty()) {
    spdlog::warn("No state_file in the config: runtime changes will not survive a restart");
  } else {
    store = std::make_unique<siesta::StateStore>(config.state_file);
    siesta::restore_state_file(*store, baseline, registry, backends, clock.wall_now());
  }

  siesta::Metrics metrics;
  metrics.declare(registry.snapshot());
  // Every event goes through the history (GET /admin/events, the waking page's estimate) to
  // the metrics.
  siesta::EventLog events(metrics, clock);
  siesta::Persister persister(registry, std::move(store), baseline,
                              [&] { return siesta::handles_of(registry, backends); });
  // Model servers: every service that models name as provider (or with model_api "ollama"),
  // and those discovered later (DockerSync's hooks below).
  siesta::ModelServers model_servers(
      [](const siesta::ServiceSpec& spec) -> std::unique_ptr<siesta::ModelProvider> {
        using Api = siesta::ServiceSpec::ModelApi;
        switch (spec.model_api) {
          case Api::kOllama:
            return std::make_unique<siesta::OllamaProvider>(spec.upstream_host, spec.upstream_port);
          case Api::kVllm:
            return std::make_unique<siesta::VllmProvider>(spec.upstream_host, spec.upstream_port);
          case Api::kOpenAi:
            return std::make_unique<siesta::OpenAiProvider>(spec.upstream_host, spec.upstream_port);
          case Api::kNone:
            break;
        }
        return nullptr;
      });
  for (const auto& s : specs) model_servers.add(s);
  siesta::Controller controller(
      registry, backends,
      [&model_servers](const std::string& service) { return model_servers.find(service); }, clock,
      events, [&] { return persister.save(); }, config.max_learned_models);
  controller.set_gpu(config.gpu);
  metrics.set_gpu(config.gpu);
  siesta::ThreadExecutor executor;
  siesta::Monitor monitor(registry, controller, clock, events, executor);
  // Activity signals (docs/activity.md): sampled on the monitor's executor.
  siesta::ProbeContext probe_context;
  probe_context.clock = &clock;
  probe_context.pid_of = [&process_backend](const std::string& service) {
    return process_backend.pid_of(service);
  };
  probe_context.docker = docker_backend ? &docker_backend->client() : nullptr;
  siesta::ActivitySampler activity(registry, clock, config.activity,
                                   siesta::make_probe_factory(std::move(probe_context)));
  monitor.set_activity(&activity);

  siesta::AdminOptions admin_options;
  admin_options.threads = static_cast<size_t>(config.admin_threads);
  admin_options.request_timeout =
      std::chrono::milliseconds(static_cast<long>(config.admin_request_timeout_seconds * 1000));
  admin_options.max_connections = static_cast<size_t>(config.admin_max_connections);
  admin_options.token = admin_token;
  admin_options.protect_metrics = config.protect_metrics;
  admin_options.events = &events;
  if (admin_token.empty()) {
    spdlog::info("Admin API without a token (loopback{}): see docs/security.md",
                 siesta::is_loopback_host(config.listen.host) ? "" : ", --insecure");
  } else {
    spdlog::info("Admin API requires a bearer token on /admin{}",
                 config.protect_metrics ? " and /metrics" : "");
  }
  siesta::AdminServer admin(
      registry, controller, persister, metrics, clock,
      [&] {
        return siesta::MonitorStatus{monitor.running(), monitor.last_run()};
      },
      admin_options);
  auto port = admin.bind(config.listen.host, config.listen.port);
  if (!port) {
    spdlog::critical("{}", port.status().message());
    return kExitRuntime;
  }

  // The data plane: its own listeners and threads.
  siesta::ProxyOptions proxy_options;
  proxy_options.threads = config.proxy.threads;
  proxy_options.wake_host = config.proxy.wake_listen_host;
  proxy_options.wake_port = config.proxy.wake_listen_port;
  proxy_options.connect_timeout =
      std::chrono::milliseconds(static_cast<long>(config.proxy.connect_timeout_seconds * 1000));
  auto ms = [](double seconds) {
    return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  };
  proxy_options.idle_timeout = ms(config.proxy.idle_connection_timeout_seconds);
  proxy_options.header_timeout = ms(config.proxy.client_header_timeout_seconds);
  proxy_options.body_timeout = ms(config.proxy.client_body_timeout_seconds);
  proxy_options.keepalive_timeout = ms(config.proxy.keepalive_timeout_seconds);
  proxy_options.max_connections = fit_connections(config.proxy.max_connections, fd_limit);
  proxy_options.upstream_max_connecting = config.proxy.upstream_max_connecting;
  proxy_options.upstream_idle_connections = config.proxy.upstream_idle_connections;
  proxy_options.upstream_idle_timeout = ms(config.proxy.upstream_idle_timeout_seconds);
  proxy_options.model_api_of = [](siesta::ServiceSpec::ModelApi api) -> const siesta::ModelApi* {
    switch (api) {
      case siesta::ServiceSpec::ModelApi::kVllm:  // OpenAI's model routes, dev routes refused
        return &siesta::vllm_api();
      case siesta::ServiceSpec::ModelApi::kOpenAi:
        return &siesta::openai_api();
      default:
        return siesta::model_api_of(api);
    }
  };
  proxy_options.expected_wake_seconds = [&events](const std::string& service) {
    return events.expected_wake_seconds(service);
  };
  siesta::Proxy proxy(registry, controller, events, clock, proxy_options);
  // A configured listen address that cannot be bound stops the start; a labelled container's
  // only puts that service's error in its status (someone else's container must not stop
  // siesta, nor the other services).
  std::vector<siesta::ServiceSpec> configured_specs;
  for (std::size_t i = 0; i < configured; ++i) configured_specs.push_back(specs[i]);
  if (siesta::Status st = proxy.bind(configured_specs); !st) {
    spdlog::critical("{}", st.message());
    return kExitRuntime;
  }
  auto add_listener = [&proxy, &registry, &clock](const siesta::ServiceSpec& spec) {
    if (siesta::Status st = proxy.add(spec); !st) {
      spdlog::error("Service {}: {}", spec.name, st.message());
      registry.update_service(spec.name,
                              [&](const siesta::ServiceSpec&, siesta::ServiceRuntime& rt) {
                                rt.last_error = st.message();
                                rt.last_error_at = clock.wall_now();
                              });
    }
  };
  for (std::size_t i = configured; i < specs.size(); ++i) add_listener(specs[i]);
  if (siesta::Status st = persister.save(); !st) {
    spdlog::warn("State file: {}; runtime changes may not survive a restart", st.message());
  }
  // Each service discovered after start-up gets its proxy port and, if it is one, its provider.
  auto added = [&add_listener, &model_servers](const siesta::ServiceSpec& spec) {
    model_servers.add(spec);
    add_listener(spec);
  };
  std::unique_ptr<siesta::DockerSync> docker_sync;
  if (docker_backend) {
    siesta::DockerSync::Hooks hooks;
    hooks.added = added;
    hooks.container = [&model_servers](const siesta::ServiceSpec& spec, bool exists) {
      model_servers.set_present(spec.name, exists);
    };
    docker_sync = std::make_unique<siesta::DockerSync>(
        registry, controller, *docker_backend, config.docker.label_discovery, std::move(hooks));
    docker_sync->start();
  }
  std::unique_ptr<siesta::SwarmSync> swarm_sync;
  if (swarm_backend) {
    swarm_sync = std::make_unique<siesta::SwarmSync>(registry, controller, *swarm_backend,
                                                     config.docker.label_discovery, added);
    swarm_sync->start();
  }
  std::unique_ptr<siesta::KubeSync> kube_sync;
  if (kube_backend) {
    std::set<std::string> configured_names;
    for (std::size_t i = 0; i < configured; ++i)
      configured_names.insert(config.services[i].spec.name);
    kube_sync = std::make_unique<siesta::KubeSync>(registry, controller, *kube_backend,
                                                   config.kubernetes.label_discovery, added,
                                                   std::move(configured_names));
    kube_sync->start();
  }
  monitor.start();
  proxy.start();
  std::thread server([&] { admin.serve(); });
  siesta::ListenAddress bound{config.listen.host, *port};
  spdlog::info("Admin API listening on http://{} (/admin, /metrics, /healthz)", bound.to_string());

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("Received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  proxy.stop();
  monitor.stop();
  if (docker_sync) docker_sync->stop();
  if (swarm_sync) swarm_sync->stop();
  if (kube_sync) kube_sync->stop();
  admin.stop();
  server.join();
  executor.join_all();
  if (config.on_exit == siesta::OnExit::kStop) {
    controller.stop_all();
  } else {
    controller.leave_all();
    spdlog::info("Leaving managed services running (on_exit \"leave\")");
  }
  if (siesta::Status st = persister.save(); !st) {
    spdlog::error("Could not save the state file on exit: {}", st.message());
  }
  spdlog::info("siesta stopped");
  return 0;
}
