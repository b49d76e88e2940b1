// EventLog (the history behind GET /admin/events and the waking page's estimate), the endpoint
// itself through AdminServer::handle, the admin page's files, and the waking page's choice of
// which requests are a browser's navigation.
#include "siesta/runtime/event_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fakes.h"
#include "siesta/api/admin_server.h"
#include "siesta/proxy/wake_page.h"
#include "siesta/runtime/persister.h"
#include "world.h"

namespace siesta {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::RecordingRecorder;

// GET /admin/trace: the last uses through the proxy, in order of arrival, as a CSV trace the
// simulator reads; the oldest dropped beyond the capacity, and the comment says how many.
TEST(EventLog, KeepsTheLastUsesAsATraceInOrderOfArrival) {
  FakeClock clock;
  RecordingRecorder next;
  EventLog log(next, clock, EventLog::kDefaultCapacity, /*trace_capacity=*/3);
  const WallTime t0 = from_unix_seconds(1'700'000'000);
  log.proxy_use("web", "", t0, Seconds(1.5));
  log.proxy_use("ollama", "llama3.2:3b", t0 + std::chrono::seconds(10), Seconds(4));
  // Ends before the one above though it arrived later: written by arrival.
  log.proxy_use("web", "", t0 + std::chrono::seconds(5), Seconds(0.25));
  EXPECT_EQ(log.trace_csv(),
            "# siesta request trace: the last 3 uses through the proxy (at most 3; 0 older "
            "dropped)\n"
            "time,service,model,duration\n"
            "1700000000.000,web,,1.500\n"
            "1700000005.000,web,,0.250\n"
            "1700000010.000,ollama,llama3.2:3b,4.000\n");
  log.proxy_use("db", "a,\"b\"", t0 + std::chrono::seconds(20), Seconds(-1));  // clamped to 0
  EXPECT_EQ(log.trace_csv(),
            "# siesta request trace: the last 3 uses through the proxy (at most 3; 1 older "
            "dropped)\n"
            "time,service,model,duration\n"
            "1700000005.000,web,,0.250\n"
            "1700000010.000,ollama,llama3.2:3b,4.000\n"
            "1700000020.000,db,\"a,\"\"b\"\"\",0.000\n");
}

TEST(EventLog, KeepsEventsInOrderWithTheirTimeAndPassesEveryCallOn) {
  FakeClock clock;
  RecordingRecorder next;
  EventLog log(next, clock);
  const double t0 = to_unix_seconds(clock.wall_now());
  log.service_woke("web", Reason::kRequest, Seconds(2.5));
  clock.advance(Seconds(60));
  log.service_slept("web", Reason::kIdle);
  log.model_unloaded({"llama", "ollama"}, Reason::kExpired);
  log.service_tier_entered("web", "pause");
  log.service_tier_entered("web", "stop");  // already a sleep: not twice
  log.service_woke_from_tier("web", "pause", Seconds(0.01));
  log.service_failed("web", ServiceOperation::kStart);

  const auto events = log.since(0);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0].kind, "wake");
  EXPECT_EQ(events[0].name, "web");
  EXPECT_EQ(events[0].reason, "request");
  EXPECT_DOUBLE_EQ(events[0].at, t0);
  EXPECT_DOUBLE_EQ(*events[0].duration, 2.5);
  EXPECT_EQ(events[1].kind, "sleep");
  EXPECT_DOUBLE_EQ(events[1].at, t0 + 60);
  EXPECT_FALSE(events[1].duration);
  EXPECT_EQ(events[2].kind, "unload");
  EXPECT_EQ(events[2].subject, "model");
  EXPECT_EQ(events[3].kind, "pause");
  EXPECT_EQ(events[4].kind, "resume");
  EXPECT_EQ(events[5].kind, "failed");
  EXPECT_EQ(events[5].reason, "start");
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].id, i + 1);

  // The metrics still see every event.
  EXPECT_EQ(next.events(),
            (std::vector<std::string>{"woke web request", "slept web idle",
                                      "unloaded llama expired", "failed web start"}));
}

TEST(EventLog, IsBoundedAndFiltersBySinceAndId) {
  FakeClock clock;
  NullRecorder next;
  EventLog log(next, clock, 3);
  for (int i = 0; i < 5; ++i) {
    log.service_slept("s" + std::to_string(i), Reason::kIdle);
    clock.advance(Seconds(10));
  }
  auto all = log.since(0);
  ASSERT_EQ(all.size(), 3u);  // the oldest two fell out
  EXPECT_EQ(all.front().name, "s2");
  EXPECT_EQ(all.front().id, 3u);
  EXPECT_EQ(all.back().id, 5u);
  EXPECT_EQ(log.since(0, 4).size(), 1u);
  EXPECT_EQ(log.since(all.back().at).size(), 1u);
  EXPECT_EQ(log.since(all.back().at + 1).size(), 0u);
}

