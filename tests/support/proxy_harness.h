// The proxy in-process, for the unit tests of its parts (tests/unit/proxy_*_test.cpp): a real
// Proxy on loopback ports in front of a real upstream socket (RecordingUpstream), with a
// recording fake of the runtime's side (FakeProxyControl), a FakeClock and a recorder of the
// proxy's metrics. No siesta binary.
#pragma once

#include <httplib.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fakes.h"
#include "siesta/bootstrap/bootstrap.h"
#include "siesta/config/config.h"
#include "siesta/core/proxy_control.h"
#include "siesta/proxy/proxy.h"
#include "upstream_socket.h"

namespace siesta::testing {

// The runtime as the proxy sees it: counts every call, records the in-flight and model calls in
// order (`calls`), answers begin_request with `state`, and wake() with `wake_result` (holding it
// while `hold_wake`, so that requests pile up behind it).
class FakeProxyControl final : public ProxyControl {
 public:
  Status wake(const std::string& service, Reason reason, WakeReport* report) override {
    std::unique_lock lock(mu_);
    ++wakes;
    if (report != nullptr) *report = {};
    // A wake that finds the service up starts nothing (as the Controller's): a request that
    // joins the gate just after a wake ended makes one of these.
    if (state == ServiceState::kRunning) return Status::ok();
    ++starts;
    if (report != nullptr) report->from = "stop";  // it took a start
    if (report != nullptr && told) *report = *told;
    wake_reasons.push_back(service + " " + to_string(reason));
    cv_.notify_all();
    cv_.wait(lock, [this] { return !hold_wake; });
    if (on_wake) on_wake();
    if (wake_result) state = ServiceState::kRunning;
    return wake_result;
  }
  Result<ServiceState> begin_request(const std::string& service, bool /*use*/ = true) override {
    std::lock_guard lock(mu_);
    if (service != known_service)
      return Status{ErrorCode::kNotFound, "unknown service: " + service};
    ++begun;
    calls.push_back("begin_request " + service);
    cv_.notify_all();
    return state;
  }
  void end_request(const std::string& service, bool /*use*/ = true) override {
    const std::string call = "end_request " + service;
    run_on_end(call);
    std::lock_guard lock(mu_);
    ++ended;
    calls.push_back(call);
    cv_.notify_all();
  }
  void count_upgraded(const std::string& /*service*/, bool open) override {
    std::lock_guard lock(mu_);
    upgraded += open ? 1 : -1;
  }
  std::optional<std::uint64_t> begin_model_request(const ModelKey& model) override {
    std::lock_guard lock(mu_);
    calls.push_back("begin_model " + model.name + "@" + model.service);
    return std::nullopt;
  }
  bool model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                      std::optional<std::uint64_t> /*ticket*/) override {
    std::lock_guard lock(mu_);
    calls.push_back("model_accepted " + model.name + "@" + model.service + " " +
                    std::to_string(static_cast<long long>(keep_alive.seconds)));
    return false;
  }
  void end_model_request(const ModelKey& model, bool accepted) override {
    const std::string call = "end_model " + model.name + "@" + model.service +
                             (accepted ? " accepted" : " not accepted");
    run_on_end(call);
    std::lock_guard lock(mu_);
    calls.push_back(call);
  }
  Status model_request_gives_way(const ModelKey& model) override {
    std::lock_guard lock(mu_);
    gives_way_asked.push_back(model.name + "@" + model.service);
    return gives_way;
  }
  KeepAlivePolicy keep_alive_policy(const ModelKey& /*model*/) override { return {300, 0, 3600}; }
  ModelProvider* provider_of(const std::string& /*service*/) override { return nullptr; }

