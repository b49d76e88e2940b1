// ProcessBackend in-process on real processes (/bin/sleep, env): start, inspect, pause, stop (and
// SIGKILL after stop_timeout_seconds), a command that cannot run, and adoption from a saved
// handle. The backend waits on its own (SystemClock); the test itself never sleeps.
#include "siesta/backends/process_backend.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

namespace siesta::testing {
namespace {

ServiceSpec spec_of(const std::string& name, std::vector<std::string> command,
                    double stop_timeout_seconds = 5) {
  ServiceSpec spec;
  spec.name = name;
  spec.command = std::move(command);
  spec.stop_timeout_seconds = stop_timeout_seconds;
  return spec;
}

bool gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

std::string proc_file(pid_t pid, const char* name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + name, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether /proc/<pid>/status lists SIGTERM among the ignored signals (SigIgn, a hex mask).
bool ignores_sigterm(pid_t pid) {
  const std::string status = proc_file(pid, "status");
  const auto at = status.find("SigIgn:\t");
  if (at == std::string::npos) return false;
  const unsigned long long mask = std::stoull(status.substr(at + 8, 16), nullptr, 16);
  return ((mask >> (SIGTERM - 1)) & 1U) != 0;
}

// posix_spawn returns once the child execs, which is before the kernel has set up its new
// argv (/proc/<pid>/cmdline reads empty for a moment) and before its first instruction: a test
// that reads those waits here, without sleeping, for at most 5 s.
bool soon(const std::function<bool()>& ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ProcessBackend, StartsInspectsAndStopsARealProcess) {
  SystemClock clock;
  ProcessBackend backend(clock);
  const ServiceSpec spec = spec_of("sleeper", {"/bin/sleep", "30"});
  EXPECT_FALSE(backend.inspect(spec)->running);  // never started
  ASSERT_TRUE(backend.start(spec));
  const pid_t pid = backend.pid_of("sleeper");
  ASSERT_GT(pid, 0);
  auto seen = backend.inspect(spec);
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->running);
  EXPECT_FALSE(seen->paused);
  EXPECT_EQ(seen->detail, "pid " + std::to_string(pid));
  EXPECT_GT(backend.memory_bytes(spec).value_or(0), 0);
  ASSERT_TRUE(backend.stop(spec));
  EXPECT_TRUE(gone(pid));  // reaped, not a zombie
  EXPECT_FALSE(backend.inspect(spec)->running);
  EXPECT_EQ(backend.pid_of("sleeper"), -1);
  EXPECT_TRUE(backend.stop(spec));  // stopping a stopped service is fine
}

TEST(ProcessBackend, APausedProcessIsStoppedInItsGroupAndResumes) {
  SystemClock clock;
  ProcessBackend backend(clock);
  const ServiceSpec spec = spec_of("paused", {"/bin/sleep", "30"});
  ASSERT_TRUE(backend.start(spec));
  ASSERT_TRUE(backend.pause(spec));
  auto seen = backend.inspect(spec);
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->running);
  EXPECT_TRUE(seen->paused);
  ASSERT_TRUE(backend.resume(spec));
  // A stop of a paused process works too (SIGCONT after SIGTERM); here it was resumed.
  ASSERT_TRUE(backend.pause(spec));
  const pid_t pid = backend.pid_of("paused");
  ASSERT_TRUE(backend.stop(spec));
  EXPECT_TRUE(gone(pid));
  EXPECT_EQ(backend.pause(spec).code(), ErrorCode::kFailed);  // nothing to pause
}

TEST(ProcessBackend, AProcessIgnoringSigtermIsKilledAfterItsStopTimeout) {
  SystemClock clock;
  ProcessBackend backend(clock);
  // An ignored signal stays ignored across exec: sleep never sees the SIGTERM.
  const ServiceSpec spec =
      spec_of("stubborn", {"/usr/bin/env", "--ignore-signal=TERM", "/bin/sleep", "30"}, 0.3);
  ASSERT_TRUE(backend.start(spec));
  const pid_t pid = backend.pid_of("stubborn");
  ASSERT_TRUE(soon([&] { return ignores_sigterm(pid); }));  // once env ran
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(backend.stop(spec));
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(300));  // the grace was given
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(gone(pid));
}

TEST(ProcessBackend, ACommandThatCannotRunIsAnError) {
  SystemClock clock;
  ProcessBackend backend(clock);
  const Status st = backend.start(spec_of("missing", {"/nonexistent/siesta-test-binary"}));
  EXPECT_EQ(st.code(), ErrorCode::kFailed);
  EXPECT_NE(st.message().find("cannot run /nonexistent/siesta-test-binary"), std::string::npos)
      << st.message();
  EXPECT_FALSE(backend.inspect(spec_of("missing", {"/nonexistent/siesta-test-binary"}))->running);
}

