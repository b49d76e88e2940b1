// One HTTP exchange (sidecar/proxy/src/forward.cpp and relay.cpp), in-process: a request is
// begun and ended exactly once, also when its client goes away in the middle of a streamed
// answer; an unknown service is 404 and never begun; durations come from the injected Clock.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy_harness.h"

namespace siesta::testing {
namespace {

TEST(ProxyForward, EachRequestIsBegunAndEndedExactlyOnce) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  auto c = h.client();
  c.set_keep_alive(true);
  for (int i = 0; i < 3; ++i) {
    auto res = c.Get("/item/" + std::to_string(i));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "ok");
  }
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 3; }));
  EXPECT_EQ(h.control.read(h.control.begun), 3);
  EXPECT_EQ(h.control.read(h.control.wakes), 0);  // running: no wake
  const auto requests = h.recorder.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const auto& r : requests) {
    EXPECT_EQ(r.service, "web");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.seconds, 0);  // the fake clock did not move
  }
}

TEST(ProxyForward, AClientThatLeavesMidAnswerEndsItsRequestOnce) {
  // A stream whose first event comes at once and whose next never does.
  RecordingUpstream upstream([](std::string& pending) -> std::string {
    if (take_request(pending).empty()) return "";
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           "Transfer-Encoding: chunked\r\n\r\n"
           "d\r\ndata: first\n\n\r\n";  // 13 bytes
  });
  ProxyHarness h(upstream.port());
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /events HTTP/1.1\r\nHost: web\r\n\r\n"));
  std::string got;
  ASSERT_TRUE(read_until(
      fd, got, [](const std::string& s) { return s.find("data: first") != std::string::npos; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  EXPECT_EQ(h.control.read(h.control.ended), 0);  // the stream is still in flight
  ::close(fd);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  // The proxy closed the upstream connection of the abandoned stream.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (upstream.closed() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(upstream.closed(), 1);
  const auto requests = h.recorder.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].status, 200);             // its header had gone out
  EXPECT_EQ(h.control.read(h.control.ended), 1);  // still once
}

TEST(ProxyForward, AnUnknownServiceAnswers404AndIsNeverBegun) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  h.control.set([&](FakeProxyControl& c) {
    c.known_service = "other";
  });  // the runtime no longer knows "web"
  auto c = h.client();
  auto res = c.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(nlohmann::json::parse(res->body)["error"]["code"], "not_found");
  EXPECT_EQ(h.control.read(h.control.begun), 0);
  EXPECT_EQ(h.control.read(h.control.ended), 0);
  EXPECT_EQ(upstream.connections(), 0u);
}

}  // namespace
}  // namespace siesta::testing
