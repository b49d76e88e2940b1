// The admin token: who may use /admin (and /metrics with protect_metrics), and the refusal to
// expose an unauthenticated admin API beyond loopback.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "raw_http.h"
#include "siesta_process.h"

namespace siesta::testing {
namespace {

constexpr const char* kToken = "s3cret-token-0123456789";

httplib::Headers bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

std::string with_token_file(const TempDir& dir, const std::string& extra = "") {
  std::ofstream(dir / "token") << kToken << "\n";
  return R"({"admin_token_file": ")" + (dir / "token").string() + "\"" + extra + "}";
}

TEST(Auth, TheTokenGuardsEveryAdminEndpointAndNothingElse) {
  TempDir dir;
  SiestaProcess siesta(dir.path(), with_token_file(dir));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();

  auto res = cli.Get("/admin/idle-status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"siesta\"");
  auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "unauthorized");
  EXPECT_EQ(body["error"]["source"], "siesta");

  // Wrong token, same length; wrong scheme; the token as a prefix of something longer.
  std::string wrong(kToken);
  wrong.back() = 'x';
  EXPECT_EQ(cli.Get("/admin/settings", bearer(wrong))->status, 401);
  EXPECT_EQ(cli.Get("/admin/settings", {{"Authorization", std::string("Basic ") + kToken}})->status,
            401);
  EXPECT_EQ(cli.Get("/admin/settings", bearer(std::string(kToken) + "x"))->status, 401);

  // A change without the token changes nothing.
  res = cli.Post("/admin/settings", R"({"idleTimeout": 5})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = cli.Get("/admin/settings", bearer(kToken));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body)["idle_timeout_minutes"], 60);

  // With it (scheme case-insensitive, RFC 9110 11.1), it is made.
  res = cli.Post("/admin/settings", {{"authorization", std::string("bearer ") + kToken}},
                 R"({"idleTimeout": 5})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(nlohmann::json::parse(res->body)["idle_timeout_minutes"], 5);

  // /healthz and /metrics stay open by default.
  EXPECT_EQ(cli.Get("/healthz")->status, 200);
  EXPECT_EQ(cli.Get("/metrics")->status, 200);

  EXPECT_NE(siesta.log().find("Admin API requires a bearer token on /admin"), std::string::npos);
  EXPECT_EQ(siesta.log().find(kToken), std::string::npos) << "the token must never be logged";
}

TEST(Auth, ProtectMetricsPutsMetricsBehindTheTokenToo) {
  TempDir dir;
  SiestaProcess siesta(dir.path(), with_token_file(dir, R"(, "protect_metrics": true)"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();
  EXPECT_EQ(cli.Get("/metrics")->status, 401);
  auto res = cli.Get("/metrics", bearer(kToken));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("siesta_build_info"), std::string::npos);
  EXPECT_EQ(cli.Get("/healthz")->status, 200);
}

TEST(Auth, TheEnvironmentTokenWinsOverTheFileAndNoServiceInheritsIt) {
  TempDir dir;
  ::setenv("SIESTA_ADMIN_TOKEN", "another-token-abcdefghij", 1);
  // A managed process (and an activity command) runs with siesta's environment: not the token.
  const std::string env_file = (dir / "env.txt").string();
  SiestaProcess siesta(dir.path(),
                       with_token_file(dir, R"(, "services": {"probe": {"command": ["sh", "-c",
                        "env > )" + env_file + R"(; exec sleep 30"], "desired": "on"}})"));
  const bool started = siesta.start();
  ::unsetenv("SIESTA_ADMIN_TOKEN");
  ASSERT_TRUE(started) << siesta.log();
  auto cli = siesta.client();
  EXPECT_EQ(cli.Get("/admin/settings", bearer(kToken))->status, 401);
  EXPECT_EQ(cli.Get("/admin/settings", bearer("another-token-abcdefghij"))->status, 200);
  ASSERT_TRUE(eventually([&] { return fs::exists(env_file) && fs::file_size(env_file) > 0; },
                         std::chrono::seconds(10)))
      << siesta.log();
  std::ifstream in(env_file);
  const std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(env.find("SIESTA_ADMIN_TOKEN"), std::string::npos) << env;
  EXPECT_EQ(env.find("another-token"), std::string::npos);
}

TEST(Auth, ANonLoopbackAdminListenNeedsATokenOrInsecure) {
  TempDir dir;
  auto [code, out] = run_command({SIESTA_BINARY, "--listen", "0.0.0.0:0"}, dir / "out.txt");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("the admin API would listen on 0.0.0.0:0 without a token"), std::string::npos)
      << out;

