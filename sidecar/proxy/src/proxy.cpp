#include "siesta/proxy/proxy.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cmath>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "siesta/core/decide.h"
#include "siesta/core/error_json.h"
#include "siesta/core/model_api.h"
#include "siesta/http/framing.h"
#include "siesta/proxy/upstream_pool.h"
#include "siesta/proxy/wake_page.h"
#include "siesta/runtime/executor.h"

namespace siesta {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kChunk = 16 * 1024;          // relay buffer: one read, one write
constexpr std::size_t kBulk = 64 * 1024;           // relay buffer for a large body
constexpr std::size_t kHeaderRead = 4 * 1024;      // a request header's first read
constexpr std::uint32_t kHeaderLimit = 64 * 1024;  // request or response header block
// A new upstream connection opened after a wake counts against upstream_max_connecting until
// its response header, or this long: a slow answer or a slow request body does not hold it.
constexpr auto kUnprovenFor = std::chrono::seconds(1);
// How long an upstream that stopped taking a request is given for the answer it sent first.
constexpr auto kEarlyAnswerWait = std::chrono::seconds(1);
// An Activity timer checks no more often than this, whatever tiny timeout it is given.
constexpr SteadyClock::duration kMinCheckPeriod = std::chrono::milliseconds(1);
// Bodies of any size pass. Not boost::none: Beast 1.74 compares a chunk's length against the
// optional limit, and any length is "greater" than none.
constexpr std::uint64_t kNoBodyLimit = std::numeric_limits<std::uint64_t>::max();

auto ec_token(beast::error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

double seconds_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

SteadyClock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

// The buffer a body is relayed through: kChunk, enough for a stream's pieces, on the coroutine
// frame; a body that fills it is a bulk transfer and gets kBulk, so that a large body takes a
// read and a write per 64 KiB (each a syscall), not per 16 KiB.
class RelayBuffer {
 public:
  char* data() { return big_ ? big_.get() : small_; }
  std::size_t size() const { return big_ ? kBulk : kChunk; }
  // After a piece of `piece` bytes went out: grows when it filled the buffer, and the socket's
  // read buffer (`from`) with it, since the reads take as much as it has room for.
  void grow_if_filled(std::size_t piece, beast::flat_buffer& from) {
    if (piece < kChunk || big_) return;
    big_ = std::make_unique_for_overwrite<char[]>(kBulk);
    from.reserve(kBulk);
  }

 private:
  char small_[kChunk];
  std::unique_ptr<char[]> big_;
};

// Ends the in-flight use of a service when the request or connection is over, whatever way.
class InFlight {
 public:
  InFlight(Controller& controller, std::string service)
      : controller_(controller), service_(std::move(service)) {}
  ~InFlight() { controller_.end_request(service_); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  Controller& controller_;
  std::string service_;
};

// Counts an upgraded connection (a WebSocket) open while it is relayed, however it ends.
class UpgradedCount {
 public:
  UpgradedCount(Controller& controller, std::string service)
      : controller_(controller), service_(std::move(service)) {
    controller_.count_upgraded(service_, true);
  }
  ~UpgradedCount() { controller_.count_upgraded(service_, false); }
  UpgradedCount(const UpgradedCount&) = delete;
  UpgradedCount& operator=(const UpgradedCount&) = delete;

 private:
  Controller& controller_;
  std::string service_;
};

// Every line of a header as one list ("a, b"), e.g. Upgrade.
std::string joined_values(const http::fields& fields, http::field name) {
  std::string out;
  for (const auto& f : fields) {
    if (f.name() != name || f.value().empty()) continue;
    out.append(out.empty() ? "" : ", ").append(f.value().data(), f.value().size());
  }
  return out;
}

// The protocols an HTTP/1.1 request asks to switch to (RFC 9110 7.8): its Upgrade header, when
// its Connection header names "upgrade"; empty otherwise, and then Upgrade is an ordinary
// hop-by-hop header that stops here. A server must ignore Upgrade in an HTTP/1.0 request.
// The protocols of an Upgrade value ("websocket", "foo/1, bar"), trimmed.
std::vector<std::string_view> protocols_of(std::string_view value) {
  std::vector<std::string_view> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    std::string_view p = value.substr(0, comma);
    while (!p.empty() && (p.front() == ' ' || p.front() == '\t')) p.remove_prefix(1);
    while (!p.empty() && (p.back() == ' ' || p.back() == '\t')) p.remove_suffix(1);
    if (!p.empty()) out.push_back(p);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
  return out;
}

// Whether every protocol `switched` (a 101's Upgrade) is one that was `asked` (the request's),
// by name, case-insensitively ("foo" matches an asked "foo/1"); an empty `switched` is not.
bool offered(std::string_view asked, std::string_view switched) {
  const auto wanted = protocols_of(asked);
  const auto given = protocols_of(switched);
  if (given.empty()) return false;
  return std::all_of(given.begin(), given.end(), [&](std::string_view to) {
    return std::any_of(wanted.begin(), wanted.end(), [&](std::string_view from) {
      const auto same = [](std::string_view a, std::string_view b) {
        return beast::iequals(beast::string_view(a.data(), a.size()),
                              beast::string_view(b.data(), b.size()));
      };
      return same(from, to) || same(from.substr(0, from.find('/')), to);
    });
  });
}

std::string upgrade_asked(const http::fields& req, unsigned version) {
  if (version < 11) return {};
  bool named = false;
  for (const auto& f : req) {
    if (f.name() != http::field::connection) continue;
    for (auto token : http::token_list(f.value()))
      named = named || beast::iequals(token, "upgrade");
  }
  return named ? joined_values(req, http::field::upgrade) : std::string();
}

// Connection options a client may not use to strip a header: the framing and Host (refused,
// see http_framing::framing_error) and the headers the proxy itself adds or relies on (RFC
// 9110 7.6.1).
bool protected_from_connection(beast::string_view name) {
  return beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
         beast::iequals(name, "host") || beast::iequals(name, "authorization") ||
         beast::iequals(name, "forwarded") ||
         (name.size() >= 12 && beast::iequals(name.substr(0, 12), "x-forwarded-"));
}

// Headers that describe one connection, not the message (RFC 9110 7.6.1), except the framing
// (Content-Length, Transfer-Encoding) that the relay keeps. Also every header the Connection
// header names, on every Connection line, unless it is protected.
void strip_hop_by_hop(http::fields& fields) {
  std::vector<std::string> named;
  for (const auto& f : fields) {
    if (f.name() != http::field::connection) continue;
    for (auto token : http::token_list(f.value())) {
      if (!protected_from_connection(token)) named.emplace_back(token);
    }
  }
  for (const auto& n : named) fields.erase(n);
  fields.erase(http::field::connection);
  fields.erase(http::field::keep_alive);
  fields.erase("Proxy-Connection");
  fields.erase(http::field::te);
  fields.erase(http::field::trailer);
  fields.erase(http::field::upgrade);
  fields.erase(http::field::proxy_authorization);
  fields.erase(http::field::proxy_authenticate);
}

// The X-Forwarded-* headers as nginx's usual configuration sets them: the peer appended to
// X-Forwarded-For (every line of it, as one list); X-Forwarded-Host and X-Forwarded-Proto
// describe this hop. A client's own Forwarded, X-Forwarded-Host and X-Forwarded-Proto are
// believed only when siesta sits behind a proxy that sets them (`trust`).
void set_forwarded_headers(http::fields& req, const std::string& peer, bool trust) {
  std::string xff;
  for (const auto& f : req) {
    if (beast::iequals(f.name_string(), "X-Forwarded-For") && !f.value().empty()) {
      xff.append(xff.empty() ? "" : ", ").append(f.value().data(), f.value().size());
    }
  }
  req.set("X-Forwarded-For", xff.empty() ? peer : xff + ", " + peer);
  if (!trust) {
    req.erase(http::field::forwarded);
    req.erase("X-Forwarded-Host");
    req.erase("X-Forwarded-Proto");
  }
  if (req["X-Forwarded-Proto"].empty()) req.set("X-Forwarded-Proto", "http");
  if (!req[http::field::host].empty() && req["X-Forwarded-Host"].empty()) {
    req.set("X-Forwarded-Host", req[http::field::host]);
  }
}

// The next piece of a relayed body for the serializer. An empty piece must have no data
// pointer: Beast's chunked serializer writes a non-null empty piece as a chunk of size 0, which
// is a terminator of its own, and then the real one after it.
void set_piece(http::buffer_body::value_type& body, char* data, std::size_t size, bool more) {
  body.data = size == 0 ? nullptr : data;
  body.size = size;
  body.more = more;
}

// Parses into the parser's body buffer what `buffer` already holds, without reading, until the
// body buffer is full, the message done, or a piece is incomplete.
void take_buffered(http::response_parser<http::buffer_body>& parser, beast::flat_buffer& buffer,
                   beast::error_code& ec) {
  while (!parser.is_done() && parser.get().body().size > 0 && buffer.size() > 0) {
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more || ec == http::error::need_buffer) {
      ec = {};
      return;
    }
    if (ec || used == 0) return;
  }
}

bool is_stream(const http::fields& fields, bool chunked) {
  const auto type = fields[http::field::content_type];
  return chunked || type.starts_with("text/event-stream") ||
         type.starts_with("application/x-ndjson");
}

http::response<http::string_body> error_response(http::status status, unsigned version,
                                                 const std::string& code,
                                                 const std::string& message,
                                                 std::optional<int> retry_after = std::nullopt) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  if (retry_after) res.set(http::field::retry_after, std::to_string(*retry_after));
  res.body() =
      error_json(code, message).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
      "\n";  // a client's bytes in the message may not be UTF-8
  res.prepare_payload();
  return res;
}

// One pending wake, shared between the thread that runs it and every request waiting for it.
struct WakeWait {
  explicit WakeWait(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  std::optional<Status> result;
};

// Closes a connection on which nothing has moved for the current phase's timeout (waiting for
// a request, reading its header, its body, relaying). One timer per connection, never re-armed
// per operation: a timeout on each read and write (beast's tcp_stream::expires_after) cost a
// timerfd_settime per operation, five per proxied request (docs/benchmarks.md). The timer wakes
// at least every `period` (the shortest timeout the connection's phases usually have) to check,
// so a phase change costs nothing unless its deadline comes before the timer's.
struct Activity : std::enable_shared_from_this<Activity> {
  Activity(const net::any_io_executor& ex, SteadyClock::duration t,
           SteadyClock::duration check_period)
      : timer(ex), timeout(t), period(std::max(check_period, kMinCheckPeriod)) {}
  void touch() { last = SteadyClock::now(); }
  // A new phase: its timeout counts from now.
  void phase(SteadyClock::duration t) {
    timeout = t;
    touch();
    // Re-armed by watch_idle for the new deadline, only when the timer would check too late.
    if (last + t < timer.expiry()) timer.cancel();
  }
  // One way of a relay has ended (a half-close): the other way has half_closed_timeout, if
  // set, with nothing moving before the connection is closed, even where it had no timeout.
  void half_closed() {
    if (!half_closed_timeout) return;
    paused = false;
    phase(std::min(timeout, *half_closed_timeout));
  }
  net::steady_timer timer;
  SteadyClock::duration timeout;
  SteadyClock::duration period;
  SteadyClock::time_point last = SteadyClock::now();
  bool done = false;
  bool expired = false;  // on_idle ran: nothing moved for `timeout`
  bool paused = false;   // waiting for a wake, or an upgraded connection without a timeout
  std::optional<SteadyClock::duration> half_closed_timeout;
  std::function<void()> on_idle;  // closes the connection's sockets; only while !done
};

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

// Ends the watch when the connection's coroutine ends, however it ends.
class ActivityScope {
 public:
  explicit ActivityScope(std::shared_ptr<Activity> a) : a_(std::move(a)) {}
  ~ActivityScope() {
    a_->done = true;
    a_->timer.cancel();
  }
  ActivityScope(const ActivityScope&) = delete;
  ActivityScope& operator=(const ActivityScope&) = delete;

