#include "siesta/backends/process_backend.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "siesta/core/spawn.h"
#include "siesta/probe/health_probe.h"

namespace siesta {

namespace {

using std::chrono::milliseconds;

// Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot. With the
// pid it identifies a process for good: a reused pid has a different start time.
long long proc_start_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return -1;
  auto close_paren = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close_paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return -1;
  }
  try {
    return std::stoll(field);
  } catch (...) {
    return -1;
  }
}

char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return '\0';
  auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= text.size()) return '\0';
  return text[close_paren + 2];
}

// The process's argv as the kernel shows it (/proc/<pid>/cmdline); empty when unreadable.
std::vector<std::string> proc_cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  std::string arg;
  while (std::getline(in, arg, '\0')) argv.push_back(arg);
  return argv;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& a : argv) text += (text.empty() ? "" : " ") + a;
  return text;
}

bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0; }

std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

// Logs the child's output line by line. Owns the read end of the pipe.
void pump_output(int fd, std::string service) {
  std::string pending;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      spdlog::info("[{}] {}", service, pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
    if (pending.size() > 16384) {  // a very long line is logged in pieces
      spdlog::info("[{}] {}", service, pending);
      pending.clear();
    }
  }
  if (!pending.empty()) spdlog::info("[{}] {}", service, pending);
  ::close(fd);
}

}  // namespace

struct ProcessBackend::Child {
  pid_t pid = -1;
  bool adopted = false;  // started by an earlier siesta: not our child, cannot be waited for
  long long start_ticks = -1;
  std::mutex mu;
  std::condition_variable cv;
  bool exited = false;  // guarded by mu
  int status = 0;       // guarded by mu
  // Set by the waiter, before `exited`, when the process exited on its own while another
  // process answers the service's upstream (what, for Inspection::start_failure). Guarded by mu.
  std::string taken_upstream;
  std::atomic<bool> stop_requested{false};  // siesta ends it: its exit is no failure
  std::thread waiter;

  bool alive() {
    if (adopted) {
      char state = proc_state(pid);
      return state != '\0' && state != 'Z' && proc_start_ticks(pid) == start_ticks;
    }
    std::lock_guard lock(mu);
    return !exited;
  }

  // Waits up to `timeout` for the process to end; true if it has.
  // An adopted process is not our child: it is polled, paced by `clock`.
  bool wait_exit(milliseconds timeout, const Clock& clock) {
    if (adopted) {
      const MonoTime deadline = clock.mono_now() + timeout;
      while (alive()) {
        if (clock.mono_now() >= deadline) return false;
        clock.sleep_for(milliseconds(10));
      }
      return true;
    }
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return exited; });
  }

  std::string exit_detail() {
    if (adopted) return "exited";
    std::lock_guard lock(mu);
    return exit_text(status);
  }
  std::string upstream_note() {
    std::lock_guard lock(mu);
    return taken_upstream;
  }
};

ProcessBackend::ProcessBackend(const Clock& clock) : clock_(clock) {}

ProcessBackend::~ProcessBackend() {
  set_exit_listener(nullptr);
  // Children are left as they are (on_exit decides); the waiters are only detached from them.
  std::lock_guard lock(mu_);
  for (auto& [name, child] : children_) {
    if (child->waiter.joinable()) child->waiter.detach();
  }
}

void ProcessBackend::set_exit_listener(ExitListener listener) {
  std::lock_guard lock(listener_->mu);
  listener_->call = std::move(listener);
}

