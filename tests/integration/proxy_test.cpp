// The auto-wake proxy end to end: the real siesta binary in front of the real test server (HTTP),
// a real redis-server (TCP) and a real nginx using /wake through auth_request.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "raw_http.h"
#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class Proxy : public ::testing::Test {
 protected:
  TempDir dir;
  int upstream = free_port();
  int listen = free_port();

  // The test server behind siesta's port `listen`; `fields` adds config keys.
  std::string web(const std::string& fields = "", const std::string& ready_after_ms = "0") {
    json cmd = json::array({SIESTA_TESTSERVER, "--port", std::to_string(upstream),
                            "--ready-after-ms", ready_after_ms});
    return R"({"command": )" + cmd.dump() + R"(, "upstream": "127.0.0.1:)" +
           std::to_string(upstream) + R"(", "health": "/health", "listen": "127.0.0.1:)" +
           std::to_string(listen) + "\"" + fields + "}";
  }
  std::string config(const std::string& service, const std::string& top = "") {
    return R"({"idle_check_interval_minutes": 10, )" + top + R"("services": {"web": )" + service +
           "}}";
  }
  httplib::Client via() const {
    httplib::Client c("127.0.0.1", listen);
    c.set_read_timeout(seconds(30));
    return c;
  }
};

TEST_F(Proxy, ARequestWakesTheServiceAndIsAnsweredByIt) {
  SiestaProcess siesta(dir.path(), config(web("", "300")));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_EQ(status_of(siesta, "web")["actual"], "stopped");

  auto res = via().Get("/echo?x=1&y=two");
  ASSERT_TRUE(res) << siesta.log();
  ASSERT_EQ(res->status, 200) << res->body;
  json echo = json::parse(res->body);
  EXPECT_EQ(echo["target"], "/echo?x=1&y=two");
  // The client is told it paid a cold start, and how long it took (the server needs 300 ms).
  ASSERT_TRUE(res->has_header("X-Siesta-Wake"));
  const std::string wake = res->get_header_value("X-Siesta-Wake");
  EXPECT_EQ(wake.rfind("cold; dur=", 0), 0u) << wake;
  EXPECT_GE(std::stod(wake.substr(10)), 0.3);
  EXPECT_EQ(status_of(siesta, "web")["actual"], "running");
  EXPECT_EQ(metric(siesta, R"(siesta_service_wakes_total{reason="request",service="web"})"), 1);

  // Warm: no wake header, and the request counted as a use.
  auto warm = via().Get("/");
  ASSERT_TRUE(warm);
  EXPECT_EQ(warm->status, 200);
  EXPECT_FALSE(warm->has_header("X-Siesta-Wake"));
  // A request is counted once its answer has been written, which the client may see first.
  EXPECT_TRUE(eventually([&] {
    return metric(siesta, R"(siesta_proxy_requests_total{code="200",service="web"})") == 2;
  })) << metric(siesta, R"(siesta_proxy_requests_total{code="200",service="web"})");
}

