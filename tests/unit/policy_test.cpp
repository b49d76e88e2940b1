// Timeout policies (policy.h) on hand-built histories, and decide() driving them on a fake
// clock: the fixed policy, the adaptive one's fallbacks, bounds and pre-warm.
#include "siesta/core/policy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "siesta/core/decide.h"

namespace siesta {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

const WallTime kNow = from_unix_seconds(1'700'000'000);

PolicyChoice adaptive(const std::vector<double>& gaps, double cold_start = 60,
                      Seconds configured = minutes(60)) {
  PolicyInput in;
  in.configured_timeout = configured;
  in.idle_gaps = &gaps;
  in.cold_start_seconds = cold_start;
  return adaptive_policy().choose(in);
}

TEST(Policy, EveryPolicyIsFoundByItsName) {
  EXPECT_EQ(find_policy("fixed"), &fixed_policy());
  EXPECT_EQ(find_policy("adaptive"), &adaptive_policy());
  EXPECT_EQ(find_policy("lru"), nullptr);
  EXPECT_EQ(policy_names(), "fixed, adaptive");
}

TEST(Policy, FixedIsTheConfiguredTimeout) {
  PolicyInput in;
  in.configured_timeout = minutes(15);
  const PolicyChoice c = fixed_policy().choose(in);
  EXPECT_EQ(c.keep_alive, minutes(15));
  EXPECT_EQ(c.sleep_after, minutes(15));
  EXPECT_FALSE(c.prewarm_after);
  EXPECT_STREQ(c.policy, "fixed");
  EXPECT_EQ(c.reason, "the configured idle timeout (15 minutes)");
}

TEST(Policy, GapsAreRecordedBoundedAndShortPausesAreOneUse) {
  std::vector<double> gaps;
  record_idle_gap(gaps, std::nullopt, kNow);       // no last use: no gap
  record_idle_gap(gaps, kNow - seconds(5), kNow);  // within a burst
  EXPECT_TRUE(gaps.empty());
  for (std::size_t i = 0; i < kMaxIdleGaps + 10; ++i) {
    record_idle_gap(gaps, kNow - seconds(static_cast<long>(100 + i)), kNow);
  }
  ASSERT_EQ(gaps.size(), kMaxIdleGaps);
  EXPECT_EQ(gaps.front(), 110.0);  // the oldest ten went
  EXPECT_EQ(gaps.back(), 100.0 + kMaxIdleGaps + 9);
}

TEST(Policy, Percentile) {
  EXPECT_EQ(percentile({}, 50), 0);
  EXPECT_EQ(percentile({3, 1, 2}, 50), 2);
  EXPECT_EQ(percentile({0, 10}, 25), 2.5);
  EXPECT_EQ(percentile({0, 10}, 100), 10);
}

TEST(Policy, AdaptiveFallsBackWhileTheHistoryIsShort) {
  const PolicyChoice c = adaptive(std::vector<double>(9, 120));
  EXPECT_STREQ(c.policy, "fixed");
  EXPECT_EQ(c.keep_alive, minutes(60));
  EXPECT_EQ(c.reason,
            "adaptive falls back: history too short (9 of 10 idle gaps); the configured idle "
            "timeout (60 minutes)");
}

TEST(Policy, AdaptiveFallsBackWhenMostGapsAreOutOfRange) {
  std::vector<double> gaps(6, 5 * 3600.0);  // 5 h: past the 4 h histogram
  gaps.insert(gaps.end(), 5, 300);
  const PolicyChoice c = adaptive(gaps);
  EXPECT_STREQ(c.policy, "fixed");
  EXPECT_NE(c.reason.find("longer than the histogram's 4 h"), std::string::npos) << c.reason;
}

TEST(Policy, AdaptiveFallsBackOnAFlatHistogram) {
  std::vector<double> gaps;  // one gap in every other minute of the 4 h: no pattern
  for (int m = 0; m < 240; m += 2) gaps.push_back(m * 60.0 + 30);
  const PolicyChoice c = adaptive(gaps);
  EXPECT_STREQ(c.policy, "fixed");
  EXPECT_NE(c.reason.find("too flat"), std::string::npos) << c.reason;
}

TEST(Policy, AdaptiveKeepsAliveToTheHighPercentile) {
  // Gaps of 1 to 10 minutes: p99 is ~9.9 min, +10 %.
  std::vector<double> gaps;
  for (int i = 1; i <= 100; ++i) gaps.push_back(6.0 * i);
  const PolicyChoice c = adaptive(gaps);
  EXPECT_STREQ(c.policy, "adaptive");
  EXPECT_NEAR(c.keep_alive.count(), percentile(gaps, 99) * 1.1, 1e-9);
  EXPECT_EQ(c.sleep_after, c.keep_alive);  // p5 is 36 s: nothing to pre-warm for
  EXPECT_FALSE(c.prewarm_after);
}

TEST(Policy, AdaptiveIsBoundedByMinMaxAndTheSkiRentalBreakEven) {
  const std::vector<double> tiny(20, 12);             // every gap 12 s: p99 +10 % is 13.2 s
  EXPECT_EQ(adaptive(tiny).keep_alive, seconds(60));  // the minimum
  std::vector<double> long_gaps(20, 3 * 3600.0);
  long_gaps.push_back(60);
  // p99 is ~3 h; a cold start of 60 s x 60 breaks even at 1 h.
  PolicyChoice c = adaptive(long_gaps, 60);
  EXPECT_EQ(c.keep_alive, seconds(3600));
  EXPECT_NE(c.reason.find("ski-rental break-even 3600 s"), std::string::npos) << c.reason;
  // No cold-start measure: no break-even, the maximum (4 h) holds, p99 x 1.1 = 3.3 h is under it.
  c = adaptive(long_gaps, 0);
  EXPECT_NEAR(c.keep_alive.count(), percentile(long_gaps, 99) * 1.1, 1e-6);
}

TEST(Policy, AdaptivePreWarmsBeforeAPeriodicUse) {
  // A job every 30 min +- 2 min: asleep 60 s after a use, started at p5 -10 % less the
  // 60 s start, asleep again at p99 +10 %.
  std::vector<double> gaps;
  for (int i = 0; i < 50; ++i) gaps.push_back(28 * 60.0 + (i % 5) * 60.0);
  const PolicyChoice c = adaptive(gaps, 60);
  ASSERT_TRUE(c.prewarm_after);
  EXPECT_NEAR(c.prewarm_after->count(), 28 * 60 * 0.9 - 60, 1e-9);
  EXPECT_EQ(c.sleep_after, seconds(60));
  EXPECT_NEAR(c.keep_alive.count(), 32 * 60 * 1.1, 1e-9);
  EXPECT_NE(c.reason.find("pre-warmed"), std::string::npos);
}

// No pre-warm without a start known (the first measured one could cap the keep-alive below the
// pre-warm point: a new user's trial saw a pre-warmed service stopped 50 ms after it was
// ready), nor on irregular gaps: a short Poisson history has a sparse histogram that passes the
// CV test, and pre-warming it made more cold starts than fixed 60 m.
TEST(Policy, AdaptivePreWarmsOnlyRegularGapsWithAKnownStart) {
  std::vector<double> periodic;
  for (int i = 0; i < 50; ++i) periodic.push_back(28 * 60.0 + (i % 5) * 60.0);
  PolicyChoice c = adaptive(periodic, 0);
  EXPECT_FALSE(c.prewarm_after) << c.reason;
  // Exponential gaps, mean 2 h (quantiles of an exponential, so no seed): p5 is 7 % of the
  // median. 30 of them spread over 240 bins: the CV test alone lets them through.
  std::vector<double> poisson;
  for (int i = 0; i < 30; ++i) poisson.push_back(-7200 * std::log(1 - (i + 0.5) / 30));
  c = adaptive(poisson, 60);
  EXPECT_STREQ(c.policy, "adaptive") << c.reason;
  EXPECT_FALSE(c.prewarm_after) << c.reason;
  EXPECT_NE(c.reason.find("no pre-warm"), std::string::npos) << c.reason;
}

// An adaptive service with 60 s starts whose history is a job every 28-32 minutes.
Snapshot periodic_job(ServiceState state, WallTime last_used) {
  auto spec = std::make_shared<ServiceSpec>();
  spec->name = "job";
  spec->policy = "adaptive";
  spec->cold_start_seconds = 60;
  ServiceRuntime rt;
  rt.state = state;
  rt.last_used = last_used;
  for (int i = 0; i < 50; ++i) rt.idle_gaps.push_back(28 * 60.0 + (i % 5) * 60.0);
  Snapshot snap;
  snap.services.push_back({spec, rt});
  return snap;
}

// decide() on a fake clock: the same service through a pre-warm cycle.
TEST(DecidePolicy, TheAdaptiveTimeoutAndPreWarmComeFromDecide) {
  Snapshot snap = periodic_job(ServiceState::kRunning, kNow);
  snap.services[0].runtime.state_since = kNow - minutes(1);
  ServiceRuntime& live = snap.services[0].runtime;

  // Just used: asleep after 60 s, not the 60 min it is configured with.
  Decision d = decide(snap, kNow);
  EXPECT_STREQ(d.services[0].policy, "adaptive");
  EXPECT_EQ(d.services[0].timeout, seconds(60));
  EXPECT_EQ(*d.next_deadline, kNow + seconds(60));
  d = decide(snap, kNow + seconds(60));
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0], (Action{ActionKind::kSleepService, "job", Reason::kIdle}));
  set_state(live, ServiceState::kStopped, kNow + seconds(60));

