// ProcessBackend in-process on real processes (/bin/sleep, env): start, inspect, pause, stop (and
// SIGKILL after stop_timeout_seconds), a command that cannot run, and adoption from a saved
// handle. The backend waits on its own (SystemClock); the test itself never sleeps.
#include "siesta/backends/process_backend.h"

#include <gtest/gtest.h>
#include <signal.h>

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

}  // namespace
}  // namespace siesta::testing
