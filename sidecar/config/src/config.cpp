#include "siesta/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "siesta/core/policy.h"
#include "siesta/core/schedule.h"
#include "siesta/core/settings_schema.h"

namespace siesta {

using nlohmann::json;

namespace {

// `a "vllm"`, `an "openai"`: a quoted name with its article, for messages.
std::string a_quoted(std::string_view name) {
  const bool vowel =
      !name.empty() && std::string_view("aeiou").find(name[0]) != std::string_view::npos;
  return std::string(vowel ? "an \"" : "a \"") + std::string(name) + "\"";
}

// Walks one JSON object, remembering the key path for messages and rejecting unknown keys.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path, const std::string& source)
      : object_(object), path_(std::move(path)), source_(source) {
    if (!object_.is_object()) fail(path_.empty() ? "(top level)" : path_, "must be a JSON object");
  }

  [[noreturn]] void fail(const std::string& key_path, const std::string& what) const {
    throw ConfigError("config error in " + source_ + ": " + key_path + ": " + what);
  }

  std::string key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  void allow_only(const std::set<std::string>& allowed) const {
    for (const auto& [key, value] : object_.items()) {
      if (allowed.count(key) == 0) {
        std::string known;
        for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
        fail(key_path(key), "unknown key (known keys: " + known + ")");
      }
    }
  }

  const json* find(const std::string& key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  void read_bool(const std::string& key, bool& out) const {
    if (const json* v = find(key)) {
      if (std::string why = check_bool(*v); !why.empty()) fail(key_path(key), why);
      out = v->get<bool>();
    }
  }

  // A number within the rule's bounds (settings_schema.h).
  std::optional<double> read_number(const std::string& key, const NumberRule& rule) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (std::string why = check_number(rule, *v); !why.empty()) fail(key_path(key), why);
    return v->get<double>();
  }
  // Numbers must be finite and within [min, max]; `min_exclusive` rejects min itself.
  std::optional<double> read_number(const std::string& key, double min, bool min_exclusive,
                                    double max) const {
    return read_number(key, NumberRule{min, min_exclusive, max});
  }

  // A whole number within [min, max].
  std::optional<int> read_count(const std::string& key, int min, int max) const {
    const auto d = read_number(key, min, false, max);
    if (d && *d != std::floor(*d)) fail(key_path(key), "must be a whole number");
    return d ? std::optional<int>(static_cast<int>(*d)) : std::nullopt;
  }

  std::optional<std::string> read_string(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) fail(key_path(key), "must be a string, got " + v->dump());
    return v->get<std::string>();
  }

  const json& object() const { return object_; }

 private:
  const json& object_;
  std::string path_;
  const std::string& source_;
};

// The global settings (settings_schema.h: shared with the admin API and the state file).
void read_settings(const ObjectReader& r, Settings& s) {
  for (const auto& field : kSettingFields) {
    if (const json* v = r.find(field.key)) {
      if (std::string why = check_setting(field, *v); !why.empty()) {
        r.fail(r.key_path(field.key), why);
      }
      set_setting(field, s, *v);
    }
  }
}

// The numbers of a service's or a model's entry (settings_schema.h: shared with the labels).
template <class Spec, std::size_t N>
void read_numbers(const ObjectReader& r, const SpecNumber<Spec> (&fields)[N], Spec& spec) {
  for (const auto& field : fields) {
    if (auto v = r.read_number(field.key, field.rule)) field.set(spec, *v);
  }
}

bool parse_host_port(const std::string& text, std::string& host, int& port) {
  std::string h;
  std::string p;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string::npos) return false;  // IPv6 needs brackets
  }
  if (h.empty() || p.empty() || p.size() > 5) return false;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
  }
  int n = std::stoi(p);
  if (n > 65535) return false;
  for (char c : h) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '@') return false;
  }
  host = h;
  port = n;
  return true;
}

// Graduated sleep: [{"after_minutes": 1, "action": "pause"}, ..., {"after_minutes": 60,
// "action": "stop"}], in ascending order, each action once, "stop" only last.
std::vector<SleepTier> read_sleep_tiers(const ObjectReader& r, const json& value,
                                        const std::string& source) {
  const std::string path = r.key_path("sleep_tiers");
  if (!value.is_array() || value.empty()) {
    r.fail(path, "must be a non-empty array of {\"after_minutes\": ..., \"action\": ...}");
  }
  std::vector<SleepTier> tiers;
  for (std::size_t i = 0; i < value.size(); ++i) {
    ObjectReader t(value[i], path + "[" + std::to_string(i) + "]", source);
    t.allow_only({"after_minutes", "action", "level"});
    SleepTier tier;
    const auto after = t.read_number("after_minutes", kTimeoutMinutes);
    if (!after) t.fail(t.key_path("after_minutes"), "is required");
    tier.after_minutes = *after;
    const auto action = t.read_string("action");
    if (!action) t.fail(t.key_path("action"), "is required");
    const auto parsed = parse_tier_action(*action);
    if (!parsed) {
      t.fail(t.key_path("action"),
             "must be \"pause\", \"vllm_sleep\", \"unload_models\" or \"stop\", got \"" + *action +
                 "\"");
    }
    tier.action = *parsed;
    if (const json* level = t.find("level")) {
      if (tier.action != TierAction::kVllmSleep) {
        t.fail(t.key_path("level"), "is for the \"vllm_sleep\" action only");
      }
      if (!level->is_number_integer() ||
          (level->get<long long>() != 1 && level->get<long long>() != 2)) {
        t.fail(t.key_path("level"),
               "must be 1 (weights offloaded to CPU RAM) or 2 (weights dropped), got " +
                   level->dump());
      }
      tier.level = static_cast<int>(level->get<long long>());
    } else if (tier.action == TierAction::kVllmSleep) {
      t.fail(t.key_path("level"), "is required for \"vllm_sleep\": 1 or 2");
    }
    if (!tiers.empty() && tier.after_minutes <= tiers.back().after_minutes) {
      t.fail(t.key_path("after_minutes"),
             number_text(tier.after_minutes) + " must be greater than the tier before's " +
                 number_text(tiers.back().after_minutes) + " (tiers go from light to deep)");
    }
    for (std::size_t j = 0; j < tiers.size(); ++j) {
      if (tiers[j].action == tier.action) {
        t.fail(t.key_path("action"),
               "\"" + *action + "\" is already sleep_tiers[" + std::to_string(j) + "]");
      }
    }
    if (!tiers.empty() && tiers.back().action == TierAction::kStop) {
      t.fail(t.key_path("action"), "no tier can follow \"stop\": it must be the last");
    }
    tiers.push_back(tier);
  }
  return tiers;
}