  // Asleep: the pre-warm is the next deadline, then a start with reason "prewarm".
  const WallTime prewarm = kNow + to_wall_duration(Seconds(28 * 60 * 0.9 - 60));
  d = decide(snap, kNow + seconds(61));
  ASSERT_TRUE(d.services[0].prewarm_at);
  EXPECT_EQ(*d.services[0].prewarm_at, prewarm);
  EXPECT_EQ(*d.next_deadline, prewarm);
  d = decide(snap, prewarm);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0], (Action{ActionKind::kStartService, "job", Reason::kPrewarm}));
  set_state(live, ServiceState::kRunning, prewarm + seconds(60));

  // The pre-warmed run stays until p99 +10 % after the last use, then sleeps.
  const WallTime until = kNow + to_wall_duration(Seconds(32 * 60 * 1.1));
  d = decide(snap, prewarm + seconds(61));
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(*d.services[0].sleeps_at, until);
  d = decide(snap, until);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, ActionKind::kSleepService);
  set_state(live, ServiceState::kStopped, until);
  // The predicted use did not come: no second pre-warm; the next use wakes it.
  d = decide(snap, until + minutes(10));
  EXPECT_TRUE(d.actions.empty());
  EXPECT_FALSE(d.services[0].prewarm_at);
  EXPECT_FALSE(d.next_deadline);
}

