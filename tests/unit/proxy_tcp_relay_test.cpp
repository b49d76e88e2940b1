// TCP mode (sidecar/proxy/src/tcp_relay.cpp) in-process: a connection is in flight from accept
// to close, wakes a sleeping service before any byte is relayed, passes bytes both ways, passes
// the upstream's half-close on, ends whole at the client's, and closes at tcp_idle_timeout.
// A real Proxy on loopback in front of a recording upstream (proxy_harness.h), a raw client.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include "proxy_harness.h"

namespace siesta::testing {
namespace {

constexpr const char* kTcp = R"(, "protocol": "tcp")";

// An upstream that answers every byte it gets with "echo:" and those bytes.
RecordingUpstream::Respond echo() {
  return [](std::string& pending) {
    std::string out = "echo:" + pending;
    pending.clear();
    return out;
  };
}

TEST(ProxyTcpRelay, AConnectionIsInFlightFromAcceptToCloseAndRelaysBothWays) {
  RecordingUpstream upstream(echo());
  ProxyHarness h(upstream.port(), kTcp);
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.begun == 1; }));
  ASSERT_TRUE(send_all(fd, "PING\r\n"));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "echo:PING\r\n"; }));
  ASSERT_TRUE(send_all(fd, "SET k v\r\n"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s.ends_with("SET k v\r\n"); }));
  EXPECT_EQ(upstream.received(0), "PING\r\nSET k v\r\n");  // exactly the client's bytes
  EXPECT_EQ(h.control.read(h.control.ended), 0);           // open: in flight
  EXPECT_EQ(h.control.read(h.control.wakes), 0);           // running: no wake
  ::close(fd);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  EXPECT_TRUE(eventually([&] { return upstream.closed() == 1; }));
}

// A sleeping service is woken once when the connection opens; nothing reaches the upstream
// before, and the client's first bytes, sent meanwhile, are not lost.
TEST(ProxyTcpRelay, ASleepingServiceIsWokenBeforeAnyByteIsRelayed) {
  RecordingUpstream upstream(echo());
  ProxyHarness h(upstream.port(), kTcp);
  h.control.set([](FakeProxyControl& c) {
    c.state = ServiceState::kStopped;
    c.hold_wake = true;
  });
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "early"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.starts == 1; }));
  EXPECT_EQ(upstream.connections(), 0u);  // not before the wake
  h.control.release_wake();
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "echo:early"; }));
  EXPECT_EQ(h.control.read(h.control.wake_reasons), std::vector<std::string>{"web request"});
  ::close(fd);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
}

// The upstream closing its side is passed on as a half-close: the client reads the end and may
// still send, and the connection stays in flight until the client closes too.
TEST(ProxyTcpRelay, TheUpstreamsHalfCloseIsPassedOnAndTheClientMayStillSend) {
  RecordingUpstream upstream([](std::string&) { return std::string(); });  // records only
  ProxyHarness h(upstream.port(), kTcp);
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "first"));
  ASSERT_TRUE(eventually([&] { return upstream.received(0) == "first"; }));
  ASSERT_TRUE(upstream.send(0, "bye"));
  upstream.shutdown_write(0);
  std::string got;
  EXPECT_TRUE(read_to_close(fd, got));
  EXPECT_EQ(got, "bye");
  ASSERT_TRUE(send_all(fd, "+more"));
  EXPECT_TRUE(eventually([&] { return upstream.received(0) == "first+more"; }));
  EXPECT_EQ(h.control.read(h.control.ended), 0);
  ::close(fd);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
}

// The client closing its side ends the whole connection (nginx's proxy_half_close off): a
// client that went away leaves nothing in flight, whatever the upstream would still send.
TEST(ProxyTcpRelay, TheClientsHalfCloseEndsTheWholeConnection) {
  RecordingUpstream upstream([](std::string&) { return std::string(); });
  ProxyHarness h(upstream.port(), kTcp);
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "QUIT\r\n"));
  ASSERT_TRUE(eventually([&] { return upstream.received(0) == "QUIT\r\n"; }));
  ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_TRUE(eventually([&] { return upstream.closed() == 1; }));
  EXPECT_TRUE(closed_within(fd, std::chrono::seconds(5)));
  ::close(fd);
}

// tcp_idle_timeout_seconds: nothing moving either way closes both sides.
TEST(ProxyTcpRelay, NothingMovingForTheIdleTimeoutClosesBothSides) {
  RecordingUpstream upstream(echo());
  ProxyHarness h(upstream.port(), R"(, "protocol": "tcp", "tcp_idle_timeout_seconds": 0.2)");
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "x"));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "echo:x"; }));
  EXPECT_TRUE(closed_within(fd, std::chrono::seconds(5)));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_TRUE(eventually([&] { return upstream.closed() == 1; }));
  ::close(fd);
}

}  // namespace
}  // namespace siesta::testing