// Activity signals: [{"kind": "cpu", "threshold": 20, ...}, ...] (core/activity.h). Each kind
// takes only its own keys; names are unique within the list.
std::vector<SignalSpec> read_activity(const ObjectReader& r, const json& value,
                                      const std::string& source) {
  const std::string path = r.key_path("activity");
  if (!value.is_array()) r.fail(path, "must be an array of {\"kind\": ..., ...}");
  auto argv = [](const ObjectReader& t, const std::string& key) {
    std::vector<std::string> out;
    const json* v = t.find(key);
    if (v == nullptr) return out;
    if (!v->is_array() || v->empty())
      t.fail(t.key_path(key), "must be a non-empty array of strings");
    for (const auto& arg : *v) {
      if (!arg.is_string()) t.fail(t.key_path(key), "must hold strings only, got " + arg.dump());
      out.push_back(arg.get<std::string>());
    }
    if (out.front().empty()) t.fail(t.key_path(key), "argv[0] must not be empty");
    return out;
  };
  std::vector<SignalSpec> signals;
  for (std::size_t i = 0; i < value.size(); ++i) {
    ObjectReader t(value[i], path + "[" + std::to_string(i) + "]", source);
    const auto kind_text = t.read_string("kind");
    if (!kind_text) t.fail(t.key_path("kind"), "is required");
    const auto kind = parse_signal_kind(*kind_text);
    if (!kind) {
      t.fail(t.key_path("kind"),
             "must be \"cpu\", \"network\", \"gpu\", \"prometheus\", \"users\" or "
             "\"command\", got \"" +
                 *kind_text + "\"");
    }
    std::set<std::string> allowed = {"kind", "name", "threshold", "interval_seconds",
                                     "timeout_seconds"};
    switch (*kind) {
      case SignalKind::kCommand:
        allowed.insert("command");
        break;
      case SignalKind::kPrometheus:
        allowed.insert({"url", "query"});
        break;
      case SignalKind::kGpu:
        allowed.insert("metric");
        break;
      case SignalKind::kUsers:
        allowed.insert({"utmp", "active_within_minutes", "input_idle_command"});
        break;
      case SignalKind::kCpu:
      case SignalKind::kNetwork:
        break;
    }
    t.allow_only(allowed);
    SignalSpec sig;
    sig.kind = *kind;
    sig.name = t.read_string("name").value_or(to_string(*kind));
    if (!valid_service_name(sig.name)) {
      t.fail(t.key_path("name"),
             "must be letters, digits, '.', '-', '_', got \"" + sig.name + "\"");
    }
    for (std::size_t j = 0; j < signals.size(); ++j) {
      if (signals[j].name == sig.name) {
        t.fail(t.key_path("name"), "\"" + sig.name + "\" is already " + path + "[" +
                                       std::to_string(j) +
                                       "] (give each signal of one kind its own \"name\")");
      }
    }
    if (auto v = t.read_number("threshold", 0, false, 1e15)) sig.threshold = *v;
    if (auto v = t.read_number("interval_seconds", 0.1, false, 86400)) sig.interval_seconds = *v;
    if (auto v = t.read_number("timeout_seconds", 0, true, 3600)) sig.timeout_seconds = *v;
    switch (*kind) {
      case SignalKind::kCommand:
        sig.command = argv(t, "command");
        if (sig.command.empty()) t.fail(t.key_path("command"), "is required for kind \"command\"");
        break;
      case SignalKind::kPrometheus: {
        const auto url = t.read_string("url");
        if (url && url->rfind("https://", 0) == 0) {
          t.fail(t.key_path("url"),
                 "https is not supported: give the Prometheus server's plain \"http://host:port\" "
                 "(e.g. on loopback, or through a local TLS-terminating proxy)");
        } else if (!url || url->rfind("http://", 0) != 0 || url->size() <= 7) {
          t.fail(t.key_path("url"), "is required: \"http://host:port\" of the Prometheus server");
        }
        sig.url = *url;
        const auto query = t.read_string("query");
        if (!query || query->empty())
          t.fail(t.key_path("query"), "is required: a PromQL expression");
        sig.query = *query;
        break;
      }
      case SignalKind::kGpu:
        sig.gpu_metric = t.read_string("metric").value_or("utilization");
        if (sig.gpu_metric != "utilization" && sig.gpu_metric != "memory") {
          t.fail(t.key_path("metric"),
                 "must be \"utilization\" or \"memory\", got \"" + sig.gpu_metric + "\"");
        }
        break;
      case SignalKind::kUsers:
        if (auto utmp = t.read_string("utmp")) {
          if (utmp->empty())
            t.fail(t.key_path("utmp"), "must not be empty (omit it for /var/run/utmp)");
          sig.utmp_path = *utmp;
        }
        sig.active_within_minutes = t.read_number("active_within_minutes", kTimeoutMinutes);
        sig.input_idle_command = argv(t, "input_idle_command");
        if (!sig.input_idle_command.empty() && !sig.active_within_minutes) {
          t.fail(t.key_path("input_idle_command"), "needs active_within_minutes");
        }
        break;
      case SignalKind::kCpu:
      case SignalKind::kNetwork:
        break;
    }
    signals.push_back(std::move(sig));
  }
  return signals;
}

// A non-empty list of distinct GPU indexes (nvidia-smi's).
std::vector<int> read_device_ids(const ObjectReader& r, const std::string& key, const json& value) {
  const std::string path = r.key_path(key);
  if (!value.is_array() || value.empty()) {
    r.fail(path, "must be a non-empty array of GPU indexes (nvidia-smi's), got " + value.dump());
  }
  std::vector<int> ids;
  for (const json& v : value) {
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1023 ||
        v.get<double>() != std::floor(v.get<double>())) {
      r.fail(path, "must hold GPU indexes (whole numbers from 0 to 1023), got " + v.dump());
    }
    const int id = v.get<int>();
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
      r.fail(path, "names GPU " + std::to_string(id) + " twice");
    }
    ids.push_back(id);
  }
  return ids;
}

// A service's "schedule" in its "timezone", else `default_timezone` (the config's), else the
// system's.
void read_schedule(const ObjectReader& r, ServiceSpec& spec, const std::string& default_timezone) {
  const auto zone = r.read_string("timezone");
  const json* windows = r.find("schedule");
  if (windows == nullptr) {
    if (zone) r.fail(r.key_path("timezone"), "is for a \"schedule\" (it has none)");
    return;
  }
  if (zone && zone->empty()) r.fail(r.key_path("timezone"), "must not be empty");
  if (auto error = parse_schedule(*windows, zone.value_or(default_timezone), spec.schedule)) {
    r.fail(r.key_path(error->key), error->reason);
  }
  for (std::size_t i = 0; i < spec.schedule.windows.size(); ++i) {
    if (spec.schedule.windows[i].idle_timeout_minutes && !spec.sleep_tiers.empty()) {
      r.fail(r.key_path("schedule[" + std::to_string(i) + "].idle_timeout_minutes"),
             "sets the one idle timeout: not together with sleep_tiers");
    }
  }
}

