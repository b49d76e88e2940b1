// The proxy's parts share this (internal; not installed): Server, which holds the listeners,
// the I/O contexts and the wakes in progress, and whose member functions are defined one part
// per file (see sidecar/proxy/DESIGN.md, "How a connection is served"):
//   proxy.cpp            Proxy's API, listening, accepting and admission (max_connections)
//   wake_gate.cpp        the single-flight wake, and the waking page's answers
//   http_connection.cpp  a client connection: its requests one after another, upstream
//                        connections taken and given back
//   forward.cpp          one HTTP exchange: begin, wake, rewrite, send, read the answer's header
//   relay.cpp            streaming: a response body to the client, upgraded connections' bytes
//                        both ways, the idle timer and the client watch
//   tcp_relay.cpp        a TCP-mode connection
//   wake_endpoint.cpp    GET /wake/{service} (nginx auth_request, Traefik forwardAuth)
//   model_use.cpp        a request on a model (through the service's ModelApi), and what that
//                        ModelApi answers itself (a refused route, a probe while asleep)
//   http_messages.cpp    header rewriting and siesta's own answers
// Every connection lives on one I/O context (one thread): nothing here is locked per operation.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "siesta/core/clock.h"
#include "siesta/core/model_api.h"
#include "siesta/core/proxy_control.h"
#include "siesta/core/recorder.h"
#include "siesta/core/registry.h"
#include "siesta/proxy/proxy.h"
#include "siesta/proxy/upstream_pool.h"
#include "siesta/runtime/executor.h"

namespace siesta::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
// Asio's timers wait on the steady clock; connection deadlines use it too (DESIGN.md, "Time").
using SteadyClock = std::chrono::steady_clock;

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

