#include "siesta/core/registry.h"

#include <algorithm>

namespace siesta {

void ChangeSignal::notify() {
  {
    std::lock_guard lock(mu_);
    ++generation_;
  }
  cv_.notify_all();
}

std::uint64_t ChangeSignal::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

std::uint64_t ChangeSignal::wait(std::uint64_t seen, MonoTime deadline) const {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return generation_ != seen; });
  return generation_;
}

void ChangeSignal::plan_wake(std::optional<WallTime> at) {
  std::lock_guard lock(mu_);
  planned_wake_ = at;
}

void ChangeSignal::notify_if_before(WallTime deadline) {
  {
    std::lock_guard lock(mu_);
    if (planned_wake_ && deadline >= *planned_wake_) return;
    ++generation_;
  }
  cv_.notify_all();
}

void set_state(ServiceRuntime& runtime, ServiceState state, WallTime now) {
  if (state != ServiceState::kError) runtime.serving_in_error = false;
  if (runtime.state != state) {
    // A stop ends: its time counts as asleep (energy.h).
    if (runtime.state == ServiceState::kStopped && runtime.state_since != WallTime{} &&
        now > runtime.state_since) {
      runtime.asleep_seconds += Seconds(now - runtime.state_since).count();
    }
    runtime.state = state;
    runtime.state_since = now;
  }
}

void set_error(ServiceRuntime& runtime, ServiceErrorKind kind, ErrorCode code, std::string text,
               WallTime now) {
  runtime.last_error = std::move(text);
  runtime.last_error_kind = kind;
  runtime.last_error_code = code;
  runtime.last_error_at = now;
}

Registry::Registry(Settings settings, const std::vector<ServiceSpec>& services,
                   const std::vector<ModelSpec>& models)
    : settings_(settings) {
  for (const auto& spec : services) {
    services_[spec.name] = {std::make_shared<const ServiceSpec>(spec), ServiceRuntime{}};
  }
  for (const auto& spec : models) {
    models_[spec.key()] = {std::make_shared<const ModelSpec>(spec), ModelRuntime{}};
  }
}

Snapshot Registry::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot snap;
  snap.settings = settings_;
  snap.services.reserve(services_.size());
  for (const auto& [name, entry] : services_) snap.services.push_back({entry.spec, entry.runtime});
  snap.models.reserve(models_.size());
  for (const auto& [name, entry] : models_) snap.models.push_back({entry.spec, entry.runtime});
  return snap;
}

Settings Registry::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

void Registry::set_settings(const Settings& settings) {
  {
    std::lock_guard lock(mu_);
    settings_ = settings;
  }
  changes_.notify();
}

void Registry::update_settings(const std::function<void(Settings&)>& fn) {
  {
    std::lock_guard lock(mu_);
    fn(settings_);
  }
  changes_.notify();
}

std::optional<ServiceView> Registry::service(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = services_.find(name);
  if (it == services_.end()) return std::nullopt;
  return ServiceView{it->second.spec, it->second.runtime};
}

std::optional<ModelView> Registry::model(const ModelKey& key) const {
  std::lock_guard lock(mu_);
  auto it = models_.find(key);
  if (it == models_.end()) return std::nullopt;
  return ModelView{it->second.spec, it->second.runtime};
}

std::vector<std::string> Registry::service_names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, entry] : services_) names.push_back(name);
  return names;
}

std::vector<ModelKey> Registry::model_keys() const {
  std::lock_guard lock(mu_);
  std::vector<ModelKey> keys;
  for (const auto& [key, entry] : models_) keys.push_back(key);
  return keys;
}

std::vector<std::string> Registry::services_of_model(const std::string& name) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> services;
  for (auto it = models_.lower_bound(ModelKey{name, ""});
       it != models_.end() && it->first.name == name; ++it) {
    services.push_back(it->first.service);
  }
  return services;
}

bool Registry::update_service(const std::string& name, const ServiceFn& fn) {
  if (!update_service_quiet(name, fn)) return false;
  changes_.notify();
  return true;
}