ServiceConfig read_service_entry(const std::string& name, const json& value,
                                 const std::string& source, const std::string& default_timezone) {
  ObjectReader r(value, "services." + name, source);
  // The numbers' keys come from the schema (kServiceNumbers), the others are read below.
  std::set<std::string> keys = spec_keys(kServiceNumbers);
  keys.insert({"idle_sleep_enabled",
               "desired",
               "backend",
               "command",
               "container",
               "swarm_service",
               "workload",
               "upstream",
               "health",
               "listen",
               "protocol",
               "model_api",
               "trust_forwarded_headers",
               "wake_page",
               "sleep_tiers",
               "policy",
               "model_policy",
               "activity",
               "gpu_devices",
               "schedule",
               "timezone"});
  r.allow_only(keys);
  ServiceConfig sc;
  ServiceSpec& spec = sc.spec;
  spec.name = name;
  r.read_bool("idle_sleep_enabled", sc.idle_sleep_enabled);
  if (auto d = r.read_string("desired")) {
    auto parsed = parse_desired(*d);
    if (!parsed) r.fail(r.key_path("desired"), "must be \"on\" or \"off\", got \"" + *d + "\"");
    sc.desired = *parsed;
  }
  // "gpu_memory_mib" and "idle_power_watts" may be "measured" (gpu_memory_mib's is checked below,
  // once the backend is known); else numbers, read by the schema.
  json numbers = value;
  const auto measured = [&](const char* key, const char* unit, bool& flag) {
    const json* v = r.find(key);
    if (v == nullptr || !v->is_string()) return;
    if (*v != "measured") {
      r.fail(r.key_path(key),
             std::string("must be a number of ") + unit + " or \"measured\", got " + v->dump());
    }
    flag = true;
    numbers.erase(key);
  };
  measured("gpu_memory_mib", "MiB", spec.gpu_memory_measured);
  measured("idle_power_watts", "watts", spec.idle_power_measured);
  read_numbers(ObjectReader(numbers, "services." + name, source), kServiceNumbers, spec);
  if (const json* devices = r.find("gpu_devices")) {
    spec.gpu_devices = read_device_ids(r, "gpu_devices", *devices);
  }
  r.read_bool("trust_forwarded_headers", spec.trust_forwarded_headers);
  r.read_bool("wake_page", spec.wake_page);
  if (const json* cmd = r.find("command")) {
    if (!cmd->is_array() || cmd->empty()) {
      r.fail(r.key_path("command"), "must be a non-empty array of strings (argv)");
    }
    for (const auto& arg : *cmd) {
      if (!arg.is_string())
        r.fail(r.key_path("command"), "must hold strings only, got " + arg.dump());
      spec.command.push_back(arg.get<std::string>());
    }
    if (spec.command.front().empty()) r.fail(r.key_path("command"), "argv[0] must not be empty");
  }
  // A service without a command is a container: the Docker backend's convention.
  spec.backend = r.read_string("backend").value_or(spec.command.empty() ? "docker" : "process");
  if (spec.backend != "process" && spec.backend != "docker" && spec.backend != "swarm" &&
      spec.backend != "kubernetes") {
    r.fail(r.key_path("backend"),
           "must be \"process\", \"docker\", \"swarm\" or \"kubernetes\", got \"" + spec.backend +
               "\"");
  }
  if (spec.gpu_memory_measured && spec.backend != "process") {
    r.fail(r.key_path("gpu_memory_mib"),
           "\"measured\" is for a process service (nvidia-smi's per-process usage is matched to "
           "its process group); give a " +
               spec.backend + " service's size in MiB");
  }

  if (spec.backend == "process" && spec.command.empty()) {
    r.fail(r.key_path("command"), "is required for backend \"process\"");
  }
  if (auto container = r.read_string("container")) {
    if (spec.backend != "docker") r.fail(r.key_path("container"), "is for backend \"docker\" only");
    if (!valid_container_name(*container)) {
      r.fail(r.key_path("container"),
             "must be a container name or id (letters, digits, '.', '-', '_'), got \"" +
                 *container + "\"");
    }
    spec.container = *container;
  }
  if (auto service = r.read_string("swarm_service")) {
    if (spec.backend != "swarm") {
      r.fail(r.key_path("swarm_service"), "is for backend \"swarm\" only");
    }
    if (!valid_container_name(*service)) {
      r.fail(r.key_path("swarm_service"),
             "must be a Swarm service name or id (letters, digits, '.', '-', '_'), got \"" +
                 *service + "\"");
    }
    spec.swarm_service = *service;
  }
  if (auto workload = r.read_string("workload")) {
    if (spec.backend != "kubernetes") {
      r.fail(r.key_path("workload"), "is for backend \"kubernetes\" only");
    }
    if (!valid_workload(*workload)) {
      r.fail(r.key_path("workload"),
             "must be \"deployment/NAME\" or \"statefulset/NAME\" (NAME a DNS-1123 name), got \"" +
                 *workload + "\"");
    }
    spec.workload = *workload;
  }
  if (spec.backend == "kubernetes" && spec.workload.empty()) spec.workload = "deployment/" + name;
  if (auto up = r.read_string("upstream")) {
    if (!parse_host_port(*up, spec.upstream_host, spec.upstream_port) || spec.upstream_port == 0) {
      r.fail(r.key_path("upstream"),
             "must be \"host:port\" with a port from 1 to 65535, got \"" + *up + "\"");
    }
  }
  if (auto listen = r.read_string("listen")) {
    if (!parse_host_port(*listen, spec.listen_host, spec.listen_port)) {
      r.fail(r.key_path("listen"),
             "must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"" + *listen + "\"");
    }
    if (spec.upstream_port == 0) {
      r.fail(r.key_path("listen"), "needs \"upstream\" (where to forward to)");
    }
  }
  if (auto api = r.read_string("model_api")) {
    const auto parsed = parse_model_api(*api);
    if (!parsed) {
      r.fail(r.key_path("model_api"),
             "must be \"ollama\", \"vllm\" or \"openai\", got \"" + *api + "\"");
    }
    spec.model_api = *parsed;
  }
  if (auto protocol = r.read_string("protocol")) {
    if (*protocol == "http") {
      spec.protocol = Protocol::kHttp;
    } else if (*protocol == "tcp") {
      spec.protocol = Protocol::kTcp;
    } else {
      r.fail(r.key_path("protocol"), "must be \"http\" or \"tcp\", got \"" + *protocol + "\"");
    }
  }
  if (spec.wake_page && spec.protocol != Protocol::kHttp) {
    r.fail(r.key_path("wake_page"), "needs protocol \"http\" (a page is an HTTP answer)");
  }
  // A vLLM or OpenAI-compatible server's models are read from its HTTP requests, its probes
  // answered while it sleeps and its dev routes refused: a "tcp" service relays bytes, none of it.
  if (spec.protocol == Protocol::kTcp && (spec.model_api == ServiceSpec::ModelApi::kVllm ||
                                          spec.model_api == ServiceSpec::ModelApi::kOpenAi)) {
    r.fail(r.key_path("protocol"),
           "\"tcp\" cannot serve " + a_quoted(to_string(spec.model_api)) +
               " model server (its models are tracked from HTTP requests): use \"http\"");
  }
  auto health = r.read_string("health");
  if (!health && spec.upstream_port != 0 &&
      (spec.model_api == ServiceSpec::ModelApi::kVllm ||
       spec.model_api == ServiceSpec::ModelApi::kOpenAi)) {
    // Ready when it serves its model: vLLM's /health answers once the engine is built; every
    // OpenAI-compatible server answers /v1/models (llama-server's /health also waits for the
    // load: set it explicitly).
    spec.health.kind = HealthCheck::Kind::kHttp;
    spec.health.http_path =
        spec.model_api == ServiceSpec::ModelApi::kVllm ? "/health" : "/v1/models";
  } else if (!health) {
    spec.health.kind = spec.upstream_port != 0 ? HealthCheck::Kind::kTcp : HealthCheck::Kind::kNone;
  } else if (*health == "none") {
    spec.health.kind = HealthCheck::Kind::kNone;
  } else if (*health == "tcp") {
    spec.health.kind = HealthCheck::Kind::kTcp;
  } else if (!health->empty() && health->front() == '/') {
    for (char c : *health) {
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
        r.fail(r.key_path("health"), "must not contain spaces or control characters");
      }
    }
    spec.health.kind = HealthCheck::Kind::kHttp;
    spec.health.http_path = *health;
  } else {
    r.fail(
        r.key_path("health"),
        "must be \"tcp\", \"none\" or an HTTP path starting with \"/\", got \"" + *health + "\"");
  }
  if (spec.health.kind != HealthCheck::Kind::kNone && spec.upstream_port == 0) {
    r.fail(r.key_path("health"), "needs \"upstream\" (the host:port to probe)");
  }
  // Each protocol's own idle timeout: the other one would be silently ignored.
  if (spec.protocol == Protocol::kTcp && spec.upgraded_idle_timeout_seconds) {
    r.fail(r.key_path("upgraded_idle_timeout_seconds"),
           "is for HTTP mode (upgraded connections); a \"tcp\" service has "
           "tcp_idle_timeout_seconds");
  }
  if (spec.protocol == Protocol::kHttp && spec.tcp_idle_timeout_seconds) {
    r.fail(r.key_path("tcp_idle_timeout_seconds"),
           "is for \"protocol\": \"tcp\"; an HTTP service's upgraded connections have "
           "upgraded_idle_timeout_seconds");
  }
  if (const json* tiers = r.find("sleep_tiers")) {
    if (spec.idle_timeout_minutes) {
      r.fail(r.key_path("sleep_tiers"),
             "give either idle_timeout_minutes or sleep_tiers, not both (the one timeout is the "
             "tiers [{\"after_minutes\": N, \"action\": \"stop\"}])");
    }
    spec.sleep_tiers = read_sleep_tiers(r, *tiers, source);
    for (const auto& tier : spec.sleep_tiers) {
      if (tier.action == TierAction::kPause && spec.backend == "swarm") {
        r.fail(r.key_path("sleep_tiers"),
               "a Swarm service cannot be paused (its tasks are scaled to 0): use stop only");
      }
      if (tier.action == TierAction::kPause && spec.backend == "kubernetes") {
        r.fail(r.key_path("sleep_tiers"),
               "a Kubernetes workload cannot be paused (its pods are scaled to 0): use stop only");
      }
    }
  }
  if (auto policy = r.read_string("policy")) {
    if (find_policy(*policy) == nullptr) {
      r.fail(r.key_path("policy"),
             "must be one of " + policy_names() + ", got \"" + *policy + "\"");
    }
    if (*policy != "fixed" && !spec.sleep_tiers.empty()) {
      r.fail(r.key_path("policy"),
             "\"" + *policy + "\" chooses the one idle timeout: not together with sleep_tiers");
    }
    spec.policy = *policy;
  }
  if (auto policy = r.read_string("model_policy")) {
    if (find_policy(*policy) == nullptr) {
      r.fail(r.key_path("model_policy"),
             "must be one of " + policy_names() + ", got \"" + *policy + "\"");
    }
    spec.model_policy = *policy;
    sc.model_policy_given = true;
  }
  read_schedule(r, spec, default_timezone);
  if (const json* activity = r.find("activity")) {
    spec.activity = read_activity(r, *activity, source);
    for (std::size_t i = 0; i < spec.activity->size(); ++i) {
      const SignalKind kind = (*spec.activity)[i].kind;
      const bool cluster = spec.backend == "swarm" || spec.backend == "kubernetes";
      if (cluster && (kind == SignalKind::kCpu || kind == SignalKind::kNetwork)) {
        r.fail(r.key_path("activity") + "[" + std::to_string(i) + "].kind",
               std::string(spec.backend == "swarm" ? "a Swarm service's " : "a workload's ") +
                   to_string(kind) +
                   " cannot be read: its tasks run on any node, not as a container or process "
                   "siesta knows (use gpu, prometheus, users or command)");
      }
    }
  }
  return sc;
}

