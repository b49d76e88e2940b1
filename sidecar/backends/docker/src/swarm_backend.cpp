#include "siesta/backends/swarm_backend.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "siesta/probe/health_probe.h"

namespace siesta {

const std::string& swarm_service_of(const ServiceSpec& spec) {
  return spec.swarm_service.empty() ? spec.name : spec.swarm_service;
}

int wake_replicas(const SwarmService& service, std::optional<int> from_state) {
  if (service.remembered) return *service.remembered;
  if (from_state) return *from_state;
  return 1;
}

namespace {

// Says which service, and what a 404 or a 503 mean for it: the operator's problem, so 500.
Status explain(const ServiceSpec& spec, const Status& st) {
  const std::string prefix = "swarm service " + swarm_service_of(spec) + ": ";
  if (st.code() == ErrorCode::kNotFound) {
    return {ErrorCode::kFailed, prefix + "does not exist (" + st.message() + ")"};
  }
  if (st.message().find("not a swarm manager") != std::string::npos) {
    return {ErrorCode::kFailed,
            prefix + "the Docker engine is not in a swarm (" + st.message() + ")"};
  }
  return {st.code() == ErrorCode::kOk ? ErrorCode::kFailed : st.code(), prefix + st.message()};
}

Result<SwarmService> replicated(const ServiceSpec& spec, Result<SwarmService> s) {
  if (!s) return explain(spec, s.status());
  if (!s->replicas) {
    return Status{ErrorCode::kFailed, "swarm service " + swarm_service_of(spec) +
                                          " is global: only a replicated service can be "
                                          "scaled to 0"};
  }
  return s;
}

struct TaskCount {
  int running = 0;           // desired running and running
  int alive = 0;             // not yet in a final state
  std::string last_problem;  // a failed or rejected task's error, newest last
};

TaskCount count(const std::vector<SwarmTask>& tasks) {
  TaskCount c;
  for (const auto& t : tasks) {
    if (task_alive(t)) ++c.alive;
    if (t.desired_state == "running" && t.state == "running") ++c.running;
    if ((t.state == "failed" || t.state == "rejected") && !t.message.empty()) {
      c.last_problem = t.message;
    }
  }
  return c;
}

}  // namespace

SwarmBackend::SwarmBackend(DockerEndpoint endpoint, const Clock& clock)
    : clock_(clock), client_(std::move(endpoint)), watcher_(client_) {
  client_.set_events(DockerClient::Events::kSwarm);
}

std::optional<int> SwarmBackend::remembered(const std::string& service) {
  std::lock_guard lock(mu_);
  auto it = remembered_.find(service);
  if (it == remembered_.end()) return std::nullopt;
  return it->second;
}

void SwarmBackend::remember(const std::string& service, int replicas) {
  std::lock_guard lock(mu_);
  remembered_[service] = replicas;
}

Status SwarmBackend::scale(const ServiceSpec& spec, bool wake) {
  // Swarm moves the version itself now and then (e.g. an update's status), so a write can
  // meet "update out of sequence" with no other client about: read again and retry.
  Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto s = replicated(spec, client_.inspect_service(swarm_service_of(spec)));
    if (!s) return s.status();
    nlohmann::json body;
    if (wake) {
      if (*s->replicas > 0) return Status::ok();
      const int target = wake_replicas(*s, remembered(spec.name));
      spdlog::info("Swarm service {}: scaling 0 -> {}", s->name, target);
      body = scaled_spec(*s, target, std::nullopt);
    } else {
      if (*s->replicas == 0) return Status::ok();
      remember(spec.name, *s->replicas);
      spdlog::info("Swarm service {}: scaling {} -> 0", s->name, *s->replicas);
      body = scaled_spec(*s, 0, *s->replicas);
    }
    last = client_.update_service(s->id, s->version, body);
    if (last || last.message().find("out of sequence") == std::string::npos) break;
  }
  return last ? last : explain(spec, last);
}

Status SwarmBackend::start(const ServiceSpec& spec) { return scale(spec, /*wake=*/true); }

Result<Readiness> SwarmBackend::check_ready(const ServiceSpec& spec) {
  auto s = replicated(spec, client_.inspect_service(swarm_service_of(spec)));
  if (!s) return s.status();
  if (*s->replicas == 0) {
    return Status{ErrorCode::kFailed,
                  "swarm service " + s->name + " was scaled to 0 before it was ready"};
  }
  auto tasks = client_.list_tasks(s->id);
  if (!tasks) return explain(spec, tasks.status());
  // A task with a HEALTHCHECK is reported running only once its container is healthy.
  if (count(*tasks).running < *s->replicas) return Readiness::kNotYet;
  if (spec.health.kind == HealthCheck::Kind::kNone) return Readiness::kReady;
  return probe_health(spec, std::chrono::milliseconds(500)) ? Readiness::kReady
                                                            : Readiness::kNotYet;
}

Status SwarmBackend::stop(const ServiceSpec& spec) {
  if (Status st = scale(spec, /*wake=*/false); !st) return st;
  auto s = client_.inspect_service(swarm_service_of(spec));
  if (!s) return explain(spec, s.status());
  return wait_for_tasks_gone(spec, s->id);
}

Status SwarmBackend::wait_for_tasks_gone(const ServiceSpec& spec, const std::string& id) {
  // The engine gives each task its own stop grace period (10 s unless the service says
  // otherwise), so wait for the longer of that and siesta's, plus the time to reap them.
  const double limit = std::max(spec.stop_timeout_seconds, 10.0) + 30;
  const MonoTime deadline =
      clock_.mono_now() + std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(limit));
  while (true) {
    auto tasks = client_.list_tasks(id);
    if (!tasks) return explain(spec, tasks.status());
    const int alive = count(*tasks).alive;
    if (alive == 0) return Status::ok();
    if (clock_.mono_now() >= deadline) {
      return {ErrorCode::kFailed, "swarm service " + swarm_service_of(spec) + ": " +
                                      std::to_string(alive) + " task(s) still up " +
                                      std::to_string(static_cast<int>(limit)) +
                                      " s after scaling to 0"};
    }
    clock_.sleep_for(std::chrono::milliseconds(200));
  }
}

Result<Inspection> SwarmBackend::inspect(const ServiceSpec& spec) {
  auto s = replicated(spec, client_.inspect_service(swarm_service_of(spec)));
  if (!s) return s.status();
  auto tasks = client_.list_tasks(s->id);
  if (!tasks) return explain(spec, tasks.status());
  const TaskCount c = count(*tasks);
  // Someone else's scale counts as the count to wake to.
  if (*s->replicas > 0) remember(spec.name, *s->replicas);
  Inspection out;
  out.running = *s->replicas > 0;
  out.detail = "swarm service " + s->name + ": " + std::to_string(c.running) + "/" +
               std::to_string(*s->replicas) + " tasks running";
  if (*s->replicas == 0 && c.alive > 0) out.detail += ", " + std::to_string(c.alive) + " stopping";
  if (!c.last_problem.empty() && c.running < *s->replicas) {
    out.detail += " (last task error: " + c.last_problem + ")";
  }
  return out;
}

nlohmann::json SwarmBackend::save_handle(const ServiceSpec& spec) {
  auto n = remembered(spec.name);
  if (!n) return nullptr;
  return {{"replicas", *n}};
}

void SwarmBackend::restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) {
  if (!handle.is_object()) return;
  auto it = handle.find("replicas");
  if (it == handle.end() || !it->is_number_integer() || it->get<int>() < 1) return;
  remember(spec.name, it->get<int>());
}

}  // namespace siesta
