// Upgrades through the proxy (WebSocket and any protocol the upstream accepts with 101) seen
// from the wire: a raw client and a recording upstream that plays a WebSocket server in
// miniature (the relay never reads the frames, so any bytes do). The third-party WebSocket
// clients and servers are in tests/clients/websockets.py.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>
#include <string>

#include "raw_http.h"
#include "recording_upstream.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kSwitch =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

// Accepts a request that asks for an upgrade with 101 and a greeting in the same write, then
// echoes whatever comes; a request that asks for none gets 200.
std::string upgrade_then_echo(std::string& pending) {
  std::string out;
  if (pending.rfind("GET ", 0) == 0) {
    const auto end = pending.find("\r\n\r\n");
    if (end == std::string::npos) return "";
    const bool asked = pending.substr(0, end).find("\r\nUpgrade: ") != std::string::npos;
    pending.erase(0, end + 4);
    if (!asked) return kOk;
    out = kSwitch + "hello";
  }
  out += pending;
  pending.clear();
  return out;
}

std::string upgrade_request(const std::string& connection = "Upgrade") {
  return "GET /ws HTTP/1.1\r\nHost: ui.example\r\nConnection: " + connection +
         "\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n";
}

// The value of a header in the first message of `wire`, or "".
std::string header_in(const std::string& wire, const std::string& name) {
  const auto end = wire.find("\r\n\r\n");
  const auto at = wire.find("\r\n" + name + ": ");
  if (at == std::string::npos || at > end) return "";
  const auto from = at + name.size() + 4;
  return wire.substr(from, wire.find("\r\n", from) - from);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

class ProxyUpgrade : public ProxyWire {
 protected:
  int upgraded(const SiestaProcess& siesta) {
    const json st = status_of(siesta, "web");
    return st.contains("upgraded_connections") ? st["upgraded_connections"].get<int>() : -1;
  }
  // Opens an upgraded connection: the 101 and the upstream's greeting have arrived.
  int open_upgraded(const std::string& early = "") {
    int fd = dial(listen);
    if (fd < 0 || !send_all(fd, upgrade_request() + early)) return -1;
    std::string got;
    if (!read_until(fd, got, [&](const std::string& s) { return ends_with(s, "hello" + early); })) {
      ADD_FAILURE() << "no 101 and greeting: " << got;
    }
    return fd;
  }
};

TEST_F(ProxyUpgrade, AnUpgradeWakesTheServiceThenRelaysBytesBothWaysWhileInFlight) {
  RecordingUpstream up(upgrade_then_echo);
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  ASSERT_EQ(status_of(siesta, "web")["actual"], "stopped");
  int fd = dial(listen);
  ASSERT_GE(fd, 0);
  // Bytes right behind the request (a client that does not wait for the 101) are not lost.
  ASSERT_TRUE(send_all(fd, upgrade_request("keep-alive, Upgrade") + "early"));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return ends_with(s, "helloearly"); }))
      << got << siesta.log();
  EXPECT_EQ(got.substr(0, 13), "HTTP/1.1 101 ") << got;
  EXPECT_EQ(header_in(got, "Upgrade"), "websocket") << got;
  EXPECT_EQ(header_in(got, "Connection"), "Upgrade") << got;
  EXPECT_EQ(header_in(got, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(header_in(got, "X-Siesta-Wake").rfind("cold; dur=", 0), 0u) << got;
  // The upgrade headers went upstream for this request; other Connection options did not.
  const std::string wire = up.received(0);
  EXPECT_EQ(header_in(wire, "Upgrade"), "websocket") << wire;
  EXPECT_EQ(header_in(wire, "Connection"), "Upgrade") << wire;
  EXPECT_EQ(header_in(wire, "Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(header_in(wire, "Sec-WebSocket-Version"), "13");
  // Both ways, several times, on the one connection.
  for (const std::string& msg :
       {std::string("one"), std::string(100'000, 'x'), std::string("three")}) {
    got.clear();
    ASSERT_TRUE(send_all(fd, msg));
    ASSERT_TRUE(read_until(fd, got, [&](const std::string& s) { return s.size() >= msg.size(); }));
    EXPECT_EQ(got, msg);
  }
  // In flight and counted as upgraded while open; a connection like any other for the limits.
  EXPECT_EQ(in_flight(siesta), 1);
  EXPECT_EQ(upgraded(siesta), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_upgraded_connections_open{service="web"})"), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_connections_open{service="web"})"), 1);
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_requests_total{code="101",service="web"})"), 1);
  // The client goes: the upstream is told, nothing is left in flight.
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)))
      << status_of(siesta, "web");
  EXPECT_EQ(upgraded(siesta), 0);
  EXPECT_TRUE(eventually([&] { return up.closed() == 1; }, milliseconds(1000)));
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_upgraded_connections_open{service="web"})"), 0);
}

