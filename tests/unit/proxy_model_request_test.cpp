// A request on a model through the proxy in-process (forward.cpp's read_model_request and
// relay_answer, model_use.cpp), with the Ollama ModelApi as bootstrap gives it: which routes name
// a model, the keep-alive siesta writes into the body, and the model's begin, accepted and end
// calls in order; and the in-flight order: begun before the upstream sees the request, ended
// after its answer's last byte reached the client. A real Proxy on loopback in front of a
// recording upstream (proxy_harness.h), a FakeProxyControl that records the calls.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "proxy_harness.h"
#include "siesta/core/decide.h"

namespace siesta::testing {
namespace {

using ::testing::ElementsAre;

// What the model server saw of each request: its request line, its body, and the calls the
// proxy had made when it arrived.
struct Seen {
  std::string line;
  std::string body;
  std::vector<std::string> calls_then;
};

// A model server that records each request (above) and answers it with `answer`.
class ModelServer {
 public:
  explicit ModelServer(std::string answer)
      : upstream_([this, answer = std::move(answer)](std::string& pending) {
          std::string out;
          while (take(pending)) out += answer;
          return out;
        }) {}
  int port() const { return upstream_.port(); }
  void watch(FakeProxyControl& control) { control_ = &control; }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  RecordingUpstream& upstream() { return upstream_; }

 private:
  // One whole request (Content-Length framed) out of `pending`, recorded; false if none yet.
  bool take(std::string& pending) {
    const auto end = pending.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const std::string head = pending.substr(0, end + 4);
    std::size_t length = 0;
    if (auto cl = head.find("Content-Length: "); cl != std::string::npos) {
      length = std::stoul(head.substr(cl + 16));
    }
    if (pending.size() < end + 4 + length) return false;
    Seen s{head.substr(0, head.find("\r\n")), pending.substr(end + 4, length), {}};
    if (FakeProxyControl* control = control_.load()) s.calls_then = control->read(control->calls);
    pending.erase(0, end + 4 + length);
    std::lock_guard lock(mu_);
    seen_.push_back(std::move(s));
    return true;
  }

  std::atomic<FakeProxyControl*> control_{nullptr};
  std::mutex mu_;
  std::vector<Seen> seen_;
  RecordingUpstream upstream_;  // last: its threads stop before the above goes
};

ProxyOptions with_model_apis() {
  ProxyOptions options;
  options.model_api_of = model_api_for;  // as main() and bootstrap give it
  return options;
}

constexpr const char* kOllama = R"(, "model_api": "ollama")";

// A whole JSON answer with its length.
std::string json_answer(const std::string& status_line, const std::string& body) {
  return status_line +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// The keep-alive siesta writes into the body for `enforced` seconds: Ollama's own, past which it
// unloads the model, comes after siesta's (decide.h).
long long written_keep_alive(double enforced) {
  return static_cast<long long>(std::ceil(model_server_keep_alive(enforced)));
}

TEST(ProxyModelRequest, AModelRouteIsReadItsKeepAliveWrittenAndItsModelBegunAcceptedAndEnded) {
  ModelServer server(json_answer("HTTP/1.1 200 OK", R"({"response":"hi","done":true})"));
  ProxyHarness h(server.port(), kOllama, with_model_apis());
  server.watch(h.control);
  auto c = h.client();

  auto res = c.Post("/api/generate", R"({"model":"llama3","prompt":"hi"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_THAT(
      h.control.read(h.control.calls),
      ElementsAre("begin_request web", "begin_model llama3@web", "model_accepted llama3@web 300",
                  "end_model llama3@web accepted", "end_request web"));
  EXPECT_THAT(h.control.read(h.control.gives_way_asked), ElementsAre("llama3@web"));
  ASSERT_EQ(server.seen().size(), 1u);
  auto body = nlohmann::json::parse(server.seen()[0].body);
  EXPECT_EQ(body["model"], "llama3");
  EXPECT_EQ(body["prompt"], "hi");
  EXPECT_EQ(body["keep_alive"], written_keep_alive(300));  // the model's configured 300 s

  // A client's own keep-alive, within the bounds (at most 3600 s here).
  h.control.set([](FakeProxyControl& fake) { fake.calls.clear(); });
  res = c.Post("/api/chat", R"({"model":"llama3","messages":[],"keep_alive":"2h"})",
               "application/json");
  ASSERT_TRUE(res);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 2; }));
  EXPECT_THAT(
      h.control.read(h.control.calls),
      ElementsAre("begin_request web", "begin_model llama3@web", "model_accepted llama3@web 3600",
                  "end_model llama3@web accepted", "end_request web"));
  ASSERT_EQ(server.seen().size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(server.seen()[1].body)["keep_alive"], written_keep_alive(3600));
}

