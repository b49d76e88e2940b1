// bench-upstream: the fast HTTP server the benchmarks put behind siesta and nginx.
//
//   GET /stream?chunks=N&interval_us=M   chunked; each chunk is "<CLOCK_REALTIME ns>\n", written
//                                        every M microseconds, so a client can tell each chunk's
//                                        delay on the way
//   anything else                        200 "ok\n" with Content-Length, keep-alive
//
// Options: --port P, --threads T, --ready-delay-ms D (listen only after D ms: a service with a
// known time to readiness), --start-log F (appends "<ns>\n" when started), --stop-log F (appends
// "<ns>\n" when SIGTERM arrives, then exits: when siesta issued the stop).
#include <fcntl.h>
#include <unistd.h>

#include <utility>  // first: Boost 1.74 Asio uses std::exchange without including it

// clang-format off

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

long long realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Appends one timestamp line with a single write(2): safe in a signal handler.
void append_stamp(const char* path, long long ns) {
  if (path == nullptr) return;
  char line[32];
  auto [end, ec] = std::to_chars(line, line + sizeof line - 1, ns);
  *end++ = '\n';
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  (void)!::write(fd, line, static_cast<std::size_t>(end - line));
  ::close(fd);
}

const char* g_stop_log = nullptr;

extern "C" void on_term(int) {
  append_stamp(g_stop_log, realtime_ns());
  ::_exit(0);
}

long query_number(std::string_view target, std::string_view key, long fallback) {
  const auto pos = target.find(key);
  if (pos == std::string_view::npos || target[pos + key.size()] != '=') return fallback;
  long value = fallback;
  const char* first = target.data() + pos + key.size() + 1;
  std::from_chars(first, target.data() + target.size(), value);
  return value;
}

net::awaitable<void> stream(beast::tcp_stream& s, const http::request<http::empty_body>& req) {
  const std::string_view target(req.target().data(), req.target().size());
  const long chunks = query_number(target, "chunks", 10);
  const long interval_us = query_number(target, "interval_us", 1000);
  http::response<http::empty_body> head{http::status::ok, req.version()};
  head.set(http::field::content_type, "application/x-ndjson");
  head.chunked(true);
  head.keep_alive(req.keep_alive());
  http::response_serializer<http::empty_body> sr{head};
  co_await http::async_write_header(s, sr, net::use_awaitable);
  net::steady_timer timer(s.get_executor());
  for (long i = 0; i < chunks; ++i) {
    timer.expires_after(std::chrono::microseconds(interval_us));
    co_await timer.async_wait(net::use_awaitable);
    char line[32];
    auto [end, ec] = std::to_chars(line, line + sizeof line - 1, realtime_ns());
    *end++ = '\n';
    co_await net::async_write(
        s, http::make_chunk(net::buffer(line, static_cast<std::size_t>(end - line))),
        net::use_awaitable);
  }
  co_await net::async_write(s, http::make_chunk_last(), net::use_awaitable);
}

net::awaitable<void> session(tcp::socket socket) {
  beast::tcp_stream s(std::move(socket));
  s.socket().set_option(tcp::no_delay(true));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      http::request<http::empty_body> req;
      co_await http::async_read(s, buffer, req, net::use_awaitable);
      if (req.target().starts_with("/stream")) {
        co_await stream(s, req);
      } else {
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "text/plain");
        res.body() = "ok\n";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        co_await http::async_write(s, res, net::use_awaitable);
      }
      if (!req.keep_alive()) break;
    }
  } catch (const std::exception&) {
    // The client went away: nothing to do.
  }
  beast::error_code ignored;
  s.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    auto socket = co_await acceptor.async_accept(net::use_awaitable);
    net::co_spawn(acceptor.get_executor(), session(std::move(socket)), net::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  int threads = 1;
  long ready_delay_ms = 0;
  const char* start_log = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--port") {
      port = static_cast<unsigned short>(std::atoi(value));
    } else if (flag == "--threads") {
      threads = std::atoi(value);
    } else if (flag == "--ready-delay-ms") {
      ready_delay_ms = std::atol(value);
    } else if (flag == "--start-log") {
      start_log = value;
    } else if (flag == "--stop-log") {
      g_stop_log = value;
    } else {
      std::fprintf(stderr, "bench-upstream: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (port == 0 || threads < 1) {
    std::fprintf(stderr,
                 "usage: bench-upstream --port P [--threads T] [--ready-delay-ms D] "
                 "[--start-log F] [--stop-log F]\n");
    return 2;
  }
  append_stamp(start_log, realtime_ns());
  std::signal(SIGTERM, on_term);
  std::signal(SIGPIPE, SIG_IGN);
  if (ready_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ready_delay_ms));

  net::io_context io(threads);
  tcp::acceptor acceptor(io);
  const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(net::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(1024);
  net::co_spawn(io, listen(acceptor), net::detached);
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
}
