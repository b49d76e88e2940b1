#include "siesta/api/admin_server.h"

#include <httplib.h>  // detail::decode_url only: the path as cpp-httplib's clients encode it
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cmath>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>

#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/core/decide.h"
#include "siesta/core/embedded_asset.h"
#include "siesta/core/error_json.h"
#include "siesta/core/settings_schema.h"
#include "siesta/http/framing.h"
#include "siesta/http/listen.h"

namespace siesta {

// The admin page's files (sidecar/api/ui/, compiled in by cmake/EmbedAssets.cmake).
const EmbeddedAsset* admin_ui_asset(std::string_view file_name);

using nlohmann::json;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// One request as the routes see it: complete, authorized or not yet.
struct AdminRequest {
  std::string method;         // as sent ("GET", "POST", ...)
  std::string path;           // percent-decoded, without the query
  std::string query;          // after '?', as sent (empty when none)
  std::string authorization;  // the Authorization header, if any
  std::string body;
  std::string host;    // the Host header, if any
  std::string origin;  // the Origin header a browser sends (absent from curl and the like)
};

// Whether a Host header names this machine's loopback: localhost (and *.localhost, which
// browsers resolve themselves, RFC 6761), 127.0.0.0/8, [::1]; with or without a port.
bool loopback_host_header(std::string_view host) {
  std::string name(host);
  if (!name.empty() && name.front() == '[') {
    name = name.substr(1, name.find(']') == std::string::npos ? 0 : name.find(']') - 1);
  } else if (const auto colon = name.rfind(':'); colon != std::string::npos) {
    name.resize(colon);
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name == "localhost" || (name.size() > 10 && name.ends_with(".localhost"))) return true;
  beast::error_code ec;
  const auto address = net::ip::make_address(name, ec);
  return !ec && address.is_loopback();
}

// The path of a request target: the query cut off, percent-escapes decoded.
std::string decoded_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  return httplib::detail::decode_url(std::string(target), false);
}

std::string query_of(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
}

// The value of `key` in a query string (percent-decoded); nullopt when absent.
std::optional<std::string> query_param(const std::string& query, std::string_view key) {
  std::string_view rest = query;
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    if (eq == std::string_view::npos) return std::string();
    return httplib::detail::decode_url(std::string(pair.substr(eq + 1)), true);
  }
  return std::nullopt;
}

constexpr std::size_t kTrimAbove = 1024 * 1024;

// The text of a JSON value in an answer. Invalid UTF-8 (from a client's path or body, echoed in a
// message) becomes U+FFFD instead of an exception and a 500 (found by fuzz/admin_fuzz.cpp).
std::string text_of(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct Reply {
  int status = 200;
  json body;
  std::string text;  // sent as-is when body is null
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// What the admin page may load: its own files and the API, nothing inline, nothing from
// elsewhere, and no framing by another site.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

Reply asset_reply(const EmbeddedAsset& asset) {
  Reply r;
  r.body = nullptr;
  r.text = std::string(asset.content);
  r.content_type = std::string(asset.content_type);
  r.headers = {{"Content-Security-Policy", kPagePolicy},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"Cache-Control", "no-cache"}};
  return r;
}

// An answer already written as JSON text.
Reply text_reply(std::string text) {
  Reply r;
  r.body = nullptr;
  r.text = std::move(text);
  return r;
}

// Turns an answer's JSON into its text, pretty-printed; an answer already text is left as is.
void render(Reply& reply) {
  if (reply.body.is_null()) return;
  reply.text = text_of(reply.body, 2) + "\n";
  reply.body = nullptr;
}

// The bytes of an answer.
std::string body_text(Reply reply) {
  render(reply);
  return std::move(reply.text);  // moved: idle-status and /metrics run to megabytes
}

// An error in the JSON error shape, never cached (as the proxy's: the next try may differ).
Reply error_reply(int status, const std::string& code, const std::string& message) {
  Reply r;
  r.status = status;
  r.body = error_json(code, message);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 200;
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kTimeout:
      return 503;
    case ErrorCode::kFailed:
      return 500;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

// `failed`: what a server-side failure (5xx) is said after, as the proxy says it ("service X
// could not be woken: "), so that the admin API and the proxy answer the same words.
Reply status_reply(const Status& st, const std::string& failed = "") {
  const int status = http_status(st.code());
  Reply r = error_reply(status, error_code_name(st.code()),
                        (status >= 500 ? failed : std::string()) + st.message());
  if (auto after = st.retry_after();
      (st.code() == ErrorCode::kTimeout || st.code() == ErrorCode::kUnavailable) && after) {
    r.headers.emplace_back("Retry-After", std::to_string(*after));
  }
  return r;
}

// A request body: absent or empty means {}; otherwise a JSON object.
Result<json> body_object(const AdminRequest& req) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return Status{ErrorCode::kInvalidArgument, "the request body is not valid JSON"};
  }
  if (!body.is_object())
    return Status{ErrorCode::kInvalidArgument, "the request body must be a JSON object"};
  return body;
}

