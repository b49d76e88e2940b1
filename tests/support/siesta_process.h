// Runs the real siesta binary for integration tests: writes its config to a fresh directory,
// starts it with its log captured to a file, waits until the admin API listens, and stops it.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace siesta::testing {

namespace fs = std::filesystem;

// A port that was free a moment ago (bound to port 0, then closed): a race tests accept.
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    // Outside a test (SetUpTestSuite) the suite's name is used.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const auto* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    std::string name = info != nullptr ? std::string(info->test_suite_name()) + "-" + info->name()
                       : suite != nullptr ? suite->name()
                                          : "suite";
    path_ = fs::temp_directory_path() / ("siesta-it-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  auto p = text.rfind(')');
  return p != std::string::npos && p + 2 < text.size() && text[p + 2] != 'Z';
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// Starts argv (searched in PATH) with stdout and stderr going to `out`; -1 on failure.
inline pid_t spawn_with_output(std::vector<std::string> argv, const fs::path& out) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// A process a test started (spawn_with_output): ended with SIGTERM and reaped with the test.
class Reaped {
 public:
  explicit Reaped(pid_t pid) : pid_(pid) {}
  ~Reaped() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  Reaped(const Reaped&) = delete;
  Reaped& operator=(const Reaped&) = delete;

 private:
  pid_t pid_;
};

class SiestaProcess {
 public:
  SiestaProcess(const fs::path& dir, std::string config, std::vector<std::string> args = {})
      : dir_(dir), args_(std::move(args)), with_config_(!config.empty()) {
    if (with_config_) std::ofstream(dir_ / "siesta.json") << config;
  }
  // Stops gracefully, so that siesta stops the processes it manages (on_exit "stop").
  ~SiestaProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!eventually([&] { return !running(); }, std::chrono::seconds(15))) stop(SIGKILL);
  }

  // Starts siesta and waits for "Admin API listening"; false if it exited or never listened.
  bool start() {
    log_path_ = dir_ / ("siesta-" + std::to_string(++runs_) + ".log");
    // $SIESTA_TEST_BINARY runs the tests against another build (e.g. to show a regression test
    // failing on the code before its fix).
    const char* other = std::getenv("SIESTA_TEST_BINARY");
    std::vector<std::string> argv = {other != nullptr && *other != '\0' ? other : SIESTA_BINARY};
    if (with_config_) {
      argv.push_back("--config");
      argv.push_back((dir_ / "siesta.json").string());
    }
    argv.insert(argv.end(), args_.begin(), args_.end());
    // Tests run in parallel: each siesta listens on a free port unless the test says otherwise.
    if (std::find(args_.begin(), args_.end(), "--listen") == args_.end()) {
      argv.push_back("--listen");
      argv.push_back("127.0.0.1:0");
    }
    pid_ = spawn_with_output(argv, log_path_);
    if (pid_ < 0) return false;
    static const std::regex kListening(R"(Admin API listening on http://(\S+):(\d+) )");
    return eventually([&] {
             std::smatch m;
             std::string text = log();
             if (std::regex_search(text, m, kListening)) {
               port_ = std::stoi(m[2].str());
               return true;
             }
             return !running();
           }) &&
           port_ > 0 && running();
  }

  // Sends `sig` and returns the exit code (128+n when killed by signal n).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
      return false;
    }
    return true;
  }

  std::string log() const { return slurp(log_path_); }
  bool wait_log(const std::string& needle,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return eventually([&] { return log().find(needle) != std::string::npos; }, timeout);
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(std::chrono::seconds(30));
    return c;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  int exit_code() const { return exit_code_; }

 private:
  fs::path dir_;
  std::vector<std::string> args_;
  bool with_config_;
  fs::path log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  int runs_ = 0;
  int exit_code_ = -1;
};

// GET `path` from siesta's admin port as JSON: null when there is no answer. An answer that is not
// JSON fails the test (the admin API answers JSON, errors included) and is null too, so that a
// caller's `[...]` does not throw (CI's stop 31: one test ended in an abort, its cause unknown).
inline nlohmann::json get_json(const SiestaProcess& s, const std::string& path) {
  auto res = s.client().Get(path);
  if (!res) return nlohmann::json();
  nlohmann::json doc = nlohmann::json::parse(res->body, nullptr, false);
  if (doc.is_discarded()) {
    ADD_FAILURE() << "GET " << path << " answered " << res->status
                  << " with no JSON: " << res->body.substr(0, 2000);
    return nlohmann::json();
  }
  return doc;
}

// One service's entry in /admin/idle-status.
inline nlohmann::json status_of(const SiestaProcess& s, const std::string& service) {
  return get_json(s, "/admin/idle-status")["services"][service];
}

// The service's "actual" state in idle-status ("" when there is none).
inline std::string actual(const SiestaProcess& s, const std::string& service) {
  nlohmann::json st = status_of(s, service)["actual"];
  return st.is_string() ? st.get<std::string>() : "";
}

// The value of one sample (name and labels as exposed) in siesta's /metrics, or -1.
inline double metric(const SiestaProcess& s, const std::string& sample) {
  auto res = s.client().Get("/metrics");
  if (!res) return -1;
  std::istringstream lines(res->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return -1;
}

// Runs a command to completion; returns its exit code and output (stdout + stderr).
inline std::pair<int, std::string> run_command(std::vector<std::string> argv, const fs::path& out) {
  pid_t pid = spawn_with_output(argv, out);
  if (pid < 0) return {-1, "spawn failed"};
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out)};
}

}  // namespace siesta::testing
