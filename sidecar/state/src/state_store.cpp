#include "siesta/state/state_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

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

// A saved value applies only while the config still says what it said when it was saved.
template <typename T>
std::optional<T> pick_saved(const json& field, const T& config_now) {
  if (!field.is_object() || !field.contains("value") || !field.contains("config")) {
    return std::nullopt;
  }
  if (field["config"] != json(config_now)) return std::nullopt;
  return field["value"].get<T>();
}

Status invalid(const std::string& what) {
  return {ErrorCode::kInvalidArgument, "state file: " + what};
}

bool is_time(const json& v) {
  return v.is_null() || (v.is_number() && std::isfinite(v.get<double>()));
}

bool is_overridable(const json& v, bool (*check)(const json&)) {
  return v.is_object() && v.contains("value") && v.contains("config") && check(v["value"]) &&
         check(v["config"]);
}

bool is_bool(const json& v) { return v.is_boolean(); }
bool is_positive(const json& v) {
  return v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0;
}
bool is_non_negative(const json& v) {
  return v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= 0;
}
bool is_desired(const json& v) {
  return v.is_string() && parse_desired(v.get<std::string>()).has_value();
}

// Checks the whole document before anything is applied.
Status validate(const json& doc) {
  if (!doc.is_object()) return invalid("not a JSON object");
  if (doc.value("format", "") != kFormat)
    return invalid("unknown format (expected siesta-state/1)");
  const json& settings = doc.value("settings", json::object());
  if (!settings.is_object()) return invalid("settings is not an object");
  const std::pair<const char*, bool (*)(const json&)> setting_checks[] = {
      {"idle_sleep_enabled", is_bool},
      {"idle_timeout_minutes", is_positive},
      {"model_keep_alive_hours", is_non_negative},
      {"idle_check_interval_minutes", is_positive}};
  for (const auto& [key, check] : setting_checks) {
    if (settings.contains(key) && !is_overridable(settings[key], check)) {
      return invalid(std::string("settings.") + key + " is malformed");
    }
  }
  const json& services = doc.value("services", json::object());
  if (!services.is_object()) return invalid("services is not an object");
  for (const auto& [name, s] : services.items()) {
    if (!s.is_object()) return invalid("services." + name + " is not an object");
    if (s.contains("idle_sleep_enabled") && !is_overridable(s["idle_sleep_enabled"], is_bool)) {
      return invalid("services." + name + ".idle_sleep_enabled is malformed");
    }
    if (s.contains("desired") && !is_overridable(s["desired"], is_desired)) {
      return invalid("services." + name + ".desired is malformed");
    }
    if (s.contains("last_used") && !is_time(s["last_used"])) {
      return invalid("services." + name + ".last_used is malformed");
    }
  }
  const json& models = doc.value("models", json::object());
  if (!models.is_object()) return invalid("models is not an object");
  for (const auto& [name, m] : models.items()) {
    if (!m.is_object() || !m.value("provider", json()).is_string() ||
        !m.value("loaded", json()).is_boolean() || !is_time(m.value("last_used", json())) ||
        !(m.value("keep_alive_seconds", json()).is_null() ||
          is_non_negative(m["keep_alive_seconds"]))) {
      return invalid("models." + name + " is malformed");
    }
  }
  return Status::ok();
}

std::optional<WallTime> read_time(const json& v) {
  if (!v.is_number()) return std::nullopt;
  return from_unix_seconds(v.get<double>());
}

}  // namespace

json encode_state(const Snapshot& snapshot, const Baseline& baseline, const Handles& handles) {
  const Settings& s = snapshot.settings;
  const Settings& c = baseline.settings;
  json doc;
  doc["format"] = kFormat;
  doc["settings"] = {
      {"idle_sleep_enabled", overridable(s.idle_sleep_enabled, c.idle_sleep_enabled)},
      {"idle_timeout_minutes", overridable(s.idle_timeout_minutes, c.idle_timeout_minutes)},
      {"model_keep_alive_hours", overridable(s.model_keep_alive_hours, c.model_keep_alive_hours)},
      {"idle_check_interval_minutes",
       overridable(s.idle_check_interval_minutes, c.idle_check_interval_minutes)}};
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
    auto handle = handles.find(name);
    entry["handle"] = handle != handles.end() ? handle->second : json(nullptr);
    services[name] = std::move(entry);
  }
  doc["services"] = std::move(services);
  json models = json::object();
  for (const auto& view : snapshot.models) {
    models[view.spec->name] = {
        {"provider", view.spec->provider},
        {"loaded", view.runtime.loaded},
        {"last_used", optional_time(view.runtime.last_used)},
        {"keep_alive_seconds",
         view.runtime.keep_alive_seconds ? json(*view.runtime.keep_alive_seconds) : json(nullptr)}};
  }
  doc["models"] = std::move(models);
  return doc;
}

