// Container labels as service configuration: the convention Traefik and Sablier users know.
// A container labelled siesta.enable=true becomes a service without a config entry; the other
// siesta.* labels set what a config entry would (see docs/configuration.md, "Docker labels").
#pragma once

#include <map>
#include <optional>
#include <string>

#include "siesta/config/config.h"
#include "siesta/core/status.h"
#include "siesta/core/units.h"

namespace siesta {

inline constexpr const char* kEnableLabel = "siesta.enable";
// Kubernetes: the label that opts a workload in is kKubePrefix + "enable"; the other settings
// are annotations with the same names after this prefix.
inline constexpr const char* kKubePrefix = "siesta.io/";
// Set by Docker Compose on the containers it creates.
inline constexpr const char* kComposeServiceLabel = "com.docker.compose.service";
inline constexpr const char* kComposeProjectLabel = "com.docker.compose.project";

// Durations are written as Docker and Traefik write them ("30m", "1h30m", "90s", "1.5h",
// "250ms"): parse_duration, core/units.h.

// True when the labels opt the container in (siesta.enable=true).
bool labels_enable(const std::map<std::string, std::string>& labels);

// The service a labelled container describes; named by siesta.name, else by its Compose
// service (com.docker.compose.service), else by the container. An unknown siesta.* label or a
// bad value is an error naming the label.
// siesta.model-api=ollama makes it a model server; siesta.model-keep-alive sets the keep-alive
// of the models it serves that have no "models" entry of their own.
Result<ServiceConfig> service_from_labels(const std::string& container,
                                          const std::map<std::string, std::string>& labels);

// The service a Swarm service's labels (Spec.Labels; Compose's deploy.labels) describe, with
// backend "swarm": named by siesta.name, else by the Swarm service. The same labels as a
// container's, and siesta.replicas (written by the Swarm backend itself) is allowed.
Result<ServiceConfig> service_from_swarm_labels(const std::string& service,
                                                const std::map<std::string, std::string>& labels);

// The service a Kubernetes workload ("deployment/web", "statefulset/db") describes with its
// siesta.io/* annotations, with backend "kubernetes": named by siesta.io/name, else by the
// workload. The same keys as a container's labels after the prefix; siesta.io/replicas
// (written by the Kubernetes backend itself) is allowed.
Result<ServiceConfig> service_from_annotations(
    const std::string& workload, const std::map<std::string, std::string>& annotations);

// What labels and annotations may ask of siesta's ports (docs/security.md): whoever can label a
// container or annotate a workload is trusted less than the config's author. A label's `listen`
// is on loopback or on `bind_host` (the admin API's own listen host) only, and never one of
// siesta's ports (the admin API's, /wake's, a config service's); its `upstream` on this host is
// none of them either (it would send clients into siesta's admin API or another service's
// proxy). Set once by main at start-up, before any discovery; until then only loopback and no
// ports are known.
struct LabelBounds {
  std::string bind_host;
  int admin_port = 0;
  int wake_port = 0;
  std::map<int, std::string> taken;  // a config service's listen port -> its name
  std::string timezone;  // the config's: a schedule label's zone without a timezone label
};
void set_label_bounds(LabelBounds bounds);

// The name a container named after its Compose service takes when another container already
// has that name (two projects with the same service): "<project>-<service>". nullopt when the
// name does not come from Compose (siesta.name set, or no Compose labels).
std::optional<std::string> compose_qualified_name(const std::map<std::string, std::string>& labels);

}  // namespace siesta
