// Proxy: siesta's data plane. Each service with a `listen` address gets a port on siesta that
// forwards to its upstream — HTTP/1.1 (a streaming reverse proxy) or raw TCP — and wakes the
// service when a request or connection arrives while it sleeps. Optionally, GET /wake/{service}
// on `proxy.wake_listen` wakes a service for proxies users already run (nginx auth_request,
// Traefik forwardAuth).
//
// Every request or connection is in flight (ProxyControl::begin_request) from arrival until its
// response or stream has ended, so a service is never put to sleep under a running stream.
// Concurrent requests to a sleeping service share one start.
//
// Runs on its own I/O threads (Boost.Asio, C++20 coroutines), separate from the admin API's
// pool, so streams and connections never starve /admin or /metrics. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/model_api.h"
#include "siesta/core/proxy_control.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"
#include "siesta/core/service.h"
#include "siesta/core/status.h"

namespace siesta {

struct ProxyOptions {
  int threads = 2;
  std::string wake_host;  // empty: no /wake listener
  int wake_port = 0;
  std::chrono::milliseconds connect_timeout{5000};
  // Nothing moving while a request or its response is relayed (nginx's proxy_read_timeout).
  std::chrono::milliseconds idle_timeout{300'000};
  std::chrono::milliseconds header_timeout{60'000};     // to receive a whole request header
  std::chrono::milliseconds body_timeout{60'000};       // between two reads of a request body
  std::chrono::milliseconds keepalive_timeout{75'000};  // idle between two requests
  int max_connections = 4096;                           // client connections on all ports
  // Per service: new upstream connections opened after a wake and not yet answered (the burst
  // would overflow a small listen backlog; docs/proxy.md), and idle keep-alive connections kept.
  int upstream_max_connecting = 4;
  int upstream_idle_connections = 16;
  // An upstream connection idle this long is closed, not used (the upstream may be closing it).
  std::chrono::milliseconds upstream_idle_timeout{4000};
  // The API a model server speaks (core/model_api.h), by the service's model_api; unset or
  // nullptr: the proxy tracks no models.
  std::function<const ModelApi*(ServiceSpec::ModelApi)> model_api_of;
  // The usual cold start of a service (seconds), for the waking page; unset or nullopt: none
  // measured yet.
  std::function<std::optional<double>(const std::string& service)> expected_wake_seconds;
};

class Proxy {
 public:
  // `control` is the runtime's side (the Controller in siesta, a fake in unit tests); `clock`
  // times what the proxy reports (sidecar/proxy/DESIGN.md, "Time").
  Proxy(Registry& registry, ProxyControl& control, Recorder& recorder, const Clock& clock,
        ProxyOptions options);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds the listen port of every service that has one, and the /wake port. An error names
  // the address; nothing stays bound after one.
  Status bind(const std::vector<ServiceSpec>& services);
  // A service added at runtime (e.g. found by its labels). Works before and after start().
  Status add(const ServiceSpec& spec);
  // The bound port of a service (0 if none), or of /wake.
  int port_of(const std::string& service) const;
  int wake_port() const;

  void start();
  // Closes the listeners and every connection, then joins the threads.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace siesta