Status only_keys(const json& body, const std::set<std::string>& allowed) {
  for (const auto& [key, value] : body.items()) {
    if (allowed.count(key) == 0) {
      std::string known;
      for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
      return {ErrorCode::kInvalidArgument,
              "unknown field \"" + key + "\"" +
                  (known.empty() ? " (this endpoint takes no fields)" : " (known: " + known + ")")};
    }
  }
  return Status::ok();
}

using Handler = std::function<Reply(const AdminRequest&, const std::smatch&)>;

struct Route {
  std::string text;
  std::regex pattern;
  std::map<std::string, Handler> methods;
};

// Compiling a std::regex costs more than answering a request; the route patterns are the same
// for every AdminServer, so each is compiled once per process (a copy shares the automaton).
// This matters where many servers are made: the tests and the fuzzer (one per input).
std::regex compiled(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::regex> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(pattern);
  if (it == cache.end()) it = cache.emplace(pattern, std::regex(pattern)).first;
  return it->second;
}

}  // namespace

class AdminServer::Impl {
 public:
  Impl(Registry& registry, AdminActions& actions, Persister& persister, const Metrics& metrics,
       const Clock& clock, MonitorStatusFn monitor, AdminOptions options)
      : registry_(registry),
        actions_(actions),
        persister_(persister),
        metrics_(metrics),
        clock_(clock),
        monitor_(std::move(monitor)),
        options_(std::move(options)) {
    add_routes();
  }

  ~Impl() {
    if (pool_) pool_->join();
  }

