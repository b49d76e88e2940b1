// A client's HTTP connection: its requests one after another (each forwarded by forward.cpp),
// its timeouts per phase, a malformed or ambiguous request refused, a lingering close; and the
// upstream connections an exchange takes (open_upstream: the kept one, the pool's, a new one)
// and gives back (park).

#include "server.h"
#include "siesta/http/connect.h"
#include "siesta/http/framing.h"

namespace siesta::proxy {

// How often an HTTP connection's Activity timer checks at least: its shortest usual timeout.
SteadyClock::duration Server::check_period() const {
  return std::min({SteadyClock::duration(options_.header_timeout),
                   SteadyClock::duration(options_.body_timeout),
                   SteadyClock::duration(options_.keepalive_timeout),
                   SteadyClock::duration(options_.idle_timeout)});
}

awaitable<void> Server::serve_http(Listener& l, tcp::socket socket) {
  Admitted admitted(*this, l);
  beast::tcp_stream client(std::move(socket));
  beast::flat_buffer client_buf;
  std::optional<beast::tcp_stream> upstream;
  beast::flat_buffer upstream_buf;
  SteadyClock::time_point upstream_idle_since;  // of the upstream connection kept
  std::string peer;
  {
    beast::error_code ec;
    auto ep = client.socket().remote_endpoint(ec);
    if (!ec) peer = ep.address().to_string();
  }
  // The first request's header has header_timeout from the connection's start.
  auto activity =
      std::make_shared<Activity>(client.get_executor(), options_.header_timeout, check_period());
  activity->on_idle = [&client, &upstream] {
    beast::error_code ignored;
    client.socket().close(ignored);
    if (upstream) upstream->socket().close(ignored);
  };
  ActivityScope scope(activity);
  net::co_spawn(client.get_executor(), watch_idle(activity), net::detached);
  // Beast reads as much as the buffer has room for (at least 512 bytes): room for a whole
  // usual header in one read.
  client_buf.reserve(kHeaderRead);
  for (bool first = true;; first = false) {
    http::request_parser<http::buffer_body> req_parser;
    req_parser.header_limit(kHeaderLimit);
    req_parser.body_limit(kNoBodyLimit);
    static auto check_extensions = http_framing::check_chunk_extensions;  // outlives parsers
    req_parser.on_chunk_header(check_extensions);
    beast::error_code ec;
    if (!first && client_buf.size() == 0) {
      // Between requests: keepalive_timeout until the next one starts, then header_timeout
      // for its whole header (a header trickled byte by byte is cut). An idle connection
      // keeps no response buffer.
      activity->phase(options_.keepalive_timeout);
      if (upstream_buf.size() == 0) upstream_buf.shrink_to_fit();
      if (client_buf.capacity() > kHeaderRead) client_buf.shrink_to_fit();  // after a body
      const std::size_t n =
          co_await client.socket().async_read_some(client_buf.prepare(kHeaderRead), ec_token(ec));
      client_buf.commit(n);
      if (ec) {
        // Between requests the upstream connection is free.
        park(l, upstream, upstream_buf, upstream_idle_since);
        co_return;
      }
    }
    if (!first) activity->phase(options_.header_timeout);
    co_await http::async_read_header(client, client_buf, req_parser, ec_token(ec));
    if (ec) {
      park(l, upstream, upstream_buf, upstream_idle_since);  // no request started on it
      if (ec != http::error::end_of_stream && ec != net::error::eof &&
          ec != beast::error::timeout && ec != net::error::connection_reset &&
          ec != net::error::operation_aborted) {
        auto res = error_response(http::status::bad_request, 11, "bad_request",
                                  "malformed request: " + ec.message());
        res.keep_alive(false);
        co_await http::async_write(client, res, ec_token(ec));
      }
      co_return;
    }
    if (auto error = http_framing::framing_error(req_parser.get(), req_parser.get().version())) {
      auto res =
          error_response(error->status, req_parser.get().version(), error->code, error->message);
      recorder_.proxy_request(l.service, static_cast<int>(res.result_int()), Seconds(0));
      co_await answer(client, std::move(res), false);
      client.socket().shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
    const bool keep_alive = co_await forward(l, client, client_buf, upstream, upstream_buf,
                                             upstream_idle_since, req_parser, peer, *activity);
    if (!keep_alive) {
      park(l, upstream, upstream_buf);  // forward() leaves it only when its response is whole
      client.socket().shutdown(tcp::socket::shutdown_send, ec);
      if (!req_parser.is_done()) co_await linger(client);  // its body still coming
      co_return;
    }
  }
}

// After the last answer on a connection whose client may still be sending (a request body

// client closes or kLingerFor passes, like nginx's lingering close. Closing with unread bytes
// would send a reset, which can make the client lose the answer it has not read yet.
awaitable<void> Server::linger(beast::tcp_stream& client) {
  constexpr auto kLingerFor = std::chrono::seconds(2);
  char sink[4096];
  client.expires_after(kLingerFor);
  beast::error_code ec;
  while (!ec) co_await client.async_read_some(net::buffer(sink), ec_token(ec));
}

// Sends one answer made by siesta itself; false when the connection must close.
awaitable<bool> Server::answer(beast::tcp_stream& client, http::response<http::string_body> res,
                               bool keep_alive) {
  res.keep_alive(keep_alive);
  beast::error_code ec;
  co_await http::async_write(client, res, ec_token(ec));
  co_return keep_alive && !ec;
}

// The upstream as a Host value, for an HTTP/1.0 request that came without one.
std::string Server::upstream_authority(const Listener& l) {
  const bool v6 = l.upstream_host.find(':') != std::string::npos;
  return (v6 ? "[" + l.upstream_host + "]" : l.upstream_host) + ":" + l.upstream_port;
}

// A connection to the upstream: an idle one from its pool when there is one (`reused`), else a
// new one. `bounded` (a request released by a wake): opened once fewer than
// upstream_max_connecting other new ones are unproven (`slot`: done() when this one's header
// came or kUnprovenFor passed), waiting for that or a freed connection up to response_timeout
// (or until *stop_waiting is called). Then connects within connect_timeout. ec says why there
// is none.
awaitable<std::optional<tcp::socket>> Server::open_upstream(Listener& l, bool bounded, bool& reused,
                                                            UpstreamPool::Slot& slot,
                                                            beast::error_code& ec,
                                                            std::function<void()>* stop_waiting) {
  reused = false;
  const auto ex = co_await net::this_coro::executor;
  UpstreamPool::Grant grant;
  if (bounded) {
    grant = co_await l.pool->acquire(l.response_timeout, stop_waiting);
  } else {
    grant.reused = l.pool->take_idle(ex);
  }
  if (grant.reused) {
    reused = true;
    co_return std::move(grant.reused);
  }
  if (bounded && !grant.slot) {
    ec = net::error::try_again;  // no slot nor connection came free in time
    co_return std::nullopt;
  }
  slot = std::move(grant.slot);
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(l.upstream_host, l.upstream_port, ec_token(ec));
  if (ec) co_return std::nullopt;
  beast::tcp_stream connecting(ex);
  connecting.expires_after(options_.connect_timeout);
  co_await connecting.async_connect(endpoints, ec_token(ec));
  if (ec) co_return std::nullopt;
  tcp::socket socket = connecting.release_socket();
  if (self_connected(socket.native_handle())) {
    // Nothing listens there: the connect met its own socket (http/connect.h), which would echo
    // the request back as the answer (or a TCP client's bytes back to it). Reset, so that the
    // port is not left in TIME_WAIT for the service to bind.
    beast::error_code ignored;
    socket.set_option(net::socket_base::linger(true, 0), ignored);
    ec = net::error::connection_refused;
    co_return std::nullopt;
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  recorder_.proxy_upstream_connection(l.service, false);
  co_return socket;
}

// Gives a free upstream connection (its last response complete, nothing unread) back to the
// pool: to a request that waits, or kept idle for the next.

// `idle_since`: when its last response ended (a connection kept by its client may have been
// idle a while: its age counts against upstream_idle_timeout from then).
void Server::park(Listener& l, std::optional<beast::tcp_stream>& upstream,
                  const beast::flat_buffer& upstream_buf, SteadyClock::time_point idle_since) {
  if (upstream && upstream_buf.size() == 0) {
    l.pool->release(upstream->release_socket(), idle_since);
  }
  upstream.reset();
}

}  // namespace siesta::proxy
