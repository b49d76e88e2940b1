#include "siesta/backends/docker_client.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cctype>
#include <charconv>

#include "siesta/core/http_client_error.h"
#include "siesta/core/percent_encode.h"
#include "siesta/core/replicas.h"

namespace siesta {

using nlohmann::json;

std::string DockerEndpoint::to_string() const {
  if (kind == Kind::kUnix) return "unix://" + path;
  return "tcp://" + host + ":" + std::to_string(port);
}

Result<DockerEndpoint> parse_docker_host(const std::string& text) {
  const std::string value = text.empty() ? kDefaultDockerHost : text;
  auto bad = [&](const std::string& why) {
    return Status{ErrorCode::kInvalidArgument, "docker host \"" + value + "\": " + why};
  };
  DockerEndpoint ep;
  if (value.rfind("unix://", 0) == 0) {
    ep.kind = DockerEndpoint::Kind::kUnix;
    ep.path = value.substr(7);
    if (ep.path.empty() || ep.path.front() != '/') return bad("needs an absolute socket path");
    if (ep.path.size() >= sizeof(sockaddr_un{}.sun_path)) return bad("socket path is too long");
    return ep;
  }
  if (value.rfind("tcp://", 0) == 0) {
    std::string rest = value.substr(6);
    while (!rest.empty() && rest.back() == '/') rest.pop_back();
    auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) return bad("must be tcp://host:port");
    ep.kind = DockerEndpoint::Kind::kTcp;
    ep.host = rest.substr(0, colon);
    if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']') {
      ep.host = ep.host.substr(1, ep.host.size() - 2);
    }
    const std::string port = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), ep.port);
    if (ec != std::errc() || end != port.data() + port.size() || ep.port < 1 || ep.port > 65535) {
      return bad("port must be a number from 1 to 65535");
    }
    return ep;
  }
  return bad("must start with unix:// or tcp://");
}

std::string ApiVersion::to_string() const {
  return std::to_string(major) + "." + std::to_string(minor);
}

std::optional<ApiVersion> parse_api_version(const std::string& text) {
  ApiVersion v;
  const char* begin = text.data();
  const char* end = begin + text.size();
  auto r1 = std::from_chars(begin, end, v.major);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '.') return std::nullopt;
  auto r2 = std::from_chars(r1.ptr + 1, end, v.minor);
  if (r2.ec != std::errc() || r2.ptr != end) return std::nullopt;
  return v;
}

Result<ApiVersion> negotiate_api_version(const std::string& engine_max,
                                         const std::string& engine_min) {
  auto max = parse_api_version(engine_max);
  if (!max) return Status{ErrorCode::kFailed, "engine reports API version \"" + engine_max + "\""};
  // Engines before 1.25 do not report a minimum; they accept anything older than their own.
  auto min = engine_min.empty() ? std::optional<ApiVersion>(ApiVersion{1, 12})
                                : parse_api_version(engine_min);
  if (!min) {
    return Status{ErrorCode::kFailed, "engine reports minimum API version \"" + engine_min + "\""};
  }
  const ApiVersion pick = std::min(*max, kNewestApi);
  if (pick < kOldestApi || pick < *min) {
    return Status{ErrorCode::kFailed, "engine speaks API " + min->to_string() + " to " +
                                          max->to_string() + "; siesta speaks " +
                                          kOldestApi.to_string() + " to " + kNewestApi.to_string()};
  }
  return pick;
}