TEST_F(Proxy, AHundredConcurrentRequestsToASleepingServiceShareOneStart) {
  SiestaProcess siesta(dir.path(), config(web("", "300")));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i) {
    clients.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", listen);
      c.set_read_timeout(seconds(30));
      auto res = c.Get("/echo?client=" + std::to_string(i));
      if (res && res->status == 200 &&
          json::parse(res->body)["target"] == "/echo?client=" + std::to_string(i)) {
        ++ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  const std::string log = siesta.log();
  EXPECT_EQ(ok, 100) << log;
  EXPECT_EQ(count_of(log, "Waking service web"), 1) << log;
  EXPECT_EQ(count_of(log, "started process"), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_service_wakes_total{reason="request",service="web"})"), 1);
}

TEST_F(Proxy, AHundredColdRequestsDoNotOverflowASmallListenBacklog) {
  // python3 -m http.server listens with a backlog of 5 and closes every connection after its
  // answer. The 100 requests released together by the wake used to open 100 connections at
  // once: the kernel dropped the SYNs beyond the backlog, and their clients waited out
  // retransmissions (31 of 100 over 60 s). New connections are now bounded
  // (proxy.upstream_max_connecting) until each has its answer's header.
  TempDir www;
  std::ofstream(www / "index.html") << "hello\n";
  const json cmd = json::array({"python3", "-m", "http.server", std::to_string(upstream), "--bind",
                                "127.0.0.1", "--directory", www.path().string()});
  SiestaProcess siesta(
      dir.path(), config(R"({"command": )" + cmd.dump() + R"(, "upstream": "127.0.0.1:)" +
                         std::to_string(upstream) + R"(", "health": "/", "listen": "127.0.0.1:)" +
                         std::to_string(listen) + "\"}"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  struct Answer {
    int status = 0;
    double seconds = 0;
    double wake = -1;  // X-Siesta-Wake's duration, when this request paid the cold start
  };
  std::vector<Answer> answers(100);
  std::vector<std::thread> clients;
  std::atomic<bool> go{false};
  for (std::size_t i = 0; i < answers.size(); ++i) {
    clients.emplace_back([&, i] {
      while (!go) std::this_thread::yield();
      httplib::Client c("127.0.0.1", listen);
      c.set_read_timeout(seconds(90));
      const auto t0 = Clock::now();
      auto res = c.Get("/index.html");
      answers[i].seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!res) return;
      answers[i].status = res->status;
      const std::string wake = res->get_header_value("X-Siesta-Wake");
      if (wake.rfind("cold; dur=", 0) == 0) answers[i].wake = std::stod(wake.substr(10));
    });
  }
  go = true;
  for (auto& t : clients) t.join();
  double readiness = 0;
  for (const auto& a : answers) readiness = std::max(readiness, a.wake);
  ASSERT_GT(readiness, 0) << "no request paid the cold start\n" << siesta.log();
  int answered = 0;
  for (const auto& a : answers) {
    if (a.status == 200) ++answered;
    EXPECT_LE(a.seconds, readiness + 2.0) << "status " << a.status;
  }
  EXPECT_EQ(answered, 100) << siesta.log();
  const std::string log = siesta.log();
  EXPECT_EQ(count_of(log, "started process"), 1) << log;
  EXPECT_EQ(metric(siesta, R"(siesta_service_wakes_total{reason="request",service="web"})"), 1);
  EXPECT_EQ(
      metric(siesta, R"(siesta_proxy_upstream_connections_total{kind="opened",service="web"})"),
      100)
      << "python's http.server closes every connection: none can be reused";
}

TEST_F(Proxy, SlowRequestBodiesDoNotHoldBackOtherRequests) {
  // Found in review: the bound on new upstream connections once held a slot while a client's
  // body trickled in, so a few slow uploads kept every other new connection waiting. The bound
  // is for the burst after a wake only; these requests find the service running.
  SiestaProcess siesta(dir.path(), config(web()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Get("/")->status, 200);  // woken
  std::vector<RawConnection> slow;
  for (int i = 0; i < 8; ++i) {
    slow.emplace_back(listen);
    ASSERT_TRUE(
        slow.back().send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc"));
  }
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["in_flight"] == 8; }));
  auto c = via();
  c.set_read_timeout(seconds(5));
  auto res = c.Get("/echo?other");
  ASSERT_TRUE(res) << "a request waited behind eight slow uploads\n" << siesta.log();
  EXPECT_EQ(res->status, 200);
}