inline auto ec_token(beast::error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

// Seconds from `t0` to the clock's now: the durations siesta reports (metrics, X-Siesta-Wake).
inline double seconds_since(const Clock& clock, MonoTime t0) {
  return std::chrono::duration<double>(clock.mono_now() - t0).count();
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

// Records a use of the service (Recorder::proxy_use: GET /admin/trace) when the request or
// connection is over, whatever way: when it arrived, the model it named and how long it ran
// once the service was up (its wake's wait taken off).
class UseTrace {
 public:
  UseTrace(Recorder& recorder, const Clock& clock, std::string service, WallTime arrived,
           MonoTime t0)
      : recorder_(recorder),
        clock_(clock),
        service_(std::move(service)),
        arrived_(arrived),
        t0_(t0) {}
  ~UseTrace() {
    recorder_.proxy_use(service_, model, arrived_, Seconds(seconds_since(clock_, t0_) - waited));
  }
  UseTrace(const UseTrace&) = delete;
  UseTrace& operator=(const UseTrace&) = delete;

  std::string model;  // the model the request named; empty: none
  double waited = 0;  // seconds it waited for a wake

 private:
  Recorder& recorder_;
  const Clock& clock_;
  std::string service_;
  WallTime arrived_;
  MonoTime t0_;
};

// Ends the in-flight use of a service when the request or connection is over, whatever way.
class InFlight {
 public:
  InFlight(ProxyControl& controller, std::string service, bool use = true)
      : controller_(controller), service_(std::move(service)), use_(use) {}
  ~InFlight() { controller_.end_request(service_, use_); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  ProxyControl& controller_;
  std::string service_;
  bool use_;
};

// Counts an upgraded connection (a WebSocket) open while it is relayed, however it ends.
class UpgradedCount {
 public:
  UpgradedCount(ProxyControl& controller, std::string service)
      : controller_(controller), service_(std::move(service)) {
    controller_.count_upgraded(service_, true);
  }
  ~UpgradedCount() { controller_.count_upgraded(service_, false); }
  UpgradedCount(const UpgradedCount&) = delete;
  UpgradedCount& operator=(const UpgradedCount&) = delete;

 private:
  ProxyControl& controller_;
  std::string service_;
};

// ---- HTTP messages (http_messages.cpp) ----

// Every line of a header as one list ("a, b"), e.g. Upgrade.
std::string joined_values(const http::fields& fields, http::field name);
// The protocols an HTTP/1.1 request asks to switch to (RFC 9110 7.8): its Upgrade header, when
// its Connection header names "upgrade"; empty otherwise, and then Upgrade is an ordinary
// hop-by-hop header that stops here. A server must ignore Upgrade in an HTTP/1.0 request.
std::string upgrade_asked(const http::fields& req, unsigned version);
// Whether every protocol `switched` (a 101's Upgrade) is one that was `asked` (the request's),
// by name, case-insensitively ("foo" matches an asked "foo/1"); an empty `switched` is not.
bool offered(std::string_view asked, std::string_view switched);
// Removes the headers that describe one connection, not the message (RFC 9110 7.6.1), and those
// the Connection header names; keeps the framing.
void strip_hop_by_hop(http::fields& fields);
// X-Forwarded-For/-Host/-Proto as nginx's usual configuration sets them; a client's own are
// believed only with `trust`.
void set_forwarded_headers(http::fields& req, const std::string& peer, bool trust);
// The next piece of a relayed body for the serializer (an empty piece has no data pointer).
void set_piece(http::buffer_body::value_type& body, char* data, std::size_t size, bool more);
// Parses into the parser's body buffer what `buffer` already holds, without reading.
void take_buffered(http::response_parser<http::buffer_body>& parser, beast::flat_buffer& buffer,
                   beast::error_code& ec);
// A token stream (chunked, server-sent events, NDJSON): passed on piece by piece, unbuffered.
bool is_stream(const http::fields& fields, bool chunked);
// siesta's own answer, in the JSON error shape (core/error_json.h).
http::response<http::string_body> error_response(http::status status, unsigned version,
                                                 const std::string& code,
                                                 const std::string& message,
                                                 std::optional<int> retry_after = std::nullopt);

// ---- Waits and timers ----

// One pending wake, shared between the thread that runs it and every request waiting for it.
struct WakeWait {
  explicit WakeWait(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  std::optional<Status> result;
  WakeReport report;  // ProxyControl::wake's: what the wake undid, and its time
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

// Watches `a` until its connection ends (relay.cpp).
awaitable<void> watch_idle(std::shared_ptr<Activity> a);

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

// Starts watching the client with a peek (relay.cpp): on a close, w->on_gone runs.
void watch_client(tcp::socket& socket, const std::shared_ptr<ClientWatch>& w);

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

// ---- The proxy ----

// A request on a model, in flight from Server::begin_model() until the object is destroyed
// (model_use.cpp).
struct ModelUse {
  ModelUse(ProxyControl& c, ModelKey m, MonoTime start)
      : controller(&c), model(std::move(m)), t0(start) {}
  ModelUse(ModelUse&& o) noexcept
      : controller(std::exchange(o.controller, nullptr)),
        model(std::move(o.model)),
        keep_alive_after(o.keep_alive_after),
        keep_alive(std::move(o.keep_alive)),
        accepted(o.accepted),
        sent(o.sent),
        answered(o.answered),
        load_ticket(o.load_ticket),
        was_loaded(o.was_loaded),
        t0(o.t0),
        first_byte(o.first_byte),
        load_scan(std::move(o.load_scan)) {}
  ModelUse& operator=(ModelUse&&) = delete;
  ~ModelUse();
  ProxyControl* controller;
  ModelKey model;                            // its name on the listener's service
  bool keep_alive_after = false;             // set through the provider after a success (ModelApi)
  RequestKeepAlive keep_alive;               // siesta's for it, and which policy chose it
  bool accepted = false;                     // the model server answered 2xx: the model is loaded
  bool sent = false;                         // the request reached the model server
  bool answered = false;                     // and its answer's header came back
  std::optional<std::uint64_t> load_ticket;  // the model was not loaded when it began
  bool was_loaded = true;                    // false: this request paid the model's load
  MonoTime t0;                               // when it began, on the proxy's Clock
  double first_byte = 0;                     // seconds from t0 to the response header
  std::unique_ptr<LoadMeter> load_scan;      // this response paid the model's load
};

// A port siesta listens on: a service's, or the /wake endpoint's.
struct Listener {
  std::string service;  // empty for the /wake listener
  Protocol protocol = Protocol::kHttp;
  std::string upstream_host;
  std::string upstream_port;
  const ModelApi* model_api = nullptr;  // a model server's API; nullptr: not one
  SteadyClock::duration response_timeout = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(kDefaultResponseTimeoutSeconds));
  bool trust_forwarded_headers = false;
  bool wake_page = false;
  int max_connections = 1024;
  std::optional<SteadyClock::duration> tcp_idle_timeout;
  std::optional<SteadyClock::duration> upgraded_idle_timeout;
  std::shared_ptr<std::atomic<int>> open = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<UpstreamPool> pool;  // the upstream's connections
  std::unique_ptr<tcp::acceptor> acceptor;
  int port = 0;
};

// One HTTP exchange, from its request's header to the end of its answer: the state forward()'s
// steps share (forward.cpp). It lives on forward()'s coroutine frame.
struct Exchange {
  Exchange(Listener& listener, beast::tcp_stream& client_stream, beast::flat_buffer& client_buffer,
           std::optional<beast::tcp_stream>& upstream_stream, beast::flat_buffer& upstream_buffer,
           SteadyClock::time_point& upstream_idle, http::request_parser<http::buffer_body>& parser,
           const std::string& peer_address, Activity& client_activity, MonoTime began)
      : l(listener),
        client(client_stream),
        client_buf(client_buffer),
        upstream(upstream_stream),
        upstream_buf(upstream_buffer),
        upstream_idle_since(upstream_idle),
        req_parser(parser),
        req(parser.get()),
        peer(peer_address),
        activity(client_activity),
        t0(began),
        version(req.version()),
        keep_alive(req.keep_alive()),
        head(req.method() == http::verb::head) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  Listener& l;
  beast::tcp_stream& client;
  beast::flat_buffer& client_buf;
  std::optional<beast::tcp_stream>& upstream;  // kept for the client's next request if it can
  beast::flat_buffer& upstream_buf;
  SteadyClock::time_point& upstream_idle_since;
  http::request_parser<http::buffer_body>& req_parser;
  http::request<http::buffer_body>& req;
  const std::string& peer;
  Activity& activity;
  MonoTime t0;         // when it began, on the proxy's Clock
  WallTime arrived{};  // when it began, for the trace
  unsigned version;    // the client's HTTP version
  bool keep_alive;     // the client connection stays open after the answer
  bool head;
  int status_sent = 0;             // the status answered (0: none), for the metrics
  bool probe = false;              // no use of the service (ModelApi::is_probe)
  std::optional<double> cold;      // seconds the wake took, when it waited for one
  std::string woke_from = "cold";  // X-Siesta-Wake: "cold", or "warm-from=<tier>" (paused)
  std::string upgrade;             // the protocols the client asked to switch to
  // In flight from begin_request until the exchange ends; ends after its model's use.
  std::optional<InFlight> in_flight;
  std::optional<UseTrace> trace;           // a use's record (GET /admin/trace), written as it ends
  std::optional<std::string> replacement;  // a model request's body, read whole
  std::optional<ModelUse> model_use;
  RelayBuffer buf;
  std::shared_ptr<ClientWatch> watch = std::make_shared<ClientWatch>();
  std::function<void()> stop_waiting;  // set while waiting for an upstream connection
  std::optional<http::response_parser<http::buffer_body>> parsed;  // the answer's header
  bool early_answer = false;  // the upstream answered before taking the whole request
};

// The proxy's state and its parts (each part's file is named above). Thread-safe as Proxy is:
// a connection's functions run on its own I/O context; what they share (listeners_, waking_)
// is locked or atomic.
struct Server {
  Server(Registry& registry, ProxyControl& control, Recorder& recorder, const Clock& clock,
         ProxyOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Registry& registry_;
  ProxyControl& control_;
  Recorder& recorder_;
  const Clock& clock_;  // for what siesta reports: durations (metrics, X-Siesta-Wake)
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
  std::map<std::string, std::vector<std::function<void(Status, WakeReport)>>> waking_;
  ThreadExecutor wake_threads_;

  // ---- Listening and admission (proxy.cpp) ----
  Status bind_one(Listener listener, const std::string& host, int port);
  Status add(const ServiceSpec& spec);
  int port_of(const std::string& service) const;
  void spawn_accept(Listener& l);
  net::io_context& next_context();
  awaitable<void> accept_loop(Listener& l);
  const char* admit(Listener& l);

  // Counts an admitted connection out when its coroutine ends, however it ends.
  class Admitted {
   public:
    Admitted(Server& impl, Listener& l) : impl_(impl), l_(l) {}
    ~Admitted() {
      l_.open->fetch_sub(1);
      impl_.open_total_.fetch_sub(1);
      impl_.recorder_.proxy_connection_closed(l_.service);
    }
    Admitted(const Admitted&) = delete;
    Admitted& operator=(const Admitted&) = delete;

   private:
    Server& impl_;
    Listener& l_;
  };
  awaitable<void> refuse_http(tcp::socket socket);

  // ---- The wake gate and the waking page (wake_gate.cpp) ----
  void request_wake(const std::string& service, std::function<void(Status, WakeReport)> done);
  awaitable<Status> wake(const std::string& service, tcp::socket* client = nullptr,
                         bool* gone = nullptr,
                         std::optional<std::chrono::milliseconds> grace = std::nullopt,
                         bool* still_waking = nullptr, WakeReport* report = nullptr);
  std::optional<double> expected_wake(const std::string& service) const;
  http::response<http::string_body> waking_page(const Listener& l, unsigned version);
  http::response<http::string_body> siesta_path(const Listener& l,
                                                const http::request_header<http::fields>& req,
                                                std::string_view target);

  // ---- A client connection (http_connection.cpp) ----
  SteadyClock::duration check_period() const;
  awaitable<void> serve_http(Listener& l, tcp::socket socket);
  static awaitable<void> linger(beast::tcp_stream& client);
  awaitable<bool> answer(beast::tcp_stream& client, http::response<http::string_body> res,
                         bool keep_alive);
  static std::string upstream_authority(const Listener& l);
  awaitable<std::optional<tcp::socket>> open_upstream(Listener& l, bool bounded, bool& reused,
                                                      UpstreamPool::Slot& slot,
                                                      beast::error_code& ec,
                                                      std::function<void()>* stop_waiting);
  static void park(Listener& l, std::optional<beast::tcp_stream>& upstream,
                   const beast::flat_buffer& upstream_buf,
                   SteadyClock::time_point idle_since = SteadyClock::now());

  // ---- One HTTP exchange (forward.cpp), in steps over its Exchange ----
  awaitable<bool> forward(Listener& l, beast::tcp_stream& client, beast::flat_buffer& client_buf,
                          std::optional<beast::tcp_stream>& upstream,
                          beast::flat_buffer& upstream_buf,
                          SteadyClock::time_point& upstream_idle_since,
                          http::request_parser<http::buffer_body>& req_parser,
                          const std::string& peer, Activity& activity);
  void record(const Exchange& x);  // the request's metrics
  // Answers with siesta's own response `res` (recorded) and returns whether to keep the
  // connection.
  awaitable<bool> reply(Exchange& x, http::response<http::string_body> res, bool keep_alive);
  // The waking page's paths, or what the model API answers without its server.
  std::optional<http::response<http::string_body>> own_answer(Exchange& x);
  awaitable<std::optional<bool>> wake_asleep(Exchange& x);
  void rewrite_request(Exchange& x);
  awaitable<bool> send_continue(Exchange& x);
  awaitable<std::optional<bool>> unknown_model(Exchange& x);
  awaitable<std::optional<bool>> read_model_body(Exchange& x);
  awaitable<std::optional<bool>> read_model_request(Exchange& x);
  awaitable<std::optional<bool>> send_request(Exchange& x);
  awaitable<bool> relay_answer(Exchange& x, ClientWatchScope& watching);
  // send_request's steps (one attempt: a connection, the request, the answer's header).
  // A new upstream connection opened after a wake counts against upstream_max_connecting
  // until its answer's header, or kUnprovenFor (the timer; destroyed, its handler runs).
  struct Unproven {
    explicit Unproven(const net::any_io_executor& ex) : timer(ex) {}
    void hold(UpstreamPool::Slot s);
    std::shared_ptr<UpstreamPool::Slot> slot;
    net::steady_timer timer;
  };
  struct Sent {
    bool header = false;  // the request's header went out
    bool body = false;    // and some of its body: it cannot be sent again
  };
  void drop_untrusted_upstream(Exchange& x);
  awaitable<std::optional<bool>> connect_upstream(Exchange& x, bool& reused, Unproven& unproven);
  awaitable<std::optional<bool>> write_request(Exchange& x, Sent& sent, beast::error_code& ec);
  awaitable<void> read_answer_header(Exchange& x, bool cut_short, Unproven& unproven,
                                     beast::error_code& ec);
  awaitable<bool> upstream_failed(Exchange& x, beast::error_code ec, bool cut_short);
  // relay_answer's steps.
  bool frame_answer(Exchange& x, const std::string& upgraded_to);
  awaitable<void> model_answered(Exchange& x, bool has_body, std::string& wake_header);
  void keep_upstream(Exchange& x, bool upstream_keep_alive, const beast::error_code& ec);
  void model_answer_relayed(Exchange& x);
  awaitable<bool> switch_protocols(Exchange& x, const std::string& upgraded_to,
                                   const std::string& wake_header, ClientWatchScope& watching);

  // ---- A request on a model (model_use.cpp) ----
  awaitable<std::optional<std::string_view>> read_whole_answer(
      beast::tcp_stream& upstream, beast::flat_buffer& buf,
      http::response_parser<http::buffer_body>& parser, Activity& activity);
  awaitable<std::optional<std::string>> read_body(beast::tcp_stream& client, Activity& activity,
                                                  beast::flat_buffer& client_buf,
                                                  http::request_parser<http::buffer_body>& parser,
                                                  beast::error_code& ec);
  // ProxyControl::make_room_for_model on the wake threads, without blocking an I/O thread.
  awaitable<Status> room_for_model(const ModelKey& model);
  void begin_model(Listener& l, std::string_view target, std::string& body,
                   std::optional<ModelUse>& out);
  void refresh_keep_alive(Listener& l, const ModelUse& use);
  std::vector<ModelApi::KnownModel> models_of(const std::string& service) const;
  // An answer the ModelApi made for a service that does not serve (X-Siesta-Asleep says its
  // state).
  static http::response<http::string_body> model_api_reply(const ServiceView& view,
                                                           ModelApi::Reply reply, unsigned version,
                                                           bool head);
  std::optional<http::response<http::string_body>> model_api_answer(
      const Listener& l, const http::request<http::buffer_body>& req, unsigned version, bool head,
      bool& probe);

  // ---- Streaming (relay.cpp) ----
  awaitable<void> relay_response(beast::tcp_stream& client, beast::tcp_stream& upstream,
                                 beast::flat_buffer& upstream_buf,
                                 http::response_parser<http::buffer_body>& res_parser,
                                 bool has_body, RelayBuffer& buf, LoadMeter* load_scan,
                                 Activity& activity, beast::error_code& ec);
  awaitable<void> pump(tcp::socket& from, tcp::socket& to, std::string first, bool end_on_eof,
                       std::shared_ptr<Activity> activity);
  awaitable<void> relay(tcp::socket& client, tcp::socket& upstream, bool client_eof_ends,
                        std::shared_ptr<Activity> activity, std::string to_client = {},
                        std::string to_upstream = {});
  awaitable<void> relay_upgraded(Listener& l, beast::tcp_stream& client,
                                 beast::tcp_stream& upstream,
                                 http::response<http::buffer_body>& res,
                                 beast::flat_buffer& client_buf, beast::flat_buffer& upstream_buf,
                                 Activity& activity);
  void idle_closed(const Listener& l, const char* kind, SteadyClock::duration after);

  // ---- TCP mode (tcp_relay.cpp) ----
  awaitable<void> serve_tcp(Listener& l, tcp::socket client);

  // ---- GET /wake/{service} (wake_endpoint.cpp) ----
  awaitable<void> serve_wake(tcp::socket socket);
  awaitable<http::response<http::string_body>> wake_endpoint(const std::string& service,
                                                             unsigned version);
};

}  // namespace siesta::proxy

namespace siesta {
struct Proxy::Impl : proxy::Server {
  using Server::Server;
};
}  // namespace siesta
