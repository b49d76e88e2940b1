// GET /wake/{service} on proxy.wake_listen: wakes a service for a proxy users already run
// (nginx auth_request, Traefik forwardAuth): 204 once it is up, 503 in the JSON error shape if
// it could not be woken, 404 for an unknown service.

#include "server.h"
#include "siesta/core/error_json.h"

namespace siesta::proxy {

awaitable<void> Server::serve_wake(tcp::socket socket) {
  beast::tcp_stream client(std::move(socket));
  beast::flat_buffer buffer;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(64 * 1024);
    beast::error_code ec;
    client.expires_after(options_.idle_timeout);
    co_await http::async_read(client, buffer, parser, ec_token(ec));
    if (ec) co_return;
    const auto& req = parser.get();
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    std::string target(req.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    http::response<http::string_body> res;
    if (target.rfind("/wake/", 0) != 0 || target.size() == 6) {
      res = error_response(http::status::not_found, version, "not_found",
                           "no such endpoint: " + target + " (GET /wake/{service})");
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res = error_response(http::status::method_not_allowed, version, "method_not_allowed",
                           "use GET /wake/{service}");
      res.set(http::field::allow, "GET, HEAD");
    } else {
      res = co_await wake_endpoint(target.substr(6), version);
    }
    if (req.method() == http::verb::head) res.body().clear();
    res.keep_alive(keep_alive);
    co_await http::async_write(client, res, ec_token(ec));
    if (ec || !keep_alive) co_return;
  }
}

awaitable<http::response<http::string_body>> Server::wake_endpoint(const std::string& service,
                                                                   unsigned version) {
  auto state = control_.begin_request(service);
  if (!state) {
    co_return error_response(http::status::not_found, version, "not_found",
                             state.status().message());
  }
  InFlight in_flight(control_, service);
  if (*state != ServiceState::kRunning) {
    Status st = co_await wake(service);
    if (!st) {
      co_return error_response(http::status::service_unavailable, version,
                               error_code_name(st.code()), wake_failed(service) + st.message(),
                               st.retry_after());
    }
  }
  http::response<http::string_body> res{http::status::no_content, version};
  co_return res;
}

}  // namespace siesta::proxy
