// DockerClient: the few Docker Engine API calls siesta needs (version, inspect, start, stop,
// list by label, events), over the engine's unix socket or TCP. The answers are parsed by pure
// functions, unit-tested against recorded engine answers.
//
// Thread-safe: every call opens its own connection, so calls for different containers run
// concurrently, and a slow stop never holds up an inspect.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/status.h"

namespace httplib {
class Client;
}

namespace siesta {

// Where the engine listens: DOCKER_HOST's "unix:///path" or "tcp://host:port".
struct DockerEndpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path = "/var/run/docker.sock";  // kUnix
  std::string host;                           // kTcp
  int port = 0;                               // kTcp
  std::string to_string() const;
};
inline constexpr const char* kDefaultDockerHost = "unix:///var/run/docker.sock";
Result<DockerEndpoint> parse_docker_host(const std::string& text);

// API versions as (major, minor): "1.41" -> {1, 41}.
struct ApiVersion {
  int major = 0;
  int minor = 0;
  auto operator<=>(const ApiVersion&) const = default;
  std::string to_string() const;
};
std::optional<ApiVersion> parse_api_version(const std::string& text);
// The oldest and newest API versions whose calls siesta knows. Every call siesta makes has the
// same shape across this range.
inline constexpr ApiVersion kOldestApi{1, 24};
inline constexpr ApiVersion kNewestApi{1, 52};
// Picks the version to speak to an engine that speaks [engine_min, engine_max]: the newest both
// sides know. An error when the ranges do not overlap.
Result<ApiVersion> negotiate_api_version(const std::string& engine_max,
                                         const std::string& engine_min);

// GET /containers/{id}/json, the parts siesta reads.
struct ContainerState {
  std::string id;
  std::string name;    // without the leading "/"
  std::string status;  // created|running|paused|restarting|removing|exited|dead
  int exit_code = 0;
  std::string error;                  // State.Error, e.g. why a start failed
  std::optional<std::string> health;  // starting|healthy|unhealthy; none without HEALTHCHECK
  std::map<std::string, std::string> labels;
};
Result<ContainerState> parse_inspect(const nlohmann::json& doc);

// One element of GET /containers/json.
struct ContainerSummary {
  std::string id;
  std::string name;   // the first of Names, without "/"
  std::string state;  // as ContainerState::status
  std::map<std::string, std::string> labels;
};
Result<std::vector<ContainerSummary>> parse_container_list(const nlohmann::json& doc);

// One object of the GET /events stream, of a container or (Swarm) a service. Health changes
// arrive as action "health_status".
struct DockerEvent {
  std::string type = "container";  // container | service
  std::string action;  // start, die, stop, health_status, create, destroy, pause, unpause, ...
  std::string id;
  std::string name;
  // A container's labels, name, image, ...; a service's name, replicas.old, replicas.new.
  std::map<std::string, std::string> attributes;
};
std::optional<DockerEvent> parse_event(const nlohmann::json& doc);

// The label on a Swarm service that remembers the replica count it sleeps from.
inline constexpr const char* kReplicasLabel = "siesta.replicas";

// GET /services/{id}, the parts siesta reads; `spec` is kept whole, since an update sends the
// whole spec back.
struct SwarmService {
  std::string id;
  std::string name;
  std::uint64_t version = 0;      // Version.Index, the update's precondition
  std::optional<int> replicas;    // Spec.Mode.Replicated.Replicas; none for a global service
  std::optional<int> remembered;  // the kReplicasLabel label, when it holds a count >= 1
  std::map<std::string, std::string> labels;  // Spec.Labels
  nlohmann::json spec;
};
Result<SwarmService> parse_service(const nlohmann::json& doc);
// GET /services (an array of the above).
Result<std::vector<SwarmService>> parse_service_list(const nlohmann::json& doc);
// The body of POST /services/{id}/update that scales `service` to `replicas` and remembers
// `remember` in its kReplicasLabel label (none: the label is left as it is). Everything else
// in the spec is sent back unchanged, as the engine needs.
nlohmann::json scaled_spec(const SwarmService& service, int replicas, std::optional<int> remember);