  SiestaProcess insecure(dir.path(), "", {"--listen", "0.0.0.0:0", "--insecure"});
  ASSERT_TRUE(insecure.start()) << insecure.log();
  EXPECT_EQ(insecure.client().Get("/admin/settings")->status, 200);

  SiestaProcess with_token(dir.path(), with_token_file(dir), {"--listen", "0.0.0.0:0"});
  ASSERT_TRUE(with_token.start()) << with_token.log();
  EXPECT_EQ(with_token.client().Get("/admin/settings")->status, 401);
}

TEST(Auth, AnUnreadableOrWeakTokenFileIsAConfigError) {
  TempDir dir;
  std::ofstream(dir / "missing.json") << R"({"admin_token_file": "/nonexistent/token"})";
  auto [code, out] =
      run_command({SIESTA_BINARY, "--config", (dir / "missing.json").string()}, dir / "out.txt");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("admin_token_file: cannot read /nonexistent/token: No such file"),
            std::string::npos)
      << out;

  std::ofstream(dir / "short") << "short\n";
  std::ofstream(dir / "weak.json")
      << R"({"admin_token_file": ")" + (dir / "short").string() + "\"}";
  std::tie(code, out) =
      run_command({SIESTA_BINARY, "--config", (dir / "weak.json").string()}, dir / "out.txt");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("the admin token must be at least 16 characters, got 5"), std::string::npos)
      << out;
}

// Every admin route, whatever way its request arrives (a body, none, an empty one, a chunked one),
// passes the one authorization gate: no token or a wrong one is 401 and changes nothing.
TEST(Auth, EveryAdminRouteInEveryFramingNeedsTheToken) {
  TempDir dir;
  const std::string service = R"({"command": ["sleep", "3600"], "health": "none",
      "upstream": "127.0.0.1:)" +
                              std::to_string(free_port()) + R"(", "model_api": "ollama"})";
  SiestaProcess siesta(dir.path(),
                       with_token_file(dir, R"(, "services": {"web": )" + service +
                                                R"(}, "models": {"m:1b": {"provider": "web"}})"));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  const auto snapshot = [&] {
    auto res = siesta.client().Get("/admin/idle-status", bearer(kToken));
    auto j = nlohmann::json::parse(res ? res->body : "{}", nullptr, false);
    return j.is_object() ? nlohmann::json{j["settings"], j["services"], j["models"]}
                         : nlohmann::json();
  };
  const nlohmann::json before = snapshot();
  ASSERT_FALSE(before.is_null());

  const std::vector<std::pair<std::string, std::string>> routes = {
      {"GET", "/admin/idle-status"},
      {"GET", "/admin/settings"},
      {"POST", "/admin/settings"},
      {"GET", "/admin/services"},
      {"GET", "/admin/services/web"},
      {"POST", "/admin/services/web/idle-sleep"},
      {"POST", "/admin/services/web/wake"},
      {"POST", "/admin/services/web/sleep"},
      {"POST", "/admin/services/web/desired"},
      {"POST", "/admin/services/web/touch"},
      {"POST", "/admin/services/web/unload-models"},
      {"GET", "/admin/models"},
      {"GET", "/admin/models/m:1b"},
      {"POST", "/admin/models/m:1b/load"},
      {"POST", "/admin/models/m:1b/unload"},
      {"POST", "/admin/models/m:1b/touch"},
      {"GET", "/admin/nonexistent"},
  };
  // The body of each framing: what a client sends after the request line.
  const std::vector<std::pair<std::string, std::string>> framings = {
      {"with a body", "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
      {"without a body", "\r\n"},
      {"Content-Length: 0", "Content-Length: 0\r\n\r\n"},
      {"chunked", "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"},
  };
  std::string wrong(kToken);
  wrong.front() = 'x';
  const std::vector<std::pair<std::string, std::string>> credentials = {
      {"no token", ""},
      {"a wrong token", "Authorization: Bearer " + wrong + "\r\n"},
      {"the token as Basic", std::string("Authorization: Basic ") + kToken + "\r\n"},
  };
  for (const auto& [method, path] : routes) {
    for (const auto& [framing, tail] : framings) {
      for (const auto& [who, auth] : credentials) {
        const std::string request = method + " " + path +
                                    " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + auth +
                                    tail;
        const auto started = std::chrono::steady_clock::now();
        const std::string answer = raw_exchange(siesta.port(), request);
        EXPECT_EQ(status_code(answer), 401)
            << method << " " << path << " " << framing << " with " << who << ":\n"
            << answer;
        EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1))
            << method << " " << path << " " << framing << ": a refusal needs no wait";
      }
    }
  }
  EXPECT_EQ(snapshot(), before) << "a refused request changed something";

  // With the token every framing reaches the route (and is answered without waiting).
  for (const auto& [framing, tail] : framings) {
    const std::string request = std::string(
                                    "POST /admin/services/web/touch HTTP/1.1\r\nHost: localhost\r\n"
                                    "Connection: close\r\nAuthorization: Bearer ") +
                                kToken + "\r\n" + tail;
    // The fastest of three: the bound is about waiting for a body that is not coming (cpp-httplib
    // 0.11 waited for its 100 ms read timeout), not about speed.
    auto fastest = std::chrono::steady_clock::duration::max();
    for (int i = 0; i < 3; ++i) {
      const auto started = std::chrono::steady_clock::now();
      const std::string answer = raw_exchange(siesta.port(), request);
      EXPECT_EQ(status_code(answer), 200) << framing << ":\n" << answer;
      fastest = std::min(fastest, std::chrono::steady_clock::now() - started);
    }
    EXPECT_LT(fastest, std::chrono::milliseconds(90))
        << framing << ": the seed's `curl -X POST` must not wait for a body that is not coming";
  }
}