 private:
  std::shared_ptr<Activity> a_;
};

// Notices a client that closes its side while it waits for its answer or receives it, like
// nginx (proxy_ignore_client_abort off): a client that gave up is not in flight any more, and
// its upstream connection is closed. It only peeks, so a pipelined request stays unread.
struct ClientWatch {
  bool active = false;
  bool gone = false;
  char peeked = 0;                // a pipelined request's first byte, left in the socket
  std::function<void()> on_gone;  // closes the exchange's sockets
};

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

// Stops the watch when the exchange ends, however it ends.
class ClientWatchScope {
 public:
  ClientWatchScope(tcp::socket& socket, std::shared_ptr<ClientWatch> w)
      : socket_(socket), w_(std::move(w)) {}
  ~ClientWatchScope() { stop(); }
  // Stops it early: the client's bytes are read by someone else now (an upgraded connection).
  void stop() {
    if (!w_->active) return;
    w_->active = false;
    beast::error_code ignored;
    socket_.cancel(ignored);
  }
  ClientWatchScope(const ClientWatchScope&) = delete;
  ClientWatchScope& operator=(const ClientWatchScope&) = delete;

 private:
  tcp::socket& socket_;
  std::shared_ptr<ClientWatch> w_;
};

}  // namespace

struct Proxy::Impl {
  Impl(Registry& registry, Controller& controller, Recorder& recorder, ProxyOptions options)
      : registry_(registry),
        controller_(controller),
        recorder_(recorder),
        options_(std::move(options)) {
    // One io_context per thread, each with its own connections: no handler of a connection
    // ever moves to another thread, so there is no strand, no lock in the scheduler and no
    // cross-thread wake-up per operation (docs/benchmarks.md shows what that cost).
    for (int i = 0; i < std::max(1, options_.threads); ++i) {
      contexts_.push_back(std::make_unique<net::io_context>(1));
      work_.push_back(net::make_work_guard(*contexts_.back()));
    }
  }
  // The contexts go before the listeners: destroying one destroys the coroutine frames of the
  // connections still open, whose destructors use the listeners and counters declared after
  // them. The acceptors, which live on the first context, go before it.
  ~Impl() {
    for (auto& l : listeners_) l.acceptor.reset();
    work_.clear();
    contexts_.clear();
  }