TEST(EventLog, ExpectedWakeIsTheMedianOfTheLastColdStarts) {
  FakeClock clock;
  NullRecorder next;
  EventLog log(next, clock);
  EXPECT_FALSE(log.expected_wake_seconds("web"));
  log.service_woke("web", Reason::kRequest, Seconds(100));  // falls out: only the last 5 count
  for (double d : {4.0, 2.0, 9.0, 3.0, 5.0}) log.service_woke("web", Reason::kRequest, Seconds(d));
  EXPECT_DOUBLE_EQ(*log.expected_wake_seconds("web"), 4.0);
  // A warm resume is not a cold start.
  log.service_woke_from_tier("web", "pause", Seconds(0.001));
  EXPECT_DOUBLE_EQ(*log.expected_wake_seconds("web"), 4.0);
  EXPECT_FALSE(log.expected_wake_seconds("other"));
}

struct AdminFixture {
  explicit AdminFixture(AdminOptions options = {}) : log(world.recorder, world.clock) {
    options.events = &log;
    admin = std::make_unique<AdminServer>(
        *world.registry, *world.controller, persister, metrics, world.clock,
        [] { return MonitorStatus{}; }, options);
  }
  testing::World world{R"({"services": {"web": {"command": ["web"]}}})"};
  Metrics metrics;
  Persister persister{*world.registry, nullptr, Baseline{}, nullptr};
  EventLog log;
  std::unique_ptr<AdminServer> admin;
};

TEST(AdminEvents, ListsTheLastHourByDefaultAndFromACursor) {
  AdminFixture f;
  f.log.service_slept("web", Reason::kIdle);  // two hours ago, once the clock moves
  f.world.clock.advance(std::chrono::hours(2));
  f.log.service_woke("web", Reason::kRequest, Seconds(1.25));
  f.log.service_slept("web", Reason::kManual);

  auto r = f.admin->handle("GET", "/admin/events", {}, "");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = json::parse(r.body);
  ASSERT_EQ(body["events"].size(), 2u);
  EXPECT_EQ(body["events"][0]["kind"], "wake");
  EXPECT_EQ(body["events"][0]["duration_seconds"], 1.25);
  EXPECT_EQ(body["events"][1]["reason"], "manual");
  EXPECT_TRUE(body["events"][1]["duration_seconds"].is_null());
  EXPECT_EQ(body["capacity"], EventLog::kDefaultCapacity);
  EXPECT_DOUBLE_EQ(body["now"].get<double>(), to_unix_seconds(f.world.clock.wall_now()));

  r = f.admin->handle("GET", "/admin/events?since=0", {}, "");
  EXPECT_EQ(json::parse(r.body)["events"].size(), 3u);
  r = f.admin->handle("GET", "/admin/events?since=0&after=2", {}, "");
  ASSERT_EQ(json::parse(r.body)["events"].size(), 1u);
  EXPECT_EQ(json::parse(r.body)["events"][0]["id"], 3);
}

TEST(AdminEvents, BadParametersAre400AndTheTokenIsNeeded) {
  AdminFixture f;
  for (const char* q : {"since=soon", "since=-1", "since=", "since=nan", "after=1.5", "after=-2"}) {
    auto r = f.admin->handle("GET", std::string("/admin/events?") + q, {}, "");
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "invalid_argument") << q;
  }
  EXPECT_EQ(f.admin->handle("POST", "/admin/events", {}, "").status, 405);

  AdminOptions with_token;
  with_token.token = "0123456789abcdef-token";
  AdminFixture guarded(with_token);
  EXPECT_EQ(guarded.admin->handle("GET", "/admin/events", {}, "").status, 401);
  EXPECT_EQ(
      guarded.admin
          ->handle("GET", "/admin/events", {{"Authorization", "Bearer 0123456789abcdef-token"}}, "")
          .status,
      200);
}

