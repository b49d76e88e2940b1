#include "siesta/config/labels.h"

#include <cctype>
#include <cstdlib>
#include <mutex>

#include "siesta/core/settings_schema.h"

namespace siesta {

using nlohmann::json;

namespace {

std::optional<bool> parse_bool(const std::string& text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "true" || lower == "1" || lower == "yes") return true;
  if (lower == "false" || lower == "0" || lower == "no") return false;
  return std::nullopt;
}

// Each label (after its prefix: "siesta." on Docker, "siesta.io/" on Kubernetes) and the config
// key it sets. A duration is converted to the unit of the key's number (settings_schema.h),
// whose bounds parse_service then checks.
enum class LabelKind { kBool, kString, kDuration, kTiers, kJson, kWatts, kSchedule };
struct LabelKey {
  const char* label;
  const char* key;
  LabelKind kind;
};
constexpr LabelKey kLabels[] = {
    {"idle-timeout", "idle_timeout_minutes", LabelKind::kDuration},
    {"idle-sleep", "idle_sleep_enabled", LabelKind::kBool},
    {"desired", "desired", LabelKind::kString},
    {"upstream", "upstream", LabelKind::kString},
    {"health", "health", LabelKind::kString},
    {"start-timeout", "start_timeout_seconds", LabelKind::kDuration},
    {"stop-timeout", "stop_timeout_seconds", LabelKind::kDuration},
    {"listen", "listen", LabelKind::kString},
    {"protocol", "protocol", LabelKind::kString},
    {"model-api", "model_api", LabelKind::kString},
    {"model-keep-alive", "model_keep_alive_hours", LabelKind::kDuration},
    {"model-policy", "model_policy", LabelKind::kString},
    {"sleep-tiers", "sleep_tiers", LabelKind::kTiers},
    {"activity", "activity", LabelKind::kJson},
    {"wake-page", "wake_page", LabelKind::kBool},
    {"idle-power", "idle_power_watts", LabelKind::kWatts},
    {"policy", "policy", LabelKind::kString},
    {"cold-start", "cold_start_seconds", LabelKind::kDuration},
    {"schedule", "schedule", LabelKind::kSchedule},
    {"timezone", "timezone", LabelKind::kString},
};

// "pause:1m,stop:1h" -> [{"after_minutes": 1, "action": "pause"}, {"after_minutes": 60, ...}];
// the config's rules (order, actions) are checked by parse_service. Null when malformed.
json parse_tiers(const std::string& text) {
  json tiers = json::array();
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const std::size_t colon = item.find(':');
    if (colon == std::string::npos) return nullptr;
    const auto seconds = parse_duration(item.substr(colon + 1));
    if (!seconds) return nullptr;
    // Not from labels yet: the unload_models rule (a model server) is checked for the config only.
    // Nor vllm_sleep, which needs a level.
    if (item.substr(0, colon) == "unload_models" || item.substr(0, colon) == "vllm_sleep") {
      return nullptr;
    }
    tiers.push_back({{"after_minutes", *seconds / 60}, {"action", item.substr(0, colon)}});
    start = comma + 1;
  }
  return tiers;
}

// Seconds in one unit of the number a duration label sets.
double seconds_per_unit(const char* key) {
  return seconds_per(find_number(kServiceNumbers, key)->rule.unit);
}

std::string known_labels(const std::string& prefix) {
  std::string out = prefix + "enable, " + prefix + "name";
  for (const auto& l : kLabels) out += ", " + prefix + l.label;
  return out;
}

}  // namespace

std::optional<std::string> compose_qualified_name(
    const std::map<std::string, std::string>& labels) {
  if (labels.count("siesta.name") != 0) return std::nullopt;
  auto service = labels.find(kComposeServiceLabel);
  auto project = labels.find(kComposeProjectLabel);
  if (service == labels.end() || project == labels.end() || service->second.empty() ||
      project->second.empty()) {
    return std::nullopt;
  }
  std::string name = project->second + "-" + service->second;
  if (!valid_service_name(name)) return std::nullopt;
  return name;
}

bool labels_enable(const std::map<std::string, std::string>& labels) {
  auto it = labels.find(kEnableLabel);
  return it != labels.end() && parse_bool(it->second).value_or(false);
}