void read_docker(const json& value, const std::string& source, DockerConfig& docker) {
  ObjectReader r(value, "docker", source);
  r.allow_only({"host", "label_discovery", "swarm"});
  if (auto host = r.read_string("host")) {
    if (host->rfind("unix:///", 0) != 0 && host->rfind("tcp://", 0) != 0) {
      r.fail(
          r.key_path("host"),
          "must be \"unix:///path/to/docker.sock\" or \"tcp://host:port\", got \"" + *host + "\"");
    }
    docker.host = *host;
  }
  r.read_bool("label_discovery", docker.label_discovery);
  r.read_bool("swarm", docker.swarm);
}

void read_kubernetes(const json& value, const std::string& source, KubernetesConfig& kube) {
  ObjectReader r(value, "kubernetes", source);
  r.allow_only({"kubeconfig", "namespace", "label_discovery"});
  if (auto path = r.read_string("kubeconfig")) {
    if (path->empty()) r.fail(r.key_path("kubeconfig"), "must not be empty (omit it)");
    kube.kubeconfig = *path;
  }
  if (auto ns = r.read_string("namespace")) {
    if (!valid_dns_label(*ns)) {
      r.fail(r.key_path("namespace"),
             "must be a namespace name (lower-case letters, digits, '-'; at most 63), got \"" +
                 *ns + "\"");
    }
    kube.namespace_name = *ns;
  }
  r.read_bool("label_discovery", kube.label_discovery);
}

