// siesta: wires the modules together. The only code not shared with the tests.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "siesta/api/admin_server.h"
#include "siesta/backends/process_backend.h"
#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"
#include "siesta/core/registry.h"
#include "siesta/log/logging.h"
#include "siesta/metrics/metrics.h"
#include "siesta/providers/model_servers.h"
#include "siesta/proxy/proxy.h"
#include "siesta/runtime/controller.h"
#include "siesta/runtime/event_log.h"
#include "siesta/runtime/executor.h"
#include "siesta/runtime/monitor.h"
#include "siesta/runtime/persister.h"
#include "siesta/sim/simulator.h"
#include "siesta/version.h"

namespace {

constexpr int kExitConfig = 2;   // bad command line or config: nothing was started
constexpr int kExitRuntime = 1;  // e.g. the listen address is in use

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
  simulate->add_option("--idle-power", sim_args.idle_power,
                       "Watts a service draws up and idle: WATTS, or SERVICE=WATTS (repeat); "
                       "prints idle and cold-start energy (kWh)");
  simulate->add_option("--price", sim_args.price_per_kwh,
                       "Price of a kWh: prints the cost of that energy");
  simulate->add_option("--config", sim_args.config,
                       "A siesta config: its services' schedules, desired states, cold starts "
                       "and idle power apply");
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
  siesta::GpuProbe gpu_probe;  // memory.used is looked at once the running services are known
  try {
    config = config_path.empty() ? siesta::default_config() : siesta::load_config_file(config_path);
    if (!listen_override.empty() && !siesta::parse_listen(listen_override, config.listen)) {
      throw siesta::ConfigError("--listen: must be \"host:port\", got \"" + listen_override + "\"");
    }
    admin_token = siesta::prepare_config(config, std::getenv, insecure, &gpu_probe);
    // Read once, then gone from the environment that services and activity commands inherit.
    ::unsetenv("SIESTA_ADMIN_TOKEN");
    // The budget as start-up will find it when none of siesta's services is running (the check
    // starts no backend, so it sees none).
    if (check_only) {
      siesta::gpu_less_unmanaged(config, nullptr, gpu_probe, siesta::say_to_terminal);
    }
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
  const std::uint64_t open_files = siesta::raise_open_file_limit();
  spdlog::info("siesta {} starting with {} ({} services, {} models)", siesta::kVersion,
               config.source, config.services.size(), config.models.size());

  siesta::SystemClock clock;
  auto made = siesta::make_backends(config, clock, std::getenv);
  if (!made) {
    std::fprintf(stderr, "siesta: %s\n", made.status().message().c_str());
    return kExitConfig;
  }
  siesta::Backends backend_set = std::move(made).value();
  const siesta::Controller::BackendMap backends = backend_set.map();
  siesta::Seeded seeded = siesta::seed(config, backends, clock.wall_now());
  siesta::Registry& registry = *seeded.registry;

  siesta::Metrics metrics;
  metrics.declare(registry.snapshot());
  // Every event goes through the history (GET /admin/events, the waking page's estimate) to
  // the metrics.
  siesta::EventLog events(metrics, clock);
  siesta::Persister persister(registry, std::move(seeded.store), seeded.baseline,
                              [&] { return siesta::handles_of(registry, backends); });
  // Model servers: every service that models name as provider (or with model_api "ollama"),
  // and those discovered later (DockerSync's hooks below).
  siesta::ModelServers model_servers(siesta::make_model_provider);
  for (const auto& s : config.services) model_servers.add(s.spec);
  siesta::Controller controller(
      registry, backends,
      [&model_servers](const std::string& service) { return model_servers.find(service); }, clock,
      events, [&] { return persister.save(); }, config.max_learned_models);
  try {
    siesta::start_gpu_budget(config, gpu_probe, controller, registry, siesta::say_to_log);
  } catch (const siesta::ConfigError& e) {
    std::fprintf(stderr, "siesta: %s\n", e.what());
    return kExitConfig;
  }
  metrics.set_gpu(config.gpu);
  metrics.set_currency(config.currency);
  siesta::ThreadExecutor executor;
  siesta::Monitor monitor(registry, controller, clock, events, executor);
  // A process that ended on its own is looked at now, not at the next check.
  backend_set.process->set_exit_listener([&executor, &controller](const std::string& service) {
    executor.post([&controller, service] { controller.refresh(service); });
  });
  // Activity signals (docs/activity.md): sampled on the monitor's executor.
  siesta::ActivitySampler activity(
      registry, clock, config.activity,
      siesta::make_probe_factory(siesta::probe_context(clock, backend_set, std::getenv)));
  monitor.set_activity(&activity);
  // Measured idle power (docs/policies.md#energy-and-cost): nvidia-smi's power.draw at stops.
  siesta::PowerMeter power(
      registry, clock,
      siesta::gpu_power_reader(siesta::probe_context(clock, backend_set, std::getenv)),
      [&controller] { controller.save_at_next_pass(); });
  monitor.set_power_meter(&power);

  spdlog::info("{}", siesta::admin_auth_line(config, admin_token));
  siesta::AdminServer admin(
      registry, controller, persister, metrics, clock,
      [&] {
        return siesta::MonitorStatus{monitor.running(), monitor.last_run()};
      },
      siesta::admin_options(config, admin_token, &events));
  auto port = admin.bind(config.listen.host, config.listen.port);
  if (!port) {
    spdlog::critical("{}", port.status().message());
    return kExitRuntime;
  }

  // The data plane: its own listeners and threads.
  const int max_connections = siesta::fit_connections(config.proxy.max_connections, open_files);
  siesta::Proxy proxy(registry, controller, events, clock,
                      siesta::proxy_options(config, max_connections, events));
  // A configured listen address that cannot be bound stops the start; a labelled container's
  // only puts that service's error in its status (someone else's container must not stop
  // siesta, nor the other services).
  if (siesta::Status st =
          siesta::bind_listeners(proxy, registry, clock, config, backend_set.configured);
      !st) {
    spdlog::critical("{}", st.message());
    return kExitRuntime;
  }
  if (siesta::Status st = persister.save(); !st) {
    spdlog::warn("State file: {}; runtime changes may not survive a restart", st.message());
  }
  // Each service discovered after start-up gets its proxy port and, if it is one, its provider.
  siesta::Discovery discovery(
      registry, controller, backend_set, config,
      [&](const siesta::ServiceSpec& spec) {
        model_servers.add(spec);
        siesta::add_listener(proxy, registry, clock, spec);
      },
      [&model_servers](const siesta::ServiceSpec& spec, bool exists) {
        model_servers.set_present(spec.name, exists);
      });
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
  discovery.stop();
  admin.stop();
  server.join();
  backend_set.process->set_exit_listener(nullptr);
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