bool Registry::update_service_quiet(const std::string& name, const ServiceFn& fn) {
  std::lock_guard lock(mu_);
  auto it = services_.find(name);
  if (it == services_.end()) return false;
  fn(*it->second.spec, it->second.runtime);
  return true;
}

bool Registry::update_model(const ModelKey& key, const ModelFn& fn) {
  {
    std::lock_guard lock(mu_);
    auto it = models_.find(key);
    if (it == models_.end()) return false;
    fn(*it->second.spec, it->second.runtime);
  }
  changes_.notify();
  return true;
}

bool Registry::add_service(const ServiceSpec& spec, const ServiceRuntime& runtime) {
  {
    std::lock_guard lock(mu_);
    if (services_.count(spec.name) != 0) return false;
    services_[spec.name] = {std::make_shared<const ServiceSpec>(spec), runtime};
  }
  changes_.notify();
  return true;
}

bool Registry::replace_spec(const ServiceSpec& spec) {
  {
    std::lock_guard lock(mu_);
    auto it = services_.find(spec.name);
    if (it == services_.end()) return false;
    it->second.spec = std::make_shared<const ServiceSpec>(spec);
  }
  changes_.notify();
  return true;
}

namespace {
bool idle(const ModelRuntime& rt) { return !rt.loaded && rt.in_flight == 0 && !rt.unloading; }
}  // namespace

Registry::Learned Registry::add_learned_model(const ModelSpec& spec, const ModelRuntime& runtime,
                                              std::size_t limit) {
  Learned result;
  std::vector<ModelKey>& forgotten = result.forgotten;
  {
    std::lock_guard lock(mu_);
    const bool adding = !spec.name.empty() && models_.count(spec.key()) == 0;
    std::size_t learned = adding ? 1 : 0;
    std::vector<std::pair<WallTime, ModelKey>> candidates;  // oldest use first
    for (const auto& [name, entry] : models_) {
      if (!entry.spec->learned) continue;
      ++learned;
      if (idle(entry.runtime)) {
        candidates.emplace_back(entry.runtime.last_used.value_or(WallTime{}), name);
      }
    }
    std::sort(candidates.begin(), candidates.end());
    for (const auto& [last_used, name] : candidates) {
      if (learned <= limit) break;
      models_.erase(name);
      forgotten.push_back(name);
      --learned;
    }
    if (adding) {
      ModelSpec learned_spec = spec;
      learned_spec.learned = true;
      learned_spec = with_server_defaults(std::move(learned_spec));
      models_[spec.key()] = {std::make_shared<const ModelSpec>(std::move(learned_spec)), runtime};
      result.added = true;
    }
  }
  if (result.added || !forgotten.empty()) changes_.notify();
  return result;
}

bool Registry::remove_model_if(
    const ModelKey& key,
    const std::function<bool(const ModelSpec&, const ModelRuntime&)>& keep_not) {
  {
    std::lock_guard lock(mu_);
    auto it = models_.find(key);
    if (it == models_.end() || !keep_not(*it->second.spec, it->second.runtime)) return false;
    models_.erase(it);
  }
  changes_.notify();
  return true;
}

void Registry::add_model(const ModelSpec& spec, const ModelRuntime& runtime) {
  {
    std::lock_guard lock(mu_);
    if (models_.count(spec.key()) != 0) return;
    models_[spec.key()] = {std::make_shared<const ModelSpec>(with_server_defaults(spec)), runtime};
  }
  changes_.notify();
}

ModelSpec Registry::with_server_defaults(ModelSpec spec) const {
  auto it = services_.find(spec.provider);
  if (it == services_.end()) return spec;
  if (!spec.keep_alive_hours) spec.keep_alive_hours = it->second.spec->model_keep_alive_hours;
  // Its server's policy for the models it has no entry for (a configured model has its own).
  if (spec.learned) spec.policy = it->second.spec->model_policy;
  return spec;
}

}  // namespace siesta
