// siesta-testserver: a tiny HTTP service for integration tests and the demo. It can be slow to
// become ready, ignore SIGTERM, or exit on its own, to exercise siesta's process handling, and
// it echoes requests and streams responses slowly, to exercise siesta's proxy:
//   GET /echo               JSON: method, target, headers and body size
//   POST|PUT /echo          the body back, its size in X-Body-Size
//   GET /stream?n=5&interval_ms=100&type=ndjson|sse   n chunks, one every interval_ms
//   GET /big?bytes=N        N bytes of x
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "siesta/http/listen.h"

int main(int argc, char** argv) {
  CLI::App app{"siesta-testserver: a small HTTP service for siesta's tests and demo"};
  std::string host = "127.0.0.1";
  int port = 0;
  int ready_after_ms = 0;
  int exit_after_ms = -1;
  bool ignore_sigterm = false;
  std::string pid_file;
  app.add_option("--host", host, "Address to listen on");
  app.add_option("--port", port, "Port to listen on")->required();
  app.add_option("--ready-after-ms", ready_after_ms, "GET /health answers 503 until then");
  app.add_option("--exit-after-ms", exit_after_ms, "Exit with code 3 after this long");
  app.add_flag("--ignore-sigterm", ignore_sigterm, "Ignore SIGTERM (so only SIGKILL stops it)");
  app.add_option("--pid-file", pid_file, "Write the process id here at start");
  CLI11_PARSE(app, argc, argv);

  if (ignore_sigterm) ::signal(SIGTERM, SIG_IGN);
  if (!pid_file.empty()) {
    if (FILE* f = std::fopen(pid_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
      std::fclose(f);
    }
  }
  const auto started = std::chrono::steady_clock::now();
  httplib::Server server;
  // Enough threads for the proxy's concurrency tests; idle keep-alive connections let go soon.
  server.new_task_queue = [] { return new httplib::ThreadPool(256); };
  server.set_keep_alive_timeout(1);
  server.set_payload_max_length(std::size_t{1} << 30);
  auto echo = [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Body-Size", std::to_string(req.body.size()));
    if (req.method != "GET") {
      res.set_content(req.body, "application/octet-stream");
      return;
    }
    std::string json = "{\"method\":\"" + req.method + "\",\"target\":\"" + req.target +
                       "\",\"body_size\":" + std::to_string(req.body.size()) + ",\"headers\":{";
    bool first = true;
    for (const auto& [k, v] : req.headers) {
      std::string value;
      for (char c : v) {
        if (c == '"' || c == '\\') value += '\\';
        value += c;
      }
      json += (first ? "\"" : ",\"") + k + "\":\"" + value + "\"";
      first = false;
    }
    json += "}}";
    res.set_content(json, "application/json");
  };
  server.Get("/echo", echo);
  server.Post("/echo", echo);
  server.Put("/echo", echo);
  server.Get("/stream", [](const httplib::Request& req, httplib::Response& res) {
    const int n = req.has_param("n") ? std::stoi(req.get_param_value("n")) : 5;
    const int interval =
        req.has_param("interval_ms") ? std::stoi(req.get_param_value("interval_ms")) : 100;
    const bool sse = req.get_param_value("type") == "sse";
    res.set_chunked_content_provider(
        sse ? "text/event-stream" : "application/x-ndjson",
        [n, interval, sse, i = 0](size_t, httplib::DataSink& sink) mutable {
          if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval));
          if (i == n) {
            sink.done();
            return true;
          }
          std::string line = sse ? "data: {\"token\": " + std::to_string(i) + "}\n\n"
                                 : "{\"token\": " + std::to_string(i) + "}\n";
          ++i;
          return sink.write(line.data(), line.size());
        });
  });
  server.Get("/big", [](const httplib::Request& req, httplib::Response& res) {
    const auto bytes = static_cast<size_t>(std::stoull(req.get_param_value("bytes")));
    res.set_content(std::string(bytes, 'x'), "application/octet-stream");
  });
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    auto up = std::chrono::steady_clock::now() - started;
    bool ready = up >= std::chrono::milliseconds(ready_after_ms);
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ok\n" : "starting\n", "text/plain");
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("hello from siesta-testserver\n", "text/plain");
  });
  if (exit_after_ms >= 0) {
    std::thread([exit_after_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(exit_after_ms));
      std::fprintf(stderr, "exiting on purpose after %d ms\n", exit_after_ms);
      std::_Exit(3);
    }).detach();
  }
  if (!server.bind_to_port(host, port)) {
    std::fprintf(stderr, "cannot listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  // cpp-httplib listens with a backlog of 5: a hundred connections at once (siesta passing on
  // the requests that waited for a wake) overflow it. Real services listen with the system's
  // maximum; so does this one, with the backlog siesta's own listeners use.
  siesta::raise_listen_backlogs();
  std::printf("siesta-testserver listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
