#include "siesta/state/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "siesta/core/energy.h"
#include "siesta/core/settings_schema.h"

namespace siesta {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "siesta-state/1";

json overridable(const json& value, const json& config) {
  return {{"value", value}, {"config", config}};
}

json optional_time(const std::optional<WallTime>& t) {
  return t ? json(to_unix_seconds(*t)) : json(nullptr);
}

Status invalid(const std::string& what) {
  return {ErrorCode::kInvalidArgument, "state file: " + what};
}

// Only the document's shape: a wrong value inside it costs that value alone (restore_state).
Status validate(const json& doc) {
  if (!doc.is_object()) return invalid("not a JSON object");
  if (doc.value("format", "") != kFormat)
    return invalid("unknown format (expected siesta-state/1)");
  for (const char* section : {"settings", "services", "models"}) {
    if (doc.contains(section) && !doc[section].is_object()) {
      return invalid(std::string(section) + " is not an object");
    }
  }
  return Status::ok();
}

// Wall times siesta itself could have written: not before 2000, not more than a day ahead (a
// clock stepped back a little).
constexpr double kEarliestTime = 946'684'800;  // 2000-01-01T00:00:00Z
constexpr double kFutureSlackSeconds = 86'400;

// Applies one document; every value is checked as the config file and the admin API check it,
// and one that fails is ignored with a warning.
class Restorer {
 public:
  Restorer(const Baseline& baseline, Registry& registry, WallTime now, RestoreResult& result)
      : baseline_(baseline), registry_(registry), now_(now), result_(result) {}

  void ignore(const std::string& key, const json& value, const std::string& why) {
    result_.warnings.push_back(key + ": ignored " + value.dump() + " (" + why + ")");
  }

  // A runtime change saved as {"value": v, "config": c}: v applies only while the config still
  // says c, and only when `check` accepts it (empty string) .
  template <typename T, typename Check>
  std::optional<T> pick(const std::string& key, const json& field, const T& config_now,
                        Check check) {
    if (!field.is_object() || !field.contains("value") || !field.contains("config")) {
      ignore(key, field, "not {\"value\": ..., \"config\": ...}");
      return std::nullopt;
    }
    if (field["config"] != json(config_now)) {
      result_.notes.push_back("config file changed " + key +
                              " since the state was saved; using the config value");
      return std::nullopt;
    }
    if (std::string why = check(field["value"]); !why.empty()) {
      ignore(key, field["value"], why);
      return std::nullopt;
    }
    return field["value"].get<T>();
  }

  // A kept list of measurements (`field` of `saved`): numbers in [least, most] (`rule` says so),
  // the newest `keep`. A bad value drops itself, not the list; the warning counts them and shows
  // the first.
  std::vector<double> bounded_list(const std::string& key, const json& saved, const char* field,
                                   double least, double most, const std::string& rule,
                                   std::size_t keep) {
    std::vector<double> out;
    const json g = saved.value(field, json());
    if (g.is_null()) return out;
    const std::string path = key + "." + field;
    if (!g.is_array()) {
      ignore(path, g, "must be an array of " + rule);
      return out;
    }
    std::size_t bad = 0;
    const json* first_bad = nullptr;
    for (const auto& v : g) {
      if (v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= least &&
          v.get<double>() <= most) {
        out.push_back(v.get<double>());
      } else if (bad++ == 0) {
        first_bad = &v;
      }
    }
    if (bad > 0) {
      result_.warnings.push_back(path + ": ignored " + std::to_string(bad) + " of " +
                                 std::to_string(g.size()) + " values, the first " +
                                 first_bad->dump() + " (each must be " + rule + ")");
    }
    if (out.size() > keep) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(keep));
    return out;
  }

  // The adaptive policy's history of a service or model (policy.h): gaps as record_idle_gap
  // keeps them (at least kMinIdleGapSeconds, at most a year), the newest kMaxIdleGaps.
  std::vector<double> idle_gaps(const std::string& key, const json& saved) {
    return bounded_list(key, saved, "idle_gaps", kMinIdleGapSeconds, kMaxIdleGapSeconds,
                        "seconds, at least " +
                            std::to_string(static_cast<long long>(kMinIdleGapSeconds)) +
                            " and at most a year",
                        kMaxIdleGaps);
  }

