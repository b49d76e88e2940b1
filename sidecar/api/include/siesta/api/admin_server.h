// AdminServer: the control plane on one cpp-httplib server — the seed's admin API under
// /admin, GET /metrics and GET /healthz. Every error is {"error":{"code","message","source"}}.
// Thread-safe: handlers run on httplib's pool and go through the Registry and Controller.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/registry.h"
#include "siesta/core/status.h"
#include "siesta/metrics/metrics.h"
#include "siesta/runtime/controller.h"
#include "siesta/runtime/persister.h"

namespace siesta {

struct AdminOptions {
  size_t max_body_bytes = 64 * 1024;
  // A client silent this long mid-request is answered 400 and dropped. Short, because it is
  // also how long a body-less `curl -X POST` waits (see AdminServer.cpp, is_bodyless_post).
  std::chrono::milliseconds read_timeout{100};
  size_t threads = 8;
  // When set, every /admin endpoint (and /metrics with protect_metrics) needs
  // "Authorization: Bearer <token>"; otherwise 401. Never logged.
  std::string token;
  bool protect_metrics = false;
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

  AdminServer(Registry& registry, Controller& controller, Persister& persister,
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
  // (percent-encoded); httplib decodes it the same way.
  AdminResponse handle(const std::string& method, const std::string& path,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       const std::string& body);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace siesta