  Result<int> bind(const std::string& host, int port) {
    const std::string where = host + ":" + std::to_string(port);
    beast::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) {
      tcp::resolver resolver(io_);
      auto found = resolver.resolve(host, std::to_string(port), ec);
      if (ec || found.empty()) {
        return Status{ErrorCode::kUnavailable,
                      "cannot listen on " + where + " (not an address of this machine)"};
      }
      address = found.begin()->endpoint().address();
    }
    const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol(), ec);
    // SO_REUSEADDR for a quick restart; not SO_REUSEPORT, which would let another process share
    // the port and receive admin requests.
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    // The system's backlog: a burst of connections is queued, not dropped and retried.
    if (!ec) acceptor_.listen(listen_backlog(), ec);
    loopback_ = address.is_loopback();
    if (ec) {
      beast::error_code ignored;
      acceptor_.close(ignored);
      return Status{ErrorCode::kUnavailable,
                    "cannot listen on " + where +
                        " (address in use, or not an address of this machine): " + ec.message()};
    }
    return static_cast<int>(acceptor_.local_endpoint().port());
  }

  void serve() {
    // Made here, not in the constructor: handle() (the fuzzer makes a server per input) needs
    // no threads.
    pool_.emplace(std::max<std::size_t>(1, options_.threads));
    net::co_spawn(io_, accept_loop(), net::detached);
    io_.run();
    // A handler still running (a long wake) finishes before serve() returns, so nothing the
    // admin API started runs on into the shutdown that follows.
    pool_->join();
  }

  void stop() {
    net::post(io_, [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      for (auto& c : connections_) c->stream.socket().close(ignored);
      io_.stop();
    });
  }

  // One complete request, start to end: authorization, then the route.
  Reply serve_one(const AdminRequest& req, bool has_origin) {
    if (auto refused = from_a_web_page(req, has_origin)) return *refused;
    if (!authorized(req)) return unauthorized();
    return run_route(req);
  }

 private:
  using SteadyClock = std::chrono::steady_clock;

  // A client connection, owned by its coroutine; listed while open so that stop() and the
  // connection limit can close it. Touched only on the I/O thread.
  struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    bool awaiting_request = true;  // no complete request of its own is being handled
    SteadyClock::time_point since = SteadyClock::now();
  };

  static constexpr std::uint32_t kHeaderLimit = 32 * 1024;
  static constexpr auto kWriteTimeout = std::chrono::seconds(30);

  static auto token(beast::error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

  net::awaitable<void> accept_loop() {
    while (acceptor_.is_open()) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor_.async_accept(token(ec));
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
      if (ec) {
        // e.g. EMFILE: back off briefly instead of spinning.
        spdlog::warn("Admin API accept: {}", ec.message());
        net::steady_timer pause(io_, std::chrono::milliseconds(50));
        co_await pause.async_wait(token(ec));
        continue;
      }
      if (connections_.size() >= options_.max_connections && !displace_one()) {
        socket.close(ec);  // every connection is busy with a request of its own
        continue;
      }
      auto conn = std::make_shared<Connection>(std::move(socket));
      connections_.push_back(conn);
      net::co_spawn(io_, serve_connection(conn),
                    [this, conn](const std::exception_ptr&) { connections_.remove(conn); });
    }
  }

  // At the connection limit: closes the connection that has waited longest for a request (an
  // idle keep-alive, a silent or trickling client) so that a new one gets in. False when every
  // connection has a request in progress.
  bool displace_one() {
    std::shared_ptr<Connection> oldest;
    for (const auto& c : connections_) {
      if (c->awaiting_request && (!oldest || c->since < oldest->since)) oldest = c;
    }
    if (!oldest) return false;
    beast::error_code ignored;
    oldest->stream.socket().close(ignored);  // its coroutine ends and removes it
    return true;
  }

  net::awaitable<void> serve_connection(std::shared_ptr<Connection> conn) {
    beast::tcp_stream& stream = conn->stream;
    beast::flat_buffer buffer;
    for (bool first = true;; first = false) {
      conn->awaiting_request = true;
      conn->since = SteadyClock::now();
      beast::error_code ec;
      if (!first && buffer.size() == 0) {
        // Between requests: the keep-alive wait, until the next request's first bytes.
        stream.expires_after(options_.keep_alive_timeout);
        const std::size_t n = co_await stream.async_read_some(buffer.prepare(4096), token(ec));
        if (ec) co_return;
        buffer.commit(n);
      }
      // From here the whole request, header and body, must arrive within request_timeout.
      stream.expires_after(options_.request_timeout);
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      // No body limit while the header is read: Beast would refuse a large Content-Length there,
      // before authorization. The limit is set once the request is authorized.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      static auto check_extensions = http_framing::check_chunk_extensions;  // outlives parsers
      parser.on_chunk_header(check_extensions);
      co_await http::async_read_header(stream, buffer, parser, token(ec));
      if (ec) {
        if (ec == http::error::header_limit) {
          co_await write_reply(stream,
                               error_reply(431, "bad_request", "the request header is too large"),
                               11, false, false);
        } else if (ec.category() == make_error_code(http::error::bad_method).category() &&
                   ec != http::error::end_of_stream && ec != http::error::partial_message) {
          co_await write_reply(stream, error_reply(400, "bad_request", "malformed HTTP request"),
                               11, false, false);
        }
        co_return;
      }
      auto& msg = parser.get();
      // Framing read one way only, as the proxy reads it: ambiguous is refused, then closed.
      if (auto error = http_framing::framing_error(msg, msg.version())) {
        co_await write_reply(
            stream, error_reply(static_cast<int>(error->status), error->code, error->message),
            msg.version(), false, false);
        co_return;
      }
      const std::string_view target(msg.target().data(), msg.target().size());
      AdminRequest req{std::string(msg.method_string()),
                       decoded_path(target),
                       query_of(target),
                       std::string(msg[http::field::authorization]),
                       {},
                       std::string(msg[http::field::host]),
                       std::string(msg[http::field::origin])};
      const unsigned version = msg.version();
      const bool head = msg.method() == http::verb::head;
      bool keep_alive = msg.keep_alive();

      // The one gate: no handler, and no byte of the body, before authorization.
      if (auto refused = from_a_web_page(req, msg.count(http::field::origin) > 0)) {
        keep_alive = keep_alive && parser.is_done();
        if (!co_await write_reply(stream, *refused, version, keep_alive, head)) co_return;
        continue;
      }
      if (!authorized(req)) {
        keep_alive = keep_alive && parser.is_done();  // an unread body: close
        if (!co_await write_reply(stream, unauthorized(), version, keep_alive, head)) co_return;
        continue;
      }
      if (!parser.is_done()) {
        parser.body_limit(options_.max_body_bytes);
        if (const auto length = parser.content_length();
            length && *length > options_.max_body_bytes) {
          co_await write_reply(stream, too_large(), version, false, head);
          co_return;
        }
        if (version >= 11 && beast::iequals(msg[http::field::expect], "100-continue")) {
          http::response<http::empty_body> go_on{http::status::continue_, version};
          co_await http::async_write(stream, go_on, token(ec));
          if (ec) co_return;
        }
        while (!ec && !parser.is_done()) {
          co_await http_framing::read_body_some(stream, buffer, parser, ec);
        }
        if (ec == http::error::body_limit) {
          co_await write_reply(stream, too_large(), version, false, head);
          co_return;
        }
        if (http_framing::is_framing_error(ec)) {
          co_await write_reply(
              stream, error_reply(400, "bad_request", "malformed request body: " + ec.message()),
              version, false, head);
          co_return;
        }
        if (ec) co_return;  // the deadline passed, or the client went away
        req.body = std::move(msg.body());
      }

      // Only now is the connection busy with a request of its own: until its body is complete it
      // may be displaced like an idle one (a client trickling bodies to /healthz, which needs no
      // token, would otherwise hold every slot for request_timeout).
      conn->awaiting_request = false;
      Reply reply;
      if (req.path == "/healthz") {
        reply = run_route(req);  // cheap: answered here, whatever the pool is doing
      } else {
        reply = co_await on_pool(std::move(req));
      }
      if (!co_await write_reply(stream, std::move(reply), version, keep_alive, head)) co_return;
    }
  }

  // Runs the route on the handler pool and resumes on the I/O thread with its answer. (A plain
  // post and a timer: the hand-over the proxy's wakes use too.)
  net::awaitable<Reply> on_pool(AdminRequest req) {
    struct Handover {
      explicit Handover(net::io_context& io) : done(io, SteadyClock::time_point::max()) {}
      net::steady_timer done;
      Reply reply;
    };
    auto handover = std::make_shared<Handover>(io_);
    net::post(*pool_, [this, handover, req = std::move(req)] {
      Reply r = run_route(req);
      // The JSON is written out here, not on the I/O thread that every connection shares
      // (idle-status with thousands of services takes milliseconds).
      render(r);
      // A large answer (idle-status, /metrics with thousands of services) freed many small
      // blocks in this thread's malloc arena; glibc keeps them, so each pool thread would hold
      // its own peak (docs/benchmarks.md). Give them back.
      if (r.text.size() > kTrimAbove) ::malloc_trim(0);
      net::post(io_, [handover, r = std::move(r)]() mutable {
        handover->reply = std::move(r);
        handover->done.cancel();
      });
    });
    beast::error_code ec;
    co_await handover->done.async_wait(token(ec));
    co_return std::move(handover->reply);
  }

  static Reply too_large() {
    return error_reply(413, "payload_too_large", "the request body is too large");
  }

  // Writes one answer; false when the connection is over (closed by request, or failed).
  net::awaitable<bool> write_reply(beast::tcp_stream& stream, Reply reply, unsigned version,
                                   bool keep_alive, bool head) {
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    for (const auto& [name, value] : reply.headers) res.set(name, value);
    res.set(http::field::content_type, reply.content_type);
    res.body() = body_text(std::move(reply));
    res.keep_alive(keep_alive);
    res.prepare_payload();
    if (head) {
      const auto length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    stream.expires_after(kWriteTimeout);
    beast::error_code ec;
    co_await http::async_write(stream, res, token(ec));
    if (!ec && !keep_alive) stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    co_return !ec && keep_alive;
  }

  Reply unauthorized() const {
    Reply r = error_reply(401, "unauthorized",
                          "this endpoint needs the admin token: Authorization: Bearer <token>");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"siesta\"");
    return r;
  }

  // The route's answer; an exception from a handler is a 500 in the JSON shape.
  Reply run_route(const AdminRequest& req) {
    try {
      return route(req);
    } catch (const std::exception& e) {
      spdlog::error("Admin API: {} {} failed: {}", req.method, req.path, e.what());
    } catch (...) {
      spdlog::error("Admin API: {} {} failed", req.method, req.path);
    }
    return error_reply(500, "internal", "internal error");
  }

  // Without a token the API trusts whoever reaches its port, which on loopback means the local
  // users, not the web pages they visit: a cross-site request (a form POST, CSRF) carries an
  // Origin that is not the API's own, and a page on a rebound DNS name (DNS rebinding) sends
  // its name as Host. Both are refused (403) before any route. With a token the token guards
  // (a page can neither send it nor pass a CORS preflight) and a reverse proxy may keep a
  // public Host or Origin, so neither is checked; nor is Host when --insecure listens beyond
  // loopback, where users reach it by any name.
  std::optional<Reply> from_a_web_page(const AdminRequest& req, bool has_origin) const {
    if (!options_.token.empty()) return std::nullopt;
    if (has_origin && !beast::iequals(req.origin, "http://" + req.host)) {
      return error_reply(403, "forbidden",
                         "cross-origin request refused: Origin " + req.origin +
                             " is not this API's (http://" + req.host +
                             "); set an admin token to use the API from another origin");
    }
    if (loopback_ && !loopback_host_header(req.host)) {
      return error_reply(403, "forbidden",
                         "request for host \"" + req.host +
                             "\" refused: without an admin token this API answers only to "
                             "loopback names (localhost, 127.0.0.1, [::1])");
    }
    return std::nullopt;
  }

  bool authorized(const AdminRequest& req) const {
    if (options_.token.empty()) return true;
    const bool guarded = req.path.rfind("/admin", 0) == 0 ||
                         (options_.protect_metrics && req.path.rfind("/metrics", 0) == 0);
    if (!guarded) return true;
    const std::string& header = req.authorization;
    constexpr std::string_view kScheme = "Bearer ";
    if (header.size() < kScheme.size() ||
        !std::equal(kScheme.begin(), kScheme.end(), header.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return false;
    }
    return constant_time_equal(std::string_view(header).substr(kScheme.size()), options_.token);
  }

  // Takes as long for any wrong token of a given length as for the right one: no timing hint
  // of how many leading characters matched.
  static bool constant_time_equal(std::string_view given, std::string_view expected) {
    unsigned diff = given.size() == expected.size() ? 0U : 1U;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
      diff |= static_cast<unsigned>(g ^ static_cast<unsigned char>(expected[i]));
    }
    return diff == 0;
  }

  Reply route(const AdminRequest& req) {
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    for (const auto& r : routes_) {
      std::smatch match;
      if (!std::regex_match(req.path, match, r.pattern)) continue;
      auto it = r.methods.find(method);
      if (it == r.methods.end()) {
        std::string allow;
        for (const auto& [m, h] : r.methods) allow += (allow.empty() ? "" : ", ") + m;
        Reply reply = error_reply(
            405, "method_not_allowed",
            req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
        reply.headers.emplace_back("Allow", allow);
        return reply;
      }
      return it->second(req, match);
    }
    return error_reply(404, "not_found", "no such endpoint: " + req.path);
  }

  void on(const std::string& pattern, const std::string& method, Handler handler) {
    for (auto& r : routes_) {
      if (r.text == pattern) {
        r.methods[method] = std::move(handler);
        return;
      }
    }
    routes_.push_back({pattern, compiled(pattern), {{method, std::move(handler)}}});
  }

  // Names in paths: unknown is 404, but names that could never be valid are a 400.
  std::optional<Reply> check_service(const std::string& name) {
    if (!valid_service_name(name)) {
      return error_reply(400, "invalid_argument", "invalid service name: " + text_of(json(name)));
    }
    if (!registry_.service(name)) return error_reply(404, "not_found", "unknown service: " + name);
    return std::nullopt;
  }
  // Models are per service. The seed's /admin/models/{name} names the model of that name on
  // the one service that has one; `?service=S` names the service, needed when several have a
  // model of that name (409 naming them, never a guess). A model to load may be one siesta has
  // not seen (`must_be_known` false): an empty service then (the runtime looks for it).
  // The key idle-status gives a name several services serve, `name@service`, names it too (no
  // model name has an '@').
  Result<ModelKey> resolve_model(const AdminRequest& req, const std::string& path_name,
                                 bool must_be_known = true) {
    std::string name = path_name;
    std::optional<std::string> service = query_param(req.query, "service");
    if (const auto at = path_name.rfind('@'); !service && at != std::string::npos && at > 0) {
      name = path_name.substr(0, at);
      service = path_name.substr(at + 1);
    }
    if (!valid_model_name(name)) {
      return Status{ErrorCode::kInvalidArgument, "invalid model name: " + text_of(json(name))};
    }
    if (service) {
      if (!valid_service_name(*service)) {
        return Status{ErrorCode::kInvalidArgument,
                      "invalid service name: " + text_of(json(*service))};
      }
      if (!registry_.service(*service)) {
        return Status{ErrorCode::kNotFound, "unknown service: " + *service};
      }
      ModelKey key{name, *service};
      if (must_be_known && !registry_.model(key)) {
        return Status{ErrorCode::kNotFound, "unknown model: " + name + " on service " + *service};
      }
      return key;
    }
    const std::vector<std::string> services = registry_.services_of_model(name);
    if (services.size() == 1) return ModelKey{name, services.front()};
    if (services.size() > 1) {
      std::string list;
      for (const auto& s : services) list += (list.empty() ? "" : ", ") + s;
      return Status{ErrorCode::kConflict, "model " + name + " is served by several services (" +
                                              list +
                                              "): name one with ?service=" + services.front()};
    }
    if (must_be_known) return Status{ErrorCode::kNotFound, "unknown model: " + name};
    return ModelKey{name, ""};
  }

  Decision current_decision(Snapshot& snapshot) {
    snapshot = registry_.snapshot();
    return decide(snapshot, clock_.wall_now());
  }

  Reply service_reply(const std::string& name) {
    Snapshot snapshot;
    Decision d = current_decision(snapshot);
    for (size_t i = 0; i < d.services.size(); ++i) {
      if (d.services[i].name == name) {
        return text_reply(service_text(name, snapshot.services[i], d.services[i]));
      }
    }
    return error_reply(404, "not_found", "unknown service: " + name);
  }

  Reply model_reply(const ModelKey& key) {
    Snapshot snapshot;
    Decision d = current_decision(snapshot);
    for (size_t i = 0; i < d.models.size(); ++i) {
      if (d.models[i].name == key.name && d.models[i].provider == key.service) {
        return text_reply(model_text(key.name, snapshot.models[i], d.models[i]));
      }
    }
    return error_reply(404, "not_found", "unknown model: " + key.name);
  }

  Reply settings_post(const AdminRequest& req) {
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    // The seed's camelCase keys, and the config file's snake_case ones (settings_schema.h).
    struct Change {
      const SettingField* field;
      std::string given;  // the name the client used
      json value;
    };
    std::map<std::string, Change> changes;  // by key: checked in the keys' order
    for (const auto& [key, value] : body->items()) {
      const SettingField* field = find_setting(key);
      if (field == nullptr) {
        std::string known;
        for (const auto& f : kSettingFields) known += std::string(f.alias) + ", ";
        return error_reply(
            400, "invalid_argument",
            "unknown setting \"" + key + "\" (known: " + known + "or their snake_case names)");
      }
      if (auto seen = changes.find(field->key); seen != changes.end()) {
        return error_reply(
            400, "invalid_argument",
            "\"" + key + "\" and \"" + seen->second.given + "\" set the same setting; give one");
      }
      changes[field->key] = {field, key, value};
    }
    if (changes.empty()) {
      return error_reply(400, "invalid_argument", "no settings given");
    }
    for (const auto& [canonical, change] : changes) {
      const auto& [field, key, value] = change;
      if (check_setting(*field, value).empty()) continue;
      if (field->flag != nullptr) {
        return error_reply(400, "invalid_argument",
                           "\"" + key + "\" must be true or false, got " + text_of(value));
      }
      const NumberRule& rule = field->rule;
      if (!value.is_number() || !std::isfinite(value.get<double>())) {
        return error_reply(
            400, "invalid_argument",
            "\"" + key + "\" must be " + a_number_of(rule.unit) + ", got " + text_of(value));
      }
      return error_reply(
          400, "invalid_argument",
          "\"" + key + "\" must be " + (rule.min_exclusive ? "greater than " : "at least ") +
              fmt::format("{:g}", rule.min) + " and at most " + fmt::format("{:g}", rule.max) +
              " " + rule.unit + ", got " + text_of(value));
    }
    // Everything is valid: apply all of it at once.
    Status st = actions_.update_settings([&](Settings& s) {
      for (const auto& [canonical, change] : changes) set_setting(*change.field, s, change.value);
    });
    if (!st) return status_reply(st);
    Reply r;
    r.body = settings_json(registry_.settings());
    return r;
  }

  // POST /admin/services/{name}/{action}
  Reply service_action(const AdminRequest& req, const std::string& name,
                       const std::string& action) {
    if (auto bad = check_service(name)) return *bad;
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    Status st;
    if (action == "idle-sleep") {
      if (Status keys = only_keys(*body, {"enabled"}); !keys) return status_reply(keys);
      if (!body->contains("enabled") || !(*body)["enabled"].is_boolean()) {
        return error_reply(400, "invalid_argument",
                           "\"enabled\" is required and must be true or false");
      }
      st = actions_.set_idle_sleep(name, (*body)["enabled"].get<bool>());
    } else if (action == "desired") {
      if (Status keys = only_keys(*body, {"desired"}); !keys) return status_reply(keys);
      const json& d = body->value("desired", json());
      auto desired = d.is_string() ? parse_desired(d.get<std::string>()) : std::nullopt;
      if (!desired) {
        return error_reply(400, "invalid_argument",
                           "\"desired\" is required and must be \"on\" or \"off\"");
      }
      st = actions_.set_desired(name, *desired);
    } else {
      if (Status keys = only_keys(*body, {}); !keys) return status_reply(keys);
      if (action == "wake") st = actions_.wake(name, Reason::kManual);
      if (action == "sleep") st = actions_.sleep(name);
      if (action == "touch") st = actions_.touch_service(name);
      if (action == "unload-models") st = actions_.unload_models_of(name);
    }
    if (!st) return status_reply(st, action == "wake" ? wake_failed(name) : "");
    return service_reply(name);
  }

  Reply model_action(const AdminRequest& req, const std::string& name, const std::string& action) {
    // A model to load may be one siesta has not seen: the runtime asks the model servers.
    auto key = resolve_model(req, name, action != "load");
    if (!key) return status_reply(key.status());
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    if (Status keys = only_keys(*body, {}); !keys) return status_reply(keys);
    Status st = action == "unload" ? actions_.unload_model(*key)
                : action == "load" ? actions_.load_model(*key)
                                   : actions_.touch_model(*key);
    if (!st) return status_reply(st, action == "load" ? load_failed(name) : "");
    if (key->service.empty()) {  // found on a server by the load: now known there
      auto found = resolve_model(req, name);
      if (!found) return status_reply(found.status());
      return model_reply(*found);
    }
    return model_reply(*key);
  }

  // GET /admin/events?since=<unix seconds>&after=<id>: siesta's recent history, oldest first.
  Reply events_get(const AdminRequest& req) {
    if (options_.events == nullptr) {
      return error_reply(404, "not_found", "no event history in this server");
    }
    auto number = [&](std::string_view key, double fallback) -> std::optional<double> {
      auto text = query_param(req.query, key);
      if (!text) return fallback;
      char* end = nullptr;
      const double v = std::strtod(text->c_str(), &end);
      if (text->empty() || *end != '\0' || !std::isfinite(v) || v < 0) return std::nullopt;
      return v;
    };
    const double now = to_unix_seconds(clock_.wall_now());
    const auto since = number("since", now - 3600);
    if (!since) {
      return error_reply(400, "invalid_argument",
                         "\"since\" must be a Unix time in seconds (a number, 0 or more)");
    }
    const auto after = number("after", 0);
    if (!after || *after != std::floor(*after) || *after > 9e15) {
      return error_reply(400, "invalid_argument", "\"after\" must be an event id (0 or more)");
    }
    json events = json::array();
    for (const auto& e : options_.events->since(*since, static_cast<std::uint64_t>(*after))) {
      json j = {{"id", e.id},           {"at", e.at},     {"kind", e.kind},
                {"subject", e.subject}, {"name", e.name}, {"reason", e.reason}};
      j["duration_seconds"] = e.duration ? json(*e.duration) : json(nullptr);
      events.push_back(std::move(j));
    }
    Reply r;
    r.body = {
        {"events", std::move(events)}, {"capacity", options_.events->capacity()}, {"now", now}};
    return r;
  }

  void add_routes() {
    // The admin page: static files, no data (that comes from /admin with the token).
    on("/", "GET", [](const auto&, const auto&) {
      Reply r;
      r.status = 302;
      r.body = nullptr;
      r.text = "";
      r.content_type = "text/plain";
      r.headers.emplace_back("Location", "/ui/");
      return r;
    });
    on("/ui", "GET", [](const auto&, const auto&) {
      Reply r;
      r.status = 302;
      r.body = nullptr;
      r.content_type = "text/plain";
      r.headers.emplace_back("Location", "/ui/");
      return r;
    });
    on(R"(/ui/([A-Za-z0-9_.-]*))", "GET", [](const auto&, const std::smatch& m) {
      const std::string file = m[1].str().empty() ? "index.html" : m[1].str();
      const EmbeddedAsset* asset = admin_ui_asset(file);
      if (asset == nullptr) return error_reply(404, "not_found", "no such file: /ui/" + file);
      return asset_reply(*asset);
    });
    on("/admin/events", "GET", [this](const auto& req, const auto&) { return events_get(req); });
    // siesta's own request history as a trace for `siesta simulate` (docs/policies.md).
    on("/admin/trace", "GET", [this](const auto&, const auto&) {
      if (options_.events == nullptr) {
        return error_reply(404, "not_found", "no request history in this server");
      }
      Reply r;
      r.body = nullptr;
      r.text = options_.events->trace_csv();
      r.content_type = "text/csv; charset=utf-8";
      return r;
    });
    on("/healthz", "GET", [](const auto&, const auto&) {
      Reply r;
      r.body = {{"status", "ok"}};
      return r;
    });
    on("/metrics", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      Reply r;
      r.body = nullptr;
      r.text = metrics_.render(snapshot, d, monitor_());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return r;
    });
    on("/admin/idle-status", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      IdleStatusExtras extras{monitor_(), persister_.enabled()};
      extras.gpu = &actions_.gpu();
      extras.gpu_waiting = actions_.gpu_waiting();
      extras.currency = options_.currency;
      return text_reply(idle_status_text(snapshot, d, extras));
    });
    on("/admin/settings", "GET", [this](const auto&, const auto&) {
      Reply r;
      r.body = settings_json(registry_.settings());
      return r;
    });
    on("/admin/settings", "POST",
       [this](const auto& req, const auto&) { return settings_post(req); });
    on("/admin/services", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      return text_reply(services_text(snapshot, d));
    });
    on(R"(/admin/services/([^/]+)/(idle-sleep|wake|sleep|desired|touch|unload-models))", "POST",
       [this](const auto& req, const std::smatch& m) {
         return service_action(req, m[1].str(), m[2].str());
       });
    on(R"(/admin/services/([^/]+))", "GET", [this](const auto&, const std::smatch& m) {
      if (auto bad = check_service(m[1].str())) return *bad;
      return service_reply(m[1].str());
    });
    on("/admin/models", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      return text_reply(models_text(snapshot, d));
    });
    // Model names hold ':' and may hold '/' (sent as %2F; httplib decodes the path).
    on(R"(/admin/models/(.+)/(unload|load|touch))", "POST",
       [this](const auto& req, const std::smatch& m) {
         return model_action(req, m[1].str(), m[2].str());
       });
    on(R"(/admin/models/(.+))", "GET", [this](const auto& req, const std::smatch& m) {
      auto key = resolve_model(req, m[1].str());
      if (!key) return status_reply(key.status());
      return model_reply(*key);
    });
  }

  Registry& registry_;
  AdminActions& actions_;
  Persister& persister_;
  const Metrics& metrics_;
  const Clock& clock_;
  MonitorStatusFn monitor_;
  AdminOptions options_;
  bool loopback_ = false;  // listening on a loopback address (bind)
  std::vector<Route> routes_;
  net::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  std::list<std::shared_ptr<Connection>> connections_;  // touched only on io_'s thread
  std::optional<net::thread_pool> pool_;                // the handlers, from serve(); joined first
};

