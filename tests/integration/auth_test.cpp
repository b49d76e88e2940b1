// The admin token: who may use /admin (and /metrics with protect_metrics), and the refusal to
// expose an unauthenticated admin API beyond loopback.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

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

TEST(Auth, TheEnvironmentTokenWinsOverTheFile) {
  TempDir dir;
  ::setenv("SIESTA_ADMIN_TOKEN", "another-token-abcdefghij", 1);
  SiestaProcess siesta(dir.path(), with_token_file(dir));
  const bool started = siesta.start();
  ::unsetenv("SIESTA_ADMIN_TOKEN");
  ASSERT_TRUE(started) << siesta.log();
  auto cli = siesta.client();
  EXPECT_EQ(cli.Get("/admin/settings", bearer(kToken))->status, 401);
  EXPECT_EQ(cli.Get("/admin/settings", bearer("another-token-abcdefghij"))->status, 200);
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

}  // namespace
}  // namespace siesta::testing