  // Sets fields while the proxy runs: under the lock its threads read them with (a plain write
  // from the test's thread races with those reads, as ThreadSanitizer says).
  void set(const std::function<void(FakeProxyControl&)>& change) {
    std::lock_guard lock(mu_);
    change(*this);
  }
  // Lets a held wake go on.
  void release_wake() {
    std::lock_guard lock(mu_);
    hold_wake = false;
    cv_.notify_all();
  }
  // Waits for another thread's call to make `done` true (read under the lock); false after 5 s.
  bool wait_until(const std::function<bool()>& done) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(5), done);
  }
  // Reads the counters under the lock.
  template <typename T>
  T read(const T& field) {
    std::lock_guard lock(mu_);
    return field;
  }

  // Guarded by mu_: set them with set() once the proxy runs.
  std::string known_service = "web";
  ServiceState state = ServiceState::kRunning;
  Status wake_result = Status::ok();
  bool hold_wake = false;
  std::function<void()> on_wake;    // runs inside wake(), e.g. to advance the fake clock
  std::optional<WakeReport> told;   // what a wake that starts reports (else: a start, untimed)
  Status gives_way = Status::ok();  // what model_request_gives_way answers
  std::vector<std::string> gives_way_asked;  // "llama3@web": the models it was asked for
  // Runs inside end_request() and end_model_request() (on the proxy's I/O thread, before the
  // call is recorded), with the call as `calls` will have it.
  std::function<void(const std::string& call)> on_end;
  int begun = 0;
  int ended = 0;
  int wakes = 0;   // calls
  int starts = 0;  // calls that found the service not running
  int upgraded = 0;
  std::vector<std::string> wake_reasons;
  // "begin_request web", "begin_model llama3@web", "model_accepted llama3@web 300",
  // "end_model llama3@web accepted", "end_request web": in the order the proxy called them.
  std::vector<std::string> calls;

 private:
  void run_on_end(const std::string& call) {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(mu_);
      hook = on_end;
    }
    if (hook) hook(call);
  }

  std::mutex mu_;
  std::condition_variable cv_;
};

// The proxy's metrics calls: each request's service, status and duration.
class ProxyRecorder final : public Recorder {
 public:
  struct Request {
    std::string service;
    int status;
    double seconds;
  };
  void service_slept(const std::string&, Reason) override {}
  void service_woke(const std::string&, Reason, Seconds) override {}
  void service_failed(const std::string&, ServiceOperation) override {}
  void model_unloaded(const ModelKey&, Reason) override {}
  void model_unload_failed(const ModelKey&) override {}
  void monitor_ran(WallTime, Seconds) override {}
  void proxy_request(const std::string& service, int status, Seconds duration) override {
    std::lock_guard lock(mu_);
    requests_.push_back({service, status, duration.count()});
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::vector<Request> requests_;
};

// Waits until `done` holds, for what another thread changes without a signal (the upstream's
// connections, the upgraded count); false after 5 s.
inline bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Service "web" on a loopback port, forwarding to `upstream_port`. `fields` adds keys to the
// service's config.
struct ProxyHarness {
  explicit ProxyHarness(int upstream_port, const std::string& fields = "",
                        ProxyOptions options = ProxyOptions{})
      : config(parse_config(R"({"services": {"web": {"command": ["web"], "health": "none", )"
                            R"("upstream": "127.0.0.1:)" +
                                std::to_string(upstream_port) + R"(", "listen": "127.0.0.1:0")" +
                                fields + "}}}",
                            "test.json")),
        registry(make_registry(config, clock.wall_now())) {
    options.threads = 1;
    proxy = std::make_unique<Proxy>(*registry, control, recorder, clock, std::move(options));
    std::vector<ServiceSpec> specs;
    for (const auto& s : config.services) specs.push_back(s.spec);
    if (Status st = proxy->bind(specs); !st) ADD_FAILURE() << st.message();
    proxy->start();
    port = proxy->port_of("web");
  }
  ~ProxyHarness() { proxy->stop(); }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(5, 0);
    return c;
  }

  FakeClock clock;
  FakeProxyControl control;
  ProxyRecorder recorder;
  Config config;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<Proxy> proxy;  // last: stopped and destroyed before what it uses
  int port = 0;
};

}  // namespace siesta::testing