// Routes that name no model pass untouched and begin no model; an answer other than 2xx ends the
// model's request unaccepted (it must not count as loaded).
TEST(ProxyModelRequest, OtherRoutesBeginNoModelAndARefusalIsNotAccepted) {
  ModelServer server(json_answer("HTTP/1.1 404 Not Found", R"({"error":"model not found"})"));
  ProxyHarness h(server.port(), kOllama, with_model_apis());
  auto c = h.client();
  const std::string show = R"({"model":"llama3", "verbose": true})";
  ASSERT_TRUE(c.Post("/api/show", show, "application/json"));
  ASSERT_TRUE(c.Get("/api/tags"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 2; }));
  EXPECT_THAT(h.control.read(h.control.calls), ElementsAre("begin_request web", "end_request web",
                                                           "begin_request web", "end_request web"));
  ASSERT_EQ(server.seen().size(), 2u);
  EXPECT_EQ(server.seen()[0].body, show);  // byte for byte: no keep_alive written
  EXPECT_EQ(server.seen()[1].line, "GET /api/tags HTTP/1.1");

  h.control.set([](FakeProxyControl& fake) { fake.calls.clear(); });
  auto res = c.Post("/api/generate", R"({"model":"nope","prompt":"hi"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 3; }));
  EXPECT_THAT(h.control.read(h.control.calls),
              ElementsAre("begin_request web", "begin_model nope@web",
                          "end_model nope@web not accepted", "end_request web"));
}