  // A measured duration (a service's last cold start, a model's last load: the adaptive policy's
  // cost of a wake, policy.h): above 0 and at most a day; absent or 0 when none was measured.
  double measured_seconds(const std::string& key, const json& saved, const char* field) {
    const json v = saved.value(field, json());
    if (v.is_null()) return 0;
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
        v.get<double>() > 86400) {
      ignore(key + "." + field, v, "must be a number of seconds, above 0 and at most 86400");
      return 0;
    }
    return v.get<double>();
  }

  std::optional<WallTime> time(const std::string& key, const json& v) {
    if (v.is_null()) return std::nullopt;
    const double latest = to_unix_seconds(now_) + kFutureSlackSeconds;
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      ignore(key, v, "must be a Unix time or null");
      return std::nullopt;
    }
    const double t = v.get<double>();
    if (t < kEarliestTime || t > latest) {
      ignore(key, v, "not between 2000 and a day from now");
      return std::nullopt;
    }
    return from_unix_seconds(t);
  }

  void settings(const json& saved) {
    Settings settings = registry_.settings();
    for (const auto& field : kSettingFields) {
      if (!saved.contains(field.key)) continue;
      auto v = pick<json>(std::string("settings.") + field.key, saved[field.key],
                          setting_value(field, baseline_.settings),
                          [&](const json& value) { return check_setting(field, value); });
      if (!v) continue;
      if (*v != setting_value(field, settings)) {
        result_.notes.push_back(std::string("restored ") + field.key + " from the state file");
      }
      set_setting(field, settings, *v);
    }
    registry_.set_settings(settings);
  }

  void service(const std::string& name, const json& saved) {
    const std::string key = "services." + name;
    auto base_it = baseline_.services.find(name);
    if (base_it == baseline_.services.end()) {
      result_.notes.push_back("service " + name + " is no longer in the config; dropped");
      return;
    }
    if (!saved.is_object()) {
      ignore(key, saved, "not an object");
      return;
    }
    const Baseline::Service& base = base_it->second;
    std::optional<bool> idle_sleep;
    if (saved.contains("idle_sleep_enabled")) {
      idle_sleep = pick<bool>(
          key + ".idle_sleep_enabled", saved["idle_sleep_enabled"], base.idle_sleep_enabled,
          [](const json& v) { return v.is_boolean() ? "" : "must be true or false"; });
    }
    std::optional<std::string> desired;
    if (saved.contains("desired")) {
      desired = pick<std::string>(key + ".desired", saved["desired"], to_string(base.desired),
                                  [](const json& v) {
                                    return v.is_string() && parse_desired(v.get<std::string>())
                                               ? ""
                                               : "must be \"on\" or \"off\"";
                                  });
    }
    std::optional<WallTime> last_used = time(key + ".last_used", saved.value("last_used", json()));
    std::size_t tier = 0;
    if (const json t = saved.value("tier", json()); !t.is_null()) {
      auto view = registry_.service(name);
      if (view && t.is_number_unsigned() &&
          t.get<std::size_t>() <= view->spec->sleep_tiers.size()) {
        tier = t.get<std::size_t>();
      } else {
        ignore(key + ".tier", t, "must be a tier of the service's sleep_tiers");
      }
    }
    std::vector<double> gaps = idle_gaps(key, saved);
    const double cold_start = measured_seconds(key, saved, "cold_start_seconds");
    // A measured GPU size (docs/gpu.md): what its processes held at most, in MiB.
    std::optional<double> gpu_mib;
    if (const json g = saved.value("gpu_measured_mib", json()); !g.is_null()) {
      if (g.is_number() && g.get<double>() >= 0 && std::isfinite(g.get<double>())) {
        gpu_mib = g.get<double>();
      } else {
        ignore(key + ".gpu_measured_mib", g, "must be a number of MiB, at least 0");
      }
    }
    // Measured idle power (energy.h): drops in watts within the config's bounds of
    // idle_power_watts, the newest kMaxIdlePowerSamples.
    std::vector<double> power = bounded_list(
        key, saved, "idle_power_samples", std::numeric_limits<double>::min(), kIdlePowerWatts.max,
        "watts, above 0 and at most 100000", kMaxIdlePowerSamples);
    registry_.update_service(name, [&](const ServiceSpec& spec, ServiceRuntime& rt) {
      if (spec.gpu_memory_measured) rt.gpu_measured_mib = gpu_mib;
      if (spec.idle_power_measured) rt.idle_power_samples = std::move(power);
      if (idle_sleep) rt.idle_sleep_enabled = *idle_sleep;
      if (desired) rt.desired = *parse_desired(*desired);
      rt.last_used = last_used;
      rt.last_used_restored = last_used.has_value();
      rt.tier = tier;
      rt.idle_gaps = std::move(gaps);
      rt.cold_start_seconds = cold_start;
    });
    if (saved.contains("handle") && !saved["handle"].is_null()) {
      result_.handles[name] = saved["handle"];
    }
  }

  // "models": {service: {name: entry}} (models are per service); a file written before that
  // has {name: entry with its provider}: each such model is restored on its provider.
  void models(const json& saved) {
    for (const auto& [first, value] : saved.items()) {
      if (value.is_object() && value.value("provider", json()).is_string()) {
        model(first, value.value("provider", json()).get<std::string>(), value);
      } else if (value.is_object() &&
                 std::all_of(value.begin(), value.end(),
                             [](const json& entry) { return entry.is_object(); })) {
        for (const auto& [name, entry] : value.items()) model(name, first, entry);
      } else {
        ignore("models." + first, value,
               "needs {model name: entry} per service, or an entry with its provider");
      }
    }
  }

  void model(const std::string& name, const std::string& provider, const json& saved) {
    const std::string key = "models." + provider + "." + name;
    if (!saved.is_object() || !saved.value("loaded", json()).is_boolean()) {
      ignore(key, saved, "needs loaded (true or false)");
      return;
    }
    ModelRuntime rt;
    rt.loaded = saved["loaded"].get<bool>();
    rt.last_used = time(key + ".last_used", saved.value("last_used", json()));
    const json keep_alive = saved.value("keep_alive_seconds", json());
    if (!keep_alive.is_null()) {
      // The bounds of the config's keep_alive_min/max_seconds.
      if (!check_number(kKeepAliveSeconds, keep_alive).empty()) {
        ignore(key + ".keep_alive_seconds", keep_alive, "must be a number of seconds >= 0");
      } else {
        rt.keep_alive_seconds = keep_alive.get<double>();
      }
    }
    // Which policy chose it and why (idle-status' policy, policy_reason): text for people, kept
    // with it; an older file has neither (idle-status then says "restored").
    const json policy = saved.value("keep_alive_policy", json());
    const json reason = saved.value("keep_alive_reason", json());
    if (rt.keep_alive_seconds && !policy.is_null()) {
      if (!policy.is_string() || policy.get<std::string>().empty() ||
          policy.get<std::string>().size() > 64 || !reason.is_string() ||
          reason.get<std::string>().size() > 1024) {
        ignore(key + ".keep_alive_policy", policy,
               "must be a policy's name with its keep_alive_reason, a text of at most 1024");
      } else {
        rt.keep_alive_policy = policy.get<std::string>();
        rt.keep_alive_reason = reason.get<std::string>();
      }
    }
    rt.idle_gaps = idle_gaps(key, saved);
    rt.load_seconds = measured_seconds(key, saved, "load_seconds");
    rt.first_seen = time(key + ".first_seen", saved.value("first_seen", json()));
    if (rt.loaded && !rt.last_used) rt.loaded = false;  // a loaded model always has a last use
    bool known =
        registry_.update_model({name, provider}, [&](const ModelSpec&, ModelRuntime& current) {
          if (!rt.first_seen) rt.first_seen = current.first_seen;  // a file from before first_seen
          current = rt;
        });
    if (!known) {
      if (!registry_.service(provider)) {
        result_.notes.push_back("model " + name + ": provider " + provider +
                                " is no longer in the config; dropped");
        return;
      }
      ModelSpec spec;
      spec.name = name;
      spec.provider = provider;
      spec.learned = true;  // not in the config; trimmed to max_learned_models by the Controller
      if (!rt.first_seen) rt.first_seen = rt.last_used.value_or(now_);  // no better guess
      registry_.add_model(spec, rt);
    }
  }

 private:
  const Baseline& baseline_;
  Registry& registry_;
  WallTime now_;
  RestoreResult& result_;
};

}  // namespace

