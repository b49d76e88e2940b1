// GET /wake/{service} (sidecar/proxy/src/wake_endpoint.cpp), in-process: 204 once the service is
// up (one wake, the request begun and ended once), 503 in the JSON error shape when the wake
// fails, 404 for a service the runtime does not know.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy_harness.h"

namespace siesta::testing {
namespace {

ProxyOptions with_wake_endpoint() {
  ProxyOptions options;
  options.wake_host = "127.0.0.1";
  options.wake_port = 0;
  return options;
}

TEST(ProxyWakeEndpoint, WakesASleepingServiceAndAnswers204) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port(), "", with_wake_endpoint());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  httplib::Client c("127.0.0.1", h.proxy->wake_port());
  auto res = c.Get("/wake/web");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 204);
  EXPECT_EQ(h.control.read(h.control.wakes), 1);
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));
  EXPECT_EQ(h.control.read(h.control.begun), 1);
  EXPECT_EQ(upstream.connections(), 0u);  // only woken, nothing forwarded
}

TEST(ProxyWakeEndpoint, AFailedWakeIs503AndAnUnknownService404) {
  RecordingUpstream upstream(answer_each(kOk));
  ProxyHarness h(upstream.port(), "", with_wake_endpoint());
  h.control.set([&](FakeProxyControl& c) { c.state = ServiceState::kStopped; });
  h.control.set([&](FakeProxyControl& c) {
    c.wake_result = Status{ErrorCode::kTimeout, "not ready within 60 s"};
  });
  httplib::Client c("127.0.0.1", h.proxy->wake_port());
  auto res = c.Get("/wake/web");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "5");
  const auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "timeout");
  EXPECT_EQ(body["error"]["message"], "service web could not be woken: not ready within 60 s");
  ASSERT_TRUE(h.control.wait_until([&] { return h.control.ended == 1; }));

  auto unknown = c.Get("/wake/nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(nlohmann::json::parse(unknown->body)["error"]["code"], "not_found");
  EXPECT_EQ(h.control.read(h.control.begun), 1);  // the unknown one never began
  EXPECT_EQ(h.control.read(h.control.wakes), 1);
}

}  // namespace
}  // namespace siesta::testing