// Without a token, the admin API trusts whoever reaches its loopback port; a web page the
// user visits must not be one of them (found by a new user's trial): a cross-site form POST
// (CSRF) carries an Origin that is not the API's, and a page on a rebound DNS name
// (evil.example -> 127.0.0.1) sends that name as Host. Both are refused before any route runs,
// and nothing changes; curl, which sends neither, and the admin page's own same-origin calls pass.
TEST(Auth, WithoutATokenCrossSiteAndRebindingRequestsAreRefused) {
  TempDir dir;
  SiestaProcess siesta(dir.path(), R"({"idle_timeout_minutes": 60})");
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();
  const std::string self = "http://127.0.0.1:" + std::to_string(siesta.port());
  const std::string form = R"({"idleTimeout": 5})";

  auto res = cli.Post("/admin/settings", {{"Origin", "http://evil.example"}}, form, "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403) << res->body;
  auto body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "forbidden");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("http://evil.example"),
            std::string::npos)
      << res->body;
  EXPECT_EQ(cli.Post("/admin/settings", {{"Origin", "null"}}, form, "text/plain")->status, 403);
  // Another port on the same host is another origin.
  EXPECT_EQ(
      cli.Post("/admin/settings", {{"Origin", "http://127.0.0.1:1"}}, form, "application/json")
          ->status,
      403);
  // DNS rebinding: the page's name arrives as Host, on reads too.
  EXPECT_EQ(
      cli.Get("/admin/idle-status", {{"Host", "evil.example:" + std::to_string(siesta.port())}})
          ->status,
      403);
  EXPECT_EQ(cli.Get("/metrics", {{"Host", "evil.example"}})->status, 403);
  // Nothing changed.
  EXPECT_EQ(get_json(siesta, "/admin/settings")["idle_timeout_minutes"], 60);

  // The API's own origin (the admin page), loopback names, and clients that send no Origin.
  res = cli.Post("/admin/settings", {{"Origin", self}}, form, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(cli.Get("/admin/idle-status", {{"Host", "localhost:" + std::to_string(siesta.port())}})
                ->status,
            200);
  EXPECT_EQ(cli.Get("/admin/idle-status", {{"Host", "[::1]"}})->status, 200);
  EXPECT_EQ(cli.Get("/healthz")->status, 200);
  EXPECT_EQ(get_json(siesta, "/admin/settings")["idle_timeout_minutes"], 5);
}

// With a token the token is the guard (a page cannot send it, nor pass a CORS preflight), and
// siesta may sit behind a proxy that keeps a public Host or Origin: neither is checked.
TEST(Auth, WithATokenHostAndOriginAreNotChecked) {
  TempDir dir;
  SiestaProcess siesta(dir.path(), with_token_file(dir));
  ASSERT_TRUE(siesta.start()) << siesta.log();
  auto cli = siesta.client();
  httplib::Headers h = bearer(kToken);
  h.emplace("Host", "siesta.example.org");
  h.emplace("Origin", "https://siesta.example.org");
  auto res = cli.Get("/admin/idle-status", h);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

}  // namespace
}  // namespace siesta::testing