// The proxy section's numbers, a table like a service's (settings_schema.h).
constexpr SpecNumber<ProxyConfig> kProxyNumbers[] = {
    {"threads",
     {1, false, 256, "", true},
     [](ProxyConfig& p, double v) { p.threads = static_cast<int>(v); }},
    {"connect_timeout_seconds",
     {0, true, 3600, "seconds"},
     [](ProxyConfig& p, double v) { p.connect_timeout_seconds = v; }},
    {"idle_connection_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ProxyConfig& p, double v) { p.idle_connection_timeout_seconds = v; }},
    {"client_header_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ProxyConfig& p, double v) { p.client_header_timeout_seconds = v; }},
    {"client_body_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ProxyConfig& p, double v) { p.client_body_timeout_seconds = v; }},
    {"keepalive_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ProxyConfig& p, double v) { p.keepalive_timeout_seconds = v; }},
    {"max_connections",
     {1, false, 1'000'000, "", true},
     [](ProxyConfig& p, double v) { p.max_connections = static_cast<int>(v); }},
    {"upstream_max_connecting",
     {1, false, 65536, "", true},
     [](ProxyConfig& p, double v) { p.upstream_max_connecting = static_cast<int>(v); }},
    {"upstream_idle_connections",
     {0, false, 65536, "", true},
     [](ProxyConfig& p, double v) { p.upstream_idle_connections = static_cast<int>(v); }},
    {"upstream_idle_timeout_seconds",
     {0, true, 86400, "seconds"},
     [](ProxyConfig& p, double v) { p.upstream_idle_timeout_seconds = v; }},
};

void read_proxy(const json& value, const std::string& source, ProxyConfig& proxy) {
  ObjectReader r(value, "proxy", source);
  std::set<std::string> keys = spec_keys(kProxyNumbers);
  keys.insert("wake_listen");
  r.allow_only(keys);
  read_numbers(r, kProxyNumbers, proxy);
  if (auto listen = r.read_string("wake_listen")) {
    if (!parse_host_port(*listen, proxy.wake_listen_host, proxy.wake_listen_port)) {
      r.fail(r.key_path("wake_listen"),
             "must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"" + *listen + "\"");
    }
  }
}

// The "gpu" section: {"devices": [{"id": 0, "memory_mib": 24576}], "exclusive": [["a", "b"]]}.
void read_gpu(const json& value, const std::string& source, GpuConfig& gpu) {
  ObjectReader r(value, "gpu", source);
  r.allow_only({"devices", "exclusive", "wait_seconds"});
  if (auto v = r.read_number("wait_seconds", 0, false, 3600)) gpu.wait_seconds = *v;
  const json* devices = r.find("devices");
  if (devices == nullptr || !devices->is_array() || devices->empty()) {
    r.fail(r.key_path("devices"),
           "is required: a non-empty array of {\"id\": GPU index, \"memory_mib\": budget}");
  }
  for (std::size_t i = 0; i < devices->size(); ++i) {
    ObjectReader d((*devices)[i], "gpu.devices[" + std::to_string(i) + "]", source);
    d.allow_only({"id", "memory_mib"});
    if (d.find("id") == nullptr) d.fail(d.key_path("id"), "is required (nvidia-smi's index)");
    GpuDevice device;
    device.id = *d.read_count("id", 0, 1023);
    for (const GpuDevice& seen : gpu.devices) {
      if (seen.id == device.id) {
        d.fail(d.key_path("id"), "GPU " + std::to_string(device.id) + " is listed twice");
      }
    }
    // Absent: the device's total, from nvidia-smi at start-up (resolve_gpu_totals).
    device.memory_mib = d.read_number("memory_mib", kGpuMemoryMib).value_or(0);
    gpu.devices.push_back(device);
  }
  if (const json* groups = r.find("exclusive")) {
    const std::string path = r.key_path("exclusive");
    if (!groups->is_array()) r.fail(path, "must be an array of groups (arrays of service names)");
    for (std::size_t i = 0; i < groups->size(); ++i) {
      const json& g = (*groups)[i];
      const std::string gpath = path + "[" + std::to_string(i) + "]";
      if (!g.is_array() || g.size() < 2) {
        r.fail(gpath, "must be an array of at least two service names, got " + g.dump());
      }
      std::vector<std::string> names;
      for (const json& n : g) {
        if (!n.is_string() || !valid_service_name(n.get<std::string>())) {
          r.fail(gpath, "must hold service names, got " + n.dump());
        }
        if (std::find(names.begin(), names.end(), n.get<std::string>()) != names.end()) {
          r.fail(gpath, "names " + n.dump() + " twice");
        }
        names.push_back(n.get<std::string>());
      }
      gpu.exclusive.push_back(std::move(names));
    }
  }
}

ModelSpec read_model(const std::string& name, const json& value, const std::string& source) {
  ObjectReader r(value, "models." + name, source);
  std::set<std::string> keys = spec_keys(kModelNumbers);
  keys.insert({"provider", "policy"});
  r.allow_only(keys);
  ModelSpec spec;
  spec.name = name;
  auto provider = r.read_string("provider");
  if (!provider) r.fail(r.key_path("provider"), "is required (the service that serves the model)");
  spec.provider = *provider;
  read_numbers(r, kModelNumbers, spec);
  // The keep-alive policy, as a service's timeout policy (docs/models.md).
  if (auto policy = r.read_string("policy")) {
    if (find_policy(*policy) == nullptr) {
      r.fail(r.key_path("policy"),
             "must be one of " + policy_names() + ", got \"" + *policy + "\"");
    }
    spec.policy = *policy;
  }
  if (spec.keep_alive_max_seconds < spec.keep_alive_min_seconds) {
    r.fail(r.key_path("keep_alive_max_seconds"), "must be at least keep_alive_min_seconds");
  }
  return spec;
}

// A service or model larger than the budget of a device it uses can never be woken or loaded:
// the key and the reason, for the first one (devices whose budget is still unknown, 0, are
// checked once nvidia-smi has given it: resolve_gpu_totals). `why`: per device, how a budget
// taken from nvidia-smi came down (check_gpu_sizes).
std::optional<std::pair<std::string, std::string>> gpu_size_error(
    const Config& config, const std::map<int, std::string>& why = {}) {
  const auto number_text = [](double v) {
    return v == std::floor(v) ? std::to_string(static_cast<long long>(v)) : json(v).dump();
  };
  const auto too_big = [&](double mib, const std::vector<int>& devices) -> std::string {
    for (int id : devices) {
      for (std::size_t i = 0; i < config.gpu.devices.size(); ++i) {
        const GpuDevice& d = config.gpu.devices[i];
        if (d.id != id || mib <= d.memory_mib) continue;
        const auto how = why.find(id);
        if (how == why.end()) {
          if (d.memory_mib <= 0) continue;  // not known yet
          return number_text(mib) + " MiB is more than GPU " + std::to_string(id) +
                 "'s budget of " + number_text(d.memory_mib) + " MiB: it could never fit";
        }
        // The budget is what the others left at start-up: it is read once, so until a restart.
        return number_text(mib) + " MiB is more than GPU " + std::to_string(id) + "'s budget of " +
               number_text(d.memory_mib) + " MiB (" + how->second +
               "): it could never fit; set gpu.devices[" + std::to_string(i) +
               "].memory_mib if those processes leave it more room";
      }
    }
    return "";
  };
  std::map<std::string, std::vector<int>> devices_of;
  for (const auto& sc : config.services) {
    devices_of[sc.spec.name] = gpu_devices_of(config.gpu, sc.spec);
    if (!sc.spec.gpu_memory_mib) continue;
    if (auto error = too_big(*sc.spec.gpu_memory_mib, devices_of[sc.spec.name]); !error.empty()) {
      return std::pair("services." + sc.spec.name + ".gpu_memory_mib", error);
    }
  }
  for (const auto& m : config.models) {
    auto server = devices_of.find(m.provider);
    if (!m.gpu_memory_mib || server == devices_of.end()) continue;
    if (auto error = too_big(*m.gpu_memory_mib, server->second); !error.empty()) {
      return std::pair("models." + m.name + ".gpu_memory_mib", error);
    }
  }
  return std::nullopt;
}

// The services' and models' GPU keys against the "gpu" section.
void check_gpu(const ObjectReader& top, const Config& config) {
  const auto known = [&](int id) {
    return std::any_of(config.gpu.devices.begin(), config.gpu.devices.end(),
                       [id](const GpuDevice& d) { return d.id == id; });
  };
  const char* no_section = "needs a \"gpu\" section (the devices and their budget, docs/gpu.md)";
  for (const auto& sc : config.services) {
    const std::string at = "services." + sc.spec.name + ".";
    if (!config.gpu.enabled() && (sc.spec.gpu_memory_mib || sc.spec.gpu_memory_measured))
      top.fail(at + "gpu_memory_mib", no_section);
    if (!config.gpu.enabled() && !sc.spec.gpu_devices.empty())
      top.fail(at + "gpu_devices", no_section);
    for (int id : sc.spec.gpu_devices) {
      if (!known(id)) {
        top.fail(at + "gpu_devices", "names GPU " + std::to_string(id) + ", not in gpu.devices");
      }
    }
  }
  for (const auto& m : config.models) {
    if (!config.gpu.enabled() && m.gpu_memory_mib) {
      top.fail("models." + m.name + ".gpu_memory_mib", no_section);
    }
    // Only the models of a server in the budget count (docs/gpu.md): a size given to one whose
    // server is not would be ignored without a word. A provider not in the config (a labelled
    // container, later) is not known here.
    for (const auto& sc : config.services) {
      if (sc.spec.name != m.provider || !m.gpu_memory_mib) continue;
      if (!in_gpu_budget(sc.spec)) {
        top.fail("models." + m.name + ".gpu_memory_mib",
                 "its provider " + m.provider +
                     " takes no part in the GPU budget, so this size would never count: give "
                     "services." +
                     m.provider + " gpu_memory_mib (what it holds of its own) or gpu_devices");
      }
    }
  }
  const bool labels = config.docker.configured && config.docker.label_discovery;
  for (std::size_t i = 0; i < config.gpu.exclusive.size(); ++i) {
    for (const auto& name : config.gpu.exclusive[i]) {
      const bool found = std::any_of(config.services.begin(), config.services.end(),
                                     [&](const ServiceConfig& sc) { return sc.spec.name == name; });
      if (!found && !labels) {
        top.fail("gpu.exclusive[" + std::to_string(i) + "]",
                 "names no service: \"" + name + "\" is not under \"services\"");
      }
    }
  }
  if (auto error = gpu_size_error(config)) top.fail(error->first, error->second);
}

}  // namespace

void resolve_gpu_totals(Config& config, const std::map<int, double>& totals,
                        const std::string& tool_error) {
  for (std::size_t i = 0; i < config.gpu.devices.size(); ++i) {
    GpuDevice& d = config.gpu.devices[i];
    if (d.memory_mib > 0) continue;
    const std::string key = "gpu.devices[" + std::to_string(i) + "].memory_mib";
    if (!tool_error.empty()) {
      throw ConfigError("config error in " + config.source + ": " + key +
                        ": is required without nvidia-smi (" + tool_error + ")");
    }
    auto it = totals.find(d.id);
    if (it == totals.end() || it->second <= 0) {
      throw ConfigError("config error in " + config.source + ": " + key +
                        ": is required: nvidia-smi reports no GPU " + std::to_string(d.id));
    }
    d.memory_mib = it->second;
  }
  check_gpu_sizes(config);
}

void check_gpu_sizes(const Config& config, const std::map<int, std::string>& why) {
  if (auto error = gpu_size_error(config, why)) {
    throw ConfigError("config error in " + config.source + ": " + error->first + ": " +
                      error->second);
  }
}

std::string ListenAddress::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool parse_listen(const std::string& text, ListenAddress& out) {
  return parse_host_port(text, out.host, out.port);
}

bool valid_service_name(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

bool valid_container_name(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool valid_dns_label(const std::string& name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool valid_workload(const std::string& workload) {
  const auto slash = workload.find('/');
  if (slash == std::string::npos) return false;
  const std::string kind = workload.substr(0, slash);
  const std::string name = workload.substr(slash + 1);
  if (kind != "deployment" && kind != "statefulset") return false;
  if (name.empty() || name.size() > 253) return false;
  // A DNS-1123 subdomain: labels joined by dots.
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = std::min(name.find('.', start), name.size());
    if (!valid_dns_label(name.substr(start, dot - start))) return false;
    start = dot + 1;
  }
  return true;
}

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':' && c != '/') {
      return false;
    }
  }
  // Path tricks: no empty, "." or ".." segments.
  std::istringstream segments(name);
  std::string segment;
  while (std::getline(segments, segment, '/')) {
    if (segment.empty() || segment == "." || segment == "..") return false;
  }
  return name.back() != '/';
}

ServiceConfig parse_service(const std::string& name, const json& value, const std::string& source,
                            const std::string& default_timezone) {
  return read_service_entry(name, value, source, default_timezone);
}

Config default_config() { return Config{}; }

Config parse_config(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double (found by the fuzzer:
    // it escaped as an uncaught exception instead of exit code 2).
    throw ConfigError("config error in " + source + ": (top level): invalid JSON: " + e.what());
  }
  Config config;
  config.source = source;
  ObjectReader top(doc, "", source);
  std::set<std::string> top_keys = {"listen",
                                    "state_file",
                                    "on_exit",
                                    "docker",
                                    "kubernetes",
                                    "proxy",
                                    "admin_threads",
                                    "admin_token_file",
                                    "protect_metrics",
                                    "services",
                                    "models",
                                    "admin_request_timeout_seconds",
                                    "admin_max_connections",
                                    "max_learned_models",
                                    "activity",
                                    "gpu",
                                    "timezone",
                                    "currency"};
  for (const auto& field : kSettingFields) top_keys.insert(field.key);
  top.allow_only(top_keys);
  read_settings(top, config.settings);
  if (auto listen = top.read_string("listen")) {
    if (!parse_listen(*listen, config.listen)) {
      top.fail("listen", "must be \"host:port\" (IPv6 as \"[::1]:port\"), got \"" + *listen + "\"");
    }
  }
  if (auto state_file = top.read_string("state_file")) {
    if (state_file->empty()) top.fail("state_file", "must not be empty (omit it to disable)");
    config.state_file = *state_file;
  }
  if (auto on_exit = top.read_string("on_exit")) {
    if (*on_exit == "stop") {
      config.on_exit = OnExit::kStop;
    } else if (*on_exit == "leave") {
      config.on_exit = OnExit::kLeave;
    } else {
      top.fail("on_exit", "must be \"stop\" or \"leave\", got \"" + *on_exit + "\"");
    }
  }
  if (const json* proxy = top.find("proxy")) read_proxy(*proxy, source, config.proxy);
  if (auto v = top.read_number("admin_threads", 1, false, 256)) {
    if (*v != std::floor(*v)) top.fail("admin_threads", "must be a whole number");
    config.admin_threads = static_cast<int>(*v);
  }
  if (auto v = top.read_number("admin_request_timeout_seconds", 0, true, 3600)) {
    config.admin_request_timeout_seconds = *v;
  }
  if (auto v = top.read_number("admin_max_connections", 1, false, 65536)) {
    if (*v != std::floor(*v)) top.fail("admin_max_connections", "must be a whole number");
    config.admin_max_connections = static_cast<int>(*v);
  }
  if (auto token_file = top.read_string("admin_token_file")) {
    if (token_file->empty()) top.fail("admin_token_file", "must not be empty (omit it for none)");
    config.admin_token_file = *token_file;
  }
  top.read_bool("protect_metrics", config.protect_metrics);
  if (auto v = top.read_number("max_learned_models", 0, false, 1'000'000)) {
    if (*v != std::floor(*v)) top.fail("max_learned_models", "must be a whole number");
    config.max_learned_models = static_cast<std::size_t>(*v);
  }
  if (const json* activity = top.find("activity")) {
    config.activity = read_activity(top, *activity, source);
  }
  if (const json* gpu = top.find("gpu")) read_gpu(*gpu, source, config.gpu);
  if (const json* kube = top.find("kubernetes")) {
    read_kubernetes(*kube, source, config.kubernetes);
    config.kubernetes.configured = true;
  }
  if (const json* docker = top.find("docker")) {
    read_docker(*docker, source, config.docker);
    config.docker.configured = true;
  }
  // The cost's currency, a label (energy.h); empty: none said.
  if (auto currency = top.read_string("currency")) {
    const bool printable = std::all_of(currency->begin(), currency->end(), [](char c) {
      return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f && c != '"' && c != '\\';
    });
    if (currency->empty() || currency->size() > 16 || !printable) {
      top.fail("currency",
               "must be 1 to 16 characters, no quotes, backslashes or control characters (e.g. "
               "\"EUR\"), got " +
                   json(*currency).dump(-1, ' ', false, json::error_handler_t::replace));
    }
    config.currency = *currency;
  }
  // Schedules' default zone; empty: the system's.
  const std::string timezone = top.read_string("timezone").value_or("");
  if (!timezone.empty() && find_time_zone(timezone) == nullptr) {
    top.fail("timezone", "names no time zone in the database (/usr/share/zoneinfo): \"" + timezone +
                             "\" (e.g. \"Europe/Berlin\", \"UTC\")");
  }
  config.timezone = timezone;
  if (const json* services = top.find("services")) {
    ObjectReader sr(*services, "services", source);
    for (const auto& [name, value] : services->items()) {
      if (!valid_service_name(name)) {
        sr.fail(sr.key_path(name),
                "invalid service name (letters, digits, '.', '-', '_'; "
                "starting with a letter or digit; at most 128)");
      }
      config.services.push_back(read_service_entry(name, value, source, timezone));
    }
  }
  // Two listeners on one address would fail at start-up; say which, now.
  std::map<std::string, std::string> listens;
  listens[config.listen.to_string()] = "";
  if (config.proxy.wake_listen_port != 0) {
    listens[ListenAddress{config.proxy.wake_listen_host, config.proxy.wake_listen_port}
                .to_string()] = "(proxy.wake_listen)";
  }
  for (const auto& sc : config.services) {
    if (sc.spec.listen_port == 0) continue;
    const std::string where = ListenAddress{sc.spec.listen_host, sc.spec.listen_port}.to_string();
    auto [it, fresh] = listens.try_emplace(where, sc.spec.name);
    if (!fresh) {
      top.fail("services." + sc.spec.name + ".listen",
               where + " is already " +
                   (it->second.empty() ? std::string("the admin API's listen address")
                    : it->second.front() == '('
                        ? "the " + it->second.substr(1, it->second.size() - 2) + " address"
                        : "the listen address of service " + it->second));
    }
  }
  if (const json* models = top.find("models")) {
    ObjectReader mr(*models, "models", source);
    for (const auto& [name, value] : models->items()) {
      if (!valid_model_name(name)) {
        mr.fail(mr.key_path(name),
                "invalid model name (letters, digits, '.', '-', '_', ':', '/'; "
                "no empty, '.' or '..' path segments; at most 256)");
      }
      ModelSpec spec = read_model(name, value, source);
      bool provider_known = false;
      for (auto& s : config.services) {
        if (s.spec.name != spec.provider) continue;
        provider_known = true;
        // A model server; without a model_api of its own, Ollama's API.
        if (s.spec.model_api == ServiceSpec::ModelApi::kNone) {
          s.spec.model_api = ServiceSpec::ModelApi::kOllama;
        }
      }
      // With label discovery, the provider may be a labelled container's service (one with
      // siesta.model-api=ollama), found at start-up or later.
      if (!provider_known && !(config.docker.configured && config.docker.label_discovery)) {
        mr.fail(
            mr.key_path(name) + ".provider",
            "names no service: \"" + spec.provider +
                "\" is not under \"services\", and no labelled container can be it (no \"docker\" "
                "section, or label_discovery off)");
      }
      config.models.push_back(std::move(spec));
    }
  }
  check_gpu(top, config);
  for (const auto& sc : config.services) {
    const KeepAliveRefusal refusal = model_keep_alive_refusal(sc.spec);
    if (refusal == KeepAliveRefusal::kNotAModelServer) {
      top.fail("services." + sc.spec.name + ".model_keep_alive_hours",
               "is for a model server: set \"model_api\": \"ollama\" or name the service as a "
               "model's provider");
    }
    for (std::size_t i = 0; i < sc.spec.sleep_tiers.size(); ++i) {
      const std::string key =
          "services." + sc.spec.name + ".sleep_tiers[" + std::to_string(i) + "].action";
      const TierAction action = sc.spec.sleep_tiers[i].action;
      const ServiceSpec::ModelApi api = sc.spec.model_api;
      if (action == TierAction::kUnloadModels && api == ServiceSpec::ModelApi::kNone) {
        top.fail(key,
                 "\"unload_models\" needs a model server: set \"model_api\" or name the "
                 "service as a model's provider");
      }
      if (action == TierAction::kUnloadModels && !can_unload_models(api)) {
        top.fail(key,
                 "\"unload_models\" needs a server that can unload a model and keep running "
                 "(\"ollama\"); " +
                     a_quoted(to_string(api)) +
                     " server holds its model as long as it runs: use \"vllm_sleep\" "
                     "(vllm) or \"stop\"");
      }
      if (action == TierAction::kVllmSleep && api != ServiceSpec::ModelApi::kVllm) {
        top.fail(key, "\"vllm_sleep\" is for a vLLM server: set \"model_api\": \"vllm\"");
      }
      if (action == TierAction::kVllmSleep && sc.spec.upstream_port == 0) {
        top.fail(key,
                 "\"vllm_sleep\" needs \"upstream\": siesta calls the server's /sleep and "
                 "/wake_up there");
      }
    }
    if (refusal == KeepAliveRefusal::kNoUnload) {
      top.fail("services." + sc.spec.name + ".model_keep_alive_hours",
               no_unload_reason(sc.spec.model_api));
    }
    // A policy for learned models chooses their keep-alive: the same servers take one.
    if (const KeepAliveRefusal r = model_policy_refusal(sc); r != KeepAliveRefusal::kNone) {
      top.fail("services." + sc.spec.name + ".model_policy",
               r == KeepAliveRefusal::kNoUnload
                   ? no_unload_reason(sc.spec.model_api)
                   : "is for a model server: set \"model_api\": \"ollama\" or name the service "
                     "as a model's provider");
    }
    for (const auto& m : config.models) {
      if (m.provider == sc.spec.name && m.keep_alive_hours &&
          !keeps_models_alive(sc.spec.model_api)) {
        top.fail("models." + m.name + ".keep_alive_hours", no_unload_reason(sc.spec.model_api));
      }
      // A keep-alive policy chooses a keep-alive, which such a server cannot keep either.
      if (m.provider == sc.spec.name && m.policy != "fixed" &&
          !keeps_models_alive(sc.spec.model_api)) {
        top.fail("models." + m.name + ".policy", no_unload_reason(sc.spec.model_api));
      }
    }
    // Forwarding to its own listen address would loop.
    const auto local = [](const std::string& host) {
      return host.empty() || host == "0.0.0.0" || host == "::" || host == "127.0.0.1" ||
             host == "localhost" || host == "::1";
    };
    if (sc.spec.listen_port != 0 && sc.spec.listen_port == sc.spec.upstream_port &&
        (sc.spec.listen_host == sc.spec.upstream_host ||
         (local(sc.spec.listen_host) && local(sc.spec.upstream_host)))) {
      top.fail("services." + sc.spec.name + ".listen",
               "is the upstream's own address (" + sc.spec.upstream_host + ":" +
                   std::to_string(sc.spec.upstream_port) +
                   "): siesta would forward each request to itself; give the server another "
                   "port and \"upstream\" that one");
    }
  }
  return config;
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("config error in " + path + ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("config error in " + path + ": cannot read the file");
  return parse_config(text.str(), path);
}

namespace {

std::string checked_token(std::string token, const std::string& where) {
  const auto first = token.find_first_not_of(" \t\r\n");
  const auto last = token.find_last_not_of(" \t\r\n");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  if (token.size() < 16) {
    throw ConfigError(where + ": the admin token must be at least 16 characters, got " +
                      std::to_string(token.size()));
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw ConfigError(where + ": the admin token must be one line of printable characters");
    }
  }
  return token;
}

}  // namespace

std::string resolve_admin_token(const Config& config, const char* env_token) {
  if (env_token != nullptr && *env_token != '\0') {
    return checked_token(env_token, "SIESTA_ADMIN_TOKEN");
  }
  if (config.admin_token_file.empty()) return "";
  const std::string where = "config error in " + config.source + ": admin_token_file";
  std::ifstream in(config.admin_token_file, std::ios::binary);
  if (!in) {
    throw ConfigError(where + ": cannot read " + config.admin_token_file + ": " +
                      std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return checked_token(text.str(), where + " (" + config.admin_token_file + ")");
}

bool keeps_models_alive(ServiceSpec::ModelApi api) {
  // A server whose model is the process has no unload: a keep-alive could never be kept.
  return api != ServiceSpec::ModelApi::kVllm && api != ServiceSpec::ModelApi::kOpenAi;
}

KeepAliveRefusal model_keep_alive_refusal(const ServiceSpec& spec) {
  if (!spec.model_keep_alive_hours) return KeepAliveRefusal::kNone;
  if (spec.model_api == ServiceSpec::ModelApi::kNone) return KeepAliveRefusal::kNotAModelServer;
  if (!keeps_models_alive(spec.model_api)) return KeepAliveRefusal::kNoUnload;
  return KeepAliveRefusal::kNone;
}

KeepAliveRefusal model_policy_refusal(const ServiceConfig& sc) {
  if (!sc.model_policy_given) return KeepAliveRefusal::kNone;
  if (sc.spec.model_api == ServiceSpec::ModelApi::kNone) return KeepAliveRefusal::kNotAModelServer;
  if (!keeps_models_alive(sc.spec.model_api) && sc.spec.model_policy != "fixed") {
    return KeepAliveRefusal::kNoUnload;
  }
  return KeepAliveRefusal::kNone;
}

std::string no_unload_reason(ServiceSpec::ModelApi api) {
  return a_quoted(to_string(api)) +
         " server has no unload API: its model stays while the server runs; free it with the "
         "service's sleep_tiers (" +
         (api == ServiceSpec::ModelApi::kVllm ? "vllm_sleep, stop" : "stop") + ") instead";
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace siesta
