#include "siesta/activity/probes.h"

#include <fstream>
#include <set>
#include <sstream>

#include "siesta/activity/nvidia_smi.h"
#include "siesta/activity/proc_stats.h"
#include "siesta/activity/prometheus_query.h"
#include "siesta/activity/run_command.h"
#include "siesta/activity/utmp.h"
#include "siesta/backends/docker_client.h"

namespace siesta {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

SignalSample failed(const CommandResult& r, const std::string& what) {
  using O = CommandResult::Outcome;
  switch (r.outcome) {
    case O::kNotFound:
      return {std::nullopt, "unavailable: " + r.error};
    case O::kTimedOut:
    case O::kFailed:
      return {std::nullopt, r.error};
    case O::kSignalled:
      return {std::nullopt, what + " was killed by signal " + std::to_string(r.exit_code)};
    case O::kExited:
      break;
  }
  return {std::nullopt, what + " exited with " + std::to_string(r.exit_code)};
}

// A command: exit 0 busy, 1 idle, anything else an error.
class CommandProbe final : public SignalProbe {
 public:
  explicit CommandProbe(SignalSpec signal) : signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec&) override {
    const CommandResult r = run_command(signal_.command, Seconds(signal_.timeout_seconds));
    if (r.outcome == CommandResult::Outcome::kExited && (r.exit_code == 0 || r.exit_code == 1)) {
      return {r.exit_code == 0 ? 1.0 : 0.0, ""};
    }
    return failed(r, signal_.command.front());
  }

 private:
  SignalSpec signal_;
};

// A rate from a growing counter: the first reading only sets the baseline.
class Rate {
 public:
  std::optional<double> next(double counter, MonoTime at) {
    std::optional<double> rate;
    if (last_ && at > last_at_ && counter >= *last_) {
      rate = (counter - *last_) / Seconds(at - last_at_).count();
    }
    last_ = counter;
    last_at_ = at;
    return rate;
  }
  void reset() { last_.reset(); }

 private:
  std::optional<double> last_;
  MonoTime last_at_{};
};

// CPU as a percent of one core over the time since the last sample: the process group from
// /proc, or the container from Docker's stats.
class CpuProbe final : public SignalProbe {
 public:
  CpuProbe(const ProbeContext& context, SignalSpec signal)
      : ctx_(context), signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec& spec) override {
    double seconds = 0;
    if (spec.backend == "docker") {
      if (ctx_.docker == nullptr) return {std::nullopt, "unavailable: no Docker engine"};
      auto stats = ctx_.docker->stats(spec.container.empty() ? spec.name : spec.container,
                                      Seconds(signal_.timeout_seconds));
      if (!stats) return {std::nullopt, "docker stats: " + stats.status().message()};
      seconds = stats->cpu_seconds;
    } else {
      const pid_t pgid = ctx_.pid_of ? ctx_.pid_of(spec.name) : -1;
      if (pgid <= 0) {
        rate_.reset();
        return {std::nullopt, "unavailable: the service's process is not known"};
      }
      if (pgid != pgid_) rate_.reset();  // a new process: a new baseline
      pgid_ = pgid;
      seconds = group_cpu_seconds(pgid, ctx_.proc_root);
    }
    auto rate = rate_.next(seconds, ctx_.clock->mono_now());
    return {rate ? std::optional<double>(*rate * 100) : std::nullopt, ""};
  }

 private:
  const ProbeContext& ctx_;
  SignalSpec signal_;
  Rate rate_;
  pid_t pgid_ = -1;
};

// Network: a process service's established connections to its upstream port that did not come
// through siesta; a container's bytes in and out per second.
class NetworkProbe final : public SignalProbe {
 public:
  NetworkProbe(const ProbeContext& context, SignalSpec signal)
      : ctx_(context), signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec& spec) override {
    if (spec.backend == "docker") {
      if (ctx_.docker == nullptr) return {std::nullopt, "unavailable: no Docker engine"};
      auto stats = ctx_.docker->stats(spec.container.empty() ? spec.name : spec.container,
                                      Seconds(signal_.timeout_seconds));
      if (!stats) return {std::nullopt, "docker stats: " + stats.status().message()};
      // On the host's network a container has no counters of its own, but its sockets are the
      // host's: count direct connections as for a process.
      if (stats->has_networks)
        return {rate_.next(stats->network_bytes, ctx_.clock->mono_now()), ""};
    }
    if (spec.upstream_port == 0) return {std::nullopt, "unavailable: the service has no upstream"};
    std::vector<TcpEntry> entries = parse_proc_net_tcp(read_file(ctx_.proc_root + "/net/tcp"));
    std::vector<TcpEntry> v6 = parse_proc_net_tcp(read_file(ctx_.proc_root + "/net/tcp6"));
    entries.insert(entries.end(), v6.begin(), v6.end());
    const auto own = socket_inodes(ctx_.self_pid, ctx_.proc_root);
    return {static_cast<double>(direct_connections(entries, spec.upstream_port, own)), ""};
  }

 private:
  const ProbeContext& ctx_;
  SignalSpec signal_;
  Rate rate_;
};

