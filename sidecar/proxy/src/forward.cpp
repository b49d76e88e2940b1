// One HTTP exchange (forward), in steps over its state (Exchange, server.h): the request begins
// (ProxyControl::begin_request) and is in flight until forward() returns; siesta's own answers
// (the waking page's paths, what the model API answers without the server); a sleeping service
// is woken through the wake gate; the header is rewritten (hop-by-hop, X-Forwarded-*, one
// framing); a model request's body is read through its ModelApi and room made for its load; an
// upstream connection is taken, the request body relayed as it arrives, and the answer's header
// read (interim answers dropped, an early answer passed on); then the answer: a switch of
// protocols (relay_upgraded), or its header and body (relay.cpp streams the body).
//
// A step returns an engaged optional when the exchange ended there (its value: whether the
// client connection stays open), nullopt to go on.

#include "server.h"
#include "siesta/core/decide.h"
#include "siesta/core/error_json.h"
#include "siesta/http/framing.h"
#include "siesta/proxy/wake_page.h"

namespace siesta::proxy {

// Forwards one request and its response. Returns whether the client connection stays open.
awaitable<bool> Server::forward(Listener& l, beast::tcp_stream& client,
                                beast::flat_buffer& client_buf,
                                std::optional<beast::tcp_stream>& upstream,
                                beast::flat_buffer& upstream_buf,
                                SteadyClock::time_point& upstream_idle_since,
                                http::request_parser<http::buffer_body>& req_parser,
                                const std::string& peer, Activity& activity) {
  Exchange x(l, client, client_buf, upstream, upstream_buf, upstream_idle_since, req_parser, peer,
             activity, clock_.mono_now());
  x.arrived = clock_.wall_now();

  if (auto own = own_answer(x)) {
    // Answered without reading a body: the connection cannot carry another request.
    co_return co_await reply(x, std::move(*own), x.keep_alive && req_parser.is_done());
  }
  if (l.model_api != nullptr) {
    if (auto ended = co_await unknown_model(x)) co_return *ended;
  }

  auto state = control_.begin_request(l.service, !x.probe);
  if (!state) {
    co_return co_await reply(
        x,
        error_response(http::status::not_found, x.version, "not_found", state.status().message()),
        false);
  }
  x.in_flight.emplace(control_, l.service, !x.probe);
  // A use (not a probe) goes into the trace, however it ends.
  if (!x.probe) x.trace.emplace(recorder_, clock_, l.service, x.arrived, x.t0);
  if (*state != ServiceState::kRunning) {
    if (auto ended = co_await wake_asleep(x)) co_return *ended;
  }
  activity.phase(options_.body_timeout);  // from here: body_timeout between two body reads

  // A client that waits for "100 Continue" gets it from siesta, now that the service is up.
  if (!co_await send_continue(x)) co_return false;
  rewrite_request(x);
  if (l.model_api != nullptr) {
    if (auto ended = co_await read_model_request(x)) co_return *ended;
  }

  // From here the client is watched: one that leaves closes the exchange's sockets.
  x.watch->on_gone = [&x] {
    if (x.stop_waiting) x.stop_waiting();
    beast::error_code ignored;
    x.client.socket().close(ignored);
    if (x.upstream) x.upstream->socket().close(ignored);
  };
  ClientWatchScope watching(client.socket(), x.watch);
  if (auto ended = co_await send_request(x)) co_return *ended;
  co_return co_await relay_answer(x, watching);
}

void Server::record(const Exchange& x) {
  recorder_.proxy_request(x.l.service, x.status_sent, Seconds(seconds_since(clock_, x.t0)));
}

awaitable<bool> Server::reply(Exchange& x, http::response<http::string_body> res, bool keep_alive) {
  x.status_sent = static_cast<int>(res.result_int());
  record(x);
  co_return co_await answer(x.client, std::move(res), keep_alive);
}

std::optional<http::response<http::string_body>> Server::own_answer(Exchange& x) {
  if (x.l.wake_page) {
    const std::string_view target(x.req.target().data(), x.req.target().size());
    if (target.starts_with(wake_page::kPrefix)) return siesta_path(x.l, x.req, target);
  }
  // What the model server's API answers without the server, before a use or a wake.
  return model_api_answer(x.l, x.req, x.version, x.head, x.probe);
}

awaitable<std::optional<bool>> Server::wake_asleep(Exchange& x) {
  const std::string& service = x.l.service;
  if (auto view = registry_.service(service); view && light_asleep(view->runtime)) {
    x.woke_from = std::string("warm-from=") + tier_name(*view->spec, view->runtime);
  }
  const MonoTime w0 = clock_.mono_now();
  x.activity.paused = true;
  bool gone = false;
  // A browser's navigation gets the waking page if the wake takes longer than the grace.
  const bool page = x.l.wake_page && wake_page::is_navigation(x.req);
  bool still_waking = false;
  WakeReport report;  // what the wake undid (a failed resume ends in a cold start), its time
  Status st =
      co_await wake(service, &x.client.socket(), &gone,
                    page ? std::optional(wake_page::kGrace) : std::nullopt, &still_waking, &report);
  // Held in a tier when it arrived, and nothing undone: that tier failed and left the service
  // serving (a vLLM /sleep that erred): no wake to tell of.
  const bool nothing_woke = report.from.empty() && x.woke_from != "cold";
  if (report.from == to_string(TierAction::kStop)) {
    x.woke_from = "cold";
  } else if (!report.from.empty()) {
    x.woke_from = "warm-from=" + report.from;
  }
  x.activity.paused = false;
  x.activity.touch();
  if (x.trace) x.trace->waited = seconds_since(clock_, w0);
  if (gone) {  // nobody to answer: the request ends (counted with code 0), the wake goes on
    record(x);
    co_return false;
  }
  // The wake goes on (the page polls for its end), or it failed within the grace: a person
  // gets the page too, which says so and offers to try again, not the JSON error (found
  // by a new user's trial: a command that exits at once showed raw JSON in the tab).
  if (still_waking || (page && !st)) {
    co_return co_await reply(x, waking_page(x.l, x.version),
                             x.keep_alive && x.req_parser.is_done());
  }
  if (!st) {
    // The request body was not read: the connection cannot be reused. Retry-After unless a
    // later try cannot do better (a wake that can never fit in the GPU budget).
    co_return co_await reply(
        x,
        error_response(http::status::service_unavailable, x.version, error_code_name(st.code()),
                       wake_failed(service) + st.message(), st.retry_after()),
        false);
  }
  // The wake as siesta timed it, the figure its metrics count; the request's own wait when it
  // shared a start another request made.
  if (!nothing_woke) x.cold = report.took ? report.took->count() : seconds_since(clock_, w0);
  co_return std::nullopt;
}

void Server::rewrite_request(Exchange& x) {
  auto& req = x.req;
  // Upgrade and its Connection option pass for the request that asks to be upgraded: they
  // are hop-by-hop only for this one (RFC 9110 7.8). Every other Connection option stops here.
  x.upgrade = upgrade_asked(req, x.version);
  strip_hop_by_hop(req);
  if (!x.upgrade.empty()) {
    req.set(http::field::upgrade, x.upgrade);
    req.set(http::field::connection, "Upgrade");
  }
  // One framing, made here: a list of equal lengths ("5, 5") becomes one value.
  if (auto length = x.req_parser.content_length(); length && !req.chunked()) {
    req.content_length(*length);
  }
  if (req.count(http::field::host) == 0) req.set(http::field::host, upstream_authority(x.l));
  req.version(11);
  // No framing means no body (RFC 9112 6.3); say so, for upstreams that would otherwise wait
  // for one (cpp-httplib 0.11 does, on a POST).
  if (!req.chunked() && !req.has_content_length() &&
      (req.method() == http::verb::post || req.method() == http::verb::put ||
       req.method() == http::verb::patch)) {
    req.content_length(0);
  }
  set_forwarded_headers(req, x.peer, x.l.trust_forwarded_headers);
}

// Requests to a model server that name a model: siesta tracks the model and owns its
// keep-alive (docs/models.md).
awaitable<std::optional<bool>> Server::read_model_request(Exchange& x) {
  auto& req = x.req;
  const std::string_view method(req.method_string().data(), req.method_string().size());
  const std::string_view target(req.target().data(), req.target().size());
  if (!x.l.model_api->names_model(method, target)) co_return std::nullopt;
  if (!x.replacement) {  // not read before the wake (unknown_model)
    if (auto ended = co_await read_model_body(x)) co_return *ended;
  }
  begin_model(x.l, target, *x.replacement, x.model_use);
  if (x.trace && x.model_use) x.trace->model = x.model_use->model.name;
  req.chunked(false);
  req.content_length(x.replacement->size());
  // A model not loaded yet: the request makes the server load it. Room in the GPU budget
  // first, as for an admin load (docs/gpu.md); it counts from now on, being in flight.
  if (x.model_use && x.model_use->load_ticket) {
    if (Status room = co_await room_for_model(x.model_use->model); !room) {
      co_return co_await reply(
          x,
          error_response(http::status::service_unavailable, x.version, error_code_name(room.code()),
                         load_failed(x.model_use->model.name) + room.message(), room.retry_after()),
          x.keep_alive);
    }
  } else if (x.model_use) {
    // Loaded: forwarded at once, unless a wake first in line for GPU room waits for this server's
    // requests to end and has spent half its wait (docs/gpu.md).
    if (Status st = control_.model_request_gives_way(x.model_use->model); !st) {
      co_return co_await reply(
          x,
          error_response(http::status::service_unavailable, x.version, error_code_name(st.code()),
                         "request for model " + x.model_use->model.name + " " + st.message(),
                         st.retry_after()),
          x.keep_alive);
    }
  }
  co_return std::nullopt;
}

// "100 Continue" to a client that waits for it (Expect: 100-continue; siesta answers it, the
// header goes no further). Returns whether the client is still there.
awaitable<bool> Server::send_continue(Exchange& x) {
  if (!beast::iequals(x.req[http::field::expect], "100-continue")) co_return true;
  x.req.erase(http::field::expect);
  http::response<http::empty_body> cont{http::status::continue_, x.version};
  beast::error_code ec;
  co_await http::async_write(x.client, cont, ec_token(ec));
  co_return !ec;
}

// The whole body of a model request into x.replacement (a 413 over the limit).
awaitable<std::optional<bool>> Server::read_model_body(Exchange& x) {
  beast::error_code ec;
  auto body = co_await read_body(x.client, x.activity, x.client_buf, x.req_parser, ec);
  if (ec) co_return false;
  if (!body) {
    co_return co_await reply(
        x,
        error_response(http::status::payload_too_large, x.version, "payload_too_large",
                       "a model request body is limited to 32 MiB"),
        false);
  }
  x.replacement = std::move(*body);
  co_return std::nullopt;
}

// A model request to a server that does not serve now (asleep, stopped, starting) naming a model
// it does not serve (a typo): when siesta knows the server's whole list (ModelApi::serves_only),
// the server's own "not found" is answered without waking it, and it is no use of the service.
// The body read here is the one read_model_request then uses.
awaitable<std::optional<bool>> Server::unknown_model(Exchange& x) {
  auto& req = x.req;
  const std::string_view method(req.method_string().data(), req.method_string().size());
  const std::string_view target(req.target().data(), req.target().size());
  if (!x.l.model_api->names_model(method, target)) co_return std::nullopt;
  auto view = registry_.service(x.l.service);
  if (!view || !not_serving(view->runtime)) co_return std::nullopt;
  const std::vector<ModelApi::KnownModel> models = models_of(x.l.service);
  if (!x.l.model_api->serves_only(models)) co_return std::nullopt;
  // A client that waits for "100 Continue" gets it now: its body is read before the wake.
  if (!co_await send_continue(x)) co_return false;
  x.activity.phase(options_.body_timeout);
  if (auto ended = co_await read_model_body(x)) co_return *ended;
  const auto request = x.l.model_api->read(target, *x.replacement);
  if (!request || std::any_of(models.begin(), models.end(), [&](const ModelApi::KnownModel& m) {
        return m.name == request->model;
      })) {
    co_return std::nullopt;  // a model it serves (or none named): woken as any request
  }
  // Re-read: the service may have woken meanwhile (the header says what it was).
  view = registry_.service(x.l.service);
  if (!view) co_return std::nullopt;
  co_return co_await reply(
      x,
      model_api_reply(*view, x.l.model_api->unknown_model_reply(request->model), x.version, x.head),
      x.keep_alive);
}

// An upstream connection, the request header and body, and the answer's header (in x.parsed).
// A kept-alive upstream connection may have been closed by the upstream meanwhile: a request
// without a body is retried once on a fresh connection.
awaitable<std::optional<bool>> Server::send_request(Exchange& x) {
  drop_untrusted_upstream(x);
  for (int attempt = 0;; ++attempt) {
    bool reused = x.upstream.has_value();
    Unproven unproven(x.client.get_executor());
    if (!x.upstream) {
      if (auto ended = co_await connect_upstream(x, reused, unproven)) co_return *ended;
    }
    if (reused) recorder_.proxy_upstream_connection(x.l.service, true);
    beast::error_code ec;
    Sent sent;
    if (auto ended = co_await write_request(x, sent, ec)) co_return *ended;
    // An error here is the upstream's: it stopped taking the request (closed or reset the
    // connection). It may have answered first, without reading the whole body (an early 4xx
    // or 5xx, as Python's http.server or uvicorn send): that answer is read and passed on, as
    // nginx does, and the client connection closes after it, its request not read to the end.
    // (Not when even the header did not go out: whatever the connection holds then is no
    // answer to this request, and a reused one is retried.)
    const bool cut_short = ec && sent.header;
    if (cut_short) ec = {};
    if (!ec) co_await read_answer_header(x, cut_short, unproven, ec);
    if (!ec) {
      if (cut_short) {
        x.early_answer = true;
        x.keep_alive = false;
      }
      co_return std::nullopt;
    }
    x.upstream.reset();
    // A kept connection the upstream had closed: sent again once, on a new one, if nothing of
    // the request is lost by that (no body went out) and nobody gave up meanwhile.
    const bool retry = reused && attempt == 0 && !sent.body && x.req_parser.is_done() &&
                       !x.watch->gone && !(ec == beast::error::timeout && !cut_short);
    if (!retry) co_return co_await upstream_failed(x, ec, cut_short);
  }
}

// The connection kept from this client's last request: the upstream may be closing it now if
// it was idle long (it is not used then), or have closed it already; a request with a body
// could not be retried, so its connection is checked first (a poll) and left if closed.
void Server::drop_untrusted_upstream(Exchange& x) {
  if (!x.upstream) return;
  const bool idle_long =
      SteadyClock::now() - x.upstream_idle_since >= options_.upstream_idle_timeout;
  const bool has_body = !x.req_parser.is_done() || x.replacement;
  if (idle_long || (has_body && !still_usable(x.upstream->socket().native_handle()))) {
    x.upstream.reset();
  }
}

void Server::Unproven::hold(UpstreamPool::Slot s) {
  slot = std::make_shared<UpstreamPool::Slot>(std::move(s));
  timer.expires_after(kUnprovenFor);
  timer.async_wait([held = slot](const beast::error_code&) { held->done(); });
}

// A connection from the pool, or a new one (bounded after a wake: upstream_max_connecting),
// while the client is watched. Ends the exchange when the client left (nothing was sent on the
// connection, so it is free), or when no connection came: 504 when none came free in time,
// else 502 naming the refusal.
awaitable<std::optional<bool>> Server::connect_upstream(Exchange& x, bool& reused,
                                                        Unproven& unproven) {
  Listener& l = x.l;
  // A request waiting for a connection is abandoned when its client leaves.
  if (x.req_parser.is_done() && !x.watch->active && !x.watch->gone) {
    watch_client(x.client.socket(), x.watch);
  }
  beast::error_code ec;
  UpstreamPool::Slot slot;
  x.activity.paused = true;  // waiting for a connection is not the client being idle
  auto socket = co_await open_upstream(l, x.cold.has_value(), reused, slot, ec, &x.stop_waiting);
  x.activity.paused = false;
  x.activity.touch();
  if (slot) unproven.hold(std::move(slot));
  if (socket) x.upstream.emplace(std::move(*socket));
  if (x.watch->gone) {
    if (x.upstream) l.pool->release(x.upstream->release_socket());
    x.upstream.reset();
    record(x);
    co_return false;
  }
  if (x.upstream) co_return std::nullopt;
  if (ec == net::error::try_again) {
    co_return co_await reply(
        x,
        error_response(
            http::status::gateway_timeout, x.version, "gateway_timeout",
            fmt::format("no connection to service {} came free within {:g} s "
                        "(response_timeout_seconds) while {} new ones were being opened "
                        "(proxy.upstream_max_connecting)",
                        l.service, std::chrono::duration<double>(l.response_timeout).count(),
                        options_.upstream_max_connecting)),
        false);
  }
  co_return co_await reply(
      x,
      error_response(http::status::bad_gateway, x.version, "bad_gateway",
                     "service " + l.service + " refused the connection at " + l.upstream_host +
                         ":" + l.upstream_port + ": " + ec.message()),
      x.keep_alive && x.req_parser.is_done());
}

// The request header, then its body piece by piece as it arrives (or a model request's,
// read whole before). `ec`: the upstream stopped taking it. Ends the exchange when the client
// went away mid-body, or sent a malformed one (400): the upstream has a partial request and
// is dropped.
awaitable<std::optional<bool>> Server::write_request(Exchange& x, Sent& sent,
                                                     beast::error_code& ec) {
  auto& req = x.req;
  auto& req_parser = x.req_parser;
  bool replacement_pending = x.replacement.has_value();
  x.upstream_buf.clear();
  // Beast reads as much as the buffer has room for (at least 512 bytes): a relay buffer's
  // worth of the response per read, not 512 bytes (a read and a write each).
  x.upstream_buf.reserve(kChunk);
  http::serializer<true, http::buffer_body> sr{req};
  x.activity.touch();
  co_await http::async_write_header(*x.upstream, sr, ec_token(ec));
  sent.header = !ec;
  if (!ec && x.model_use) x.model_use->sent = true;
  while (!ec) {
    if (!req_parser.is_done()) {
      req.body().data = x.buf.data();
      req.body().size = x.buf.size();
      x.activity.touch();
      co_await http_framing::read_body_some(x.client, x.client_buf, req_parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        x.upstream.reset();
        if (!http_framing::is_framing_error(ec)) co_return false;
        co_return co_await reply(x,
                                 error_response(http::status::bad_request, x.version, "bad_request",
                                                "malformed request body: " + ec.message()),
                                 false);
      }
      set_piece(req.body(), x.buf.data(), x.buf.size() - req.body().size, !req_parser.is_done());
      // Only a chunk header was read: nothing to pass on yet (an empty piece would end a
      // chunked body early).
      if (req.body().size == 0 && req.body().more) continue;
      sent.body = true;
    } else if (replacement_pending) {
      set_piece(req.body(), x.replacement->data(), x.replacement->size(), false);
      replacement_pending = false;
      sent.body = true;
    } else {
      set_piece(req.body(), nullptr, 0, false);
    }
    x.activity.touch();
    co_await http::async_write(*x.upstream, sr, ec_token(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec || sr.is_done()) break;
    x.buf.grow_if_filled(req.body().size, x.client_buf);
  }
  co_return std::nullopt;
}

namespace {

// A response parser for an answer's header: its limit, any body, none for a HEAD.
void expect_answer(std::optional<http::response_parser<http::buffer_body>>& parsed, bool head) {
  parsed.emplace();
  parsed->header_limit(kHeaderLimit);
  parsed->body_limit(kNoBodyLimit);
  if (head) parsed->skip(true);
}

}  // namespace

// The answer's header into x.parsed, within response_timeout (kEarlyAnswerWait for an answer
// the upstream sent before it stopped taking the request, `cut_short`). Interim answers
// (100 Continue, 103 Early Hints) are dropped, as nginx drops them, and the final one read
// (101 is final: it switches). Only the client waits meanwhile: it is watched.
awaitable<void> Server::read_answer_header(Exchange& x, bool cut_short, Unproven& unproven,
                                           beast::error_code& ec) {
  auto& parsed = x.parsed;
  expect_answer(parsed, x.head);
  if (!x.watch->active && !x.watch->gone) watch_client(x.client.socket(), x.watch);
  x.activity.paused = true;
  x.upstream->expires_after(cut_short ? kEarlyAnswerWait : x.l.response_timeout);
  co_await http::async_read_header(*x.upstream, x.upstream_buf, *parsed, ec_token(ec));
  while (!ec && parsed->get().result_int() / 100 == 1 &&
         parsed->get().result() != http::status::switching_protocols) {
    expect_answer(parsed, x.head);
    co_await http::async_read_header(*x.upstream, x.upstream_buf, *parsed, ec_token(ec));
  }
  if (unproven.slot) unproven.slot->done();  // a header, or an error: it no longer counts
  x.activity.paused = false;
  x.activity.phase(options_.idle_timeout);  // relaying: nothing moving for idle_timeout
  if (x.upstream) x.upstream->expires_never();
}

// The upstream gave no answer (`ec`): the client gave up (nothing to answer), or 504 when no
// header came within response_timeout, else 502.
awaitable<bool> Server::upstream_failed(Exchange& x, beast::error_code ec, bool cut_short) {
  if (x.watch->gone) {
    record(x);
    co_return false;
  }
  if (ec == beast::error::timeout && !cut_short) {
    co_return co_await reply(
        x,
        error_response(
            http::status::gateway_timeout, x.version, "gateway_timeout",
            fmt::format("service {} sent no response header within {:g} s "
                        "(response_timeout_seconds)",
                        x.l.service, std::chrono::duration<double>(x.l.response_timeout).count())),
        false);
  }
  co_return co_await reply(
      x,
      error_response(http::status::bad_gateway, x.version, "bad_gateway",
                     "service " + x.l.service + " did not answer: " + ec.message()),
      false);
}

// The answer in x.parsed: its header rewritten and sent, then its body as it arrives.
awaitable<bool> Server::relay_answer(Exchange& x, ClientWatchScope& watching) {
  auto& res = x.parsed->get();
  const bool upstream_keep_alive = res.keep_alive();
  const std::string upgraded_to = joined_values(res, http::field::upgrade);
  strip_hop_by_hop(res);
  std::string wake_header = x.cold ? fmt::format("{}; dur={:.3f}", x.woke_from, *x.cold) : "";
  if (res.result() == http::status::switching_protocols) {
    co_return co_await switch_protocols(x, upgraded_to, wake_header, watching);
  }
  const bool has_body = frame_answer(x, upgraded_to);
  if (x.model_use) co_await model_answered(x, has_body, wake_header);
  if (!wake_header.empty()) res.set("X-Siesta-Wake", wake_header);
  if (is_stream(res, res.chunked())) res.set("X-Accel-Buffering", "no");
  x.status_sent = static_cast<int>(res.result_int());

  // The header, then the body piece by piece as it arrives (relay.cpp).
  beast::error_code ec;
  co_await relay_response(x.client, *x.upstream, x.upstream_buf, *x.parsed, has_body, x.buf,
                          x.model_use ? x.model_use->load_scan.get() : nullptr, x.activity, ec);
  keep_upstream(x, upstream_keep_alive, ec);
  if (ec) {
    spdlog::debug("Proxy {}: response relay ended early: {}", x.l.service,
                  x.watch->gone ? "the client closed its connection" : ec.message());
  }
  if (x.model_use) model_answer_relayed(x);
  record(x);
  co_return x.keep_alive && !ec;
}

// The answer's framing for this client, and whether it has a body. A body the upstream ends by
// closing is re-framed (chunked) for a client that keeps the connection, or the client's
// connection closes too; an HTTP/1.0 client gets no chunks.
bool Server::frame_answer(Exchange& x, const std::string& upgraded_to) {
  auto& res = x.parsed->get();
  // RFC 9110 15.5.22: a 426 names the protocol(s) to upgrade to, in Upgrade with its
  // Connection option (7.8); the client may then ask this hop for one of them.
  if (res.result() == http::status::upgrade_required && !upgraded_to.empty()) {
    res.set(http::field::upgrade, upgraded_to);
    res.set(http::field::connection, "Upgrade");
  }
  const bool has_body =
      !x.head && res.result_int() >= 200 && res.result_int() != 204 && res.result_int() != 304;
  if (has_body && !res.chunked() && !res.has_content_length()) {
    if (x.version >= 11) {
      res.chunked(true);
    } else {
      x.keep_alive = false;
    }
  }
  if (x.version < 11 && res.chunked()) {
    res.chunked(false);
    x.keep_alive = false;
  }
  res.version(x.version);
  res.keep_alive(x.keep_alive);
  return has_body;
}

// A model request's answer has come: a 2xx means the model is loaded (ProxyControl::
// model_accepted). When the model was not loaded, this answer paid its load, and its price goes
// into X-Siesta-Wake (`wake_header`): Ollama's own load_duration, in the answer's final JSON
// (docs/models.md): a whole answer is read before its header goes out, a stream's is known only
// at its end (the metric waits for it, the header says the time to the first byte).
awaitable<void> Server::model_answered(Exchange& x, bool has_body, std::string& wake_header) {
  auto& res = x.parsed->get();
  ModelUse& use = *x.model_use;
  use.answered = true;
  if (res.result_int() / 100 == 2) {
    use.accepted = true;
    use.was_loaded = !control_.model_accepted(use.model, use.keep_alive, use.load_ticket);
  }
  if (use.was_loaded || !x.l.model_api->reports_load()) co_return;
  use.first_byte = seconds_since(clock_, use.t0);
  use.load_scan = x.l.model_api->load_meter();
  double load = use.first_byte;
  if (has_body) {
    if (auto whole =
            co_await read_whole_answer(*x.upstream, x.upstream_buf, *x.parsed, x.activity)) {
      load = x.l.model_api->load_seconds(*whole).value_or(load);
    }
  }
  wake_header += fmt::format("{}model={}; load={:.3f}", wake_header.empty() ? "cold; " : "; ",
                             use.model.name, load);
}

// After the answer: the upstream connection is dropped when it cannot carry another request,
// given back to the pool when this client is done with it or another request waits for one,
// else kept for this client's next request.
void Server::keep_upstream(Exchange& x, bool upstream_keep_alive, const beast::error_code& ec) {
  const auto& res_parser = *x.parsed;
  if (ec || x.early_answer || !upstream_keep_alive || !res_parser.keep_alive() ||
      !res_parser.is_done()) {
    x.upstream.reset();
  } else if (!x.keep_alive || x.l.pool->wanted()) {
    park(x.l, x.upstream, x.upstream_buf);
  } else {
    x.upstream_idle_since = SteadyClock::now();
  }
}

// A model request's answer went out: the load it paid is recorded, and only a request the model
// server accepted sets the keep-alive (a failed one must not load the model).
void Server::model_answer_relayed(Exchange& x) {
  const ModelUse& use = *x.model_use;
  if (use.load_scan) {
    const Seconds took(use.load_scan->seconds().value_or(use.first_byte));
    recorder_.model_loaded(use.model, Reason::kRequest, took);
    control_.model_load_measured(use.model, took);
  }
  if (use.keep_alive_after && use.accepted) refresh_keep_alive(x.l, use);
}

// A 101: only to a protocol the client asked for (RFC 9110 15.2.2, 7.8); then the connection
// is relayed as bytes both ways, never back to the pool.
awaitable<bool> Server::switch_protocols(Exchange& x, const std::string& upgraded_to,
                                         const std::string& wake_header,
                                         ClientWatchScope& watching) {
  const std::string& service = x.l.service;
  auto& res = x.parsed->get();
  if (x.upgrade.empty()) {
    x.upstream.reset();
    co_return co_await reply(
        x,
        error_response(
            http::status::bad_gateway, x.version, "bad_gateway",
            "service " + service + " switched protocols (101) for a request that asked for none"),
        false);
  }
  if (!offered(x.upgrade, upgraded_to)) {
    x.upstream.reset();
    co_return co_await reply(
        x,
        error_response(http::status::bad_gateway, x.version, "bad_gateway",
                       "service " + service + " switched protocols (101) to \"" + upgraded_to +
                           "\", not to one the request asked for (\"" + x.upgrade + "\")"),
        false);
  }
  res.set(http::field::upgrade, upgraded_to);
  res.set(http::field::connection, "Upgrade");
  if (!wake_header.empty()) res.set("X-Siesta-Wake", wake_header);
  x.status_sent = 101;
  record(x);
  watching.stop();  // the relay reads the client from here
  co_await relay_upgraded(x.l, x.client, *x.upstream, res, x.client_buf, x.upstream_buf,
                          x.activity);
  x.upstream.reset();  // never back to the pool: it spoke another protocol
  co_return false;
}

}  // namespace siesta::proxy