std::optional<double> ProcessBackend::memory_bytes(const ServiceSpec& spec) {
  const pid_t pid = pid_of(spec.name);
  if (pid <= 0) return std::nullopt;
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  long long size = 0;
  long long resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

std::shared_ptr<ProcessBackend::Child> ProcessBackend::find(const std::string& service) const {
  std::lock_guard lock(mu_);
  auto it = children_.find(service);
  return it == children_.end() ? nullptr : it->second;
}

pid_t ProcessBackend::pid_of(const std::string& service) const {
  auto child = find(service);
  return child && child->alive() ? child->pid : -1;
}

Status ProcessBackend::start(const ServiceSpec& spec) {
  if (auto existing = find(spec.name); existing && existing->alive()) return Status::ok();

  // Its output, stdout and stderr, goes to siesta's log (pump_output).
  const SpawnedChild spawned = spawn_in_own_group(spec.command, StderrTo::kOutput);
  if (spawned.pid < 0) {
    return {ErrorCode::kFailed,
            "cannot run " + spec.command[0] + ": " + std::strerror(spawned.error)};
  }
  const pid_t pid = spawned.pid;
  std::thread(pump_output, spawned.output, spec.name).detach();
  auto child = std::make_shared<Child>();
  child->pid = pid;
  child->start_ticks = proc_start_ticks(pid);
  child->waiter = std::thread([child, listener = listener_, name = spec.name,
                               host = spec.upstream_host, port = spec.upstream_port] {
    int status = 0;
    while (::waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
    }
    // Ended on its own, its whole group gone, and its upstream still answers: another process
    // holds the port (an engine started by hand on it), so the service's own could not bind
    // it. Only that is known here: whether the other one answered a readiness check or
    // requests depends on when the exit came (before its readiness: nothing did; the caller
    // says).
    std::string note;
    if (!child->stop_requested.load() && port > 0 && !group_alive(child->pid) &&
        tcp_connects(host, port, milliseconds(500))) {
      note = "process " + std::to_string(child->pid) + " " + exit_text(status) +
             " while another process answers its upstream " + host + ":" + std::to_string(port) +
             ": the port is taken (a server started by hand on it?), so the service's own "
             "process could not listen on it";
    }
    {
      std::lock_guard lock(child->mu);
      child->taken_upstream = std::move(note);
      child->exited = true;
      child->status = status;
    }
    child->cv.notify_all();
    spdlog::info("Service {}: process {} {}", name, child->pid, exit_text(status));
    if (!child->stop_requested.load()) {
      std::lock_guard lock(listener->mu);
      if (listener->call) listener->call(name);
    }
  });
  spdlog::info("Service {}: started process {} ({})", spec.name, pid, spec.command[0]);

  std::shared_ptr<Child> previous;
  {
    std::lock_guard lock(mu_);
    previous = std::exchange(children_[spec.name], child);
  }
  if (previous && previous->waiter.joinable()) previous->waiter.join();
  return Status::ok();
}

Result<Readiness> ProcessBackend::check_ready(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child) return Status{ErrorCode::kFailed, "no process was started"};
  if (!child->alive()) {
    const std::string taken = child->upstream_note();
    return Status{ErrorCode::kFailed,
                  taken.empty() ? "process " + child->exit_detail() + " before it was ready"
                                : taken + " (it exited before it was ready)"};
  }
  return probe_health(spec, milliseconds(500)) ? Readiness::kReady : Readiness::kNotYet;
}

Status ProcessBackend::stop(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child) return Status::ok();
  const pid_t pgid = child->pid;
  const auto grace = std::chrono::duration_cast<milliseconds>(Seconds(spec.stop_timeout_seconds));
  const MonoTime t0 = clock_.mono_now();

  child->stop_requested.store(true);
  if (child->alive()) {
    ::kill(-pgid, SIGTERM);
    ::kill(-pgid, SIGCONT);  // a paused (SIGSTOPped) group gets the SIGTERM only once continued
    if (!child->wait_exit(grace, clock_)) {
      spdlog::warn("Service {}: process {} still running {:g} s after SIGTERM; sending SIGKILL",
                   spec.name, pgid, spec.stop_timeout_seconds);
      ::kill(-pgid, SIGKILL);
      if (!child->wait_exit(milliseconds(5000), clock_)) {
        return {ErrorCode::kTimeout, "process " + std::to_string(pgid) + " survived SIGKILL"};
      }
    }
  }
  // The leader is gone; what is left of its group gets the rest of the grace period.
  while (group_alive(pgid) && clock_.mono_now() - t0 < grace) {
    clock_.sleep_for(milliseconds(10));
  }
  if (group_alive(pgid)) ::kill(-pgid, SIGKILL);

  std::shared_ptr<Child> removed;
  {
    std::lock_guard lock(mu_);
    auto it = children_.find(spec.name);
    if (it != children_.end() && it->second == child) {
      removed = it->second;
      children_.erase(it);
    }
  }
  if (removed && removed->waiter.joinable()) removed->waiter.join();
  return Status::ok();
}

