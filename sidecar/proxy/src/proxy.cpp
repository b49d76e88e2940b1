// The proxy's front: Proxy's API (bind, add, start, stop), the listeners, and admission. The
// accept loop runs on the first I/O context, checks max_connections per service and overall,
// and hands each connection to the next context, round robin, where it stays.
#include "siesta/proxy/proxy.h"

#include "server.h"

namespace siesta::proxy {

namespace {

SteadyClock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

Server::Server(Registry& registry, ProxyControl& control, Recorder& recorder, const Clock& clock,
               ProxyOptions options)
    : registry_(registry),
      control_(control),
      recorder_(recorder),
      clock_(clock),
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
Server::~Server() {
  for (auto& l : listeners_) l.acceptor.reset();
  work_.clear();
  contexts_.clear();
}

Status Server::bind_one(Listener listener, const std::string& host, int port) {
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

Status Server::add(const ServiceSpec& spec) {
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
  l.pool = std::make_unique<UpstreamPool>(
      static_cast<std::size_t>(options_.upstream_max_connecting),
      static_cast<std::size_t>(options_.upstream_idle_connections), options_.upstream_idle_timeout);
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

int Server::port_of(const std::string& service) const {
  std::lock_guard lock(mu_);
  for (const auto& l : listeners_) {
    if (l.service == service) return l.port;
  }
  return 0;
}

void Server::spawn_accept(Listener& l) {
  net::co_spawn(*contexts_.front(), accept_loop(l), net::detached);
}

// The context a new connection lives on: round robin.
net::io_context& Server::next_context() {
  return *contexts_[next_context_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

awaitable<void> Server::accept_loop(Listener& l) {
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

// Counts a new connection on `l` in, or says why it is refused. Called on the accepting
// thread only, so a check and its increment cannot interleave with another admission.
const char* Server::admit(Listener& l) {
  if (l.open->load() >= l.max_connections) return "service_limit";
  if (open_total_.load() >= options_.max_connections) return "global_limit";
  l.open->fetch_add(1);
  open_total_.fetch_add(1);
  recorder_.proxy_connection_opened(l.service);
  return nullptr;
}

// A connection over a limit: told so, then closed (the request, if any, is not read).
awaitable<void> Server::refuse_http(tcp::socket socket) {
  auto res = error_response(http::status::service_unavailable, 11, "too_many_connections",
                            "too many connections; try again later", 1);
  res.keep_alive(false);
  beast::error_code ec;
  co_await http::async_write(socket, res, ec_token(ec));
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace siesta::proxy

namespace siesta {

namespace net = boost::asio;
namespace beast = boost::beast;

Proxy::Proxy(Registry& registry, ProxyControl& control, Recorder& recorder, const Clock& clock,
             ProxyOptions options)
    : impl_(std::make_unique<Impl>(registry, control, recorder, clock, std::move(options))) {}

Proxy::~Proxy() { stop(); }

Status Proxy::bind(const std::vector<ServiceSpec>& services) {
  for (const auto& spec : services) {
    if (Status st = impl_->add(spec); !st) return st;
  }
  if (!impl_->options_.wake_host.empty()) {
    proxy::Listener l;
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
