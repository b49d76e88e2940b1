#include "siesta/backends/docker_backend.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "siesta/probe/health_probe.h"

namespace siesta {

const std::string& container_of(const ServiceSpec& spec) {
  return spec.container.empty() ? spec.name : spec.container;
}

namespace {

// A missing container is the operator's problem to fix, not a missing service: 500, not 404.
Status explain(const ServiceSpec& spec, const Status& st) {
  if (st.code() == ErrorCode::kNotFound) {
    return {ErrorCode::kFailed,
            "container " + container_of(spec) + " does not exist (" + st.message() + ")"};
  }
  return st;
}

std::string describe(const ContainerState& c) {
  if (c.status == "exited" || c.status == "dead") {
    std::string text = c.status + " with code " + std::to_string(c.exit_code);
    if (!c.error.empty()) text += ": " + c.error;
    return text;
  }
  std::string text = c.status;
  if (c.health) text += " (" + *c.health + ")";
  return text;
}

}  // namespace

DockerBackend::DockerBackend(DockerEndpoint endpoint)
    : client_(std::move(endpoint)), watcher_(client_) {}

Status DockerBackend::start(const ServiceSpec& spec) {
  return explain(spec, client_.start(container_of(spec), Seconds(spec.start_timeout_seconds + 5)));
}

Result<Readiness> DockerBackend::check_ready(const ServiceSpec& spec) {
  auto c = client_.inspect(container_of(spec));
  if (!c) return explain(spec, c.status());
  if (c->status == "created" || c->status == "restarting") return Readiness::kNotYet;
  if (c->status != "running") {
    return Status{ErrorCode::kFailed,
                  "container " + container_of(spec) + " " + describe(*c) + " before it was ready"};
  }
  // The image's own HEALTHCHECK knows best; siesta's check is the fallback.
  if (c->health) return *c->health == "healthy" ? Readiness::kReady : Readiness::kNotYet;
  return probe_health(spec, std::chrono::milliseconds(500)) ? Readiness::kReady
                                                            : Readiness::kNotYet;
}

Status DockerBackend::stop(const ServiceSpec& spec) {
  const int grace = static_cast<int>(std::ceil(spec.stop_timeout_seconds));
  if (auto c = client_.inspect(container_of(spec)); c && c->status == "paused") {
    if (Status st = client_.unpause(container_of(spec)); !st) return explain(spec, st);
  }
  return explain(spec, client_.stop(container_of(spec), grace));
}

Status DockerBackend::pause(const ServiceSpec& spec) {
  auto c = client_.inspect(container_of(spec));
  if (!c) return explain(spec, c.status());
  if (c->status == "paused") return Status::ok();
  return explain(spec, client_.pause(container_of(spec)));
}

Status DockerBackend::resume(const ServiceSpec& spec) {
  auto c = client_.inspect(container_of(spec));
  if (!c) return explain(spec, c.status());
  if (c->status != "paused") return Status::ok();
  return explain(spec, client_.unpause(container_of(spec)));
}

Result<Inspection> DockerBackend::inspect(const ServiceSpec& spec) {
  auto c = client_.inspect(container_of(spec));
  if (!c) return explain(spec, c.status());
  Inspection out;
  out.paused = c->status == "paused";
  out.running = c->status == "running" || out.paused;
  out.detail = "container " + describe(*c);
  return out;
}

}  // namespace siesta