TEST_F(Proxy, UpstreamConnectionsAreReusedAcrossClientConnections) {
  // The test server keeps connections alive. Ten clients one after another, each on a new
  // connection: the first opens the upstream connection, the next reuse it from the pool.
  SiestaProcess siesta(dir.path(), config(web()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  for (int i = 0; i < 10; ++i) {
    auto c = via();
    c.set_keep_alive(false);
    auto res = c.Get("/echo?n=" + std::to_string(i));
    ASSERT_TRUE(res) << siesta.log();
    EXPECT_EQ(res->status, 200);
  }
  const char* opened = R"(siesta_proxy_upstream_connections_total{kind="opened",service="web"})";
  const char* reused = R"(siesta_proxy_upstream_connections_total{kind="reused",service="web"})";
  EXPECT_TRUE(eventually([&] { return metric(siesta, opened) + metric(siesta, reused) == 10; }));
  // Without the pool every client connection opens its own (10). A client may connect again
  // before siesta has put the last connection back (its answer was written first): not all
  // nine are reused every time.
  EXPECT_LE(metric(siesta, opened), 4);
  EXPECT_GE(metric(siesta, reused), 6);
}

TEST_F(Proxy, WithNoIdlePoolEveryClientConnectionOpensItsOwn) {
  SiestaProcess siesta(dir.path(), config(web(), R"("proxy": {"upstream_idle_connections": 0}, )"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  for (int i = 0; i < 3; ++i) {
    auto c = via();
    c.set_keep_alive(false);
    ASSERT_EQ(c.Get("/")->status, 200);
  }
  EXPECT_TRUE(eventually([&] {
    return metric(siesta,
                  R"(siesta_proxy_upstream_connections_total{kind="opened",service="web"})") == 3;
  }));
}

TEST_F(Proxy, StreamsArriveChunkByChunkAndKeepTheServiceAwake) {
  // Idle timeout 0.6 s; the stream runs 2 s. The service must not sleep under it.
  SiestaProcess siesta(dir.path(), config(web(R"(, "idle_timeout_minutes": 0.01)")));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Get("/")->status, 200);  // woken

  std::vector<double> arrivals;
  const auto t0 = Clock::now();
  std::string body;
  std::atomic<bool> streaming{true};
  json in_flight_seen;
  std::thread watcher([&] {
    std::this_thread::sleep_for(milliseconds(1000));
    in_flight_seen = status_of(siesta, "web");
  });
  httplib::Headers response_headers;
  auto res = via().Get(
      "/stream?n=5&interval_ms=400",
      [&](const httplib::Response& r) {
        response_headers = r.headers;
        return true;
      },
      [&](const char* data, size_t len) {
        arrivals.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        body.append(data, len);
        return true;
      });
  streaming = false;
  watcher.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(count_of(body, "\"token\""), 5) << body;
  // Token by token: the first arrived long before the last.
  ASSERT_GE(arrivals.size(), 3u);
  EXPECT_LT(arrivals.front(), 0.3);
  EXPECT_GT(arrivals.back() - arrivals.front(), 1.2);
  auto accel = response_headers.find("X-Accel-Buffering");
  ASSERT_NE(accel, response_headers.end());
  EXPECT_EQ(accel->second, "no");
  // Mid-stream, past the idle timeout: still running, one request in flight, will not sleep.
  EXPECT_EQ(in_flight_seen["actual"], "running") << in_flight_seen;
  EXPECT_EQ(in_flight_seen["in_flight"], 1);
  EXPECT_EQ(in_flight_seen["sleep_blocker"], "in_flight");
  EXPECT_EQ(count_of(siesta.log(), "stopping..."), 0);
  // Idle time starts when the stream ends: then it sleeps.
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web", seconds(5)));
}

TEST_F(Proxy, HeadersBodiesAndFramingPassThrough) {
  SiestaProcess siesta(dir.path(), config(web()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  // Hop-by-hop headers (and those Connection names) stop at siesta; X-Forwarded-* are added.
  auto res = via().Get("/echo", {{"Connection", "keep-alive, X-Hop"},
                                 {"X-Hop", "1"},
                                 {"Keep-Alive", "timeout=5"},
                                 {"X-End-To-End", "kept"},
                                 {"X-Forwarded-For", "10.1.2.3"}});
  ASSERT_TRUE(res);
  json headers = json::parse(res->body)["headers"];
  EXPECT_FALSE(headers.contains("X-Hop")) << headers;
  EXPECT_FALSE(headers.contains("Keep-Alive"));
  EXPECT_EQ(headers["X-End-To-End"], "kept");
  EXPECT_EQ(headers["X-Forwarded-For"], "10.1.2.3, 127.0.0.1");
  EXPECT_EQ(headers["X-Forwarded-Proto"], "http");

  // Keep-alive both ways: three requests on one client connection reach the upstream on one
  // connection too (the test server sees the same client port each time).
  httplib::Client kept("127.0.0.1", listen);
  kept.set_keep_alive(true);
  std::set<std::string> upstream_ports;
  for (int i = 0; i < 3; ++i) {
    auto r = kept.Get("/echo");
    ASSERT_TRUE(r);
    upstream_ports.insert(json::parse(r->body)["headers"]["REMOTE_PORT"].get<std::string>());
  }
  EXPECT_EQ(upstream_ports.size(), 1u);

  // A 5 MB body each way, with a length and chunked.
  std::string big(5 * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  auto post = via().Post("/echo", big, "application/octet-stream");
  ASSERT_TRUE(post);
  ASSERT_EQ(post->status, 200);
  EXPECT_EQ(post->body, big);
  auto chunked = via().Put(
      "/echo", big.size(),
      [&](size_t offset, size_t length, httplib::DataSink& sink) {
        return sink.write(big.data() + offset, std::min<size_t>(length, 100000));
      },
      "application/octet-stream");
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->body.size(), big.size());
  auto large = via().Get("/big?bytes=20000000");
  ASSERT_TRUE(large);
  EXPECT_EQ(large->body.size(), 20000000u);

  // The seed's body-less `curl -X POST` answers at once (no Content-Length, no body).
  const auto t0 = Clock::now();
  auto [rc, out] = run_command({"curl", "-s", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:" + std::to_string(listen) + "/echo"},
                               dir / "curl.out");
  EXPECT_EQ(out, "200");
  EXPECT_LT(Clock::now() - t0, seconds(2));
}

TEST_F(Proxy, ARequestArrivingDuringAStopWaitsForItThenWakesTheService) {
  // The server ignores SIGTERM, so a stop takes the whole 1 s grace before SIGKILL.
  json cmd =
      json::array({SIESTA_TESTSERVER, "--port", std::to_string(upstream), "--ignore-sigterm"});
  SiestaProcess siesta(
      dir.path(),
      config(R"({"command": )" + cmd.dump() + R"(, "upstream": "127.0.0.1:)" +
             std::to_string(upstream) + R"(", "health": "/health", "stop_timeout_seconds": 1,)" +
             R"( "listen": "127.0.0.1:)" + std::to_string(listen) + R"("})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Get("/")->status, 200);
  std::thread stopper([&] { siesta.client().Post("/admin/services/web/sleep"); });
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["actual"] == "stopping"; }));
  auto res = via().Get("/echo");
  stopper.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(res->has_header("X-Siesta-Wake"));
  const std::string log = siesta.log();
  // The stop finished (SIGKILL after the grace), then the request's wake started it again.
  const auto stopped = log.find("Successfully stopped service web");
  const auto woken = log.rfind("Waking service web (request)");  // the second wake
  EXPECT_EQ(count_of(log, "Waking service web (request)"), 2);
  ASSERT_NE(stopped, std::string::npos) << log;
  ASSERT_NE(woken, std::string::npos) << log;
  EXPECT_LT(stopped, woken);
  EXPECT_EQ(status_of(siesta, "web")["actual"], "running");
}

TEST_F(Proxy, NotReadyInTimeIs503WithRetryAfterFromSiesta) {
  SiestaProcess siesta(dir.path(), config(web(R"(, "start_timeout_seconds": 0.5)", "5000")));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = via().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_TRUE(res->has_header("Retry-After"));
  json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["source"], "siesta");
  EXPECT_EQ(body["error"]["code"], "timeout");
}

TEST_F(Proxy, AnUpstreamRefusingConnectionsAfterTheStartIs502) {
  // A process that runs but never listens: "ready" (health none), yet nothing answers.
  SiestaProcess siesta(
      dir.path(),
      config(R"({"command": ["sleep", "30"], "upstream": "127.0.0.1:)" + std::to_string(upstream) +
             R"(", "health": "none", "listen": "127.0.0.1:)" + std::to_string(listen) + "\"}"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto res = via().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 502);
  json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["source"], "siesta");
  EXPECT_EQ(body["error"]["code"], "bad_gateway");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("refused"), std::string::npos);
}

