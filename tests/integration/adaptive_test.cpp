// The adaptive policy end to end (docs/policies.md): the real binary, a real process and the
// real clock. A service whose history (the state file's idle gaps) says it is used every three
// minutes is started before its next predicted use without any request, and that use then
// finds it up: no cold start.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "siesta_process.h"

namespace siesta::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(Adaptive, APeriodicServiceIsPreWarmedBeforeItsNextUseWithoutARequest) {
  TempDir dir;
  const int port = free_port();
  const int listen = free_port();
  const std::string state_file = (dir / "state.json").string();
  // Twenty gaps of three minutes; the last use 2 min 20 s ago: the pre-warm point (the 5th
  // percentile, -10 %: 162 s, less the 10 s start) is ~12 s away.
  const double last_used = unix_now() - 140;
  std::ofstream(state_file) << json{{"format", "siesta-state/1"},
                                    {"services",
                                     {{"job",
                                       {{"last_used", last_used},
                                        {"idle_gaps", std::vector<double>(20, 180.0)}}}}}}
                                   .dump();
  const json cmd = json::array({SIESTA_TESTSERVER, "--port", std::to_string(port)});
  const json config = {{"state_file", state_file},
                       {"services",
                        {{"job",
                          {{"command", cmd},
                           {"upstream", "127.0.0.1:" + std::to_string(port)},
                           {"listen", "127.0.0.1:" + std::to_string(listen)},
                           {"health", "/health"},
                           {"policy", "adaptive"},
                           {"cold_start_seconds", 10}}}}}};
  SiestaProcess siesta(dir.path(), config.dump());
  ASSERT_TRUE(siesta.start()) << siesta.log();
  json st = status_of(siesta, "job");
  EXPECT_EQ(st["policy"], "adaptive") << st.dump();
  ASSERT_TRUE(st["prewarm_at"].is_number()) << st.dump();
  const double prewarm_at = st["prewarm_at"].get<double>();
  EXPECT_NEAR(prewarm_at, last_used + 152, 1) << st.dump();
  ASSERT_GT(prewarm_at, unix_now()) << "the machine was too slow: the point has passed";
  EXPECT_EQ(st["actual"], "stopped") << st.dump();

  // Started at the point, by no request.
  ASSERT_TRUE(eventually([&] { return actual(siesta, "job") == "running"; }, seconds(40)))
      << siesta.log();
  EXPECT_GE(unix_now(), prewarm_at - 0.5);
  EXPECT_TRUE(siesta.wait_log("Waking service job (prewarm)")) << siesta.log();
  st = status_of(siesta, "job");
  EXPECT_NEAR(st["last_used"].get<double>(), last_used, 1) << st.dump();  // no use yet (whole s)
  EXPECT_EQ(st["in_flight"], 0) << st.dump();
  // The predicted use, through siesta's port, finds it up: no wake.
  httplib::Client client("127.0.0.1", listen);
  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_FALSE(res->has_header("X-Siesta-Wake")) << res->get_header_value("X-Siesta-Wake");
  EXPECT_TRUE(eventually([&] {
    return status_of(siesta, "job")["last_used"].get<double>() > last_used + 60;
  })) << status_of(siesta, "job").dump();
}

}  // namespace
}  // namespace siesta::testing