// GPU through nvidia-smi: the service's processes (a process service's group) or every GPU.
class GpuProbe final : public SignalProbe {
 public:
  GpuProbe(const ProbeContext& context, SignalSpec signal)
      : ctx_(context), signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec& spec) override {
    if (ctx_.nvidia_smi.empty()) return {std::nullopt, std::string("unavailable: ") + kNoNvidiaSmi};
    const Seconds timeout(signal_.timeout_seconds);
    const CommandResult gpus =
        run_command({ctx_.nvidia_smi, "--query-gpu=index,uuid,utilization.gpu,memory.used",
                     "--format=csv,noheader,nounits"},
                    timeout);
    if (gpus.outcome != CommandResult::Outcome::kExited || gpus.exit_code != 0) {
      // No driver, or no GPU: nvidia-smi says so with a non-zero exit.
      if (gpus.outcome == CommandResult::Outcome::kExited) {
        return {std::nullopt,
                "unavailable: nvidia-smi exited with " + std::to_string(gpus.exit_code)};
      }
      return failed(gpus, "nvidia-smi");
    }
    const CommandResult apps =
        run_command({ctx_.nvidia_smi, "--query-compute-apps=pid,gpu_uuid,used_memory",
                     "--format=csv,noheader,nounits"},
                    timeout);
    if (apps.outcome != CommandResult::Outcome::kExited || apps.exit_code != 0) {
      return failed(apps, "nvidia-smi");
    }
    GpuParse g = parse_query_gpu(gpus.output);
    if (!g.error.empty()) return {std::nullopt, g.error};
    GpuParse a = parse_query_compute_apps(apps.output);
    if (!a.error.empty()) return {std::nullopt, a.error};
    std::set<long> pids;
    if (spec.backend == "process") {
      const pid_t pgid = ctx_.pid_of ? ctx_.pid_of(spec.name) : -1;
      if (pgid <= 0) return {std::nullopt, "unavailable: the service's process is not known"};
      for (const ComputeApp& app : a.apps) {
        std::ifstream in(ctx_.proc_root + "/" + std::to_string(app.pid) + "/stat");
        std::string line;
        if (std::getline(in, line)) {
          if (auto st = parse_proc_stat(line); st && st->pgrp == pgid) pids.insert(app.pid);
        }
      }
      // None of its processes on a GPU: 0, not every GPU.
      if (pids.empty()) return {0.0, ""};
    }
    return {gpu_value(g.gpus, a.apps, pids, signal_.gpu_metric), ""};
  }

 private:
  const ProbeContext& ctx_;
  SignalSpec signal_;
};

class PrometheusProbe final : public SignalProbe {
 public:
  explicit PrometheusProbe(SignalSpec signal) : signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec&) override {
    return prometheus_query(signal_.url, signal_.query, Seconds(signal_.timeout_seconds));
  }

 private:
  SignalSpec signal_;
};

// People at the machine: logged-in sessions (active within the window when one is given), and
// an optional input-idle command; the value is the sessions, plus 1 when the input is recent.
class UsersProbe final : public SignalProbe {
 public:
  UsersProbe(const ProbeContext& context, SignalSpec signal)
      : ctx_(context), signal_(std::move(signal)) {}
  SignalSample sample(const ServiceSpec&) override {
    const UtmpRead read =
        read_utmp(signal_.utmp_path.empty() ? "/var/run/utmp" : signal_.utmp_path, ctx_.dev_root);
    if (!read.error.empty()) return {std::nullopt, read.error};
    std::optional<Seconds> window;
    if (signal_.active_within_minutes) window = Seconds(*signal_.active_within_minutes * 60);
    double value = active_sessions(read.sessions, ctx_.clock->wall_now(), window);
    if (!signal_.input_idle_command.empty()) {
      const CommandResult r =
          run_command(signal_.input_idle_command, Seconds(signal_.timeout_seconds));
      if (r.outcome != CommandResult::Outcome::kExited || r.exit_code != 0) {
        return failed(r, signal_.input_idle_command.front());
      }
      double idle_ms = 0;
      try {
        idle_ms = std::stod(r.output);
      } catch (const std::exception&) {
        return {std::nullopt, signal_.input_idle_command.front() +
                                  " did not print milliseconds: " + r.output.substr(0, 80)};
      }
      if (window && idle_ms / 1000 <= window->count()) value += 1;
    }
    return {value, ""};
  }

 private:
  const ProbeContext& ctx_;
  SignalSpec signal_;
};

}  // namespace

ActivitySampler::ProbeFactory make_probe_factory(ProbeContext context) {
  auto ctx = std::make_shared<const ProbeContext>(std::move(context));
  return [ctx](const ServiceSpec&, const SignalSpec& signal) -> std::unique_ptr<SignalProbe> {
    // Each probe holds the shared context alive through the factory's copy in the sampler.
    switch (signal.kind) {
      case SignalKind::kCommand:
        return std::make_unique<CommandProbe>(signal);
      case SignalKind::kCpu:
        return std::make_unique<CpuProbe>(*ctx, signal);
      case SignalKind::kNetwork:
        return std::make_unique<NetworkProbe>(*ctx, signal);
      case SignalKind::kGpu:
        return std::make_unique<GpuProbe>(*ctx, signal);
      case SignalKind::kPrometheus:
        return std::make_unique<PrometheusProbe>(signal);
      case SignalKind::kUsers:
        return std::make_unique<UsersProbe>(*ctx, signal);
    }
    return nullptr;
  };
}

}  // namespace siesta
