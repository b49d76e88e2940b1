// A TCP-mode connection: in flight from accept to close, the service woken first if it sleeps
// (the client watched meanwhile), then bytes both ways (relay.cpp) with tcp_idle_timeout.

#include "server.h"

namespace siesta::proxy {

awaitable<void> Server::serve_tcp(Listener& l, tcp::socket client) {
  Admitted admitted(*this, l);
  const MonoTime t0 = clock_.mono_now();
  const WallTime arrived = clock_.wall_now();
  auto state = control_.begin_request(l.service);
  if (!state) co_return;
  InFlight in_flight(control_, l.service);
  UseTrace trace(recorder_, clock_, l.service, arrived, t0);  // GET /admin/trace
  const bool woke = *state != ServiceState::kRunning;
  if (woke) {
    bool gone = false;
    Status st = co_await wake(l.service, &client, &gone);
    trace.waited = seconds_since(clock_, t0);
    if (gone) co_return;
    if (!st) {
      spdlog::warn("Proxy: connection to {} dropped: {}", l.service, st.message());
      co_return;
    }
  }
  auto ex = co_await net::this_coro::executor;
  beast::error_code ec;
  bool reused = false;      // never: a TCP connection is not given back
  UpstreamPool::Slot slot;  // given back at once: a TCP upstream may speak last
  auto opened = co_await open_upstream(l, woke, reused, slot, ec, nullptr);
  slot.done();
  if (!opened) {
    spdlog::warn("Proxy: service {} refused the connection: {}", l.service, ec.message());
    co_return;
  }
  tcp::socket upstream = std::move(*opened);
  // tcp_idle_timeout: nothing moving either way closes the connection.
  std::shared_ptr<Activity> activity;
  std::optional<ActivityScope> activity_scope;
  if (l.tcp_idle_timeout) {
    activity = std::make_shared<Activity>(ex, *l.tcp_idle_timeout, *l.tcp_idle_timeout);
    activity->on_idle = [&client, &upstream] {
      beast::error_code ignored;
      client.close(ignored);
      upstream.close(ignored);
    };
    activity_scope.emplace(activity);
    net::co_spawn(ex, watch_idle(activity), net::detached);
  }
  co_await relay(client, upstream, true, activity);
  if (activity && activity->expired) idle_closed(l, "tcp", activity->timeout);
  recorder_.proxy_connection(l.service);
}

}  // namespace siesta::proxy