// A request for a loaded model that must give way to a wake first in line for GPU room
// (docs/gpu.md) gets a 503 in the JSON error shape with Retry-After, and never reaches its
// server; its model and its request end all the same.
TEST(ProxyModelRequest, ARequestThatGivesWayToAWakeIsAnswered503AndNotForwarded) {
  ModelServer server(json_answer("HTTP/1.1 200 OK", R"({"response":"hi","done":true})"));
  ProxyHarness h(server.port(), kOllama, with_model_apis());
  h.control.set([](FakeProxyControl& fake) {
    fake.gives_way = {ErrorCode::kUnavailable, "not forwarded: big is first in line"};
  });
  auto c = h.client();
  auto res = c.Post("/api/generate", R"({"model":"llama3","prompt":"hi"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "5");
  const auto body = nlohmann::json::parse(res->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << res->body;
  EXPECT_EQ(body["error"]["code"], "unavailable") << res->body;
  EXPECT_EQ(body["error"]["message"],
            "request for model llama3 not forwarded: big is first in line");
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_THAT(h.control.read(h.control.calls),
              ElementsAre("begin_request web", "begin_model llama3@web",
                          "end_model llama3@web not accepted", "end_request web"));
  EXPECT_TRUE(server.seen().empty());
}

// The request is in flight (and its model begun) before the model server sees it, and stays so
// while the answer streams; its model and the request end only once the last byte is in the
// client's socket. The end calls look for it there from the proxy's only I/O thread, which
// cannot write meanwhile: an end called before the last write would find it missing.
TEST(ProxyModelRequest, InFlightFromBeforeTheUpstreamSeesItUntilAfterTheLastByte) {
  ModelServer server(
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
      "Transfer-Encoding: chunked\r\n\r\n"
      "f\r\n{\"response\":1}\n\r\n");
  ProxyHarness h(server.port(), kOllama, with_model_apis());
  server.watch(h.control);
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  const auto last_byte_arrived = [fd] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0 && std::string(buf, static_cast<std::size_t>(n)).ends_with("0\r\n\r\n")) {
        return true;
      }
      std::this_thread::yield();
    }
    return false;
  };
  std::vector<std::string> ends_before_last_byte;
  h.control.set([&](FakeProxyControl& fake) {
    fake.on_end = [&](const std::string& call) {
      if (!last_byte_arrived()) ends_before_last_byte.push_back(call);
    };
  });
  const std::string body = R"({"model":"llama3","messages":[]})";
  ASSERT_TRUE(send_all(fd,
                       "POST /api/chat HTTP/1.1\r\nHost: web\r\nContent-Type: "
                       "application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body));
  std::string got;
  ASSERT_TRUE(read_until(
      fd, got, [](const std::string& s) { return s.ends_with("{\"response\":1}\n\r\n"); }));
  ASSERT_EQ(server.seen().size(), 1u);
  EXPECT_THAT(server.seen()[0].calls_then,
              ElementsAre("begin_request web", "begin_model llama3@web"));
  EXPECT_THAT(h.control.read(h.control.calls),
              ElementsAre("begin_request web", "begin_model llama3@web",
                          "model_accepted llama3@web 300"));  // streaming: nothing ended

  ASSERT_TRUE(server.upstream().send(0, "f\r\n{\"response\":2}\n\r\n0\r\n\r\n"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_TRUE(ends_before_last_byte.empty()) << ends_before_last_byte.front();
  EXPECT_THAT(
      h.control.read(h.control.calls),
      ElementsAre("begin_request web", "begin_model llama3@web", "model_accepted llama3@web 300",
                  "end_model llama3@web accepted", "end_request web"));
  h.control.set([](FakeProxyControl& fake) { fake.on_end = nullptr; });
  ::close(fd);
}

// Issue 24, a new user's trial: after a failed start (the service in error, nothing up), a load
// balancer's GET /health through a vLLM service started it again and counted as a use. As while it
// sleeps, siesta answers its probes itself (X-Siesta-Asleep: error): no start, no use, nothing
// forwarded. One served in error (its control plane out, the service up) is still forwarded to.
TEST(ProxyModelRequest, AProbeOfAVllmServiceInErrorAfterAFailedStartStartsNothing) {
  ModelServer server(json_answer("HTTP/1.1 200 OK", "{}"));
  ProxyHarness h(server.port(), R"(, "model_api": "vllm")", with_model_apis());
  h.registry->update_service("web", [&](const ServiceSpec&, ServiceRuntime& rt) {
    set_state(rt, ServiceState::kError, h.clock.wall_now());
    rt.failed_operation = ServiceOperation::kStart;
  });
  h.control.set([](FakeProxyControl& fake) { fake.state = ServiceState::kError; });
  auto c = h.client();
  for (const char* path : {"/health", "/ping"}) {
    auto res = c.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->get_header_value("X-Siesta-Asleep"), "error") << path;
    EXPECT_FALSE(res->has_header("X-Siesta-Wake")) << path;
  }
  EXPECT_EQ(h.control.read(h.control.wakes), 0);
  EXPECT_EQ(h.control.read(h.control.begun), 0);  // not even in flight: answered before
  EXPECT_TRUE(server.seen().empty());
  // /v1/models with no model known to list (a new user's re-trial: it started the server again):
  // a 503 in the JSON error shape that says why, rather than a start; a request to a model does
  // start it.
  h.registry->update_service("web", [&](const ServiceSpec&, ServiceRuntime& rt) {
    set_error(rt, ServiceErrorKind::kOperation, ErrorCode::kTimeout,
              "start failed: not ready within 60 s (start_timeout_seconds)", h.clock.wall_now());
  });
  auto listed = c.Get("/v1/models");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 503);
  EXPECT_EQ(listed->get_header_value("X-Siesta-Asleep"), "error");
  const auto body = nlohmann::json::parse(listed->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << listed->body;
  EXPECT_EQ(body["error"]["code"], "unavailable");
  EXPECT_EQ(body["error"]["message"],
            "service web is in error (start failed: not ready within 60 s "
            "(start_timeout_seconds)) and knows no model to list: a model list does not start it, "
            "a request to a model does");
  EXPECT_EQ(h.control.read(h.control.wakes), 0);
  EXPECT_TRUE(server.seen().empty());

  h.registry->update_service(
      "web", [](const ServiceSpec&, ServiceRuntime& rt) { rt.serving_in_error = true; });
  auto served = c.Get("/health");
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200);
  EXPECT_FALSE(served->has_header("X-Siesta-Asleep"));
  EXPECT_EQ(server.seen().size(), 1u);
}

}  // namespace
}  // namespace siesta::testing