  struct Listener {
    std::string service;  // empty for the /wake listener
    Protocol protocol = Protocol::kHttp;
    std::string upstream_host;
    std::string upstream_port;
    const ModelApi* model_api = nullptr;  // a model server's API; nullptr: not one
    SteadyClock::duration response_timeout = std::chrono::seconds(300);
    bool trust_forwarded_headers = false;
    bool wake_page = false;
    int max_connections = 1024;
    std::optional<SteadyClock::duration> tcp_idle_timeout;
    std::optional<SteadyClock::duration> upgraded_idle_timeout;
    std::shared_ptr<std::atomic<int>> open = std::make_shared<std::atomic<int>>(0);
    std::unique_ptr<proxy::UpstreamPool> pool;  // the upstream's connections
    std::unique_ptr<tcp::acceptor> acceptor;
    int port = 0;
  };

  Registry& registry_;
  Controller& controller_;
  Recorder& recorder_;
  ProxyOptions options_;
  std::vector<std::unique_ptr<net::io_context>> contexts_;  // listeners live on the first
  // Keep the threads running with no listener yet: one may be added later (labels).
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::atomic<std::size_t> next_context_{0};
  std::atomic<int> open_total_{0};  // client connections on all service ports
  std::vector<std::thread> threads_;
  bool started_ = false;

  mutable std::mutex mu_;
  std::list<Listener> listeners_;  // guarded by mu_; stable addresses

  // Wakes in progress: one per service, shared by every request that waits for it.
  std::mutex wake_mu_;
  std::map<std::string, std::vector<std::function<void(Status)>>> waking_;
  ThreadExecutor wake_threads_;