TEST_F(Proxy, TcpModeServesRedisAndAnOpenConnectionIsInFlight) {
  SiestaProcess siesta(
      dir.path(),
      config(
          R"({"command": ["redis-server", "--port", ")" + std::to_string(upstream) +
          R"(", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], "upstream": "127.0.0.1:)" +
          std::to_string(upstream) + R"(", "listen": "127.0.0.1:)" + std::to_string(listen) +
          R"(", "protocol": "tcp", "idle_timeout_minutes": 0.01})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  EXPECT_EQ(status_of(siesta, "web")["actual"], "stopped");

  // A raw RESP client: the connection wakes redis; PING is answered by redis itself.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(listen));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  auto ask = [&](const std::string& command) {
    EXPECT_EQ(::send(fd, command.data(), command.size(), 0), static_cast<ssize_t>(command.size()));
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  EXPECT_EQ(ask("PING\r\n"), "+PONG\r\n");
  EXPECT_EQ(ask("SET k v\r\n"), "+OK\r\n");
  EXPECT_EQ(ask("GET k\r\n"), "$1\r\nv\r\n");
  // Held open past the 0.6 s idle timeout: in flight, so redis stays up.
  std::this_thread::sleep_for(milliseconds(1200));
  json st = status_of(siesta, "web");
  EXPECT_EQ(st["actual"], "running") << st;
  EXPECT_EQ(st["in_flight"], 1);
  EXPECT_EQ(ask("PING\r\n"), "+PONG\r\n");
  ::close(fd);
  // Closed: idle from now, asleep soon after.
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web", seconds(5)));
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_tcp_connections_total{service="web"})"), 1);
}

