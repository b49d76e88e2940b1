#include "siesta/backends/kube_backend.h"

#include <spdlog/spdlog.h>

#include "siesta/core/replicas.h"
#include "siesta/probe/health_probe.h"

namespace siesta {

std::string replicas_annotation(const Workload& workload) {
  auto it = workload.annotations.find(kReplicasAnnotation);
  return it == workload.annotations.end() ? std::string() : it->second;
}

int kube_wake_replicas(const Workload& workload,
                       const std::optional<RememberedReplicas>& remembered) {
  if (remembered && remembered->annotation_seen == replicas_annotation(workload)) {
    return remembered->replicas;  // newer than the annotation: it has not changed since
  }
  if (auto it = workload.annotations.find(kReplicasAnnotation); it != workload.annotations.end()) {
    try {
      std::size_t used = 0;
      const int n = std::stoi(it->second, &used);
      if (used == it->second.size() && n >= 1 && n <= kMaxWakeReplicas) return n;
    } catch (...) {
    }
    spdlog::warn("{}: annotation {}=\"{}\" is not a count from 1 to {}; ignored", workload.key(),
                 kReplicasAnnotation, it->second, kMaxWakeReplicas);
  }
  if (remembered) return remembered->replicas;
  return 1;
}

namespace {

// Says which workload, and what a 404 means for it: the operator's problem, so 500.
Status explain(const ServiceSpec& spec, const Status& st) {
  const std::string prefix = "kubernetes " + spec.workload + ": ";
  if (st.code() == ErrorCode::kNotFound) {
    return {ErrorCode::kFailed, prefix + "does not exist (" + st.message() + ")"};
  }
  return {st.code() == ErrorCode::kOk ? ErrorCode::kFailed : st.code(), prefix + st.message()};
}

}  // namespace

KubeBackend::KubeBackend(KubeCredentials credentials, const Clock& clock)
    : clock_(clock), client_(std::move(credentials)) {}

std::optional<RememberedReplicas> KubeBackend::remembered(const std::string& service) {
  std::lock_guard lock(mu_);
  auto it = remembered_.find(service);
  if (it == remembered_.end()) return std::nullopt;
  return it->second;
}

void KubeBackend::remember(const std::string& service, const Workload& seen, int replicas) {
  std::lock_guard lock(mu_);
  remembered_[service] = {replicas, replicas_annotation(seen)};
}

Status KubeBackend::start(const ServiceSpec& spec) {
  auto w = client_.get(spec.workload);
  if (!w) return explain(spec, w.status());
  if (w->replicas > 0) return Status::ok();
  const int target = kube_wake_replicas(*w, remembered(spec.name));
  spdlog::info("Kubernetes {}: scaling 0 -> {}", spec.workload, target);
  if (Status st = client_.scale(spec.workload, target); !st) return explain(spec, st);
  return Status::ok();
}

Result<Readiness> KubeBackend::check_ready(const ServiceSpec& spec) {
  auto w = client_.get(spec.workload);
  if (!w) return explain(spec, w.status());
  if (w->replicas == 0) {
    return Status{ErrorCode::kFailed,
                  "kubernetes " + spec.workload + " was scaled to 0 before it was ready"};
  }
  if (w->ready_replicas < w->replicas) return Readiness::kNotYet;
  if (spec.health.kind == HealthCheck::Kind::kNone) return Readiness::kReady;
  return probe_health(spec, std::chrono::milliseconds(500)) ? Readiness::kReady
                                                            : Readiness::kNotYet;
}

Status KubeBackend::stop(const ServiceSpec& spec) {
  auto w = client_.get(spec.workload);
  if (!w) return explain(spec, w.status());
  if (w->replicas > 0) {
    remember(spec.name, *w, w->replicas);
    // The annotation first: a siesta that dies between the two still finds the count.
    const std::string count = std::to_string(w->replicas);
    if (Status st = client_.annotate(spec.workload, kReplicasAnnotation, count); st) {
      Workload written = *w;
      written.annotations[kReplicasAnnotation] = count;
      remember(spec.name, written, w->replicas);
    } else {
      std::lock_guard lock(mu_);
      if (annotation_refused_.insert(spec.workload).second) {
        spdlog::warn(
            "Kubernetes {}: could not write annotation {} ({}); the count to wake to ({}) is "
            "kept in the state file only",
            spec.workload, kReplicasAnnotation, st.message(), w->replicas);
      }
    }
    spdlog::info("Kubernetes {}: scaling {} -> 0", spec.workload, w->replicas);
    if (Status st = client_.scale(spec.workload, 0); !st) return explain(spec, st);
  }
  // Pods get their terminationGracePeriodSeconds (30 s unless the pod says otherwise).
  const double limit = std::max(spec.stop_timeout_seconds, 30.0) + 30;
  const MonoTime deadline =
      clock_.mono_now() + std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(limit));
  while (true) {
    auto now = client_.get(spec.workload);
    if (!now) return explain(spec, now.status());
    if (now->status_replicas == 0) return Status::ok();
    if (now->replicas > 0) {
      return {ErrorCode::kFailed,
              "kubernetes " + spec.workload + " was scaled up again while stopping"};
    }
    if (clock_.mono_now() >= deadline) {
      return {ErrorCode::kFailed, "kubernetes " + spec.workload + ": " +
                                      std::to_string(now->status_replicas) + " pod(s) still up " +
                                      std::to_string(static_cast<int>(limit)) +
                                      " s after scaling to 0"};
    }
    clock_.sleep_for(std::chrono::milliseconds(200));
  }
}

Result<Inspection> KubeBackend::inspect(const ServiceSpec& spec) {
  auto w = client_.get(spec.workload);
  if (!w) return explain(spec, w.status());
  // Someone else's scale counts as the count to wake to.
  if (w->replicas > 0) remember(spec.name, *w, w->replicas);
  Inspection out;
  out.running = w->replicas > 0;
  out.detail = "kubernetes " + spec.workload + ": " + std::to_string(w->ready_replicas) + "/" +
               std::to_string(w->replicas) + " ready";
  if (w->replicas == 0 && w->status_replicas > 0) {
    out.detail += ", " + std::to_string(w->status_replicas) + " stopping";
  }
  return out;
}

nlohmann::json KubeBackend::save_handle(const ServiceSpec& spec) {
  auto n = remembered(spec.name);
  if (!n) return nullptr;
  nlohmann::json out = {{"replicas", n->replicas}};
  if (n->annotation_seen) out["annotation"] = *n->annotation_seen;
  return out;
}

void KubeBackend::restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) {
  if (!handle.is_object()) return;
  auto it = handle.find("replicas");
  if (it == handle.end() || !it->is_number_integer() || it->get<int>() < 1) return;
  RememberedReplicas r{it->get<int>(), std::nullopt};
  if (auto a = handle.find("annotation"); a != handle.end() && a->is_string()) {
    r.annotation_seen = a->get<std::string>();
  }
  std::lock_guard lock(mu_);
  remembered_[spec.name] = r;
}

}  // namespace siesta