  Status bind_one(Listener listener, const std::string& host, int port) {
    beast::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) {
      tcp::resolver resolver(*contexts_.front());
      auto found = resolver.resolve(host, std::to_string(port), ec);
      if (ec || found.empty()) {
        return {ErrorCode::kInvalidArgument, "cannot resolve listen host " + host};
      }
      address = found.begin()->endpoint().address();
    }
    const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
    auto acceptor = std::make_unique<tcp::acceptor>(*contexts_.front());
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
    const std::string where =
        (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
    if (ec) {
      return {ErrorCode::kUnavailable,
              "cannot listen on " + where + " (" +
                  (listener.service.empty() ? "/wake" : "service " + listener.service) +
                  "): " + ec.message()};
    }
    listener.port = acceptor->local_endpoint().port();
    listener.acceptor = std::move(acceptor);
    std::lock_guard lock(mu_);
    listeners_.push_back(std::move(listener));
    if (started_) spawn_accept(listeners_.back());
    return Status::ok();
  }

  Status add(const ServiceSpec& spec) {
    if (spec.listen_port == 0 && spec.listen_host.empty()) return Status::ok();
    Listener l;
    l.service = spec.name;
    l.protocol = spec.protocol;
    l.upstream_host = spec.upstream_host;
    l.upstream_port = std::to_string(spec.upstream_port);
    l.model_api = options_.model_api_of ? options_.model_api_of(spec.model_api) : nullptr;
    l.response_timeout = to_duration(spec.response_timeout_seconds);
    l.trust_forwarded_headers = spec.trust_forwarded_headers;
    l.wake_page = spec.wake_page;
    l.max_connections = spec.max_connections;
    l.pool = std::make_unique<proxy::UpstreamPool>(
        static_cast<std::size_t>(options_.upstream_max_connecting),
        static_cast<std::size_t>(options_.upstream_idle_connections),
        options_.upstream_idle_timeout);
    if (spec.tcp_idle_timeout_seconds) {
      l.tcp_idle_timeout = to_duration(*spec.tcp_idle_timeout_seconds);
    }
    if (spec.upgraded_idle_timeout_seconds) {
      l.upgraded_idle_timeout = to_duration(*spec.upgraded_idle_timeout_seconds);
    }
    Status st = bind_one(std::move(l), spec.listen_host, spec.listen_port);
    if (st) {
      spdlog::info("Proxy for service {} listening on {}:{} ({}) -> {}:{}", spec.name,
                   spec.listen_host, port_of(spec.name),
                   spec.protocol == Protocol::kTcp ? "tcp" : "http", spec.upstream_host,
                   spec.upstream_port);
    }
    return st;
  }

  int port_of(const std::string& service) const {
    std::lock_guard lock(mu_);
    for (const auto& l : listeners_) {
      if (l.service == service) return l.port;
    }
    return 0;
  }

  void spawn_accept(Listener& l) {
    net::co_spawn(*contexts_.front(), accept_loop(l), net::detached);
  }