TEST(AdminTrace, IsTheTraceAsCsvBehindTheToken) {
  AdminOptions with_token;
  with_token.token = "0123456789abcdef-token";
  AdminFixture f(with_token);
  f.log.proxy_use("web", "", f.world.clock.wall_now(), Seconds(2));
  EXPECT_EQ(f.admin->handle("GET", "/admin/trace", {}, "").status, 401);
  auto r = f.admin->handle("GET", "/admin/trace",
                           {{"Authorization", "Bearer 0123456789abcdef-token"}}, "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(r.body, f.log.trace_csv());
  EXPECT_NE(r.body.find("\ntime,service,model,duration\n"), std::string::npos) << r.body;
  EXPECT_EQ(
      f.admin
          ->handle("POST", "/admin/trace", {{"Authorization", "Bearer 0123456789abcdef-token"}}, "")
          .status,
      405);
}

TEST(AdminPage, IsServedWithoutTheTokenAndHoldsNoData) {
  AdminOptions with_token;
  with_token.token = "0123456789abcdef-token";
  AdminFixture f(with_token);
  auto r = f.admin->handle("GET", "/", {}, "");
  EXPECT_EQ(r.status, 302);
  r = f.admin->handle("GET", "/ui/", {}, "");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("<script src=\"app.js\" defer></script>"), std::string::npos);
  EXPECT_EQ(r.body.find("web"), std::string::npos);  // no service names: data needs the token
  r = f.admin->handle("GET", "/ui/app.js", {}, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(f.admin->handle("GET", "/ui/app.css", {}, "").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(f.admin->handle("GET", "/ui/nothing.js", {}, "").status, 404);
  EXPECT_EQ(f.admin->handle("GET", "/ui/../admin/idle-status", {}, "").status, 404);
}

TEST(AdminPage, HasNoInlineScriptNorHandlers) {
  AdminFixture f;
  const std::string html = f.admin->handle("GET", "/ui/", {}, "").body;
  // Every <script> has a src; no on...= attribute, no style attribute.
  for (auto at = html.find("<script"); at != std::string::npos; at = html.find("<script", at + 1)) {
    EXPECT_EQ(html.compare(at, 12, "<script src="), 0) << html.substr(at, 40);
  }
  EXPECT_EQ(html.find(" onclick="), std::string::npos);
  EXPECT_EQ(html.find(" onload="), std::string::npos);
  EXPECT_EQ(html.find(" style="), std::string::npos);
}

namespace http = boost::beast::http;

http::request_header<http::fields> request(
    http::verb method, std::vector<std::pair<std::string, std::string>> fields) {
  http::request_header<http::fields> req;
  req.method(method);
  req.target("/");
  for (const auto& [k, v] : fields) req.set(k, v);
  return req;
}

TEST(WakePage, OnlyABrowsersNavigationGetsIt) {
  const std::string html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
  // What Chromium sends for a navigation, to a secure origin and to a plain-http one.
  EXPECT_TRUE(wake_page::is_navigation(
      request(http::verb::get,
              {{"Accept", html}, {"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "document"}})));
  EXPECT_TRUE(wake_page::is_navigation(request(http::verb::get, {{"Accept", html}})));
  // API clients: curl, requests, fetch(), XHR, a POST of a form, a prefetch, a WebSocket.
  EXPECT_FALSE(wake_page::is_navigation(request(http::verb::get, {{"Accept", "*/*"}})));
  EXPECT_FALSE(wake_page::is_navigation(request(http::verb::get, {})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::get,
              {{"Accept", html}, {"Sec-Fetch-Mode", "cors"}, {"Sec-Fetch-Dest", "empty"}})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::get, {{"Accept", html}, {"X-Requested-With", "XMLHttpRequest"}})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::post,
              {{"Accept", html}, {"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "document"}})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::get,
              {{"Accept", html}, {"Sec-Fetch-Mode", "navigate"}, {"Sec-Purpose", "prefetch"}})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::get,
              {{"Accept", html}, {"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "image"}})));
  EXPECT_FALSE(wake_page::is_navigation(
      request(http::verb::get, {{"Accept", html}, {"Upgrade", "websocket"}})));
}

TEST(WakePage, NamesTheServiceAndItsUsualStart) {
  const std::string page = wake_page::page_html("web<x>", 12.4);
  EXPECT_NE(page.find("Waking web&lt;x&gt;…"), std::string::npos);
  EXPECT_NE(page.find("(usually 12 s)"), std::string::npos);
  EXPECT_EQ(page.find("{{"), std::string::npos);
  EXPECT_NE(wake_page::page_html("web", std::nullopt).find("no estimate yet"), std::string::npos);
  const json status = json::parse(wake_page::status_json("web", ServiceState::kStarting, 3.5));
  EXPECT_EQ(
      status,
      (json{
          {"service", "web"}, {"state", "starting"}, {"ready", false}, {"expected_seconds", 3.5}}));
  EXPECT_TRUE(
      json::parse(wake_page::status_json("web", ServiceState::kRunning, std::nullopt))["ready"]
          .get<bool>());
  EXPECT_NE(wake_page::asset("wake.js"), nullptr);
  EXPECT_EQ(wake_page::asset("wake.html"), nullptr);  // only filled in
}

}  // namespace
}  // namespace siesta