json encode_state(const Snapshot& snapshot, const Baseline& baseline, const Handles& handles) {
  const Settings& s = snapshot.settings;
  const Settings& c = baseline.settings;
  json doc;
  doc["format"] = kFormat;
  doc["settings"] = json::object();
  for (const auto& field : kSettingFields) {
    doc["settings"][field.key] = overridable(setting_value(field, s), setting_value(field, c));
  }
  json services = json::object();
  for (const auto& view : snapshot.services) {
    const std::string& name = view.spec->name;
    Baseline::Service base;
    if (auto it = baseline.services.find(name); it != baseline.services.end()) base = it->second;
    json entry = {
        {"idle_sleep_enabled",
         overridable(view.runtime.idle_sleep_enabled, base.idle_sleep_enabled)},
        {"desired", overridable(to_string(view.runtime.desired), to_string(base.desired))},
        {"last_used", optional_time(view.runtime.last_used)}};
    // Graduated sleep: a light tier in force outlives a restart (a paused service is found
    // paused again by its backend; this says which deeper tier it had reached).
    if (view.runtime.tier > 0 && view.runtime.state != ServiceState::kStopped) {
      entry["tier"] = view.runtime.tier;
    }
    if (!view.runtime.idle_gaps.empty()) entry["idle_gaps"] = view.runtime.idle_gaps;
    if (view.runtime.cold_start_seconds > 0) {
      entry["cold_start_seconds"] = view.runtime.cold_start_seconds;
    }
    if (view.runtime.gpu_measured_mib) entry["gpu_measured_mib"] = *view.runtime.gpu_measured_mib;
    if (!view.runtime.idle_power_samples.empty()) {
      entry["idle_power_samples"] = view.runtime.idle_power_samples;
    }
    auto handle = handles.find(name);
    entry["handle"] = handle != handles.end() ? handle->second : json(nullptr);
    services[name] = std::move(entry);
  }
  doc["services"] = std::move(services);
  json models = json::object();  // per service: two may serve a model of the same name
  for (const auto& view : snapshot.models) {
    models[view.spec->provider][view.spec->name] = {
        {"loaded", view.runtime.loaded},
        {"last_used", optional_time(view.runtime.last_used)},
        {"first_seen", optional_time(view.runtime.first_seen)},
        {"keep_alive_seconds",
         view.runtime.keep_alive_seconds ? json(*view.runtime.keep_alive_seconds) : json(nullptr)}};
    json& entry = models[view.spec->provider][view.spec->name];
    if (view.runtime.keep_alive_seconds && !view.runtime.keep_alive_policy.empty()) {
      entry["keep_alive_policy"] = view.runtime.keep_alive_policy;
      entry["keep_alive_reason"] = view.runtime.keep_alive_reason;
    }
    if (!view.runtime.idle_gaps.empty()) entry["idle_gaps"] = view.runtime.idle_gaps;
    if (view.runtime.load_seconds > 0) entry["load_seconds"] = view.runtime.load_seconds;
  }
  doc["models"] = std::move(models);
  return doc;
}

