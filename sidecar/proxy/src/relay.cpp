// Streaming: an HTTP response to the client piece by piece (relay_response), and bytes both ways
// for TCP mode and upgraded connections (pump, relay, relay_upgraded) with the half-close rules
// in docs/proxy.md. Also what watches a connection meanwhile: its idle timer (watch_idle) and
// its client (watch_client).

#include "server.h"

namespace siesta::proxy {

awaitable<void> watch_idle(std::shared_ptr<Activity> a) {
  while (!a->done) {
    a->timer.expires_at(std::min(a->last + a->timeout, SteadyClock::now() + a->period));
    beast::error_code ec;
    co_await a->timer.async_wait(ec_token(ec));
    if (a->done) co_return;
    if (a->paused) {
      a->touch();
    } else if (SteadyClock::now() - a->last >= a->timeout) {
      a->expired = true;
      a->on_idle();
      co_return;
    }
  }
}

// A receive that only peeks, not async_wait: Asio re-arms epoll (an epoll_ctl) for every wait,
// while a receive waits on the readiness epoll already reports.
void watch_client(tcp::socket& socket, const std::shared_ptr<ClientWatch>& w) {
  w->active = true;
  socket.async_receive(net::buffer(&w->peeked, 1), tcp::socket::message_peek,
                       [w](beast::error_code ec, std::size_t n) {
                         if (!w->active) return;  // stopped: the socket may be gone
                         w->active = false;
                         if (!ec && n > 0) return;  // the next request, pipelined: still there
                         w->gone = true;
                         w->on_gone();
                       });
}

// A response after its header was read: the header goes to the client, then the body, each
// piece passed on as it arrives. `load_scan`: the response pays a model's load and is scanned
// for its price. `ec`: why it ended early (either side), else none.
awaitable<void> Server::relay_response(beast::tcp_stream& client, beast::tcp_stream& upstream,
                                       beast::flat_buffer& upstream_buf,
                                       http::response_parser<http::buffer_body>& res_parser,
                                       bool has_body, RelayBuffer& buf, LoadMeter* load_scan,
                                       Activity& activity, beast::error_code& ec) {
  auto& res = res_parser.get();
  http::serializer<false, http::buffer_body> rs{res};
  // When body bytes already came in with the header (a small answer), the header goes out
  // with the first piece of the body in one write; otherwise (a stream whose first chunk is
  // still to come) the header goes now, so the client sees it at once.
  if (!has_body || (upstream_buf.size() == 0 && !res_parser.is_done())) {
    activity.touch();
    co_await http::async_write_header(client, rs, ec_token(ec));
  }
  // The response body, each piece passed on as soon as it arrives (token streams).
  while (!ec && has_body) {
    if (!res_parser.is_done()) {
      res.body().data = buf.data();
      res.body().size = buf.size();
      activity.touch();
      co_await http::async_read_some(upstream, upstream_buf, res_parser, ec_token(ec));
      // A close-delimited body ends at the upstream's EOF; the parser completes it then.
      if (ec == http::error::need_buffer) ec = {};
      // Whatever else has arrived already (a stream's next chunks, read together) goes out in
      // the same write: Beast's parser stops at each chunk.
      if (!ec) take_buffered(res_parser, upstream_buf, ec);
      if (ec) break;
      set_piece(res.body(), buf.data(), buf.size() - res.body().size, !res_parser.is_done());
      if (load_scan) {
        load_scan->feed({buf.data(), res.body().size});
      }
      if (res.body().size == 0 && res.body().more) continue;
    } else {
      set_piece(res.body(), nullptr, 0, false);
    }
    activity.touch();
    co_await http::async_write(client, rs, ec_token(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec || rs.is_done()) break;
    buf.grow_if_filled(res.body().size, upstream_buf);
  }
}

// Relays one direction: `first` (bytes already read past an HTTP exchange), then whatever
// `from` sends. An EOF is passed on as a half-close (the other way goes on) unless
// `end_on_eof`; then, and on any error, both sockets are closed, which ends the other way too.
awaitable<void> Server::pump(tcp::socket& from, tcp::socket& to, std::string first, bool end_on_eof,
                             std::shared_ptr<Activity> activity) {
  char buf[kChunk];
  beast::error_code ec;
  if (!first.empty()) co_await net::async_write(to, net::buffer(first), ec_token(ec));
  while (!ec) {
    std::size_t n = co_await from.async_read_some(net::buffer(buf), ec_token(ec));
    if (ec) break;
    if (activity) activity->touch();
    co_await net::async_write(to, net::buffer(buf, n), ec_token(ec));
  }
  if (ec == net::error::eof && !end_on_eof) {
    to.shutdown(tcp::socket::shutdown_send, ec);  // half-close: the other way goes on
    if (activity) activity->half_closed();
  } else {
    from.close(ec);
    to.close(ec);
  }
}

// Relays both ways at once until both have ended. `to_client` and `to_upstream` are sent
// first. An upstream's EOF is passed on as a half-close (the client may still send); with
// `client_eof_ends`, a client's EOF ends the whole connection, like nginx's stream proxy
// (proxy_half_close off): a client that went away leaves nothing in flight. Without it, a
// client's EOF is passed on as a half-close too.
awaitable<void> Server::relay(tcp::socket& client, tcp::socket& upstream, bool client_eof_ends,
                              std::shared_ptr<Activity> activity, std::string to_client,
                              std::string to_upstream) {
  auto ex = co_await net::this_coro::executor;
  auto other_done = std::make_shared<net::steady_timer>(ex, SteadyClock::time_point::max());
  auto finished = std::make_shared<bool>(false);
  net::co_spawn(ex, pump(upstream, client, std::move(to_client), false, activity),
                [other_done, finished](std::exception_ptr) {
                  *finished = true;
                  other_done->cancel();
                });
  co_await pump(client, upstream, std::move(to_upstream), client_eof_ends, activity);
  beast::error_code ec;
  if (!*finished) co_await other_done->async_wait(ec_token(ec));
}

// An upgraded connection (the upstream answered 101): the 101 header goes to the client, then
// bytes both ways (those either side sent past the HTTP exchange first), with TCP mode's
// rules for closes: the client's ends the connection at once (a client that went away leaves
// nothing in flight, whatever the upstream does), the upstream's is passed on as a half-close.
// It is in flight all along (the caller's InFlight) and counted as upgraded. Nothing moving
// for upgraded_idle_timeout closes it; without one, only a half-closed connection is bounded
// (idle_timeout), so a client that never closes its side cannot keep it forever.
awaitable<void> Server::relay_upgraded(Listener& l, beast::tcp_stream& client,
                                       beast::tcp_stream& upstream,
                                       http::response<http::buffer_body>& res,
                                       beast::flat_buffer& client_buf,
                                       beast::flat_buffer& upstream_buf, Activity& activity) {
  UpgradedCount upgraded(control_, l.service);
  if (l.upgraded_idle_timeout) {
    activity.phase(*l.upgraded_idle_timeout);
  } else {
    activity.paused = true;
  }
  activity.half_closed_timeout = options_.idle_timeout;
  http::serializer<false, http::buffer_body> rs{res};
  beast::error_code ec;
  co_await http::async_write_header(client, rs, ec_token(ec));
  if (ec) co_return;
  std::string to_client = beast::buffers_to_string(upstream_buf.data());
  std::string to_upstream = beast::buffers_to_string(client_buf.data());
  upstream_buf.clear();
  client_buf.clear();
  co_await relay(client.socket(), upstream.socket(), true, activity.shared_from_this(),
                 std::move(to_client), std::move(to_upstream));
  if (activity.expired) idle_closed(l, "upgraded", activity.timeout);
}

// Says that siesta closed a relayed connection for its idle timeout (a forgotten browser tab
// or client), so an operator can tell it from a close by either end.
void Server::idle_closed(const Listener& l, const char* kind, SteadyClock::duration after) {
  spdlog::info("Proxy: closed an idle {} connection to {} (nothing moved for {:.1f} s)", kind,
               l.service, std::chrono::duration<double>(after).count());
  recorder_.proxy_idle_closed(l.service, kind);
}

}  // namespace siesta::proxy
