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

DockerBackend::DockerBackend(DockerEndpoint endpoint) : client_(std::move(endpoint)) {}

DockerBackend::~DockerBackend() { stop_watching(); }

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

void DockerBackend::watch(Watch callbacks) {
  stop_watching();
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  client_.resume();
  watch_ = std::move(callbacks);
  watcher_ = std::thread([this] { watch_loop(); });
}

void DockerBackend::stop_watching() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  client_.interrupt();
  if (watcher_.joinable()) watcher_.join();
}

void DockerBackend::watch_loop() {
  auto delay = std::chrono::milliseconds(100);
  bool was_connected = true;  // so that an engine down at start-up is reported once
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    bool connected = false;
    Status ended = [&]() -> Status {
      // The engine may have come back as another version.
      if (auto v = client_.negotiate(); !v) return v.status();
      return client_.follow_events(
          [&] {
            connected = true;
            if (!was_connected)
              spdlog::info("Docker engine at {} is back", client_.endpoint().to_string());
            was_connected = true;
            delay = std::chrono::milliseconds(100);
            if (watch_.on_connected) watch_.on_connected();
          },
          [&](const DockerEvent& e) {
            if (watch_.on_event) watch_.on_event(e);
          });
    }();
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    if (connected || was_connected) {
      spdlog::warn("Docker events: {}; reconnecting", ended.message());
      was_connected = false;
      if (watch_.on_disconnected) watch_.on_disconnected(ended);
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, delay, [&] { return stopping_; });
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace siesta
