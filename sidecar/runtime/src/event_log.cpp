#include "siesta/runtime/event_log.h"

#include <fmt/format.h>

#include <algorithm>

namespace siesta {

EventLog::EventLog(Recorder& next, const Clock& clock, std::size_t capacity,
                   std::size_t trace_capacity)
    : next_(next),
      clock_(clock),
      capacity_(std::max<std::size_t>(1, capacity)),
      trace_capacity_(std::max<std::size_t>(1, trace_capacity)) {}

void EventLog::proxy_use(const std::string& service, const std::string& model, WallTime arrived,
                         Seconds duration) {
  {
    std::lock_guard lock(mu_);
    if (uses_.size() == trace_capacity_) {
      uses_.pop_front();
      ++dropped_;
    }
    uses_.push_back({to_unix_seconds(arrived), service, model, std::max(0.0, duration.count())});
  }
  next_.proxy_use(service, model, arrived, duration);
}

namespace {
// A CSV field, quoted as RFC 4180 has it when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::string EventLog::trace_csv() const {
  std::vector<TracedUse> uses;
  std::uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    uses.assign(uses_.begin(), uses_.end());
    dropped = dropped_;
  }
  // Kept in order of their end: written in order of arrival.
  std::stable_sort(uses.begin(), uses.end(),
                   [](const TracedUse& a, const TracedUse& b) { return a.at < b.at; });
  std::string out = fmt::format(
      "# siesta request trace: the last {} uses through the proxy (at most {}; {} older "
      "dropped)\ntime,service,model,duration\n",
      uses.size(), trace_capacity_, dropped);
  for (const TracedUse& u : uses) {
    out += fmt::format("{:.3f},{},{},{:.3f}\n", u.at, csv_field(u.service), csv_field(u.model),
                       u.duration);
  }
  return out;
}

void EventLog::add(std::string kind, std::string subject, std::string name, std::string reason,
                   std::optional<double> duration) {
  const double at = to_unix_seconds(clock_.wall_now());
  std::lock_guard lock(mu_);
  if (events_.size() == capacity_) events_.pop_front();
  events_.push_back({next_id_++, at, std::move(kind), std::move(subject), std::move(name),
                     std::move(reason), duration});
}

std::vector<Event> EventLog::since(double since_unix, std::uint64_t after_id) const {
  std::lock_guard lock(mu_);
  std::vector<Event> out;
  for (const auto& e : events_) {
    if (e.id > after_id && e.at >= since_unix) out.push_back(e);
  }
  return out;
}

std::optional<double> EventLog::expected_wake_seconds(const std::string& service) const {
  std::lock_guard lock(mu_);
  auto it = cold_starts_.find(service);
  if (it == cold_starts_.end() || it->second.empty()) return std::nullopt;
  std::vector<double> sorted(it->second.begin(), it->second.end());
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

void EventLog::service_slept(const std::string& service, Reason reason) {
  add("sleep", "service", service, to_string(reason));
  next_.service_slept(service, reason);
}

void EventLog::service_woke(const std::string& service, Reason reason, Seconds duration) {
  add("wake", "service", service, to_string(reason), duration.count());
  {
    std::lock_guard lock(mu_);
    auto& kept = cold_starts_[service];
    kept.push_back(duration.count());
    if (kept.size() > kColdStartsKept) kept.pop_front();
  }
  next_.service_woke(service, reason, duration);
}

void EventLog::service_failed(const std::string& service, ServiceOperation operation) {
  add("failed", "service", service, to_string(operation));
  next_.service_failed(service, operation);
}

void EventLog::model_unloaded(const ModelKey& model, Reason reason) {
  add("unload", "model", model.name, to_string(reason));
  next_.model_unloaded(model, reason);
}

void EventLog::model_unload_failed(const ModelKey& model) {
  add("failed", "model", model.name, "unload");
  next_.model_unload_failed(model);
}

void EventLog::service_tier_entered(const std::string& service, const std::string& tier) {
  // The stop tier is already a "sleep" (service_slept comes with it).
  if (tier != to_string(TierAction::kStop)) add("pause", "service", service, tier);
  next_.service_tier_entered(service, tier);
}

void EventLog::service_woke_from_tier(const std::string& service, const std::string& tier,
                                      Seconds duration) {
  // From stop it is a cold start, already a "wake" (service_woke comes with it).
  if (tier != to_string(TierAction::kStop))
    add("resume", "service", service, tier, duration.count());
  next_.service_woke_from_tier(service, tier, duration);
}

void EventLog::model_loaded(const ModelKey& model, Reason reason, Seconds duration) {
  add("load", "model", model.name, to_string(reason), duration.count());
  next_.model_loaded(model, reason, duration);
}

// The rest is not history: passed on only.
void EventLog::monitor_ran(WallTime at, Seconds took) { next_.monitor_ran(at, took); }
void EventLog::service_added(const std::string& service) { next_.service_added(service); }
void EventLog::proxy_request(const std::string& service, int status, Seconds duration) {
  next_.proxy_request(service, status, duration);
}
void EventLog::service_memory_freed(const std::string& service, double bytes) {
  next_.service_memory_freed(service, bytes);
}
void EventLog::model_memory_freed(const ModelKey& model, double bytes) {
  next_.model_memory_freed(model, bytes);
}
void EventLog::model_added(const ModelKey& model) { next_.model_added(model); }
void EventLog::proxy_connection(const std::string& service) { next_.proxy_connection(service); }
void EventLog::proxy_connection_opened(const std::string& service) {
  next_.proxy_connection_opened(service);
}
void EventLog::proxy_connection_closed(const std::string& service) {
  next_.proxy_connection_closed(service);
}
void EventLog::proxy_connection_refused(const std::string& service, const std::string& reason) {
  next_.proxy_connection_refused(service, reason);
}
void EventLog::proxy_upstream_connection(const std::string& service, bool reused) {
  next_.proxy_upstream_connection(service, reused);
}
void EventLog::proxy_idle_closed(const std::string& service, const char* kind) {
  next_.proxy_idle_closed(service, kind);
}

void EventLog::gpu_evicted(Reason reason) { next_.gpu_evicted(reason); }

void EventLog::gpu_wait(bool began, const char* outcome) { next_.gpu_wait(began, outcome); }

}  // namespace siesta
