// Container labels as service configuration: the convention Traefik and Sablier users know.
// A container labelled siesta.enable=true becomes a service without a config entry; the other
// siesta.* labels set what a config entry would (see docs/configuration.md, "Docker labels").
#pragma once

#include <map>
#include <optional>
#include <string>

#include "siesta/config/config.h"
#include "siesta/core/status.h"

namespace siesta {

inline constexpr const char* kEnableLabel = "siesta.enable";

// Go-style durations, as Docker and Traefik write them: "30m", "1h30m", "90s", "1.5h",
// "250ms". A unit is required except for "0". Seconds, or nullopt when malformed or negative.
std::optional<double> parse_duration(const std::string& text);

// True when the labels opt the container in (siesta.enable=true).
bool labels_enable(const std::map<std::string, std::string>& labels);

// The service a labelled container describes; named by siesta.name, else by the container.
// An unknown siesta.* label or a bad value is an error naming the label.
Result<ServiceConfig> service_from_labels(const std::string& container,
                                          const std::map<std::string, std::string>& labels);

}  // namespace siesta
