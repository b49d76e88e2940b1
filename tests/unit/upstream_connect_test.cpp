// The upstream connect (siesta/http/connect.h) and the readiness probes on it: a connect to an
// unused port of the ephemeral range that meets its own socket (the kernel's simultaneous open)
// is never taken for a service that listens. Real sockets on loopback, bounded loops.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "siesta/http/connect.h"
#include "siesta/probe/health_probe.h"

namespace siesta::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  return addr;
}

// Whether a socket can bind 127.0.0.1:port now (nothing holds it).
bool bindable(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in addr = loopback(port);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// Whether a socket connected from 127.0.0.1:port to itself is left on the machine, in any state
// (a self-connect's TIME_WAIT). Other processes' connects may take the port as their source port
// meanwhile (it is in the ephemeral range, and the tests run beside others), so whether it can be
// bound says nothing of what the helper left: a pair with both ends on the port does.
bool self_pair_left(int port) {
  std::ifstream in("/proc/net/tcp");
  char wanted[16];
  std::snprintf(wanted, sizeof wanted, "0100007F:%04X", port);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote;
    fields >> slot >> local >> remote;
    if (local == wanted && remote == wanted) return true;
  }
  return false;
}

// The kernel's ephemeral range (net.ipv4.ip_local_port_range).
std::pair<int, int> ephemeral_range() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  int high = 60999;
  in >> low >> high;
  return {low, high};
}

// An even port of the ephemeral range that nothing holds: Linux's connect() takes even source
// ports first (odd ones are left to bind()), walking the range from one connect to the next, so
// connects to an even port meet it as their own source port within some thousands of tries.
// `part` (1 or 2) picks where in the range to look: each test its own, as ctest runs them side
// by side in separate processes, and a self-connect of one (the HTTP probe's leaves a TIME_WAIT
// pair) must not land on the port the other checks (a CI run failed so).
int unused_even_ephemeral_port(int part) {
  const auto [low, high] = ephemeral_range();
  for (int port = (low + (high - low) * part / 3) & ~1; port < high; port += 2) {
    if (bindable(port)) return port;
  }
  return -1;
}

// A plain connect, as the probe made it before: whether it connected, and to itself.
bool plain_connect(int port, bool& itself) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in addr = loopback(port);
  const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  itself = connected && self_connected(fd);
  const linger reset{1, 0};  // no TIME_WAIT left on the port
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  return connected;
}

constexpr int kTries = 60000;  // the even ports of the default range, twice over

TEST(UpstreamConnect, ASelfConnectToAnUnusedEphemeralPortIsNeverTakenForAListener) {
  const int port = unused_even_ephemeral_port(1);
  ASSERT_GT(port, 0);
  // The trap, made for certain: a socket bound to the port it connects to meets itself (the
  // simultaneous open a kernel-chosen source port falls into by chance), and is seen to.
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    const sockaddr_in addr = loopback(port);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_TRUE(self_connected(fd));
    EXPECT_TRUE(self_pair_left(port));  // what the last check below looks for, seen
    const linger reset{1, 0};           // no TIME_WAIT left on the port
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::close(fd);
    EXPECT_FALSE(self_pair_left(port));
  }
  // By chance: plain connects meet themselves within some thousands of tries on an idle machine
  // (measured, not asserted: connects elsewhere on the machine move the kernel's walk).
  const auto deadline = SteadyClock::now() + seconds(30);
  int plain_tries = 0;
  bool itself = false;
  while (plain_tries < kTries && SteadyClock::now() < deadline) {
    ++plain_tries;
    if (plain_connect(port, itself)) break;
  }
  std::printf("[ measured ] plain connects to %d: %s after %d tries\n", port,
              itself ? "met itself" : "never met itself", plain_tries);

  // The helper every probe and the proxy use: never a connection, over as many tries again.
  const auto helper_deadline = SteadyClock::now() + seconds(30);
  int helper_tries = 0;
  int connected = 0;
  while (helper_tries < kTries && SteadyClock::now() < helper_deadline) {
    ++helper_tries;
    connected += tcp_connects("127.0.0.1", port, milliseconds(500)) ? 1 : 0;
  }
  EXPECT_GE(helper_tries, std::min(plain_tries, kTries));
  EXPECT_EQ(connected, 0) << "over " << helper_tries << " tries";
  // And it left the port free for the service to bind: no self-connected pair (a TIME_WAIT of
  // its own) on it.
  EXPECT_FALSE(self_pair_left(port));
}

// The HTTP probe connects through cpp-httplib; a self-connect there reads back its own GET,
// which is no HTTP response: it cannot pass either.
TEST(UpstreamConnect, AnHttpProbeOfAnUnusedEphemeralPortNeverPasses) {
  const int port = unused_even_ephemeral_port(2);
  ASSERT_GT(port, 0);
  ServiceSpec spec;
  spec.name = "web";
  spec.upstream_host = "127.0.0.1";
  spec.upstream_port = port;
  spec.health.kind = HealthCheck::Kind::kHttp;
  spec.health.http_path = "/health";
  const auto deadline = SteadyClock::now() + seconds(30);
  int tries = 0;
  int passed = 0;
  while (tries < kTries && SteadyClock::now() < deadline) {
    ++tries;
    passed += probe_health(spec, milliseconds(500)) ? 1 : 0;
  }
  EXPECT_EQ(passed, 0) << "over " << tries << " tries";
}

TEST(UpstreamConnect, AListenerIsConnectedToAndASocketPairIsNotItself) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  const int fd = connect_upstream("127.0.0.1", port, milliseconds(500));
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(self_connected(fd));
  ::close(fd);
  EXPECT_TRUE(tcp_connects("127.0.0.1", port, milliseconds(500)));
  EXPECT_TRUE(tcp_connects("localhost", port, milliseconds(500)));  // a name, resolved
  ::close(listener);
  EXPECT_FALSE(tcp_connects("127.0.0.1", port, milliseconds(500)));
  EXPECT_FALSE(tcp_connects("no-such-host.invalid", port, milliseconds(500)));
}

}  // namespace
}  // namespace siesta::testing