Result<RestoreResult> restore_state(const json& doc, const Baseline& baseline, Registry& registry,
                                    WallTime now) {
  if (Status st = validate(doc); !st) return st;
  RestoreResult result;
  Restorer restorer(baseline, registry, now, result);
  restorer.settings(doc.value("settings", json::object()));
  const json services = doc.value("services", json::object());
  for (const auto& [name, saved] : services.items()) restorer.service(name, saved);
  restorer.models(doc.value("models", json::object()));
  return result;
}

namespace {

// Creates a new file next to `path`, named "<path>.tmp-<random>", for this save only. O_EXCL
// and O_NOFOLLOW: whatever already sits at that name (a symlink, a file someone else created)
// is never opened, so a user who can write in the directory cannot redirect the write or end
// up owning the state file. fchmod: 0600 whatever the umask.
int create_temp(const std::string& path, std::string& tmp) {
  std::random_device random;
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%08x", random());
    tmp = path + ".tmp-" + suffix;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      if (::fchmod(fd, 0600) != 0) {
        int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        errno = err;
        return -1;
      }
      return fd;
    }
    if (errno != EEXIST) return -1;
  }
  errno = EEXIST;
  return -1;
}

}  // namespace

Status check_state_directory(const std::string& state_file) {
  std::filesystem::path dir = std::filesystem::path(state_file).parent_path();
  if (dir.empty()) dir = ".";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::ok();
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) == 0) return Status::ok();
  if ((st.st_mode & S_ISVTX) != 0 && (st.st_uid == 0 || st.st_uid == ::geteuid())) {
    return Status::ok();
  }
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return {ErrorCode::kInvalidArgument,
          "its directory " + dir.string() + " is writable by other users (mode " + mode +
              (st.st_mode & S_ISVTX ? ", sticky but owned by another user" : "") +
              "), who could replace the state file; chmod go-w " + dir.string() +
              ", or use a directory only siesta's user can write"};
}

