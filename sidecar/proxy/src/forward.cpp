// One HTTP exchange (forward): the request begins (ProxyControl::begin_request) and is in
// flight until this returns; a sleeping service is woken through the wake gate; the header is
// rewritten (hop-by-hop, X-Forwarded-*, one framing); a model request's body is read through its
// ModelApi; an upstream connection is taken, the request body relayed as it arrives, and the
// answer's header read (interim answers dropped, an early answer passed on). relay.cpp streams
// the answer's body; upgraded connections go to relay_upgraded.

#include "server.h"
#include "siesta/core/decide.h"
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
  const MonoTime t0 = clock_.mono_now();
  auto& req = req_parser.get();
  const unsigned version = req.version();
  bool keep_alive = req.keep_alive();
  const bool head = req.method() == http::verb::head;
  int status_sent = 0;
  auto record = [&] {
    recorder_.proxy_request(l.service, status_sent, Seconds(seconds_since(clock_, t0)));
  };

  if (l.wake_page) {
    const std::string_view target(req.target().data(), req.target().size());
    if (target.starts_with(wake_page::kPrefix)) {
      auto res = siesta_path(l, req, target);
      status_sent = static_cast<int>(res.result_int());
      record();
      // Answered without reading a body: the connection cannot carry another request.
      co_return co_await answer(client, std::move(res), keep_alive && req_parser.is_done());
    }
  }

  // What the model server's API answers without the server, before a use or a wake.
  bool probe = false;  // no use of the service (ModelApi::is_probe)
  if (auto own = model_api_answer(l, req, version, head, probe)) {
    status_sent = static_cast<int>(own->result_int());
    record();
    co_return co_await answer(client, std::move(*own), keep_alive && req_parser.is_done());
  }

  auto state = control_.begin_request(l.service, !probe);
  if (!state) {
    auto res =
        error_response(http::status::not_found, version, "not_found", state.status().message());
    status_sent = 404;
    record();
    co_return co_await answer(client, std::move(res), false);
  }
  InFlight in_flight(control_, l.service, !probe);

  std::optional<double> cold;
  std::string woke_from = "cold";  // X-Siesta-Wake: "cold", or "warm-from=<tier>" (paused)
  if (*state != ServiceState::kRunning) {
    if (auto view = registry_.service(l.service); view && light_asleep(view->runtime)) {
      woke_from = std::string("warm-from=") + tier_name(*view->spec, view->runtime);
    }
    const MonoTime w0 = clock_.mono_now();
    activity.paused = true;
    bool gone = false;
    // A browser's navigation gets the waking page if the wake takes longer than the grace.
    const bool page = l.wake_page && wake_page::is_navigation(req);
    bool still_waking = false;
    std::string undone;  // what the wake undid: a failed resume ends in a cold start
    Status st = co_await wake(l.service, &client.socket(), &gone,
                              page ? std::optional(wake_page::kGrace) : std::nullopt, &still_waking,
                              &undone);
    if (undone == to_string(TierAction::kStop)) {
      woke_from = "cold";
    } else if (!undone.empty()) {
      woke_from = "warm-from=" + undone;
    }
    activity.paused = false;
    activity.touch();
    if (gone) {  // nobody to answer: the request ends (counted with code 0), the wake goes on
      record();
      co_return false;
    }
    // The wake goes on (the page polls for its end), or it failed within the grace: a person
    // gets the page too, which says so and offers to try again, not the JSON error (found
    // by a new user's trial: a command that exits at once showed raw JSON in the tab).
    if (still_waking || (page && !st)) {
      auto res = waking_page(l, version);
      status_sent = static_cast<int>(res.result_int());
      record();
      co_return co_await answer(client, std::move(res), keep_alive && req_parser.is_done());
    }
    if (!st) {
      // The request body was not read: the connection cannot be reused.
      const int retry = 5;
      auto res =
          error_response(http::status::service_unavailable, version, error_code_name(st.code()),
                         "service " + l.service + " could not be woken: " + st.message(), retry);
      status_sent = 503;
      record();
      co_return co_await answer(client, std::move(res), false);
    }
    cold = seconds_since(clock_, w0);
  }
  activity.phase(options_.body_timeout);  // from here: body_timeout between two body reads

  beast::error_code ec;
  // A client that waits for "100 Continue" gets it from siesta, now that the service is up.
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    req.erase(http::field::expect);
    http::response<http::empty_body> cont{http::status::continue_, version};
    co_await http::async_write(client, cont, ec_token(ec));
    if (ec) co_return false;
  }

  // Upgrade and its Connection option pass for the request that asks to be upgraded: they
  // are hop-by-hop only for this one (RFC 9110 7.8). Every other Connection option stops here.
  const std::string upgrade = upgrade_asked(req, version);
  strip_hop_by_hop(req);
  if (!upgrade.empty()) {
    req.set(http::field::upgrade, upgrade);
    req.set(http::field::connection, "Upgrade");
  }
  // One framing, made here: a list of equal lengths ("5, 5") becomes one value.
  if (auto length = req_parser.content_length(); length && !req.chunked()) {
    req.content_length(*length);
  }
  if (req.count(http::field::host) == 0) req.set(http::field::host, upstream_authority(l));
  req.version(11);
  // No framing means no body (RFC 9112 6.3); say so, for upstreams that would otherwise wait
  // for one (cpp-httplib 0.11 does, on a POST).
  if (!req.chunked() && !req.has_content_length() &&
      (req.method() == http::verb::post || req.method() == http::verb::put ||
       req.method() == http::verb::patch)) {
    req.content_length(0);
  }
  set_forwarded_headers(req, peer, l.trust_forwarded_headers);

  // Requests to a model server that name a model: siesta tracks the model and owns its
  // keep-alive (docs/models.md).
  std::optional<std::string> replacement;  // the rewritten request body
  std::optional<ModelUse> model_use;
  if (l.model_api != nullptr) {
    const std::string_view method(req.method_string().data(), req.method_string().size());
    const std::string_view target(req.target().data(), req.target().size());
    if (l.model_api->names_model(method, target)) {
      auto body = co_await read_body(client, activity, client_buf, req_parser, ec);
      if (ec) co_return false;
      if (!body) {
        auto res = error_response(http::status::payload_too_large, version, "payload_too_large",
                                  "a model request body is limited to 32 MiB");
        status_sent = 413;
        record();
        co_return co_await answer(client, std::move(res), false);
      }
      replacement = std::move(*body);
      begin_model(l, target, *replacement, model_use);
      req.chunked(false);
      req.content_length(replacement->size());
    }
  }

  // A kept-alive upstream connection may have been closed by the upstream meanwhile: a
  // request without a body is retried once on a fresh connection.
  auto watch = std::make_shared<ClientWatch>();
  std::function<void()> stop_waiting;  // set while waiting for an upstream connection
  watch->on_gone = [&client, &upstream, &stop_waiting] {
    if (stop_waiting) stop_waiting();
    beast::error_code ignored;
    client.socket().close(ignored);
    if (upstream) upstream->socket().close(ignored);
  };
  ClientWatchScope watching(client.socket(), watch);

  RelayBuffer buf;
  std::optional<http::response_parser<http::buffer_body>> parsed;
  bool sent_body = false;
  bool early_answer = false;  // the upstream answered before taking the whole request
  // The connection kept from this client's last request: the upstream may be closing it now if
  // it was idle long (it is not used then), or have closed it already; a request with a body
  // could not be retried, so its connection is checked first (a poll) and left if closed.
  if (upstream && (SteadyClock::now() - upstream_idle_since >= options_.upstream_idle_timeout ||
                   ((!req_parser.is_done() || replacement) &&
                    !still_usable(upstream->socket().native_handle())))) {
    upstream.reset();
  }
  for (int attempt = 0;; ++attempt) {
    parsed.emplace();
    bool replacement_pending = replacement.has_value();
    bool reused = upstream.has_value();
    // A new connection after a wake is unproven until its response header or kUnprovenFor.
    std::shared_ptr<UpstreamPool::Slot> fresh;
    net::steady_timer fresh_for(client.get_executor());  // destroyed: its handler runs
    if (!upstream) {
      // A request waiting for a connection is abandoned when its client leaves.
      if (req_parser.is_done() && !watch->active && !watch->gone) {
        watch_client(client.socket(), watch);
      }
      UpstreamPool::Slot slot;
      activity.paused = true;  // waiting for a connection is not the client being idle
      auto socket = co_await open_upstream(l, cold.has_value(), reused, slot, ec, &stop_waiting);
      activity.paused = false;
      activity.touch();
      if (slot) {
        fresh = std::make_shared<UpstreamPool::Slot>(std::move(slot));
        fresh_for.expires_after(kUnprovenFor);
        fresh_for.async_wait([fresh](const beast::error_code&) { fresh->done(); });
      }
      if (socket) upstream.emplace(std::move(*socket));
      if (watch->gone) {  // the client left: nothing was sent on the connection, it is free
        if (upstream) l.pool->release(upstream->release_socket());
        upstream.reset();
        record();
        co_return false;
      }
      if (!upstream && ec == net::error::try_again) {
        auto res = error_response(
            http::status::gateway_timeout, version, "gateway_timeout",
            fmt::format("no connection to service {} came free within {:g} s "
                        "(response_timeout_seconds) while {} new ones were being opened "
                        "(proxy.upstream_max_connecting)",
                        l.service, std::chrono::duration<double>(l.response_timeout).count(),
                        options_.upstream_max_connecting));
        status_sent = 504;
        record();
        co_return co_await answer(client, std::move(res), false);
      }
      if (!upstream) {
        auto res =
            error_response(http::status::bad_gateway, version, "bad_gateway",
                           "service " + l.service + " refused the connection at " +
                               l.upstream_host + ":" + l.upstream_port + ": " + ec.message());
        status_sent = 502;
        record();
        co_return co_await answer(client, std::move(res), keep_alive && req_parser.is_done());
      }
    }
    if (reused) recorder_.proxy_upstream_connection(l.service, true);
    upstream_buf.clear();
    // Beast reads as much as the buffer has room for (at least 512 bytes): a relay buffer's
    // worth of the response per read, not 512 bytes (a read and a write each).
    upstream_buf.reserve(kChunk);
    http::serializer<true, http::buffer_body> sr{req};
    activity.touch();
    co_await http::async_write_header(*upstream, sr, ec_token(ec));
    const bool header_sent = !ec;
    if (!ec && model_use) model_use->sent = true;
    // The request body, piece by piece as it arrives.
    while (!ec) {
      if (!req_parser.is_done()) {
        req.body().data = buf.data();
        req.body().size = buf.size();
        activity.touch();
        co_await http_framing::read_body_some(client, client_buf, req_parser, ec);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
          // The client went away mid-body, or its framing is malformed: the upstream has a
          // partial request and is dropped; a client still there is told why.
          upstream.reset();
          if (!http_framing::is_framing_error(ec)) co_return false;
          auto res = error_response(http::status::bad_request, version, "bad_request",
                                    "malformed request body: " + ec.message());
          status_sent = 400;
          record();
          co_return co_await answer(client, std::move(res), false);
        }
        set_piece(req.body(), buf.data(), buf.size() - req.body().size, !req_parser.is_done());
        // Only a chunk header was read: nothing to pass on yet (an empty piece would end a
        // chunked body early).
        if (req.body().size == 0 && req.body().more) continue;
        sent_body = true;
      } else if (replacement_pending) {
        set_piece(req.body(), replacement->data(), replacement->size(), false);
        replacement_pending = false;
        sent_body = true;
      } else {
        set_piece(req.body(), nullptr, 0, false);
      }
      activity.touch();
      co_await http::async_write(*upstream, sr, ec_token(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec || sr.is_done()) break;
      buf.grow_if_filled(req.body().size, client_buf);
    }
    // An error here is the upstream's: it stopped taking the request (closed or reset the
    // connection). It may have answered first, without reading the whole body (an early 4xx
    // or 5xx, as Python's http.server or uvicorn send): that answer is read and passed on, as
    // nginx does, and the client connection closes after it, its request not read to the end.
    // (Not when even the header did not go out: whatever the connection holds then is no
    // answer to this request, and a reused one is retried.)
    const bool cut_short = ec && header_sent;
    if (cut_short) ec = {};
    if (!ec) {
      parsed->header_limit(kHeaderLimit);
      parsed->body_limit(kNoBodyLimit);
      if (head) parsed->skip(true);
      // Only the client waits now: watch it, and give the upstream response_timeout.
      if (!watch->active && !watch->gone) watch_client(client.socket(), watch);
      activity.paused = true;
      // An answer sent before the close is there already.
      upstream->expires_after(cut_short ? kEarlyAnswerWait : l.response_timeout);
      co_await http::async_read_header(*upstream, upstream_buf, *parsed, ec_token(ec));
      // Interim answers (100 Continue, 103 Early Hints) come before the final one: they are
      // dropped, as nginx drops them, and the final answer read (101 is final: it switches).
      while (!ec && parsed->get().result_int() / 100 == 1 &&
             parsed->get().result() != http::status::switching_protocols) {
        parsed.emplace();
        parsed->header_limit(kHeaderLimit);
        parsed->body_limit(kNoBodyLimit);
        if (head) parsed->skip(true);
        co_await http::async_read_header(*upstream, upstream_buf, *parsed, ec_token(ec));
      }
      if (fresh) fresh->done();  // a header, or an error: this connection no longer counts
      activity.paused = false;
      activity.phase(options_.idle_timeout);  // relaying: nothing moving for idle_timeout
      if (upstream) upstream->expires_never();
    }
    if (!ec && cut_short) {
      early_answer = true;
      keep_alive = false;
    }
    if (!ec) break;
    upstream.reset();
    if (watch->gone) {
      record();
      co_return false;  // the client gave up
    }
    if (ec == beast::error::timeout && !cut_short) {
      auto res = error_response(
          http::status::gateway_timeout, version, "gateway_timeout",
          fmt::format("service {} sent no response header within {:g} s (response_timeout_seconds)",
                      l.service, std::chrono::duration<double>(l.response_timeout).count()));
      status_sent = 504;
      record();
      co_return co_await answer(client, std::move(res), false);
    }
    if (reused && attempt == 0 && !sent_body && req_parser.is_done()) continue;
    auto res = error_response(http::status::bad_gateway, version, "bad_gateway",
                              "service " + l.service + " did not answer: " + ec.message());
    status_sent = 502;
    record();
    co_return co_await answer(client, std::move(res), false);
  }

  auto& res_parser = *parsed;
  auto& res = res_parser.get();
  const bool upstream_keep_alive = res.keep_alive();
  const std::string upgraded_to = joined_values(res, http::field::upgrade);
  strip_hop_by_hop(res);
  std::string wake_header = cold ? fmt::format("{}; dur={:.3f}", woke_from, *cold) : "";
  // RFC 9110 15.5.22: a 426 names the protocol(s) to upgrade to, in Upgrade with its
  // Connection option (7.8); the client may then ask this hop for one of them.
  if (res.result() == http::status::upgrade_required && !upgraded_to.empty()) {
    res.set(http::field::upgrade, upgraded_to);
    res.set(http::field::connection, "Upgrade");
  }
  if (res.result() == http::status::switching_protocols) {
    if (upgrade.empty()) {  // RFC 9110 15.2.2: only to a protocol the client asked for
      upstream.reset();
      auto answer_502 = error_response(
          http::status::bad_gateway, version, "bad_gateway",
          "service " + l.service + " switched protocols (101) for a request that asked for none");
      status_sent = 502;
      record();
      co_return co_await answer(client, std::move(answer_502), false);
    }
    // RFC 9110 7.8: a 101 names the protocol switched to, one the client asked for.
    if (!offered(upgrade, upgraded_to)) {
      upstream.reset();
      auto answer_502 =
          error_response(http::status::bad_gateway, version, "bad_gateway",
                         "service " + l.service + " switched protocols (101) to \"" + upgraded_to +
                             "\", not to one the request asked for (\"" + upgrade + "\")");
      status_sent = 502;
      record();
      co_return co_await answer(client, std::move(answer_502), false);
    }
    res.set(http::field::upgrade, upgraded_to);
    res.set(http::field::connection, "Upgrade");
    if (!wake_header.empty()) res.set("X-Siesta-Wake", wake_header);
    status_sent = 101;
    record();
    watching.stop();  // the relay reads the client from here
    co_await relay_upgraded(l, client, *upstream, res, client_buf, upstream_buf, activity);
    upstream.reset();  // never back to the pool: it spoke another protocol
    co_return false;
  }
  const bool has_body =
      !head && res.result_int() >= 200 && res.result_int() != 204 && res.result_int() != 304;
  if (has_body && !res.chunked() && !res.has_content_length()) {
    // The upstream ends the body by closing: re-frame it for a client that keeps the
    // connection, or close too.
    if (version >= 11) {
      res.chunked(true);
    } else {
      keep_alive = false;
    }
  }
  if (version < 11 && res.chunked()) {
    res.chunked(false);
    keep_alive = false;
  }
  res.version(version);
  res.keep_alive(keep_alive);
  if (model_use) model_use->answered = true;
  if (model_use && res.result_int() / 100 == 2) {
    model_use->accepted = true;
    model_use->was_loaded =
        !control_.model_accepted(model_use->model, model_use->keep_alive, model_use->load_ticket);
  }
  if (model_use && !model_use->was_loaded && l.model_api->reports_load()) {
    // The model was not loaded: this response paid its load. Its price is Ollama's own
    // load_duration, in the answer's final JSON (docs/models.md): a whole answer is read before
    // its header goes out, a stream's is known only at its end (the metric waits for it, the
    // header says the time to the first byte).
    model_use->first_byte = seconds_since(clock_, model_use->t0);
    model_use->load_scan = l.model_api->load_meter();
    double load = model_use->first_byte;
    if (has_body) {
      if (auto whole = co_await read_whole_answer(*upstream, upstream_buf, res_parser, activity)) {
        load = l.model_api->load_seconds(*whole).value_or(load);
      }
    }
    wake_header += fmt::format("{}model={}; load={:.3f}", wake_header.empty() ? "cold; " : "; ",
                               model_use->model, load);
  }
  if (!wake_header.empty()) res.set("X-Siesta-Wake", wake_header);
  if (is_stream(res, res.chunked())) res.set("X-Accel-Buffering", "no");
  status_sent = static_cast<int>(res.result_int());

  // The header, then the body piece by piece as it arrives (relay.cpp).
  co_await relay_response(client, *upstream, upstream_buf, res_parser, has_body, buf,
                          model_use ? model_use->load_scan.get() : nullptr, activity, ec);
  if (ec || early_answer || !upstream_keep_alive || !res_parser.keep_alive() ||
      !res_parser.is_done()) {
    upstream.reset();
  } else if (!keep_alive || l.pool->wanted()) {
    park(l, upstream, upstream_buf);  // this client is done with it, or another waits for it
  } else {
    upstream_idle_since = SteadyClock::now();  // kept for this client's next request
  }
  if (ec) {
    spdlog::debug("Proxy {}: response relay ended early: {}", l.service,
                  watch->gone ? "the client closed its connection" : ec.message());
  }
  if (model_use && model_use->load_scan) {
    recorder_.model_loaded(
        model_use->model, "request",
        Seconds(model_use->load_scan->seconds().value_or(model_use->first_byte)));
  }
  // Only a request the model server accepted sets the keep-alive: a failed one must not load
  // the model.
  if (model_use && model_use->keep_alive_after && model_use->accepted) {
    refresh_keep_alive(l, *model_use);
  }
  record();
  co_return keep_alive && !ec;
}

}  // namespace siesta::proxy