TEST_F(Proxy, WakeEndpointWorksBehindARealNginxAuthRequest) {
  const int wake_port = free_port();
  const int nginx_port = free_port();
  SiestaProcess siesta(dir.path(),
                       config(web("", "200"), R"("proxy": {"wake_listen": "127.0.0.1:)" +
                                                  std::to_string(wake_port) + "\"},"));
  ASSERT_TRUE(siesta.start()) << siesta.log();

  // The snippet from docs/api.md, with this test's ports.
  std::string conf = slurp(fs::path(SIESTA_SOURCE_DIR) / "examples/nginx/siesta-wake.conf");
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (auto at = conf.find(from); at != std::string::npos; at = conf.find(from, at + to.size())) {
      conf.replace(at, from.size(), to);
    }
  };
  replace_all("listen 8080;", "listen 127.0.0.1:" + std::to_string(nginx_port) + ";");
  replace_all("127.0.0.1:8082", "127.0.0.1:" + std::to_string(wake_port));
  replace_all("127.0.0.1:9000", "127.0.0.1:" + std::to_string(upstream));
  replace_all("/wake/whisper", "/wake/web");
  const fs::path prefix = dir / "nginx";
  fs::create_directories(prefix / "logs");
  std::ofstream(prefix / "nginx.conf")
      << "daemon off;\npid " << (prefix / "nginx.pid").string() << ";\nerror_log "
      << (prefix / "logs/error.log").string() << ";\nevents {}\nhttp {\naccess_log off;\n"
      << "client_body_temp_path " << prefix.string() << "/body;\nproxy_temp_path "
      << prefix.string() << "/proxy;\n"
      << conf << "\n}\n";
  pid_t nginx =
      spawn_with_output({"nginx", "-p", prefix.string(), "-c", (prefix / "nginx.conf").string()},
                        prefix / "nginx.out");
  ASSERT_GT(nginx, 0);
  httplib::Client through_nginx("127.0.0.1", nginx_port);
  through_nginx.set_read_timeout(seconds(30));
  ASSERT_TRUE(eventually([&] { return static_cast<bool>(through_nginx.Get("/health")); }))
      << slurp(prefix / "logs/error.log");

  // nginx asked /wake first (which started the service), then proxied to it directly.
  auto res = through_nginx.Get("/echo");
  ::kill(nginx, SIGTERM);
  ::waitpid(nginx, nullptr, 0);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body << slurp(prefix / "logs/error.log");
  EXPECT_EQ(status_of(siesta, "web")["actual"], "running");
  EXPECT_EQ(count_of(siesta.log(), "Waking service web (request)"), 1);

  // /wake on its own: 204 when ready, 404 (JSON) for an unknown service.
  httplib::Client wake("127.0.0.1", wake_port);
  EXPECT_EQ(wake.Get("/wake/web")->status, 204);
  auto unknown = wake.Get("/wake/nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json::parse(unknown->body)["error"]["source"], "siesta");
}

TEST_F(Proxy, ManyOpenStreamsDoNotStarveTheAdminApi) {
  SiestaProcess siesta(dir.path(), config(web(), R"("proxy": {"threads": 1},)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(via().Get("/")->status, 200);
  std::vector<std::thread> streams;
  std::atomic<int> finished{0};
  for (int i = 0; i < 50; ++i) {
    streams.emplace_back([&] {
      httplib::Client c("127.0.0.1", listen);
      c.set_read_timeout(seconds(30));
      auto res = c.Get("/stream?n=3&interval_ms=1000");
      if (res && res->status == 200) ++finished;
    });
  }
  // While 50 streams are open, the admin API and /metrics answer at once.
  ASSERT_TRUE(eventually([&] { return status_of(siesta, "web")["in_flight"] == 50; }, seconds(5)))
      << status_of(siesta, "web");
  const auto t0 = Clock::now();
  auto health = siesta.client().Get("/healthz");
  auto metrics = siesta.client().Get("/metrics");
  EXPECT_LT(Clock::now() - t0, seconds(1));
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find(R"(siesta_service_in_flight_requests{service="web"} 50)"),
            std::string::npos);
  for (auto& t : streams) t.join();
  EXPECT_EQ(finished, 50);
}

}  // namespace
}  // namespace siesta::testing
