// The monitor on fakes: deadlines, reconcile, claims against a use or a wake, the change signal
// (the controller's own tests are in controller_test.cpp).
#include <gtest/gtest.h>

#include "world.h"

namespace siesta::testing {
namespace {

using std::chrono::minutes;

constexpr const char* kTwo = R"({
  "idle_timeout_minutes": 10, "idle_check_interval_minutes": 5,
  "services": {"a": {"command": ["a"]}, "b": {"command": ["b"], "idle_timeout_minutes": 3}}})";

TEST(Monitor, StepReturnsTheNextDeadlineNotTheCheckInterval) {
  World w(kTwo);
  w.run("a");
  w.run("b");
  WallTime t0 = w.clock.wall_now();
  WallTime next = w.monitor->step();
  EXPECT_EQ(next, t0 + minutes(3));  // b's deadline comes before the 5-minute reconcile
  w.clock.advance(minutes(3));
  next = w.monitor->step();
  EXPECT_EQ(w.service("b").state, ServiceState::kStopped);
  EXPECT_EQ(next, t0 + minutes(5));  // now the reconcile is next (a sleeps at +10)
}

TEST(Monitor, ReconcileSeesAProcessThatDiedAndOneStartedOutside) {
  World w(kTwo);
  w.run("a");
  w.monitor->step();
  w.backend.running.erase("a");   // crashed
  w.backend.running.insert("b");  // started by someone else
  w.clock.advance(minutes(4));
  w.monitor->step();  // reconcile not due yet
  EXPECT_EQ(w.service("a").state, ServiceState::kRunning);
  w.clock.advance(minutes(1));
  w.monitor->step();
  EXPECT_EQ(w.service("a").state, ServiceState::kStopped);
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
  // b gets an idle timer from when it was first seen, and is put to sleep like any other.
  EXPECT_EQ(*w.service("b").last_used, w.clock.wall_now());
  w.clock.advance(minutes(3));
  w.monitor->step();
  EXPECT_EQ(w.service("b").state, ServiceState::kStopped);
}

TEST(Monitor, ATouchBetweenDecisionAndClaimCancelsTheSleep) {
  World w(kTwo);
  w.run("b");
  w.clock.advance(minutes(3));
  Decision d = decide(w.registry->snapshot(), w.clock.wall_now());
  ASSERT_EQ(d.actions.size(), 1u);
  ASSERT_TRUE(w.controller->touch_service("b"));  // a request arrives
  EXPECT_FALSE(w.controller->claim_sleep("b"));
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
}

TEST(Monitor, AWakeAfterTheClaimCancelsThePendingStop) {
  World w(kTwo);
  w.run("b");
  w.clock.advance(minutes(3));
  ASSERT_TRUE(w.controller->claim_sleep("b"));
  EXPECT_EQ(w.service("b").state, ServiceState::kStopping);
  ASSERT_TRUE(w.controller->wake("b", "request"));
  w.controller->finish_sleep("b");  // runs after the wake: must not stop it
  EXPECT_EQ(w.service("b").state, ServiceState::kRunning);
  EXPECT_EQ(w.backend.count("stop b"), 0);
  EXPECT_EQ(w.backend.count("start b"), 0);  // it never went down
}

TEST(ChangeSignal, ARequestEndingWakesTheMonitorOnlyWhenItWouldSleepPastTheNewDeadline) {
  ChangeSignal signal;
  const WallTime t = from_unix_seconds(1'700'000'000);
  signal.plan_wake(t + std::chrono::seconds(30));
  const auto g0 = signal.generation();
  signal.notify_if_before(t + std::chrono::minutes(60));  // later than planned: no wake-up
  EXPECT_EQ(signal.generation(), g0);
  signal.notify_if_before(t + std::chrono::seconds(2));  // earlier: wake up
  EXPECT_EQ(signal.generation(), g0 + 1);
  signal.plan_wake(std::nullopt);  // the monitor is awake and deciding: every change counts
  signal.notify_if_before(t + std::chrono::minutes(60));
  EXPECT_EQ(signal.generation(), g0 + 2);
}

}  // namespace
}  // namespace siesta::testing
