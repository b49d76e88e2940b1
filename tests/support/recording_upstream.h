// The proxy's wire tests against the siesta binary: upstream_socket.h's raw client and recording
// upstream, and ProxyWire, a service in front of one.
#pragma once

#include "siesta_process.h"
#include "upstream_socket.h"

namespace siesta::testing {

class ProxyWire : public ::testing::Test {
 protected:
  TempDir dir;
  int listen = free_port();

  // A service whose process does nothing and whose upstream is `upstream_port` (a recording
  // upstream); `fields` adds config keys to the service, `top` to the top level.
  // `health`: the service's health check ("none": ready once started).
  std::string config(int upstream_port, const std::string& fields = "", const std::string& top = "",
                     const std::string& health = "none") {
    return R"({"idle_check_interval_minutes": 10, )" + top +
           R"("services": {"web": {"command": ["sleep", "300"], "health": ")" + health + R"(", )" +
           R"("upstream": "127.0.0.1:)" + std::to_string(upstream_port) +
           R"(", "listen": "127.0.0.1:)" + std::to_string(listen) + "\"" + fields + "}}}";
  }
};

// The service "web"'s requests and connections in flight, from idle-status; -1 if absent.
inline int in_flight(const SiestaProcess& siesta) {
  const nlohmann::json st = status_of(siesta, "web");
  return st.contains("in_flight") ? st["in_flight"].get<int>() : -1;
}

}  // namespace siesta::testing
