// Streaming (sidecar/proxy/src/relay.cpp) in-process: a response body passed on piece by piece
// with one chunk terminator, a close-delimited body re-framed for the client, an upgraded
// connection's bytes both ways and its half-close, and an answer header over the limit.
// A real Proxy on loopback in front of a recording upstream (proxy_harness.h), a raw client.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy_harness.h"

namespace siesta::testing {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ProxyRelay, AStreamsPiecesArePassedOnAsTheyComeWithOneTerminator) {
  RecordingUpstream upstream(
      answer_each("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n"
                  "d\r\ndata: first\n\n\r\n"));
  ProxyHarness h(upstream.port());
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /events HTTP/1.1\r\nHost: web\r\n\r\n"));
  std::string got;
  // The first event arrives while the upstream has not sent the second: not buffered.
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "first"); }));
  EXPECT_TRUE(contains(got, "X-Accel-Buffering: no\r\n")) << got;
  EXPECT_FALSE(contains(got, "0\r\n\r\n"));
  ASSERT_TRUE(upstream.send(0, "e\r\ndata: second\n\n\r\n"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "second"); }));
  ASSERT_TRUE(upstream.send(0, "0\r\n\r\n"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "0\r\n\r\n"); }));
  const std::string body = got.substr(got.find("\r\n\r\n") + 4);
  EXPECT_EQ(body, "d\r\ndata: first\n\n\r\ne\r\ndata: second\n\n\r\n0\r\n\r\n");
  ::close(fd);
}

// An upstream that ends its body by closing (no length, not chunked): an HTTP/1.1 client gets
// it chunked and keeps its connection; an HTTP/1.0 client gets it as it is, then the close.
TEST(ProxyRelay, ACloseDelimitedBodyIsReframedForAClientThatKeepsItsConnection) {
  RecordingUpstream upstream(
      answer_each("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"));
  ProxyHarness h(upstream.port());
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "hello"); }));
  EXPECT_TRUE(contains(got, "Transfer-Encoding: chunked\r\n"));
  upstream.shutdown_write(0);  // the body ends
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "0\r\n\r\n"); }));
  EXPECT_EQ(got.substr(got.find("\r\n\r\n") + 4), "5\r\nhello\r\n0\r\n\r\n");
  // The client's connection goes on: its next request is answered on it.
  got.clear();
  ASSERT_TRUE(send_all(fd, "GET /b HTTP/1.1\r\nHost: web\r\n\r\n"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "hello"); }));
  ASSERT_TRUE(eventually([&] { return upstream.connections() == 2; }));
  upstream.shutdown_write(1);
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "0\r\n\r\n"); }));
  ::close(fd);

  const int old = dial(h.port);
  ASSERT_GE(old, 0);
  ASSERT_TRUE(send_all(old, "GET /c HTTP/1.0\r\nHost: web\r\n\r\n"));
  got.clear();
  ASSERT_TRUE(read_until(old, got, [](const std::string& s) { return contains(s, "hello"); }));
  ASSERT_TRUE(eventually([&] { return upstream.connections() == 3; }));
  upstream.shutdown_write(2);
  EXPECT_TRUE(read_to_close(old, got));  // the body's end is the close
  EXPECT_TRUE(got.starts_with("HTTP/1.0 200 OK\r\n")) << got;
  EXPECT_FALSE(contains(got, "chunked"));
  EXPECT_EQ(got.substr(got.find("\r\n\r\n") + 4), "hello");
  ::close(old);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 3; }));
}

// An upstream that switches to the protocol asked for: the client gets the 101, bytes pass both
// ways, the upstream's close of its side reaches the client as a half-close (the client may
// still send), and the client's close ends it all; counted as upgraded while open, in flight
// until then.
TEST(ProxyRelay, AnUpgradedConnectionRelaysBothWaysAndPassesOnTheUpstreamsHalfClose) {
  auto switched = std::make_shared<std::atomic<bool>>(false);
  RecordingUpstream upstream([switched](std::string& pending) -> std::string {
    if (!*switched) {
      if (take_request(pending).empty()) return "";
      *switched = true;
      return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
             "Upgrade: websocket\r\n\r\n";
    }
    std::string echo = "echo:" + pending;
    pending.clear();
    return echo;
  });
  ProxyHarness h(upstream.port());
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd,
                       "GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\n\r\n"));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return contains(s, "\r\n\r\n"); }));
  EXPECT_TRUE(got.starts_with("HTTP/1.1 101 Switching Protocols\r\n")) << got;
  EXPECT_TRUE(contains(got, "Upgrade: websocket\r\n"));
  ASSERT_TRUE(eventually([&] { return h.control.read(h.control.upgraded) == 1; }));

  got.clear();
  ASSERT_TRUE(send_all(fd, "ping"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "echo:ping"; }));
  upstream.shutdown_write(0);
  EXPECT_TRUE(closed_within(fd, std::chrono::seconds(5)));  // the client reads the upstream's EOF
  ASSERT_TRUE(send_all(fd, "after"));                       // and may still send
  EXPECT_TRUE(eventually([&] { return contains(upstream.received(0), "after"); }));
  EXPECT_EQ(h.control.read(h.control.ended), 0);  // still in flight
  ::close(fd);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_TRUE(eventually([&] { return h.control.read(h.control.upgraded) == 0; }));
  EXPECT_TRUE(eventually([&] { return upstream.closed() == 1; }));
}

// A response header block over the proxy's limit (64 KiB) is not passed on: a 502 from siesta.
TEST(ProxyRelay, AnAnswerHeaderOverTheLimitIsA502FromSiesta) {
  RecordingUpstream upstream(
      answer_each("HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'a') +
                  "\r\nContent-Length: 2\r\n\r\nok"));
  ProxyHarness h(upstream.port());
  auto res = h.client().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 502);
  EXPECT_EQ(nlohmann::json::parse(res->body)["error"]["code"], "bad_gateway");
  EXPECT_FALSE(res->has_header("X-Big"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
}

}  // namespace
}  // namespace siesta::testing
