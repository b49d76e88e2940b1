// The wake gate (sidecar/proxy/src/wake_gate.cpp), in-process: requests to a sleeping service
// share one wake, a failed wake answers 503 in the JSON error shape, a client that leaves during
// the wake ends its request once, and the wake's duration is read from the injected Clock.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "proxy_harness.h"

namespace siesta::testing {
namespace {

TEST(ProxyWakeGate, ConcurrentRequestsToASleepingServiceShareOneWake) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  h.control.set([&](FakeProxyControl& c) { c.hold_wake = true; });
  constexpr int kClients = 8;
  std::vector<int> statuses(kClients, 0);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto c = h.client();
      if (auto res = c.Get("/")) statuses[static_cast<std::size_t>(i)] = res->status;
    });
  }
  // Every request has begun and waits while the one wake is held.
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.begun == kClients; }));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.starts == 1; }));
  h.control.release_wake();
  for (auto& t : clients) t.join();
  for (int status : statuses) EXPECT_EQ(status, 200);
  // One start for the burst. (A request between its begin and joining the gate when the wake
  // ends calls wake() again, which finds the service up.)
  EXPECT_EQ(h.control.read(h.control.starts), 1);
  EXPECT_EQ(h.control.read(h.control.wake_reasons), std::vector<std::string>{"web request"});
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == kClients; }));
  EXPECT_EQ(h.control.read(h.control.begun), kClients);
  EXPECT_GT(upstream.connections(), 0u);
}

TEST(ProxyWakeGate, AFailedWakeAnswers503InTheJsonErrorShape) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  h.control.set([&](FakeProxyControl& c) {
    c.wake_result = Status{ErrorCode::kUnavailable, "its command exited with status 1"};
  });
  auto c = h.client();
  auto res = c.Post("/api", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(res->get_header_value("Retry-After"), "5");
  const auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "unavailable");
  EXPECT_EQ(body["error"]["message"],
            "service web could not be woken: its command exited with status 1");
  EXPECT_EQ(upstream.connections(), 0u);  // nothing reached the service
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  EXPECT_EQ(h.control.read(h.control.wakes), 1);
  const auto requests = h.recorder.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].status, 503);
}

TEST(ProxyWakeGate, TheWakeIsTimedOnTheInjectedClock) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  h.control.set([&](FakeProxyControl& c) {
    c.on_wake = [&] { h.clock.advance(std::chrono::milliseconds(2500)); };
  });
  auto c = h.client();
  auto res = c.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake"), "cold; dur=2.500");
  // Recorded when the exchange ends, just before the request does.
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  const auto requests = h.recorder.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].status, 200);
  EXPECT_DOUBLE_EQ(requests[0].seconds, 2.5);  // the fake clock's time, not the steady clock's
}

// "web" with a pause tier, held in it when the request arrives (as the fake control says too).
constexpr const char* kPauseTier = R"(, "sleep_tiers": [{"after_minutes": 1, "action": "pause"}])";
void hold_paused(ProxyHarness& h) {
  h.registry->update_service("web", [](const ServiceSpec&, ServiceRuntime& rt) {
    rt.state = ServiceState::kPaused;
    rt.paused = true;
    rt.tier = 1;
  });
  h.control.set([](FakeProxyControl& c) { c.state = ServiceState::kPaused; });
}

// A service held in a light tier when the request arrives: X-Siesta-Wake names the tier, with the
// wake's time as the runtime timed it (what siesta_service_tier_wake_seconds_total counts), not
// the request's own wait, which adds the hand-over to the wake thread (CI's stop 31: dur=0.003
// in the header, 0.0005 counted).
TEST(ProxyWakeGate, AWakeFromATierCarriesTheTimeTheRuntimeCounted) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port(), kPauseTier);
  hold_paused(h);
  h.control.set([&](FakeProxyControl& c) {
    c.told = WakeReport{"pause", Seconds(0.004)};
    c.on_wake = [&] { h.clock.advance(std::chrono::milliseconds(2500)); };
  });
  auto res = h.client().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Siesta-Wake"), "warm-from=pause; dur=0.004");
}

// A request that arrived while a tier was being entered, and found it failed (a vLLM /sleep that
// errs leaves the engine serving): nothing woke, so no X-Siesta-Wake (a new user's trial: it said
// warm-from=vllm_sleep).
TEST(ProxyWakeGate, NothingUndoneIsNoWake) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port(), kPauseTier);
  hold_paused(h);
  h.control.set([](FakeProxyControl& c) {
    c.told = WakeReport{};  // up already: nothing undone, nothing timed
  });
  auto res = h.client().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_FALSE(res->has_header("X-Siesta-Wake")) << res->get_header_value("X-Siesta-Wake");
}

TEST(ProxyWakeGate, AClientThatLeavesDuringTheWakeEndsItsRequestOnceAndTheWakeGoesOn) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  h.control.set([&](FakeProxyControl& c) { c.hold_wake = true; });
  const int fd = dial(h.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"));
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.wakes == 1; }));
  ::close(fd);
  // Ended while the wake is still held: the client's close was noticed, not the wake's end.
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  h.control.release_wake();
  // A later request finds the service woken by that same wake.
  auto c = h.client();
  auto res = c.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(h.control.read(h.control.starts), 1);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 2; }));
  EXPECT_EQ(h.control.read(h.control.begun), 2);
}

}  // namespace
}  // namespace siesta::testing