TEST_F(ProxyUpgrade, AnUpgradeTheUpstreamDeclinesIsAnOrdinaryResponseAndTheConnectionGoesOn) {
  RecordingUpstream up(
      answer_each("HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Content-Length: 2\r\n\r\nno"));
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = dial(listen);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, upgrade_request()));
  std::string got;
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return response_length(s) > 0; }))
      << got << siesta.log();
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 426") << got;
  // RFC 9110 15.5.22: a 426 MUST say which protocol to upgrade to; 7.8: with its Connection
  // option. The upgrade itself did not happen, so the connection stays open.
  EXPECT_NE(got.find("\r\nUpgrade: websocket\r\n"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: Upgrade"), std::string::npos) << got;
  EXPECT_EQ(got.find("close"), std::string::npos) << got;
  // Still HTTP: the next request on the same connection is read and forwarded as one.
  got.clear();
  ASSERT_TRUE(send_all(fd, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return response_length(s) > 0; }))
      << got;
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 426") << got;
  ::close(fd);
  const std::string wire = up.received(0);
  EXPECT_EQ(count_of(wire, "GET "), 2) << wire;
  EXPECT_EQ(count_of(wire, "Upgrade: websocket"), 1) << wire;
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)));
  EXPECT_EQ(upgraded(siesta), 0);
}

TEST_F(ProxyUpgrade, UpgradeWithoutItsConnectionOptionOrInHttp10StopsAtSiesta) {
  RecordingUpstream up(answer_each(kOk));
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  // RFC 9110 7.8: Upgrade is meaningful only with the "upgrade" Connection option, and is
  // ignored in HTTP/1.0.
  for (const char* request :
       {"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        "GET /b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
        "GET /c HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"}) {
    int fd = dial(listen);
    ASSERT_TRUE(send_all(fd, request));
    std::string got;
    EXPECT_TRUE(read_until(fd, got, [](const std::string& s) { return response_length(s) > 0; }));
    EXPECT_EQ(status_code(got), 200) << request << got;
    ::close(fd);
  }
  ASSERT_TRUE(eventually([&] { return up.connections() >= 1 && in_flight(siesta) == 0; }));
  for (size_t i = 0; i < up.connections(); ++i) {
    EXPECT_EQ(up.received(i).find("Upgrade"), std::string::npos) << up.received(i);
  }
}

TEST_F(ProxyUpgrade, ASwitchNobodyAskedForIsABadGateway) {
  RecordingUpstream up([](std::string& pending) {
    return take_request(pending).empty() ? std::string() : kSwitch + "tunnel";
  });
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  const std::string got =
      raw_exchange(listen, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", milliseconds(3000));
  EXPECT_EQ(status_code(got), 502) << got;
  EXPECT_NE(got.find("switched protocols"), std::string::npos) << got;
  EXPECT_EQ(got.find("tunnel"), std::string::npos) << got;
  EXPECT_TRUE(eventually([&] { return up.closed() == 1; }, milliseconds(1000)));
}

TEST_F(ProxyUpgrade, InterimResponsesAreSkippedAndTheFinalOneAnswersItsOwnRequest) {
  // Found by a new user: a 103 Early Hints (or a 100 Continue nobody asked for) was taken for the
  // final answer, and every later answer on the connection went to the request after its own.
  RecordingUpstream up([](std::string& pending) {
    std::string out;
    for (auto line = take_request(pending); !line.empty(); line = take_request(pending)) {
      const std::string target = line.substr(4, line.find(' ', 4) - 4);
      out +=
          "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
          "HTTP/1.1 100 Continue\r\n\r\n"
          "HTTP/1.1 200 OK\r\nContent-Length: " +
          std::to_string(target.size()) + "\r\n\r\n" + target;
    }
    return out;
  });
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = dial(listen);
  ASSERT_GE(fd, 0);
  for (const std::string target : {"/first", "/second", "/third"}) {
    ASSERT_TRUE(send_all(fd, "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string got;
    ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return response_length(s) > 0; }))
        << got << siesta.log();
    EXPECT_EQ(status_code(got), 200) << got;
    EXPECT_EQ(got.substr(got.size() - target.size()), target) << got;
  }
  ::close(fd);
}

TEST_F(ProxyUpgrade, A101AfterAnInterimResponseStillUpgrades) {
  RecordingUpstream up([](std::string& pending) {
    if (pending.find("Upgrade: websocket") == std::string::npos) return std::string();
    if (take_request(pending).empty()) return std::string();
    return "HTTP/1.1 100 Continue\r\n\r\n" + kSwitch + "hello";
  });
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = dial(listen);
  ASSERT_TRUE(send_all(fd, upgrade_request()));
  std::string got;
  ASSERT_TRUE(read_until(
      fd, got, [](const std::string& s) { return s.find("\r\n\r\nhello") != std::string::npos; }))
      << got << siesta.log();
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 101") << got;
  ::close(fd);
}

