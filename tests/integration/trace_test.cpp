// GET /admin/trace end to end: the real binary, a real service behind its proxy port, requests
// from a real client, the trace fetched with curl behind the admin token, and `siesta simulate`
// run on it (docs/policies.md#siestas-own-trace).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;

TEST(Trace, ProxiedRequestsComeBackAsATraceTheSimulatorReplays) {
  TempDir dir;
  const std::string token = "trace-test-token-0123456789";
  std::ofstream(dir / "token") << token << "\n";
  const int port = free_port();
  const int listen = free_port();
  const json config = {
      {"admin_token_file", (dir / "token").string()},
      {"services",
       {{"web",
         {{"command", json::array({SIESTA_TESTSERVER, "--port", std::to_string(port)})},
          {"upstream", "127.0.0.1:" + std::to_string(port)},
          {"health", "/health"},
          {"listen", "127.0.0.1:" + std::to_string(listen)}}}}}};
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();

  // Five requests through the proxy: the first wakes web (a cold start), the others find it up.
  httplib::Client proxy("127.0.0.1", listen);
  proxy.set_read_timeout(std::chrono::seconds(60));
  for (int i = 0; i < 5; ++i) {
    auto res = proxy.Get("/echo?i=" + std::to_string(i));
    ASSERT_TRUE(res) << siesta.log();
    ASSERT_EQ(res->status, 200) << res->body;
  }

  const std::string url = "http://127.0.0.1:" + std::to_string(siesta.port()) + "/admin/trace";
  // Behind the admin token like every admin route.
  auto [code, out] =
      run_command({"curl", "-s", "-o", (dir / "denied.txt").string(), "-w", "%{http_code}", url},
                  dir / "curl.txt");
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(out, "401");

  const std::string csv = (dir / "t.csv").string();
  std::tie(code, out) =
      run_command({"curl", "-s", "-f", "-H", "Authorization: Bearer " + token, "-o", csv, url},
                  dir / "curl.txt");
  ASSERT_EQ(code, 0) << out;
  const std::string text = slurp(csv);
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line.rfind("# siesta request trace: the last 5 uses", 0), 0u) << text;
  std::getline(lines, line);
  EXPECT_EQ(line, "time,service,model,duration") << text;
  int rows = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++rows;
    EXPECT_NE(line.find(",web,,"), std::string::npos) << line;
  }
  EXPECT_EQ(rows, 5) << text;

  std::tie(code, out) =
      run_command({SIESTA_BINARY, "simulate", "--trace", csv, "--policy", "fixed:60m", "--json"},
                  dir / "sim.txt");
  ASSERT_EQ(code, 0) << out;
  const json sim = json::parse(out, nullptr, false);
  ASSERT_TRUE(sim.is_object()) << out;
  const json& fixed = sim["policies"][0];
  EXPECT_EQ(fixed["requests"], 5) << out;
  // All within seconds: one cold start, the first request's.
  EXPECT_EQ(fixed["cold_starts"], 1) << out;
  EXPECT_EQ(fixed["services"]["web"]["requests"], 5) << out;
}

}  // namespace
}  // namespace siesta::testing
