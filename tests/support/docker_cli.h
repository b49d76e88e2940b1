// The docker CLI as the tests' independent witness of what an engine really did.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "siesta_process.h"

namespace siesta::testing {

inline std::string docker_cli() {
  return fs::exists("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
}

// The engine named by environment variable `var` (a DOCKER_HOST value), else `fallback`.
inline std::string engine_from_env(const char* var, const char* fallback) {
  const char* host = std::getenv(var);
  return host != nullptr && *host != '\0' ? host : fallback;
}

// Runs the docker CLI against `host`; returns the exit code and the trimmed output.
inline std::pair<int, std::string> docker_at(const std::string& host,
                                             std::vector<std::string> args) {
  static std::atomic<int> n{0};
  const fs::path out =
      fs::temp_directory_path() / ("siesta-docker-cli-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(n.fetch_add(1)) + ".out");
  std::vector<std::string> argv = {docker_cli(), "-H", host};
  argv.insert(argv.end(), args.begin(), args.end());
  auto [rc, text] = run_command(argv, out);
  fs::remove(out);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return {rc, text};
}

}  // namespace siesta::testing
