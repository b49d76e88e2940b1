// One readiness probe of a service's upstream: a TCP connect, or an HTTP GET that must answer
// 2xx. Shared by the backends; stateless and thread-safe.
#pragma once

#include <chrono>

#include "siesta/core/service.h"

namespace siesta {

// True when the service's health check passes now (always true for HealthCheck::kNone).
// Never blocks longer than `timeout`.
bool probe_health(const ServiceSpec& spec,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

// A TCP connect to host:port, closed at once.
bool tcp_connects(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace siesta