namespace {

std::mutex bounds_mu;
LabelBounds bounds;  // guarded by bounds_mu

// Whether `host` names this machine (where siesta's own ports are).
bool local(const std::string& host, const LabelBounds& b) {
  return host.empty() || is_loopback_host(host) || host == "0.0.0.0" || host == "::" ||
         host == b.bind_host;
}

// Why `port` is siesta's own, or empty.
std::string siestas_port(int port, const LabelBounds& b) {
  if (port == 0) return {};
  if (port == b.admin_port) return "siesta's admin API port " + std::to_string(port);
  if (port == b.wake_port) return "siesta's /wake port " + std::to_string(port);
  if (auto it = b.taken.find(port); it != b.taken.end()) {
    return "port " + std::to_string(port) + " of service " + it->second;
  }
  return {};
}

// How one kind of object carries its settings: the prefix of its keys, what the keys are called
// in messages, and the config key naming the object.
struct LabelDialect {
  std::string backend;     // docker, swarm, kubernetes
  std::string prefix;      // siesta. or siesta.io/
  std::string what;        // "container web", "deployment web"
  std::string key_noun;    // label, annotation
  std::string object_key;  // container, swarm_service, workload
  std::string object;      // the object_key's value
};

// A container's (backend docker), a Swarm service's (backend swarm) or a Kubernetes workload's
// (backend kubernetes) labels or annotations as a service.
Result<ServiceConfig> from_labels(const LabelDialect& d, const std::string& default_name,
                                  const std::map<std::string, std::string>& labels) {
  // Whose replica count the backend keeps in a key of its own.
  const bool scaled = d.backend != "docker";
  const std::string& prefix = d.prefix;
  const std::string what = d.what;
  const std::string noun = d.key_noun;
  auto bad = [&](const std::string& label, const std::string& why) {
    return Status{ErrorCode::kInvalidArgument, what + ": " + noun + " " + label + ": " + why};
  };
  std::string name = default_name;
  json entry = json::object();
  entry["backend"] = d.backend;
  entry[d.object_key] = d.object;
  for (const auto& [label, value] : labels) {
    if (label.rfind(prefix, 0) != 0) continue;
    // Written by the Swarm and Kubernetes backends themselves: the count a sleeping service
    // wakes to.
    if (scaled && label == prefix + "replicas") continue;
    if (label == prefix + "enable") {
      if (!parse_bool(value)) return bad(label, "must be true or false, got \"" + value + "\"");
      continue;
    }
    if (label == prefix + "name") {
      if (!valid_service_name(value)) {
        return bad(label, "invalid service name \"" + value +
                              "\" (letters, digits, '.', '-', '_'; at most 128)");
      }
      name = value;
      continue;
    }
    const LabelKey* key = nullptr;
    for (const auto& l : kLabels) {
      if (label == prefix + l.label) key = &l;
    }
    if (key == nullptr) {
      return bad(label, "unknown " + noun + " (known: " + known_labels(prefix) + ")");
    }
    switch (key->kind) {
      case LabelKind::kBool: {
        auto b = parse_bool(value);
        if (!b) return bad(label, "must be true or false, got \"" + value + "\"");
        entry[key->key] = *b;
        break;
      }
      case LabelKind::kString:
        entry[key->key] = value;
        break;
      case LabelKind::kTiers: {
        json tiers = parse_tiers(value);
        if (tiers.is_null()) {
          return bad(label,
                     "must be action:duration pairs such as pause:1m,stop:1h (actions "
                     "pause and stop), got \"" +
                         value + "\"");
        }
        entry[key->key] = std::move(tiers);
        break;
      }
      case LabelKind::kJson: {
        // The config's own form (an array of signals), checked by parse_service. Whoever can
        // label a container must not run commands on the host as siesta: no command signals.
        json doc = json::parse(value, nullptr, /*allow_exceptions=*/false);
        if (!doc.is_array()) {
          return bad(label, "must be a JSON array of signals as in the config's \"activity\"");
        }
        // Only the signals about the container itself: the others read the host (users:
        // any file as root; prometheus: any URL; command: runs programs), which whoever can
        // label a container must not make siesta do (a new user's trial: utmp /dev/zero spun
        // a core and hung the shutdown).
        for (const auto& signal : doc) {
          const json kind = signal.is_object() ? signal.value("kind", json()) : json();
          if (kind != "cpu" && kind != "network" && kind != "gpu") {
            return bad(label,
                       "only cpu, network and gpu signals can be given in labels (users, "
                       "prometheus and command signals read or run things on the host as "
                       "siesta: give them in the config file), got " +
                           (kind.is_null() ? std::string("no kind") : kind.dump()));
          }
          // Nor make it sample the engine ten times a second, or hold siesta's shutdown for an
          // hour on a stuck sample (the config allows both, for its own signals).
          const json interval = signal.value("interval_seconds", json(10));
          const json timeout = signal.value("timeout_seconds", json(5));
          if (!interval.is_number() || interval.get<double>() < 1) {
            return bad(label, "interval_seconds must be a number of at least 1 in labels, got " +
                                  interval.dump());
          }
          if (!timeout.is_number() || timeout.get<double>() > 30) {
            return bad(label, "timeout_seconds must be a number of at most 30 in labels, got " +
                                  timeout.dump());
          }
        }
        entry[key->key] = std::move(doc);
        break;
      }
      case LabelKind::kSchedule: {
        // The config's own form (an array of windows), checked by parse_service.
        json doc = json::parse(value, nullptr, /*allow_exceptions=*/false);
        if (!doc.is_array()) {
          return bad(label,
                     "must be a JSON array of windows as in the config's \"schedule\", such as "
                     "[{\"days\": \"mon-fri\", \"from\": \"08:30\", \"to\": \"18:00\", "
                     "\"desired\": \"on\"}], got \"" +
                         value + "\"");
        }
        entry[key->key] = std::move(doc);
        break;
      }
      case LabelKind::kWatts: {
        // A plain number (its bounds are the config's), or "measured" as in the config; "80W" is
        // refused, not read as 80.
        if (value == "measured") {
          entry[key->key] = value;
          break;
        }
        char* end = nullptr;
        const double watts = value.empty() ? 0 : std::strtod(value.c_str(), &end);
        if (value.empty() || end != value.c_str() + value.size()) {
          return bad(label, "must be a number of watts such as 80, or \"measured\", got \"" +
                                value + "\"");
        }
        entry[key->key] = watts;
        break;
      }
      case LabelKind::kDuration: {
        auto seconds = parse_duration(value);
        if (!seconds) {
          return bad(label, "must be a duration such as 30m, 1h30m or 90s, got \"" + value + "\"");
        }
        entry[key->key] = *seconds / seconds_per_unit(key->key);
        break;
      }
    }
  }
  if (!valid_service_name(name)) {
    return bad(prefix + "name", "name \"" + name + "\" is not a valid service name");
  }
  LabelBounds b;
  {
    std::lock_guard lock(bounds_mu);
    b = bounds;
  }
  try {
    ServiceConfig sc = parse_service(name, entry, noun + "s of " + what, b.timezone);
    // The config file's rules for a model server's keys (config.h).
    for (const auto& [refusal, label] :
         {std::pair{model_keep_alive_refusal(sc.spec), "model-keep-alive"},
          std::pair{model_policy_refusal(sc), "model-policy"}}) {
      if (refusal == KeepAliveRefusal::kNotAModelServer) {
        return bad(prefix + label, "is for a model server: add " + prefix + "model-api=ollama");
      }
      if (refusal == KeepAliveRefusal::kNoUnload) {
        return bad(prefix + label, no_unload_reason(sc.spec.model_api));
      }
    }
    const ServiceSpec& s = sc.spec;
    if (s.listen_port != 0 || !s.listen_host.empty()) {
      if (!is_loopback_host(s.listen_host) && s.listen_host != b.bind_host) {
        return bad(prefix + "listen",
                   "may listen on loopback" +
                       (b.bind_host.empty() ? std::string() : " or on " + b.bind_host) +
                       " only (siesta's own listen host; give other addresses in the config "
                       "file), got \"" +
                       s.listen_host + "\"");
      }
      if (auto why = siestas_port(s.listen_port, b); !why.empty()) {
        return bad(prefix + "listen", "may not take " + why);
      }
    }
    if (s.upstream_port != 0 && local(s.upstream_host, b)) {
      if (auto why = siestas_port(s.upstream_port, b); !why.empty()) {
        return bad(prefix + "upstream", "may not lead to " + why);
      }
    }
    return sc;
  } catch (const ConfigError& e) {
    // Name the label rather than the config key it was turned into.
    std::string message = e.what();
    for (const auto& l : kLabels) {
      const std::string path = "services." + name + "." + l.key;
      if (auto at = message.find(path); at != std::string::npos) {
        message.replace(at, path.size(), noun + " " + prefix + l.label);
      }
    }
    return Status{ErrorCode::kInvalidArgument, message};
  }
}

}  // namespace

void set_label_bounds(LabelBounds b) {
  std::lock_guard lock(bounds_mu);
  bounds = std::move(b);
}

Result<ServiceConfig> service_from_labels(const std::string& container,
                                          const std::map<std::string, std::string>& labels) {
  std::string name = container;
  if (auto it = labels.find(kComposeServiceLabel); it != labels.end() && !it->second.empty()) {
    name = it->second;
  }
  return from_labels(
      {"docker", "siesta.", "container " + container, "label", "container", container}, name,
      labels);
}

Result<ServiceConfig> service_from_swarm_labels(const std::string& service,
                                                const std::map<std::string, std::string>& labels) {
  return from_labels(
      {"swarm", "siesta.", "swarm service " + service, "label", "swarm_service", service}, service,
      labels);
}

Result<ServiceConfig> service_from_annotations(
    const std::string& workload, const std::map<std::string, std::string>& annotations) {
  const std::string name = workload.substr(workload.find('/') + 1);
  const std::string kind = workload.substr(0, workload.find('/'));
  return from_labels(
      {"kubernetes", kKubePrefix, kind + " " + name, "annotation", "workload", workload}, name,
      annotations);
}

}  // namespace siesta