Status StateStore::save(const json& doc) {
  std::lock_guard lock(mu_);
  const std::string text = doc.dump(2) + "\n";
  std::string tmp;
  int fd = create_temp(path_, tmp);
  if (fd < 0) {
    return {ErrorCode::kInternal,
            "cannot write " + path_ + " (creating a temp file): " + std::strerror(errno)};
  }
  auto fail = [&](const std::string& what, int err) -> Status {
    ::unlink(tmp.c_str());
    return {ErrorCode::kInternal, what + ": " + std::strerror(err)};
  };
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return fail("cannot write " + tmp, err);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return fail("cannot sync " + tmp, err);
  }
  if (::close(fd) != 0) return fail("cannot sync " + tmp, errno);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return fail("cannot replace " + path_, errno);
  // The rename is durable once the directory is synced.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return {ErrorCode::kInternal,
            "cannot sync directory " + dir.string() + ": " + std::strerror(errno)};
  }
  int synced = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (synced != 0 && err != EINVAL) {  // EINVAL: the file system cannot sync a directory
    return {ErrorCode::kInternal,
            "cannot sync directory " + dir.string() + ": " + std::strerror(err)};
  }
  return Status::ok();
}

Result<std::optional<json>> StateStore::load() {
  std::lock_guard lock(mu_);
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::optional<json>();
    return Status{ErrorCode::kInternal, "cannot read " + path_ + ": " + std::strerror(errno)};
  }
  std::ostringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || validate(doc).code() != ErrorCode::kOk) {
    std::string why = doc.is_discarded() ? "not valid JSON" : validate(doc).message();
    auto stamp = static_cast<long long>(std::time(nullptr));
    std::string aside = path_ + ".corrupt-" + std::to_string(stamp);
    // A new file of siesta's own, never one already there (a symlink planted at a name that
    // is easy to guess would otherwise be written through).
    bool copied = false;
    int fd = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      const std::string& bytes = text.str();
      copied = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
      copied = ::close(fd) == 0 && copied;
      if (!copied) ::unlink(aside.c_str());
    }
    return Status{
        ErrorCode::kInvalidArgument,
        path_ + " is corrupt (" + why + "); kept a copy at " + (copied ? aside : "(copy failed)")};
  }
  return std::optional<json>(std::move(doc));
}

}  // namespace siesta