Result<RestoreResult> restore_state(const json& doc, const Baseline& baseline, Registry& registry) {
  if (Status st = validate(doc); !st) return st;
  RestoreResult result;

  const json& saved_settings = doc.value("settings", json::object());
  Settings settings = registry.settings();
  auto restore_setting = [&](const char* key, auto& field, const auto& config_value) {
    if (!saved_settings.contains(key)) return;
    using T = std::decay_t<decltype(field)>;
    if (auto v = pick_saved<T>(saved_settings[key], config_value)) {
      if (*v != field)
        result.notes.push_back(std::string("restored ") + key + " from the state file");
      field = *v;
    } else {
      result.notes.push_back(std::string("config file changed ") + key +
                             " since the state was saved; using the config value");
    }
  };
  restore_setting("idle_sleep_enabled", settings.idle_sleep_enabled,
                  baseline.settings.idle_sleep_enabled);
  restore_setting("idle_timeout_minutes", settings.idle_timeout_minutes,
                  baseline.settings.idle_timeout_minutes);
  restore_setting("model_keep_alive_hours", settings.model_keep_alive_hours,
                  baseline.settings.model_keep_alive_hours);
  restore_setting("idle_check_interval_minutes", settings.idle_check_interval_minutes,
                  baseline.settings.idle_check_interval_minutes);
  registry.set_settings(settings);

  const json services = doc.value("services", json::object());
  for (const auto& item : services.items()) {
    // Not a structured binding: lambdas cannot capture those in clang 14 (the fuzz build).
    const std::string& name = item.key();
    const json& saved = item.value();
    auto base_it = baseline.services.find(name);
    if (base_it == baseline.services.end()) {
      result.notes.push_back("service " + name + " is no longer in the config; dropped");
      continue;
    }
    const Baseline::Service& base = base_it->second;
    registry.update_service(name, [&](const ServiceSpec&, ServiceRuntime& rt) {
      if (saved.contains("idle_sleep_enabled")) {
        if (auto v = pick_saved<bool>(saved["idle_sleep_enabled"], base.idle_sleep_enabled)) {
          rt.idle_sleep_enabled = *v;
        }
      }
      if (saved.contains("desired")) {
        if (auto v = pick_saved<std::string>(saved["desired"], to_string(base.desired))) {
          rt.desired = *parse_desired(*v);
        }
      }
      rt.last_used = read_time(saved.value("last_used", json()));
    });
    if (saved.contains("handle") && !saved["handle"].is_null()) {
      result.handles[name] = saved["handle"];
    }
  }

  const json models = doc.value("models", json::object());
  for (const auto& [name, saved] : models.items()) {
    ModelRuntime rt;
    rt.loaded = saved["loaded"].get<bool>();
    rt.last_used = read_time(saved["last_used"]);
    if (saved["keep_alive_seconds"].is_number()) {
      rt.keep_alive_seconds = saved["keep_alive_seconds"].get<double>();
    }
    if (rt.loaded && !rt.last_used) rt.loaded = false;  // a loaded model always has a last use
    bool known =
        registry.update_model(name, [&](const ModelSpec&, ModelRuntime& current) { current = rt; });
    if (!known) {
      std::string provider = saved["provider"].get<std::string>();
      if (!registry.service(provider)) {
        result.notes.push_back("model " + name + ": provider " + provider +
                               " is no longer in the config; dropped");
        continue;
      }
      ModelSpec spec{name, provider, std::nullopt};
      spec.learned = true;  // not in the config; trimmed to max_learned_models by the Controller
      registry.add_model(spec, rt);
    }
  }
  return result;
}

Status StateStore::save(const json& doc) {
  std::lock_guard lock(mu_);
  const std::string tmp = path_ + ".tmp";
  const std::string text = doc.dump(2) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return {ErrorCode::kInternal, "cannot write " + tmp + ": " + std::strerror(errno)};
  }
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return {ErrorCode::kInternal, "cannot write " + tmp + ": " + std::strerror(err)};
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return {ErrorCode::kInternal, "cannot sync " + tmp + ": " + std::strerror(err)};
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return {ErrorCode::kInternal, "cannot replace " + path_ + ": " + std::strerror(err)};
  }
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
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
    std::error_code ec;
    std::filesystem::copy_file(path_, aside, std::filesystem::copy_options::overwrite_existing, ec);
    return Status{
        ErrorCode::kInvalidArgument,
        path_ + " is corrupt (" + why + "); kept a copy at " + (ec ? "(copy failed)" : aside)};
  }
  return std::optional<json>(std::move(doc));
}

}  // namespace siesta