TEST(DecidePolicy, NoPreWarmWhenIdleSleepIsOffOrTheServiceDesiredOn) {
  Snapshot snap = periodic_job(ServiceState::kStopped, kNow - minutes(26));
  EXPECT_EQ(decide(snap, kNow).actions.size(), 1u);
  snap.services[0].runtime.idle_sleep_enabled = false;
  EXPECT_TRUE(decide(snap, kNow).actions.empty());
  snap.services[0].runtime.idle_sleep_enabled = true;
  snap.settings.idle_sleep_enabled = false;
  EXPECT_TRUE(decide(snap, kNow).actions.empty());
}

// A pre-warm whose start failed (the service back to stopped after the pre-warm point) is not
// tried again at every check until the keep-alive ends (a new user's trial: a start failing at
// each tick); the next use wakes it as usual.
TEST(DecidePolicy, AFailedPreWarmIsNotRepeatedAtEveryCheck) {
  Snapshot snap = periodic_job(ServiceState::kStopped, kNow - minutes(26));
  ServiceRuntime& live = snap.services[0].runtime;
  live.state_since = kNow - minutes(25);
  Decision d = decide(snap, kNow);
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0], (Action{ActionKind::kStartService, "job", Reason::kPrewarm}));
  set_state(live, ServiceState::kError, kNow + seconds(2));  // the start failed
  EXPECT_TRUE(decide(snap, kNow + minutes(1)).actions.empty());
  set_state(live, ServiceState::kStopped, kNow + minutes(5));  // found stopped again
  d = decide(snap, kNow + minutes(5));
  EXPECT_TRUE(d.actions.empty());
  EXPECT_FALSE(d.services[0].prewarm_at);
}

}  // namespace
}  // namespace siesta