Status ProcessBackend::pause(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child || !child->alive()) return {ErrorCode::kFailed, "the process is not running"};
  if (::kill(-child->pid, SIGSTOP) != 0) {
    return {ErrorCode::kFailed, std::string("SIGSTOP: ") + std::strerror(errno)};
  }
  // The signal is delivered asynchronously: return once the leader is seen stopped, so that
  // "paused" means it uses no CPU from here on.
  const MonoTime deadline = clock_.mono_now() + milliseconds(1000);
  while (proc_state(child->pid) != 'T' && child->alive()) {
    if (clock_.mono_now() >= deadline) {
      return {ErrorCode::kTimeout, "process " + std::to_string(child->pid) + " did not stop"};
    }
    clock_.sleep_for(milliseconds(1));
  }
  return child->alive() ? Status::ok() : Status{ErrorCode::kFailed, "the process exited"};
}

Status ProcessBackend::resume(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child || !child->alive()) return {ErrorCode::kFailed, "the process is not running"};
  if (::kill(-child->pid, SIGCONT) != 0) {
    return {ErrorCode::kFailed, std::string("SIGCONT: ") + std::strerror(errno)};
  }
  return Status::ok();
}

Result<Inspection> ProcessBackend::inspect(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child) return Inspection{false, ""};
  if (child->alive()) {
    const bool paused = proc_state(child->pid) == 'T';
    return Inspection{true, "pid " + std::to_string(child->pid) + (paused ? " (stopped)" : ""),
                      paused};
  }
  return Inspection{false, "process " + std::to_string(child->pid) + " " + child->exit_detail(),
                    false, child->upstream_note()};
}

nlohmann::json ProcessBackend::save_handle(const ServiceSpec& spec) {
  auto child = find(spec.name);
  if (!child || !child->alive()) return nullptr;
  // The command line the kernel shows for it now, and the command it was started with: a
  // command that execs another (`env VAR=1 vllm serve`, a script ending in exec, a Python entry
  // point) shows another argv than the one started, and is recognised by this one.
  return {{"pid", child->pid},
          {"start_ticks", child->start_ticks},
          {"command", spec.command},
          {"cmdline", proc_cmdline(child->pid)}};
}

void ProcessBackend::restore_handle(const ServiceSpec& spec, const nlohmann::json& handle) {
  if (!handle.is_object() || !handle.value("pid", nlohmann::json()).is_number_integer() ||
      !handle.value("start_ticks", nlohmann::json()).is_number_integer()) {
    return;
  }
  auto child = std::make_shared<Child>();
  child->pid = handle["pid"].get<pid_t>();
  child->start_ticks = handle["start_ticks"].get<long long>();
  child->adopted = true;
  if (child->pid <= 1 || !child->alive()) return;  // gone, or the pid now belongs to another
  // The pid and start time come from a file: adopt only a process that still runs the
  // service's own command, so that a sleep never signals something else. It runs it when its
  // argv is the command, or (the command exec'd another program) the argv saved with the handle
  // while that command was the service's.
  const std::vector<std::string> argv = proc_cmdline(child->pid);
  const auto saved = [&](const char* key) {
    std::vector<std::string> out;
    const auto it = handle.find(key);
    if (it == handle.end() || !it->is_array()) return out;
    for (const auto& a : *it) {
      if (!a.is_string()) return std::vector<std::string>{};
      out.push_back(a.get<std::string>());
    }
    return out;
  };
  const std::vector<std::string> seen = saved("cmdline");
  const bool same_command = saved("command") == spec.command && !seen.empty() && argv == seen;
  if (argv != spec.command && !same_command) {
    spdlog::warn(
        "Service {}: not adopting process {} from the state file: it runs \"{}\", not the "
        "service's command \"{}\"",
        spec.name, child->pid, joined(argv), joined(spec.command));
    return;
  }
  spdlog::info("Service {}: adopted process {} left running by an earlier siesta", spec.name,
               child->pid);
  std::lock_guard lock(mu_);
  children_[spec.name] = child;
}

}  // namespace siesta