// One element of GET /tasks.
struct SwarmTask {
  std::string id;
  std::string state;          // new ... running, complete, shutdown, failed, rejected, remove
  std::string desired_state;  // running, shutdown, remove, ...
  std::string message;        // Status.Err, else Status.Message
};
Result<std::vector<SwarmTask>> parse_task_list(const nlohmann::json& doc);
// A task whose container may still be up: not yet in a final state.
bool task_alive(const SwarmTask& task);
// The counters of one stats reading that the activity signals use.
struct ContainerStats {
  double cpu_seconds = 0;     // cpu_stats.cpu_usage.total_usage, in seconds
  double network_bytes = 0;   // rx_bytes + tx_bytes over every network
  bool has_networks = false;  // false on the host's network (--network host): no counters
};
std::optional<ContainerStats> parse_stats(const nlohmann::json& doc);

class DockerClient {
 public:
  explicit DockerClient(DockerEndpoint endpoint);
  ~DockerClient();
  const DockerEndpoint& endpoint() const { return endpoint_; }

  // GET /version and picks the API version (see negotiate_api_version). Called before the
  // first versioned call and again after the engine went away, since it may come back newer.
  Result<ApiVersion> negotiate();
  std::optional<ApiVersion> api_version() const;

  Result<ContainerState> inspect(const std::string& container);
  // 304 (already started / already stopped) is success. `timeout` bounds the whole call; a
  // stop blocks in the engine for up to `grace_seconds`.
  Status start(const std::string& container, Seconds timeout);
  Status stop(const std::string& container, int grace_seconds);
  // POST /containers/{id}/pause and /unpause (the cgroup freezer).
  Status pause(const std::string& container);
  Status unpause(const std::string& container);
  // GET /containers/{id}/stats?stream=false&one-shot=true: one reading of the container's
  // counters (cgroup v1 or v2), without the engine's second reading for precpu_stats.
  Result<ContainerStats> stats(const std::string& container, Seconds timeout);
  // Containers (running or not) carrying `label` ("key" or "key=value").
  Result<std::vector<ContainerSummary>> list(const std::string& label);

  // Swarm services. A node that is not a swarm manager is answered 503, an error here.
  Result<SwarmService> inspect_service(const std::string& service);
  Result<std::vector<SwarmService>> list_services(const std::string& label);
  Result<std::vector<SwarmTask>> list_tasks(const std::string& service_id);
  // POST /services/{id}/update?version=: `spec` replaces the service's spec.
  Status update_service(const std::string& id, std::uint64_t version, const nlohmann::json& spec);
  // GET /info's Swarm.LocalNodeState: "active", "inactive", "pending", "error", "locked".
  Result<std::string> swarm_state();

  // Which events follow_events() asks for: containers (the default), or Swarm services and
  // their tasks' containers.
  enum class Events { kContainers, kSwarm };
  void set_events(Events events) { events_kind_ = events; }

  // Follows GET /events for containers until the stream ends or interrupt() is called. Calls
  // on_connected once the engine accepted the request, then on_event per event. Returns the
  // reason the stream ended.
  Status follow_events(const std::function<void()>& on_connected,
                       const std::function<void(const DockerEvent&)>& on_event);
  // Ends a follow_events() in progress (from another thread) and any later one, until resume().
  void interrupt();
  void resume();

 private:
  std::unique_ptr<httplib::Client> connect(Seconds read_timeout) const;
  Result<std::string> prefix();
  // POST /containers/{container}/{action}: 204 (or 304) is success.
  Status post_action(const std::string& container, const char* action);
  Status unreachable(const std::string& what) const;
  Result<nlohmann::json> get_json(const std::string& path, Seconds timeout = Seconds(10));

  DockerEndpoint endpoint_;
  Events events_kind_ = Events::kContainers;
  mutable std::mutex mu_;
  std::optional<ApiVersion> version_;  // guarded by mu_
  httplib::Client* events_ = nullptr;  // guarded by mu_: the stream in progress
  bool interrupted_ = false;           // guarded by mu_
};

}  // namespace siesta
