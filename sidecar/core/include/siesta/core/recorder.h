// Recorder: the events siesta counts (sleeps, wakes, unloads, failures). The metrics module
// implements it; NullRecorder is the default. Implementations are thread-safe.
#pragma once

#include <string>

#include "siesta/core/clock.h"
#include "siesta/core/model.h"
#include "siesta/core/reason.h"
#include "siesta/core/service.h"

namespace siesta {

class Recorder {
 public:
  virtual ~Recorder() = default;
  // reason: kIdle (timer), kManual (admin API), kMakeRoom (GPU budget)
  virtual void service_slept(const std::string& service, Reason reason) = 0;
  // reason: kManual, kDesired, kRequest, kSchedule, kPrewarm; duration: from start to ready
  virtual void service_woke(const std::string& service, Reason reason, Seconds duration) = 0;
  virtual void service_failed(const std::string& service, ServiceOperation operation) = 0;
  // reason: kExpired, kForced, kServiceSleep, kExternal, kSleepTier, kMakeRoom
  virtual void model_unloaded(const ModelKey& model, Reason reason) = 0;
  virtual void model_unload_failed(const ModelKey& model) = 0;
  virtual void monitor_ran(WallTime at, Seconds took) = 0;
  // Graduated sleep: the service entered its tier `tier` ("pause", "unload_models", "stop")
  // because it was idle.
  virtual void service_tier_entered(const std::string& /*service*/, const std::string& /*tier*/) {}
  // A use woke the service from the tier it was in ("stop": a cold start), taking `duration`
  // (0 for unload_models: its models reload on their next request).
  virtual void service_woke_from_tier(const std::string& /*service*/, const std::string& /*tier*/,
                                      Seconds /*duration*/) {}
  // A service joined after start-up (found by its container labels).
  virtual void service_added(const std::string& /*service*/) {}
  // An HTTP request through the proxy ended with `status` (0: no response was sent) after
  // `duration`, streams included.
  virtual void proxy_request(const std::string& /*service*/, int /*status*/, Seconds /*duration*/) {
  }
  // A model was loaded (kRequest: by a proxied request, kManual: by the admin API),
  // taking `duration` (the cold-start price of unloading it).
  virtual void model_loaded(const ModelKey& /*model*/, Reason /*reason*/, Seconds /*duration*/) {}
  // Putting `service` to sleep freed `bytes` of memory (its resident set just before the stop).
  virtual void service_memory_freed(const std::string& /*service*/, double /*bytes*/) {}
  // Unloading `model` freed `bytes` of VRAM (as its provider last reported).
  virtual void model_memory_freed(const ModelKey& /*model*/, double /*bytes*/) {}
  // A model joined after start-up (seen in requests or in the provider's list).
  virtual void model_added(const ModelKey& /*model*/) {}
  // A request (HTTP) or connection (TCP) through the proxy that was a use of the service ended:
  // it arrived at `arrived`, named `model` (empty: none) and ran `duration` once the service was
  // up (a wake's wait not included). GET /admin/trace keeps the last ones (EventLog).
  virtual void proxy_use(const std::string& /*service*/, const std::string& /*model*/,
                         WallTime /*arrived*/, Seconds /*duration*/) {}
  // A TCP connection through the proxy ended.
  virtual void proxy_connection(const std::string& /*service*/) {}
  // A client connection to a service's proxy port was accepted (`opened`) or ended (`closed`).
  virtual void proxy_connection_opened(const std::string& /*service*/) {}
  virtual void proxy_connection_closed(const std::string& /*service*/) {}
  // A client connection was refused: reason "service_limit" (the service's max_connections)
  // or "global_limit" (proxy.max_connections).
  virtual void proxy_connection_refused(const std::string& /*service*/,
                                        const std::string& /*reason*/) {}
  // A connection to the service's upstream was opened, or one kept alive from an earlier request
  // was `reused` for the next.
  virtual void proxy_upstream_connection(const std::string& /*service*/, bool /*reused*/) {}
  // A connection relayed as bytes was closed by siesta because nothing moved either way for its
  // idle timeout: kind "upgraded" (upgraded_idle_timeout_seconds, or the proxy's idle timeout
  // after a half-close) or "tcp" (tcp_idle_timeout_seconds).
  virtual void proxy_idle_closed(const std::string& /*service*/, const char* /*kind*/) {}
  // The GPU budget (gpu.h): a holder was stopped or unloaded for room (kMakeRoom).
  virtual void gpu_evicted(Reason /*reason*/) {}
  // A wake or load began waiting for room (`began`), or its wait ended: outcome "fitted" (room was
  // made), "timed_out" (still no room after gpu.wait_seconds) or "cannot_fit".
  virtual void gpu_wait(bool /*began*/, const char* /*outcome*/) {}
};

class NullRecorder final : public Recorder {
 public:
  void service_slept(const std::string&, Reason) override {}
  void service_woke(const std::string&, Reason, Seconds) override {}
  void service_failed(const std::string&, ServiceOperation) override {}
  void model_unloaded(const ModelKey&, Reason) override {}
  void model_unload_failed(const ModelKey&) override {}
  void monitor_ran(WallTime, Seconds) override {}
};

}  // namespace siesta
