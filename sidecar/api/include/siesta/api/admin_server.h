// AdminServer: the control plane on one listener — the seed's admin API under /admin,
// GET /metrics and GET /healthz. Every error is {"error":{"code","message","source"}}.
//
// Connections are read without blocking (Boost.Beast on one I/O thread): a client that holds a
// connection open, or trickles its request, costs a socket and a timer, never a thread. Each
// request passes one gate — header read within a total deadline, then authorization, then the
// body (refused from its announced size before any of it is read) — and only complete,
// authorized requests reach a handler, on a pool of `threads`. /healthz is answered on the I/O
// thread. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/registry.h"
#include "siesta/core/status.h"
#include "siesta/metrics/metrics.h"
#include "siesta/runtime/admin_actions.h"
#include "siesta/runtime/event_log.h"
#include "siesta/runtime/persister.h"

namespace siesta {

struct AdminOptions {
  size_t max_body_bytes = 64 * 1024;
  // A request's header and body must have arrived within this, counted from its first byte
  // wait (a total, not per byte); otherwise the connection is closed.
  std::chrono::milliseconds request_timeout{10'000};
  // An idle keep-alive connection is closed after this.
  std::chrono::milliseconds keep_alive_timeout{5'000};
  // Open connections at most; at the limit a new one displaces the connection that has waited
  // longest for a request, else it is closed.
  size_t max_connections = 512;
  size_t threads = 8;
  // When set, every /admin endpoint (and /metrics with protect_metrics) needs
  // "Authorization: Bearer <token>"; otherwise 401. Never logged.
  std::string token;
  bool protect_metrics = false;
  // The history behind GET /admin/events; nullptr: that endpoint answers 404.
  const EventLog* events = nullptr;
  // The currency idle-status names beside the cost saved (the config's "currency").
  std::string currency;
};

// One answer, as handle() returns it.
struct AdminResponse {
  int status = 0;
  std::string body;
  std::string content_type;
};

class AdminServer {
 public:
  using MonitorStatusFn = std::function<MonitorStatus()>;

  // Reads `registry`; every change goes through `actions` (the Controller in siesta).
  AdminServer(Registry& registry, AdminActions& actions, Persister& persister,
              const Metrics& metrics, const Clock& clock, MonitorStatusFn monitor,
              AdminOptions options = {});
  ~AdminServer();

  // Binds host:port (port 0: any free port). Returns the bound port, or why it failed.
  Result<int> bind(const std::string& host, int port);
  // Serves until stop(); call from its own thread after bind().
  void serve();
  void stop();

  // Answers one request without a socket, exactly as the server would (authorization, routing,
  // validation, the action): for the fuzzer and tests. `path` is as on the wire
  // (percent-encoded, with or without a query), decoded as the server decodes it.
  AdminResponse handle(const std::string& method, const std::string& path,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       const std::string& body);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace siesta
