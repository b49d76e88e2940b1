#include "siesta/probe/health_probe.h"

#include <httplib.h>
#include <unistd.h>

#include "siesta/http/connect.h"

namespace siesta {

bool tcp_connects(const std::string& host, int port, std::chrono::milliseconds timeout) {
  const int fd = connect_upstream(host, port, timeout);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

bool probe_health(const ServiceSpec& spec, std::chrono::milliseconds timeout) {
  switch (spec.health.kind) {
    case HealthCheck::Kind::kNone:
      return true;
    case HealthCheck::Kind::kTcp:
      return tcp_connects(spec.upstream_host, spec.upstream_port, timeout);
    case HealthCheck::Kind::kHttp: {
      httplib::Client client(spec.upstream_host, spec.upstream_port);
      client.set_connection_timeout(timeout);
      client.set_read_timeout(timeout);
      client.set_write_timeout(timeout);
      client.set_keep_alive(false);
      auto res = client.Get(spec.health.http_path);
      return res && res->status >= 200 && res->status < 300;
    }
  }
  return false;
}

}  // namespace siesta