namespace {

std::map<std::string, std::string> string_map(const json& obj) {
  std::map<std::string, std::string> out;
  if (!obj.is_object()) return out;
  for (const auto& [k, v] : obj.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

std::string string_at(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string strip_slash(std::string name) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  return name;
}

Status malformed(const std::string& what) {
  return {ErrorCode::kFailed, "unexpected answer from the Docker engine: " + what};
}

}  // namespace

Result<ContainerState> parse_inspect(const json& doc) {
  if (!doc.is_object()) return malformed("container is not an object");
  auto state = doc.find("State");
  if (state == doc.end() || !state->is_object()) return malformed("container has no State");
  ContainerState c;
  c.id = string_at(doc, "Id");
  c.name = strip_slash(string_at(doc, "Name"));
  c.status = string_at(*state, "Status");
  if (c.status.empty()) return malformed("container has no State.Status");
  if (auto code = state->find("ExitCode"); code != state->end() && code->is_number_integer()) {
    c.exit_code = code->get<int>();
  }
  c.error = string_at(*state, "Error");
  if (auto health = state->find("Health"); health != state->end() && health->is_object()) {
    std::string status = string_at(*health, "Status");
    // "none" is what an engine reports for a HEALTHCHECK NONE override.
    if (!status.empty() && status != "none") c.health = status;
  }
  if (auto config = doc.find("Config"); config != doc.end() && config->is_object()) {
    if (auto labels = config->find("Labels"); labels != config->end()) {
      c.labels = string_map(*labels);
    }
  }
  return c;
}

Result<std::vector<ContainerSummary>> parse_container_list(const json& doc) {
  if (!doc.is_array()) return malformed("container list is not an array");
  std::vector<ContainerSummary> out;
  for (const auto& item : doc) {
    if (!item.is_object()) return malformed("container list holds a non-object");
    ContainerSummary c;
    c.id = string_at(item, "Id");
    if (auto names = item.find("Names");
        names != item.end() && names->is_array() && !names->empty() && names->front().is_string()) {
      c.name = strip_slash(names->front().get<std::string>());
    }
    c.state = string_at(item, "State");
    if (auto labels = item.find("Labels"); labels != item.end()) c.labels = string_map(*labels);
    out.push_back(std::move(c));
  }
  return out;
}

std::optional<DockerEvent> parse_event(const json& doc) {
  if (!doc.is_object()) return std::nullopt;
  DockerEvent e;
  e.type = string_at(doc, "Type");
  if (e.type != "container" && e.type != "service") return std::nullopt;
  e.action = string_at(doc, "Action");
  // "health_status: healthy" -> "health_status"; "exec_start: sh" -> "exec_start".
  if (auto colon = e.action.find(':'); colon != std::string::npos) e.action.resize(colon);
  auto actor = doc.find("Actor");
  if (e.action.empty() || actor == doc.end() || !actor->is_object()) return std::nullopt;
  e.id = string_at(*actor, "ID");
  if (auto attrs = actor->find("Attributes"); attrs != actor->end()) {
    e.attributes = string_map(*attrs);
  }
  if (auto it = e.attributes.find("name"); it != e.attributes.end()) e.name = it->second;
  return e;
}

namespace {

std::optional<int> replica_count(const std::string& text) {
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1 || n > kMaxWakeReplicas) {
    return std::nullopt;  // ignored: the state file's count, else 1
  }
  return n;
}

}  // namespace

Result<SwarmService> parse_service(const json& doc) {
  if (!doc.is_object()) return malformed("service is not an object");
  auto spec = doc.find("Spec");
  if (spec == doc.end() || !spec->is_object()) return malformed("service has no Spec");
  SwarmService s;
  s.id = string_at(doc, "ID");
  s.name = string_at(*spec, "Name");
  if (s.id.empty() || s.name.empty()) return malformed("service has no ID or Spec.Name");
  if (auto v = doc.find("Version"); v != doc.end() && v->is_object()) {
    if (auto index = v->find("Index"); index != v->end() && index->is_number_unsigned()) {
      s.version = index->get<std::uint64_t>();
    }
  }
  if (s.version == 0) return malformed("service " + s.name + " has no Version.Index");
  if (auto labels = spec->find("Labels"); labels != spec->end()) s.labels = string_map(*labels);
  if (auto it = s.labels.find(kReplicasLabel); it != s.labels.end()) {
    s.remembered = replica_count(it->second);
  }
  if (auto mode = spec->find("Mode"); mode != spec->end() && mode->is_object()) {
    if (auto rep = mode->find("Replicated"); rep != mode->end() && rep->is_object()) {
      // The engine omits Replicas when it is 0.
      auto n = rep->find("Replicas");
      s.replicas = n != rep->end() && n->is_number_integer() ? n->get<int>() : 0;
    }
  }
  s.spec = *spec;
  return s;
}

Result<std::vector<SwarmService>> parse_service_list(const json& doc) {
  if (!doc.is_array()) return malformed("service list is not an array");
  std::vector<SwarmService> out;
  for (const auto& item : doc) {
    auto s = parse_service(item);
    if (!s) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

json scaled_spec(const SwarmService& service, int replicas, std::optional<int> remember) {
  json spec = service.spec;
  spec["Mode"] = {{"Replicated", {{"Replicas", replicas}}}};
  if (remember) {
    if (!spec.contains("Labels") || !spec["Labels"].is_object()) spec["Labels"] = json::object();
    spec["Labels"][kReplicasLabel] = std::to_string(*remember);
  }
  return spec;
}

Result<std::vector<SwarmTask>> parse_task_list(const json& doc) {
  if (!doc.is_array()) return malformed("task list is not an array");
  std::vector<SwarmTask> out;
  for (const auto& item : doc) {
    if (!item.is_object()) return malformed("task list holds a non-object");
    SwarmTask t;
    t.id = string_at(item, "ID");
    t.desired_state = string_at(item, "DesiredState");
    if (auto status = item.find("Status"); status != item.end() && status->is_object()) {
      t.state = string_at(*status, "State");
      t.message = string_at(*status, "Err");
      if (t.message.empty()) t.message = string_at(*status, "Message");
    }
    if (t.state.empty()) return malformed("task " + t.id + " has no Status.State");
    out.push_back(std::move(t));
  }
  return out;
}

bool task_alive(const SwarmTask& task) {
  static const char* kFinal[] = {"complete", "shutdown", "failed", "rejected", "orphaned"};
  for (const char* f : kFinal) {
    if (task.state == f) return false;
  }
  return true;
}

namespace {

// The engine's {"message": "..."} on an error status, or the status itself.
std::string engine_message(const httplib::Response& res) {
  json doc = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object()) {
    std::string msg = string_at(doc, "message");
    if (!msg.empty()) return msg;
  }
  return "HTTP " + std::to_string(res.status);
}

Status engine_error(const httplib::Response& res) {
  const ErrorCode code = res.status == 404 ? ErrorCode::kNotFound : ErrorCode::kFailed;
  return {code, engine_message(res)};
}

}  // namespace

DockerClient::DockerClient(DockerEndpoint endpoint) : endpoint_(std::move(endpoint)) {}
DockerClient::~DockerClient() = default;

std::unique_ptr<httplib::Client> DockerClient::connect(Seconds read_timeout) const {
  std::unique_ptr<httplib::Client> cli;
  if (endpoint_.kind == DockerEndpoint::Kind::kUnix) {
    cli = std::make_unique<httplib::Client>(endpoint_.path);
    cli->set_address_family(AF_UNIX);
    // Without it the socket path becomes the Host header and the engine answers 400.
    cli->set_default_headers({{"Host", "localhost"}});
  } else {
    cli = std::make_unique<httplib::Client>(endpoint_.host, endpoint_.port);
  }
  cli->set_connection_timeout(std::chrono::seconds(2));
  cli->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(read_timeout));
  cli->set_write_timeout(std::chrono::seconds(5));
  cli->set_keep_alive(false);
  return cli;
}

Status DockerClient::unreachable(const std::string& what) const {
  return {ErrorCode::kUnavailable,
          "Docker engine at " + endpoint_.to_string() + " is unreachable (" + what + ")"};
}

Result<ApiVersion> DockerClient::negotiate() {
  auto cli = connect(Seconds(10));
  auto res = cli->Get("/version");
  if (!res) return unreachable(describe(res.error()));
  if (res->status != 200) return engine_error(*res);
  json doc = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return malformed("/version is not an object");
  auto picked =
      negotiate_api_version(string_at(doc, "ApiVersion"), string_at(doc, "MinAPIVersion"));
  if (!picked) return picked;
  std::lock_guard lock(mu_);
  if (version_ != *picked) {
    spdlog::info("Docker engine {} at {}: speaking API {} (engine: {} to {})",
                 string_at(doc, "Version"), endpoint_.to_string(), picked->to_string(),
                 string_at(doc, "MinAPIVersion"), string_at(doc, "ApiVersion"));
  }
  version_ = *picked;
  return picked;
}

std::optional<ApiVersion> DockerClient::api_version() const {
  std::lock_guard lock(mu_);
  return version_;
}

Result<std::string> DockerClient::prefix() {
  std::optional<ApiVersion> v = api_version();
  if (!v) {
    auto negotiated = negotiate();
    if (!negotiated) return negotiated.status();
    v = *negotiated;
  }
  return "/v" + v->to_string();
}

Result<ContainerState> DockerClient::inspect(const std::string& container) {
  auto doc = get_json("/containers/" + percent_encode(container) + "/json");
  if (!doc) return doc.status();
  return parse_inspect(*doc);
}

std::optional<ContainerStats> parse_stats(const nlohmann::json& doc) {
  if (!doc.is_object()) return std::nullopt;
  const auto cpu = doc.find("cpu_stats");
  if (cpu == doc.end() || !cpu->is_object() || !cpu->contains("cpu_usage")) return std::nullopt;
  const auto& usage = (*cpu)["cpu_usage"];
  if (!usage.is_object() || !usage.contains("total_usage") || !usage["total_usage"].is_number()) {
    return std::nullopt;
  }
  ContainerStats stats;
  stats.cpu_seconds = usage["total_usage"].get<double>() / 1e9;  // nanoseconds
  if (const auto nets = doc.find("networks"); nets != doc.end() && nets->is_object()) {
    stats.has_networks = !nets->empty();
    for (const auto& [name, net] : nets->items()) {
      for (const char* key : {"rx_bytes", "tx_bytes"}) {
        if (net.is_object() && net.contains(key) && net[key].is_number()) {
          stats.network_bytes += net[key].get<double>();
        }
      }
    }
  }
  return stats;
}

Result<ContainerStats> DockerClient::stats(const std::string& container, Seconds timeout) {
  auto doc = get_json(
      "/containers/" + percent_encode(container) + "/stats?stream=false&one-shot=true", timeout);
  if (!doc) return doc.status();
  if (auto stats = parse_stats(*doc)) return *stats;
  return malformed("stats without cpu_stats.cpu_usage.total_usage");
}

Status DockerClient::start(const std::string& container, Seconds timeout) {
  auto p = prefix();
  if (!p) return p.status();
  auto cli = connect(timeout);
  auto res = cli->Post(*p + "/containers/" + percent_encode(container) + "/start");
  if (!res) return unreachable(describe(res.error()));
  if (res->status == 204 || res->status == 304) return Status::ok();
  return engine_error(*res);
}

Status DockerClient::stop(const std::string& container, int grace_seconds) {
  auto p = prefix();
  if (!p) return p.status();
  // The engine answers once the container is gone: up to t seconds, then its SIGKILL.
  auto cli = connect(Seconds(grace_seconds + 30));
  auto res = cli->Post(*p + "/containers/" + percent_encode(container) +
                       "/stop?t=" + std::to_string(grace_seconds));
  if (!res) return unreachable(describe(res.error()));
  if (res->status == 204 || res->status == 304) return Status::ok();
  return engine_error(*res);
}

Status DockerClient::post_action(const std::string& container, const char* action) {
  auto p = prefix();
  if (!p) return p.status();
  auto cli = connect(Seconds(30));
  auto res = cli->Post(*p + "/containers/" + percent_encode(container) + "/" + action);
  if (!res) return unreachable(describe(res.error()));
  if (res->status == 204 || res->status == 304) return Status::ok();
  return engine_error(*res);
}

Status DockerClient::pause(const std::string& container) { return post_action(container, "pause"); }

Status DockerClient::unpause(const std::string& container) {
  return post_action(container, "unpause");
}

Result<std::vector<ContainerSummary>> DockerClient::list(const std::string& label) {
  const json filters = {{"label", json::array({label})}};
  auto doc = get_json("/containers/json?all=true&filters=" + percent_encode(filters.dump()));
  if (!doc) return doc.status();
  return parse_container_list(*doc);
}

Result<json> DockerClient::get_json(const std::string& path, Seconds timeout) {
  auto p = prefix();
  if (!p) return p.status();
  auto cli = connect(timeout);
  auto res = cli->Get(*p + path);
  if (!res) return unreachable(describe(res.error()));
  if (res->status != 200) return engine_error(*res);
  json doc = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return malformed("not JSON");
  return doc;
}

Result<SwarmService> DockerClient::inspect_service(const std::string& service) {
  auto doc = get_json("/services/" + percent_encode(service));
  if (!doc) return doc.status();
  return parse_service(*doc);
}

Result<std::vector<SwarmService>> DockerClient::list_services(const std::string& label) {
  const json filters = {{"label", json::array({label})}};
  auto doc = get_json("/services?filters=" + percent_encode(filters.dump()));
  if (!doc) return doc.status();
  return parse_service_list(*doc);
}

Result<std::vector<SwarmTask>> DockerClient::list_tasks(const std::string& service_id) {
  const json filters = {{"service", json::array({service_id})}};
  auto doc = get_json("/tasks?filters=" + percent_encode(filters.dump()));
  if (!doc) return doc.status();
  return parse_task_list(*doc);
}

Status DockerClient::update_service(const std::string& id, std::uint64_t version,
                                    const json& spec) {
  auto p = prefix();
  if (!p) return p.status();
  auto cli = connect(Seconds(30));
  auto res = cli->Post(
      *p + "/services/" + percent_encode(id) + "/update?version=" + std::to_string(version),
      spec.dump(), "application/json");
  if (!res) return unreachable(describe(res.error()));
  if (res->status == 200) return Status::ok();
  return engine_error(*res);
}

Result<std::string> DockerClient::swarm_state() {
  auto doc = get_json("/info");
  if (!doc) return doc.status();
  auto swarm = doc->find("Swarm");
  if (swarm == doc->end() || !swarm->is_object()) return malformed("/info has no Swarm");
  return string_at(*swarm, "LocalNodeState");
}

Status DockerClient::follow_events(const std::function<void()>& on_connected,
                                   const std::function<void(const DockerEvent&)>& on_event) {
  auto p = prefix();
  if (!p) return p.status();
  // Only what changes a container's state; health checks alone would send three exec events
  // per probe. The engine matches "health_status" against "health_status: healthy" too.
  // A Swarm service's own events (create, update, remove) and its tasks' containers starting,
  // dying and turning healthy.
  const json filters =
      events_kind_ == Events::kContainers
          ? json{{"type", json::array({"container"})},
                 {"event", json::array({"create", "start", "die", "stop", "destroy", "pause",
                                        "unpause", "health_status"})}}
          : json{{"type", json::array({"service", "container"})},
                 {"event",
                  json::array({"create", "update", "remove", "start", "die", "health_status"})}};
  // The stream is quiet while nothing happens: no read timeout short of a day.
  auto cli = connect(Seconds(86400));
  {
    std::lock_guard lock(mu_);
    if (interrupted_) return {ErrorCode::kUnavailable, "interrupted"};
    events_ = cli.get();
  }
  std::string buffer;
  int status = 0;
  auto res = cli->Get(
      *p + "/events?filters=" + percent_encode(filters.dump()),
      [&](const httplib::Response& r) {
        status = r.status;
        if (r.status != 200) return false;
        on_connected();
        return true;
      },
      [&](const char* data, size_t len) {
        buffer.append(data, len);
        // One JSON object per line.
        for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
          json doc = json::parse(buffer.substr(0, nl), nullptr, /*allow_exceptions=*/false);
          buffer.erase(0, nl + 1);
          if (auto e = parse_event(doc)) on_event(*e);
        }
        return true;
      });
  {
    std::lock_guard lock(mu_);
    events_ = nullptr;
    if (interrupted_) return {ErrorCode::kUnavailable, "interrupted"};
  }
  if (status != 0 && status != 200)
    return {ErrorCode::kFailed, "events: HTTP " + std::to_string(status)};
  if (!res) return unreachable(describe(res.error()));
  return unreachable("the event stream ended");
}

void DockerClient::resume() {
  std::lock_guard lock(mu_);
  interrupted_ = false;
}

void DockerClient::interrupt() {
  std::lock_guard lock(mu_);
  interrupted_ = true;
  if (events_ != nullptr) events_->stop();
}

}  // namespace siesta