AdminServer::AdminServer(Registry& registry, AdminActions& actions, Persister& persister,
                         const Metrics& metrics, const Clock& clock, MonitorStatusFn monitor,
                         AdminOptions options)
    : impl_(std::make_unique<Impl>(registry, actions, persister, metrics, clock, std::move(monitor),
                                   options)) {}

AdminServer::~AdminServer() = default;

Result<int> AdminServer::bind(const std::string& host, int port) { return impl_->bind(host, port); }
void AdminServer::serve() { impl_->serve(); }
void AdminServer::stop() { impl_->stop(); }

AdminResponse AdminServer::handle(const std::string& method, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body) {
  AdminRequest req{method, decoded_path(path), query_of(path), {}, body, "localhost", {}};
  bool has_origin = false;
  bool has_authorization = false;
  for (const auto& [name, value] : headers) {  // the first of each, as the server reads it
    if (beast::iequals(name, "Authorization") && !has_authorization) {
      req.authorization = value;
      has_authorization = true;
    } else if (beast::iequals(name, "Host")) {
      req.host = value;
    } else if (beast::iequals(name, "Origin") && !has_origin) {
      req.origin = value;
      has_origin = true;
    }
  }
  Reply reply = impl_->serve_one(req, has_origin);
  const int status = reply.status;
  std::string content_type = reply.content_type;
  return {status, body_text(std::move(reply)), std::move(content_type)};
}

}  // namespace siesta
