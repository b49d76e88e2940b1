// A request on a model server's model: what the service's ModelApi (core/model_api.h) reads
// from it, the keep-alive siesta gives it, and the use counted until it ends. The proxy knows
// no model API itself.

#include <cmath>

#include "server.h"
#include "siesta/core/decide.h"
#include "siesta/http/framing.h"

namespace siesta::proxy {

ModelUse::~ModelUse() {
  if (controller == nullptr) return;
  // Sent but never answered (the client gave up, the upstream broke off): the server may
  // have loaded the model all the same, with the keep-alive siesta gave it. Kept as loaded,
  // so siesta unloads it on time (the /api/ps sync corrects it if it was not).
  if (sent && !answered && !accepted) {
    accepted = true;
    (void)controller->model_accepted(model, keep_alive, load_ticket);
  }
  controller->end_model_request(model, accepted);
}

// A whole answer that is not a stream (a Content-Length of at most 4 MiB), read into `buf`
// before its header goes out; nullopt for any other. The relay then sends it from `buf`.
awaitable<std::optional<std::string_view>> Server::read_whole_answer(
    beast::tcp_stream& upstream, beast::flat_buffer& buf,
    http::response_parser<http::buffer_body>& parser, Activity& activity) {
  const auto length = parser.content_length();
  if (is_stream(parser.get(), parser.get().chunked()) || !length || *length > (4u << 20)) {
    co_return std::nullopt;
  }
  const auto size = static_cast<std::size_t>(*length);
  while (buf.size() < size) {
    beast::error_code ec;
    activity.touch();
    const std::size_t n =
        co_await upstream.async_read_some(buf.prepare(size - buf.size()), ec_token(ec));
    buf.commit(n);
    if (ec) co_return std::nullopt;  // the relay meets the same end
  }
  co_return std::string_view(static_cast<const char*>(buf.data().data()), size);
}

// The whole request body, or nullopt when it is over the limit.
awaitable<std::optional<std::string>> Server::read_body(
    beast::tcp_stream& client, Activity& activity, beast::flat_buffer& client_buf,
    http::request_parser<http::buffer_body>& parser, beast::error_code& ec) {
  constexpr std::size_t kLimit = 32 * 1024 * 1024;
  std::string body;
  auto& req = parser.get();
  while (!parser.is_done()) {
    const std::size_t old = body.size();
    body.resize(old + kChunk);
    req.body().data = body.data() + old;
    req.body().size = kChunk;
    activity.touch();
    co_await http_framing::read_body_some(client, client_buf, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return std::nullopt;
    body.resize(old + (kChunk - req.body().size));
    if (body.size() > kLimit) co_return std::nullopt;
  }
  co_return body;
}

// Reads the model a request names (the service's model API says how) and applies the
// keep-alive policy, rewriting `body`; a request naming no model passes on untouched.
void Server::begin_model(Listener& l, std::string_view target, std::string& body,
                         std::optional<ModelUse>& out) {
  auto request = l.model_api->read(target, body);
  if (!request) return;
  const ModelKey key{request->model, l.service};
  ModelUse& use = out.emplace(control_, key, clock_.mono_now());
  use.keep_alive_after = request->keep_alive_after;
  // First the use (it records the idle gap it ends), then the keep-alive: the adaptive policy's
  // choice from the history with that gap is the one the model server is told and siesta
  // enforces (docs/models.md).
  use.load_ticket = control_.begin_model_request(key);
  // The client's own keep-alive if it asked for one, else the model's policy's; within the
  // bounds.
  use.keep_alive = request_keep_alive(control_.keep_alive_policy(key), request->asked_keep_alive);
  if (auto rewritten = l.model_api->with_keep_alive(*request, use.keep_alive.seconds)) {
    body = std::move(*rewritten);
  }
}

awaitable<Status> Server::room_for_model(const ModelKey& model) {
  auto ex = co_await net::this_coro::executor;
  auto wait = std::make_shared<WakeWait>(ex);
  // The controller gives up at gpu.wait_seconds (at most an hour) plus its evictions' stops;
  // this is only a backstop.
  wait->timer.expires_after(std::chrono::hours(2));
  wake_threads_.post([this, wait, ex, model] {
    Status st = control_.make_room_for_model(model);
    net::post(ex, [wait, st = std::move(st)]() mutable {
      wait->result = std::move(st);
      wait->timer.cancel();
    });
  });
  beast::error_code ec;
  co_await wait->timer.async_wait(ec_token(ec));
  if (!wait->result) co_return Status{ErrorCode::kTimeout, "no room was made in time"};
  co_return *wait->result;
}

// A request that could not carry siesta's keep-alive (Ollama reads none from /v1/*), so the
// server's default would apply: set siesta's through the provider once the request is over,
// off the I/O threads.
void Server::refresh_keep_alive(Listener& l, const ModelUse& use) {
  ModelProvider* provider = control_.provider_of(l.service);
  if (provider == nullptr) return;
  wake_threads_.post([provider, model = use.model.name,
                      keep_alive = l.model_api->server_keep_alive(use.keep_alive.seconds)] {
    if (Status st = provider->load(model, keep_alive); !st) {
      spdlog::warn("Model {}: could not set its keep-alive after a request that carried none: {}",
                   model, st.message());
    }
  });
}

// The models siesta tracks on a service, for ModelApi::asleep_reply: each with the server's own
// entry from its last list, and when siesta first knew of it.
std::vector<ModelApi::KnownModel> Server::models_of(const std::string& service) const {
  std::vector<ModelApi::KnownModel> out;
  for (const auto& key : registry_.model_keys()) {
    if (key.service != service) continue;
    auto view = registry_.model(key);
    if (!view) continue;  // forgotten meanwhile
    const WallTime seen = view->runtime.first_seen.value_or(clock_.wall_now());
    out.push_back({key.name, view->runtime.card,
                   static_cast<std::int64_t>(std::floor(to_unix_seconds(seen)))});
  }
  return out;
}

// What a service's ModelApi answers itself: a route it keeps for siesta (refusal: 403, never
// forwarded), a probe while the service does not serve (asleep_reply). nullopt: the request
// goes on; `probe` then says it is no use of the service (forwarded, but not counted as one).
std::optional<http::response<http::string_body>> Server::model_api_answer(
    const Listener& l, const http::request<http::buffer_body>& req, unsigned version, bool head,
    bool& probe) {
  probe = false;
  if (l.model_api == nullptr) return std::nullopt;
  const std::string_view method(req.method_string().data(), req.method_string().size());
  const std::string_view target(req.target().data(), req.target().size());
  if (auto why = l.model_api->refusal(method, target)) {
    return error_response(http::status::forbidden, version, "forbidden", *why);
  }
  probe = l.model_api->is_probe(method, target);
  auto view = registry_.service(l.service);
  if (!probe || !view || !not_serving(view->runtime)) return std::nullopt;
  auto reply = l.model_api->asleep_reply(method, target, models_of(l.service));
  if (!reply && view->runtime.state == ServiceState::kError) {
    // In error after a failed start, and no model known to list: a probe does not start it again
    // (a load balancer's model list would restart a failing server at each poll).
    const std::string& why = view->runtime.last_error;
    auto res = error_response(
        http::status::service_unavailable, version, error_code_name(ErrorCode::kUnavailable),
        "service " + l.service + " is in error" + (why.empty() ? "" : " (" + why + ")") +
            " and knows no model to list: a model list does not start it, a request to a "
            "model does");
    res.set("X-Siesta-Asleep", to_string(view->runtime.state));
    if (head) res.body().clear();  // its length all the same
    return res;
  }
  if (!reply) {
    probe = false;  // siesta cannot answer it: the server must, woken for it (a use)
    return std::nullopt;
  }
  return model_api_reply(*view, std::move(*reply), version, head);
}

http::response<http::string_body> Server::model_api_reply(const ServiceView& view,
                                                          ModelApi::Reply reply, unsigned version,
                                                          bool head) {
  http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
  if (!reply.content_type.empty()) res.set(http::field::content_type, reply.content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Siesta-Asleep", light_asleep(view.runtime) ? tier_name(*view.spec, view.runtime)
                                                        : to_string(view.runtime.state));
  res.body() = std::move(reply.body);
  res.prepare_payload();
  if (head) res.body().clear();  // its length all the same
  return res;
}

}  // namespace siesta::proxy