TEST_F(ProxyUpgrade, ASwitchWithoutTheProtocolAskedForIsABadGateway) {
  for (const std::string& answer :
       {std::string("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"),
        std::string(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")}) {
    RecordingUpstream up([answer](std::string& pending) {
      return take_request(pending).empty() ? std::string() : answer + "tunnel";
    });
    SiestaProcess siesta(dir.path(), config(up.port()));
    ASSERT_TRUE(siesta.start()) << siesta.log();
    const std::string got = raw_exchange(listen, upgrade_request(), milliseconds(3000));
    EXPECT_EQ(status_code(got), 502) << answer << got;
    EXPECT_EQ(got.find("tunnel"), std::string::npos) << got;
  }
}

TEST_F(ProxyUpgrade, AClientsCloseEndsTheConnectionAtOnceEvenIfTheUpstreamKeepsItsSide) {
  // The recording upstream never closes its side: only siesta can end the connection.
  RecordingUpstream up(upgrade_then_echo);
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = open_upgraded();
  ASSERT_GE(fd, 0) << siesta.log();
  ASSERT_EQ(in_flight(siesta), 1);
  ::shutdown(fd, SHUT_WR);  // a FIN, as from a client that has gone
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)))
      << status_of(siesta, "web");
  EXPECT_TRUE(eventually([&] { return up.closed() == 1; }, milliseconds(1000)));
  EXPECT_TRUE(closed_within(fd, milliseconds(1000)));
  EXPECT_EQ(upgraded(siesta), 0);
  ::close(fd);
}

TEST_F(ProxyUpgrade, AnUpstreamsHalfCloseIsPassedOnAndTheClientMayStillSend) {
  RecordingUpstream up(upgrade_then_echo);
  SiestaProcess siesta(dir.path(), config(up.port()));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = open_upgraded();
  ASSERT_GE(fd, 0) << siesta.log();
  up.shutdown_write(0);
  EXPECT_TRUE(closed_within(fd, milliseconds(2000)));  // EOF reaches the client
  ASSERT_TRUE(send_all(fd, "last words"));
  EXPECT_TRUE(eventually([&] { return ends_with(up.received(0), "last words"); }))
      << up.received(0);
  EXPECT_EQ(in_flight(siesta), 1);  // half open: still in use
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)));
}

TEST_F(ProxyUpgrade, AnOpenUpgradedConnectionKeepsTheServiceAwakePastEveryTimeout) {
  RecordingUpstream up(upgrade_then_echo);
  // The service would sleep after 0.6 s idle, and a relayed request with nothing moving for
  // 0.3 s would be cut: neither applies to an open upgraded connection without its own timeout.
  SiestaProcess siesta(dir.path(), config(up.port(), R"(, "idle_timeout_minutes": 0.01)",
                                          R"("proxy": {"idle_connection_timeout_seconds": 0.3},)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = open_upgraded();
  ASSERT_GE(fd, 0) << siesta.log();
  EXPECT_FALSE(closed_within(fd, milliseconds(2000)));  // silent for 2 s, still open
  EXPECT_EQ(status_of(siesta, "web")["actual"], "running");
  EXPECT_EQ(status_of(siesta, "web")["sleep_blocker"], "in_flight");
  std::string got;
  ASSERT_TRUE(send_all(fd, "still here"));
  ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "still here"; })) << got;
  // Once the upstream has half-closed and the client never closes its side, the connection is
  // bounded by idle_connection_timeout_seconds: the service is not held forever.
  up.shutdown_write(0);
  EXPECT_TRUE(closed_within(fd, milliseconds(1000)));  // the half-close reached the client
  EXPECT_TRUE(eventually([&] { return up.closed() == 1; }, milliseconds(3000)));
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)));
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web", seconds(5)));
  ::close(fd);
}

TEST_F(ProxyUpgrade, AnUpgradedConnectionIdlePastItsTimeoutIsClosedAndTheServiceSleeps) {
  RecordingUpstream up(upgrade_then_echo);
  SiestaProcess siesta(dir.path(), config(up.port(), R"(, "upgraded_idle_timeout_seconds": 0.8,)"
                                                     R"( "idle_timeout_minutes": 0.01)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  int fd = open_upgraded();
  ASSERT_GE(fd, 0) << siesta.log();
  // Traffic keeps it open past its timeout...
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < milliseconds(1600)) {
    std::string got;
    ASSERT_TRUE(send_all(fd, "tick"));
    ASSERT_TRUE(read_until(fd, got, [](const std::string& s) { return s == "tick"; })) << got;
    std::this_thread::sleep_for(milliseconds(200));
  }
  // ...silence closes it, both sides, and the service sleeps after.
  EXPECT_TRUE(closed_within(fd, milliseconds(3000)));
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return up.closed() == 1; }, milliseconds(1000)));
  EXPECT_TRUE(eventually([&] { return in_flight(siesta) == 0; }, milliseconds(1000)));
  // Said and counted, so an operator can tell it from a close by either end.
  EXPECT_TRUE(siesta.wait_log(
      "Proxy: closed an idle upgraded connection to web (nothing moved for 0.8 s)"));
  EXPECT_EQ(metric(siesta, R"(siesta_proxy_idle_closes_total{kind="upgraded",service="web"})"), 1);
  EXPECT_TRUE(siesta.wait_log("Successfully stopped idle service web", seconds(5)));
}

}  // namespace
}  // namespace siesta::testing