TEST(ProcessBackend, ASavedHandleIsAdoptedByTheNextBackendAndAStaleOneIsNot) {
  SystemClock clock;
  ProcessBackend first(clock);
  const ServiceSpec spec = spec_of("kept", {"/bin/sleep", "30"});
  ASSERT_TRUE(first.start(spec));
  const pid_t pid = first.pid_of("kept");
  ASSERT_TRUE(soon([&] { return !proc_file(pid, "cmdline").empty(); }));
  const nlohmann::json handle = first.save_handle(spec);
  ASSERT_EQ(handle["pid"], first.pid_of("kept"));
  ASSERT_TRUE(handle["start_ticks"].is_number_integer());

  ProcessBackend stale(clock);  // the same pid, started at another time: a reused pid
  nlohmann::json reused = handle;
  reused["start_ticks"] = handle["start_ticks"].get<long long>() + 1;
  stale.restore_handle(spec, reused);
  EXPECT_FALSE(stale.inspect(spec)->running);
  ProcessBackend other_command(clock);  // the same process, not this service's command
  other_command.restore_handle(spec_of("kept", {"/bin/sleep", "31"}), handle);
  EXPECT_FALSE(other_command.inspect(spec_of("kept", {"/bin/sleep", "31"}))->running);

  ProcessBackend next(clock);  // siesta restarted
  next.restore_handle(spec, handle);
  auto seen = next.inspect(spec);
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->running);
  EXPECT_EQ(next.pid_of("kept"), handle["pid"]);
  ASSERT_TRUE(next.stop(spec));
  EXPECT_FALSE(next.inspect(spec)->running);
  EXPECT_TRUE(first.stop(spec));  // its own record of it is gone too: nothing to signal
}

// A socket listening on 127.0.0.1 (an ephemeral port), closed with the test.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~Listener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = -1;
};

// Issue 24, a new user's trial: the service's process exits at start ("address in use") because
// another process holds its upstream port, and that one answers the readiness probe. The backend
// says so: the exit, and that another process answers the upstream.
TEST(ProcessBackend, AProcessThatExitsWhileAnotherAnswersItsUpstreamIsAFailedStart) {
  SystemClock clock;
  ProcessBackend backend(clock);
  Listener other;  // an engine started by hand on the port
  ASSERT_GT(other.port(), 0);
  ServiceSpec spec = spec_of("taken", {"/bin/sh", "-c", "exit 1"});
  spec.upstream_host = "127.0.0.1";
  spec.upstream_port = other.port();
  ASSERT_TRUE(backend.start(spec));
  ASSERT_TRUE(soon([&] { return !backend.inspect(spec)->running; }));
  const std::string where = "127.0.0.1:" + std::to_string(other.port());
  auto seen = backend.inspect(spec);
  ASSERT_TRUE(seen);
  EXPECT_NE(seen->start_failure.find("exited with code 1 while another process answers its "
                                     "upstream " +
                                     where),
            std::string::npos)
      << seen->start_failure;
  // Its readiness check says the same (had the probe not passed first).
  auto ready = backend.check_ready(spec);
  ASSERT_FALSE(ready);
  EXPECT_NE(ready.status().message().find("another process answers its upstream " + where),
            std::string::npos)
      << ready.status().message();
  EXPECT_NE(ready.status().message().find("before it was ready"), std::string::npos);
  // Issue 24, a new user's trial: it said the other process "answered its readiness check and its
  // requests" when nothing had (no probe ran, no request came). It says what happened.
  for (const std::string& text : {seen->start_failure, ready.status().message()}) {
    EXPECT_EQ(text.find("answered its readiness check"), std::string::npos) << text;
    EXPECT_NE(text.find("so the service's own process could not listen on it"), std::string::npos)
        << text;
  }
}

TEST(ProcessBackend, AnExitWithNothingOnItsUpstreamOrAStopIsNoFailedStart) {
  SystemClock clock;
  ProcessBackend backend(clock);
  int port = -1;
  {
    Listener closed;  // a port nothing listens on any more
    port = closed.port();
  }
  ServiceSpec spec = spec_of("alone", {"/bin/sh", "-c", "exit 3"});
  spec.upstream_host = "127.0.0.1";
  spec.upstream_port = port;
  ASSERT_TRUE(backend.start(spec));
  ASSERT_TRUE(soon([&] { return !backend.inspect(spec)->running; }));
  EXPECT_EQ(backend.inspect(spec)->start_failure, "");
  EXPECT_NE(backend.inspect(spec)->detail.find("exited with code 3"), std::string::npos);
  // Stopped by siesta, with another process on the port: that is a stop, not a failed start.
  Listener other;
  ServiceSpec sleeper = spec_of("stopped", {"/bin/sleep", "30"});
  sleeper.upstream_host = "127.0.0.1";
  sleeper.upstream_port = other.port();
  ASSERT_TRUE(backend.start(sleeper));
  ASSERT_TRUE(backend.stop(sleeper));
  EXPECT_EQ(backend.inspect(sleeper)->start_failure, "");
}

}  // namespace
}  // namespace siesta::testing