  // The context a new connection lives on: round robin.
  net::io_context& next_context() {
    return *contexts_[next_context_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
  }

  awaitable<void> accept_loop(Listener& l) {
    while (true) {
      beast::error_code ec;
      tcp::socket socket = co_await l.acceptor->async_accept(next_context(), ec_token(ec));
      if (ec == net::error::operation_aborted || !l.acceptor->is_open()) co_return;
      if (ec) {
        // e.g. EMFILE: back off briefly instead of spinning.
        spdlog::warn("Proxy accept on port {}: {}", l.port, ec.message());
        net::steady_timer pause(co_await net::this_coro::executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(ec_token(ec));
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto ex = socket.get_executor();
      if (l.service.empty()) {
        net::co_spawn(ex, serve_wake(std::move(socket)), net::detached);
        continue;
      }
      if (const char* reason = admit(l)) {
        recorder_.proxy_connection_refused(l.service, reason);
        if (l.protocol == Protocol::kHttp) {
          net::co_spawn(ex, refuse_http(std::move(socket)), net::detached);
        }
        continue;  // TCP: closed at once
      }
      if (l.protocol == Protocol::kTcp) {
        net::co_spawn(ex, serve_tcp(l, std::move(socket)), net::detached);
      } else {
        net::co_spawn(ex, serve_http(l, std::move(socket)), net::detached);
      }
    }
  }

  // ---- Connection limits ----

  // Counts a new connection on `l` in, or says why it is refused. Called on the accepting
  // thread only, so a check and its increment cannot interleave with another admission.
  const char* admit(Listener& l) {
    if (l.open->load() >= l.max_connections) return "service_limit";
    if (open_total_.load() >= options_.max_connections) return "global_limit";
    l.open->fetch_add(1);
    open_total_.fetch_add(1);
    recorder_.proxy_connection_opened(l.service);
    return nullptr;
  }

  // Counts an admitted connection out when its coroutine ends, however it ends.
  class Admitted {
   public:
    Admitted(Impl& impl, Listener& l) : impl_(impl), l_(l) {}
    ~Admitted() {
      l_.open->fetch_sub(1);
      impl_.open_total_.fetch_sub(1);
      impl_.recorder_.proxy_connection_closed(l_.service);
    }
    Admitted(const Admitted&) = delete;
    Admitted& operator=(const Admitted&) = delete;

   private:
    Impl& impl_;
    Listener& l_;
  };

  // A connection over a limit: told so, then closed (the request, if any, is not read).
  awaitable<void> refuse_http(tcp::socket socket) {
    auto res = error_response(http::status::service_unavailable, 11, "too_many_connections",
                              "too many connections; try again later", 1);
    res.keep_alive(false);
    beast::error_code ec;
    co_await http::async_write(socket, res, ec_token(ec));
    socket.shutdown(tcp::socket::shutdown_send, ec);
  }

  // Starts the wake (or joins the one in progress) and calls `done` with its outcome.
  void request_wake(const std::string& service, std::function<void(Status)> done) {
    {
      std::lock_guard lock(wake_mu_);
      auto [it, first] = waking_.try_emplace(service);
      it->second.push_back(std::move(done));
      if (!first) return;
    }
    wake_threads_.post([this, service] {
      Status st = controller_.wake(service, "request");
      std::vector<std::function<void(Status)>> waiters;
      {
        std::lock_guard lock(wake_mu_);
        waiters = std::move(waking_[service]);
        waking_.erase(service);
      }
      for (auto& w : waiters) w(st);
    });
  }

  // Waits (without blocking an I/O thread) for the service to be woken.
  // Waits (without blocking an I/O thread) for the service to be woken. With `client`, a client
  // that closes meanwhile ends the wait at once (*gone is set); the wake itself goes on for the
  // others.
  // With `grace`, the wait ends after it with *still_waking set if the wake is not done (the wake
  // goes on).
  awaitable<Status> wake(const std::string& service, tcp::socket* client = nullptr,
                         bool* gone = nullptr,
                         std::optional<std::chrono::milliseconds> grace = std::nullopt,
                         bool* still_waking = nullptr) {
    auto ex = co_await net::this_coro::executor;
    auto wait = std::make_shared<WakeWait>(ex);
    double limit = 60;
    if (auto view = registry_.service(service)) limit = view->spec->start_timeout_seconds;
    // The controller gives up at start_timeout_seconds; this is only a backstop.
    auto wait_for = std::chrono::milliseconds(static_cast<long>(limit * 1000) + 5000);
    if (grace) wait_for = std::min(wait_for, *grace);
    wait->timer.expires_after(wait_for);
    request_wake(service, [wait, ex](Status st) {
      net::post(ex, [wait, st = std::move(st)]() mutable {
        wait->result = std::move(st);
        wait->timer.cancel();
      });
    });
    auto watch = std::make_shared<ClientWatch>();
    watch->on_gone = [wait] { wait->timer.cancel(); };
    std::optional<ClientWatchScope> watching;
    if (client != nullptr) {
      watch_client(*client, watch);
      watching.emplace(*client, watch);
    }
    beast::error_code ec;
    co_await wait->timer.async_wait(ec_token(ec));
    watching.reset();
    if (watch->gone && !wait->result) {
      if (gone != nullptr) *gone = true;
      co_return Status{ErrorCode::kUnavailable, "the client went away during the wake"};
    }
    if (!wait->result && grace && still_waking != nullptr) {
      *still_waking = true;
      co_return Status{ErrorCode::kUnavailable, "service " + service + " is still waking"};
    }
    if (!wait->result) {
      co_return Status{ErrorCode::kTimeout, "service " + service + " was not ready in time"};
    }
    co_return *wait->result;
  }

  // ---- Models ----

  // A request on a model, in flight from begin_model() until the object is destroyed.
  struct ModelUse {
    ModelUse(Controller& c, std::string m) : controller(&c), model(std::move(m)) {}
    ModelUse(ModelUse&& o) noexcept
        : controller(std::exchange(o.controller, nullptr)),
          model(std::move(o.model)),
          keep_alive_after(o.keep_alive_after),
          keep_alive(o.keep_alive),
          accepted(o.accepted),
          sent(o.sent),
          answered(o.answered),
          load_ticket(o.load_ticket),
          was_loaded(o.was_loaded),
          t0(o.t0),
          first_byte(o.first_byte),
          load_scan(std::move(o.load_scan)) {}
    ModelUse& operator=(ModelUse&&) = delete;
    ~ModelUse() {
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
    Controller* controller;
    std::string model;
    bool keep_alive_after = false;  // set through the provider after a success (ModelApi)
    double keep_alive = 0;
    bool accepted = false;                     // the model server answered 2xx: the model is loaded
    bool sent = false;                         // the request reached the model server
    bool answered = false;                     // and its answer's header came back
    std::optional<std::uint64_t> load_ticket;  // the model was not loaded when it began
    bool was_loaded = true;                    // false: this request paid the model's load
    SteadyClock::time_point t0 = SteadyClock::now();
    double first_byte = 0;                 // seconds from t0 to the response header
    std::unique_ptr<LoadMeter> load_scan;  // this response paid the model's load
  };

  // A whole answer that is not a stream (a Content-Length of at most 4 MiB), read into `buf`
  // before its header goes out; nullopt for any other. The relay then sends it from `buf`.
  awaitable<std::optional<std::string_view>> read_whole_answer(
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
  awaitable<std::optional<std::string>> read_body(beast::tcp_stream& client, Activity& activity,
                                                  beast::flat_buffer& client_buf,
                                                  http::request_parser<http::buffer_body>& parser,
                                                  beast::error_code& ec) {
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
  void begin_model(Listener& l, std::string_view target, std::string& body,
                   std::optional<ModelUse>& out) {
    auto request = l.model_api->read(target, body);
    if (!request) return;
    const auto policy = controller_.keep_alive_policy(request->model, l.service);
    ModelUse& use = out.emplace(controller_, request->model);
    use.keep_alive_after = request->keep_alive_after;
    // The client's own keep-alive if it asked for one, else the model's; within the bounds.
    use.keep_alive = clamp_keep_alive(request->asked_keep_alive.value_or(policy.configured_seconds),
                                      policy.min_seconds, policy.max_seconds);
    if (auto rewritten = l.model_api->with_keep_alive(*request, use.keep_alive)) {
      body = std::move(*rewritten);
    }
    use.load_ticket = controller_.begin_model_request(request->model, l.service);
  }

  // A request that could not carry siesta's keep-alive (Ollama reads none from /v1/*), so the
  // server's default would apply: set siesta's through the provider once the request is over,
  // off the I/O threads.
  void refresh_keep_alive(Listener& l, const ModelUse& use) {
    ModelProvider* provider = controller_.provider_of(l.service);
    if (provider == nullptr) return;
    wake_threads_.post([provider, model = use.model,
                        keep_alive = l.model_api->server_keep_alive(use.keep_alive)] {
      if (Status st = provider->load(model, keep_alive); !st) {
        spdlog::warn("Model {}: could not set its keep-alive after a request that carried none: {}",
                     model, st.message());
      }
    });
  }

  // ---- HTTP ----

  // How often an HTTP connection's Activity timer checks at least: its shortest usual timeout.
  SteadyClock::duration check_period() const {
    return std::min({SteadyClock::duration(options_.header_timeout),
                     SteadyClock::duration(options_.body_timeout),
                     SteadyClock::duration(options_.keepalive_timeout),
                     SteadyClock::duration(options_.idle_timeout)});
  }

  awaitable<void> serve_http(Listener& l, tcp::socket socket) {
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
  // siesta did not read, e.g. after an early answer): reads and drops what comes, until the
  // client closes or kLingerFor passes, like nginx's lingering close. Closing with unread bytes
  // would send a reset, which can make the client lose the answer it has not read yet.
  static awaitable<void> linger(beast::tcp_stream& client) {
    constexpr auto kLingerFor = std::chrono::seconds(2);
    char sink[4096];
    client.expires_after(kLingerFor);
    beast::error_code ec;
    while (!ec) co_await client.async_read_some(net::buffer(sink), ec_token(ec));
  }

  // ---- The waking page (docs/proxy.md#the-waking-page) ----

  std::optional<double> expected_wake(const std::string& service) const {
    return options_.expected_wake_seconds ? options_.expected_wake_seconds(service) : std::nullopt;
  }

  // 503 (the real page is not there yet; nothing caches it) with the page and Retry-After.
  http::response<http::string_body> waking_page(const Listener& l, unsigned version) {
    http::response<http::string_body> res{http::status::service_unavailable, version};
    res.set(http::field::content_type, "text/html; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::retry_after, "2");
    res.set("Content-Security-Policy", wake_page::kPolicy);
    res.set("X-Content-Type-Options", "nosniff");
    res.set("X-Siesta-Wake", "waking-page");
    res.body() = wake_page::page_html(l.service, expected_wake(l.service));
    res.prepare_payload();
    return res;
  }

  // GET /.siesta/{wake-status,wake.js,wake.css} on a service with the waking page: answered by
  // siesta, never forwarded; neither a use nor a wake.
  http::response<http::string_body> siesta_path(const Listener& l,
                                                const http::request_header<http::fields>& req,
                                                std::string_view target) {
    const unsigned version = req.version();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = error_response(http::status::method_not_allowed, version, "method_not_allowed",
                                "use GET on " + std::string(target));
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    const std::string_view path = target.substr(0, target.find('?'));
    const std::string_view file = path.substr(wake_page::kPrefix.size());
    http::response<http::string_body> res{http::status::ok, version};
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    if (file == "wake-status") {
      const auto view = registry_.service(l.service);
      if (!view) {
        return error_response(http::status::not_found, version, "not_found",
                              "unknown service: " + l.service);
      }
      res.set(http::field::content_type, "application/json");
      res.body() = wake_page::status_json(l.service, view->runtime.state, expected_wake(l.service));
    } else if (const EmbeddedAsset* a = wake_page::asset(file)) {
      res.set(http::field::content_type, std::string(a->content_type));
      res.body() = std::string(a->content);
    } else {
      return error_response(
          http::status::not_found, version, "not_found",
          "no such path: " + std::string(path) + " (siesta answers /.siesta/wake-status here)");
    }
    res.prepare_payload();
    if (req.method() == http::verb::head) {
      const auto length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    return res;
  }

  // Sends one answer made by siesta itself; false when the connection must close.
  awaitable<bool> answer(beast::tcp_stream& client, http::response<http::string_body> res,
                         bool keep_alive) {
    res.keep_alive(keep_alive);
    beast::error_code ec;
    co_await http::async_write(client, res, ec_token(ec));
    co_return keep_alive && !ec;
  }

  // The upstream as a Host value, for an HTTP/1.0 request that came without one.
  static std::string upstream_authority(const Listener& l) {
    const bool v6 = l.upstream_host.find(':') != std::string::npos;
    return (v6 ? "[" + l.upstream_host + "]" : l.upstream_host) + ":" + l.upstream_port;
  }

  // A connection to the upstream: an idle one from its pool when there is one (`reused`), else a
  // new one. `bounded` (a request released by a wake): opened once fewer than
  // upstream_max_connecting other new ones are unproven (`slot`: done() when this one's header
  // came or kUnprovenFor passed), waiting for that or a freed connection up to response_timeout
  // (or until *stop_waiting is called). Then connects within connect_timeout. ec says why there
  // is none.
  awaitable<std::optional<tcp::socket>> open_upstream(Listener& l, bool bounded, bool& reused,
                                                      proxy::UpstreamPool::Slot& slot,
                                                      beast::error_code& ec,
                                                      std::function<void()>* stop_waiting) {
    reused = false;
    const auto ex = co_await net::this_coro::executor;
    proxy::UpstreamPool::Grant grant;
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
    auto endpoints =
        co_await resolver.async_resolve(l.upstream_host, l.upstream_port, ec_token(ec));
    if (ec) co_return std::nullopt;
    beast::tcp_stream connecting(ex);
    connecting.expires_after(options_.connect_timeout);
    co_await connecting.async_connect(endpoints, ec_token(ec));
    if (ec) co_return std::nullopt;
    tcp::socket socket = connecting.release_socket();
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    recorder_.proxy_upstream_connection(l.service, false);
    co_return socket;
  }

  // Gives a free upstream connection (its last response complete, nothing unread) back to the
  // pool: to a request that waits, or kept idle for the next.
  // `idle_since`: when its last response ended (a connection kept by its client may have been
  // idle a while: its age counts against upstream_idle_timeout from then).
  static void park(Listener& l, std::optional<beast::tcp_stream>& upstream,
                   const beast::flat_buffer& upstream_buf,
                   SteadyClock::time_point idle_since = SteadyClock::now()) {
    if (upstream && upstream_buf.size() == 0) {
      l.pool->release(upstream->release_socket(), idle_since);
    }
    upstream.reset();
  }

  // Forwards one request and its response. Returns whether the client connection stays open.
  awaitable<bool> forward(Listener& l, beast::tcp_stream& client, beast::flat_buffer& client_buf,
                          std::optional<beast::tcp_stream>& upstream,
                          beast::flat_buffer& upstream_buf,
                          SteadyClock::time_point& upstream_idle_since,
                          http::request_parser<http::buffer_body>& req_parser,
                          const std::string& peer, Activity& activity) {
    const auto t0 = SteadyClock::now();
    auto& req = req_parser.get();
    const unsigned version = req.version();
    bool keep_alive = req.keep_alive();
    const bool head = req.method() == http::verb::head;
    int status_sent = 0;
    auto record = [&] {
      recorder_.proxy_request(l.service, status_sent, Seconds(seconds_since(t0)));
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

    auto state = controller_.begin_request(l.service);
    if (!state) {
      auto res =
          error_response(http::status::not_found, version, "not_found", state.status().message());
      status_sent = 404;
      record();
      co_return co_await answer(client, std::move(res), false);
    }
    InFlight in_flight(controller_, l.service);

    std::optional<double> cold;
    std::string woke_from = "cold";  // X-Siesta-Wake: "cold", or "warm-from=<tier>" (paused)
    if (*state != ServiceState::kRunning) {
      if (auto view = registry_.service(l.service); view && light_asleep(view->runtime)) {
        woke_from = std::string("warm-from=") + tier_name(*view->spec, view->runtime);
      }
      const auto w0 = SteadyClock::now();
      activity.paused = true;
      bool gone = false;
      // A browser's navigation gets the waking page if the wake takes longer than the grace.
      const bool page = l.wake_page && wake_page::is_navigation(req);
      bool still_waking = false;
      Status st =
          co_await wake(l.service, &client.socket(), &gone,
                        page ? std::optional(wake_page::kGrace) : std::nullopt, &still_waking);
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
      cold = seconds_since(w0);
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
                      !proxy::still_usable(upstream->socket().native_handle())))) {
      upstream.reset();
    }
    for (int attempt = 0;; ++attempt) {
      parsed.emplace();
      bool replacement_pending = replacement.has_value();
      bool reused = upstream.has_value();
      // A new connection after a wake is unproven until its response header or kUnprovenFor.
      std::shared_ptr<proxy::UpstreamPool::Slot> fresh;
      net::steady_timer fresh_for(client.get_executor());  // destroyed: its handler runs
      if (!upstream) {
        // A request waiting for a connection is abandoned when its client leaves.
        if (req_parser.is_done() && !watch->active && !watch->gone) {
          watch_client(client.socket(), watch);
        }
        proxy::UpstreamPool::Slot slot;
        activity.paused = true;  // waiting for a connection is not the client being idle
        auto socket = co_await open_upstream(l, cold.has_value(), reused, slot, ec, &stop_waiting);
        activity.paused = false;
        activity.touch();
        if (slot) {
          fresh = std::make_shared<proxy::UpstreamPool::Slot>(std::move(slot));
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
            fmt::format(
                "service {} sent no response header within {:g} s (response_timeout_seconds)",
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
        auto answer_502 = error_response(
            http::status::bad_gateway, version, "bad_gateway",
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
      model_use->was_loaded = !controller_.model_accepted(model_use->model, model_use->keep_alive,
                                                          model_use->load_ticket);
    }
    if (model_use && !model_use->was_loaded) {
      // The model was not loaded: this response paid its load. Its price is Ollama's own
      // load_duration, in the answer's final JSON (docs/models.md): a whole answer is read before
      // its header goes out, a stream's is known only at its end (the metric waits for it, the
      // header says the time to the first byte).
      model_use->first_byte = seconds_since(model_use->t0);
      model_use->load_scan = l.model_api->load_meter();
      double load = model_use->first_byte;
      if (has_body) {
        if (auto whole =
                co_await read_whole_answer(*upstream, upstream_buf, res_parser, activity)) {
          load = l.model_api->load_seconds(*whole).value_or(load);
        }
      }
      wake_header += fmt::format("{}model={}; load={:.3f}", wake_header.empty() ? "cold; " : "; ",
                                 model_use->model, load);
    }
    if (!wake_header.empty()) res.set("X-Siesta-Wake", wake_header);
    if (is_stream(res, res.chunked())) res.set("X-Accel-Buffering", "no");
    status_sent = static_cast<int>(res.result_int());

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
        co_await http::async_read_some(*upstream, upstream_buf, res_parser, ec_token(ec));
        // A close-delimited body ends at the upstream's EOF; the parser completes it then.
        if (ec == http::error::need_buffer) ec = {};
        // Whatever else has arrived already (a stream's next chunks, read together) goes out in
        // the same write: Beast's parser stops at each chunk.
        if (!ec) take_buffered(res_parser, upstream_buf, ec);
        if (ec) break;
        set_piece(res.body(), buf.data(), buf.size() - res.body().size, !res_parser.is_done());
        if (model_use && model_use->load_scan) {
          model_use->load_scan->feed({buf.data(), res.body().size});
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

  // ---- Relays: TCP mode and upgraded HTTP connections ----

  // Relays one direction: `first` (bytes already read past an HTTP exchange), then whatever
  // `from` sends. An EOF is passed on as a half-close (the other way goes on) unless
  // `end_on_eof`; then, and on any error, both sockets are closed, which ends the other way too.
  awaitable<void> pump(tcp::socket& from, tcp::socket& to, std::string first, bool end_on_eof,
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
  awaitable<void> relay(tcp::socket& client, tcp::socket& upstream, bool client_eof_ends,
                        std::shared_ptr<Activity> activity, std::string to_client = {},
                        std::string to_upstream = {}) {
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
  awaitable<void> relay_upgraded(Listener& l, beast::tcp_stream& client,
                                 beast::tcp_stream& upstream,
                                 http::response<http::buffer_body>& res,
                                 beast::flat_buffer& client_buf, beast::flat_buffer& upstream_buf,
                                 Activity& activity) {
    UpgradedCount upgraded(controller_, l.service);
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
  void idle_closed(const Listener& l, const char* kind, SteadyClock::duration after) {
    spdlog::info("Proxy: closed an idle {} connection to {} (nothing moved for {:.1f} s)", kind,
                 l.service, std::chrono::duration<double>(after).count());
    recorder_.proxy_idle_closed(l.service, kind);
  }

  // ---- TCP ----

  awaitable<void> serve_tcp(Listener& l, tcp::socket client) {
    Admitted admitted(*this, l);
    auto state = controller_.begin_request(l.service);
    if (!state) co_return;
    InFlight in_flight(controller_, l.service);
    const bool woke = *state != ServiceState::kRunning;
    if (woke) {
      bool gone = false;
      Status st = co_await wake(l.service, &client, &gone);
      if (gone) co_return;
      if (!st) {
        spdlog::warn("Proxy: connection to {} dropped: {}", l.service, st.message());
        co_return;
      }
    }
    auto ex = co_await net::this_coro::executor;
    beast::error_code ec;
    bool reused = false;             // never: a TCP connection is not given back
    proxy::UpstreamPool::Slot slot;  // given back at once: a TCP upstream may speak last
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

  // ---- /wake/{service} ----

  awaitable<void> serve_wake(tcp::socket socket) {
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

  awaitable<http::response<http::string_body>> wake_endpoint(const std::string& service,
                                                             unsigned version) {
    auto state = controller_.begin_request(service);
    if (!state) {
      co_return error_response(http::status::not_found, version, "not_found",
                               state.status().message());
    }
    InFlight in_flight(controller_, service);
    if (*state != ServiceState::kRunning) {
      Status st = co_await wake(service);
      if (!st) {
        co_return error_response(http::status::service_unavailable, version,
                                 error_code_name(st.code()),
                                 "service " + service + " could not be woken: " + st.message(), 5);
      }
    }
    http::response<http::string_body> res{http::status::no_content, version};
    co_return res;
  }
};

Proxy::Proxy(Registry& registry, Controller& controller, Recorder& recorder, ProxyOptions options)
    : impl_(std::make_unique<Impl>(registry, controller, recorder, std::move(options))) {}

Proxy::~Proxy() { stop(); }

Status Proxy::bind(const std::vector<ServiceSpec>& services) {
  for (const auto& spec : services) {
    if (Status st = impl_->add(spec); !st) return st;
  }
  if (!impl_->options_.wake_host.empty()) {
    Impl::Listener l;
    if (Status st =
            impl_->bind_one(std::move(l), impl_->options_.wake_host, impl_->options_.wake_port);
        !st) {
      return st;
    }
    spdlog::info("Wake endpoint listening on http://{}:{}/wake/{{service}}",
                 impl_->options_.wake_host, wake_port());
  }
  return Status::ok();
}

Status Proxy::add(const ServiceSpec& spec) { return impl_->add(spec); }

int Proxy::port_of(const std::string& service) const { return impl_->port_of(service); }

int Proxy::wake_port() const { return impl_->port_of(""); }

void Proxy::start() {
  {
    std::lock_guard lock(impl_->mu_);
    if (impl_->started_) return;
    impl_->started_ = true;
    for (auto& l : impl_->listeners_) impl_->spawn_accept(l);
  }
  for (auto& context : impl_->contexts_) {
    impl_->threads_.emplace_back([ctx = context.get()] { ctx->run(); });
  }
}

void Proxy::stop() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu_);
    for (auto& l : impl_->listeners_) {
      net::post(l.acceptor->get_executor(), [a = l.acceptor.get()] {
        beast::error_code ec;
        a->close(ec);
      });
    }
  }
  for (auto& context : impl_->contexts_) context->stop();
  for (auto& t : impl_->threads_) t.join();
  impl_->threads_.clear();
  impl_->wake_threads_.join_all();
}

}  // namespace siesta
