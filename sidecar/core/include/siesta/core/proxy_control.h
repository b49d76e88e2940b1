// ProxyControl: what the proxy asks of the runtime — a request or connection in flight, a wake,
// and the use of a model. The Controller implements it; the proxy depends on this interface
// only, so its parts are unit-tested in-process with a fake (tests/unit/proxy_*_test.cpp).
//
// Implementations are thread-safe: the proxy calls them from its I/O threads, and wake() from
// its wake threads (it may block for a whole start; the others must be cheap).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "siesta/core/clock.h"
#include "siesta/core/decide.h"
#include "siesta/core/model_provider.h"
#include "siesta/core/reason.h"
#include "siesta/core/service.h"
#include "siesta/core/status.h"

namespace siesta {

// What a wake did, as the request that waited for it is told (X-Siesta-Wake).
struct WakeReport {
  // What it undid: a light tier's name when it resumed from it, "stop" when it took a start
  // (also after a failed resume), empty when the service was up already.
  std::string from;
  // How long it took, timed whole: the figure siesta_service_tier_wake_seconds_total counts for
  // it. Unset when this call timed nothing (it shared a start another call made).
  std::optional<Seconds> took;
};

class ProxyControl {
 public:
  virtual ~ProxyControl() = default;

  // Starts the service if needed and returns once it is ready (or the start failed). Counts as
  // a use. The proxy's reason is kRequest. `report`, if given, says what the wake did
  // (X-Siesta-Wake follows it).
  virtual Status wake(const std::string& service, Reason reason, WakeReport* report) = 0;
  // A request or connection begins: it is in flight (the service is not put to sleep) until
  // end_request(). Returns the service's state, so the caller knows whether to wake it first;
  // an unknown service is an error (the proxy answers 404). Cheap. `use` false: a probe
  // (ModelApi::is_probe), in flight all the same but no use: the idle time and tier run on.
  virtual Result<ServiceState> begin_request(const std::string& service, bool use = true) = 0;
  // It ended: idle time starts now if nothing else is in flight (for a use).
  virtual void end_request(const std::string& service, bool use = true) = 0;
  // A request in flight became an upgraded connection (`open`, e.g. a WebSocket) or that
  // connection ended. It stays in flight until end_request() either way.
  virtual void count_upgraded(const std::string& service, bool open) = 0;

  // A request names a model on its service (`model.service`, the provider): the model is in
  // flight (never unloaded) until end_model_request(). Returns a ticket when the model is not
  // loaded: the request may be the one to pay its load.
  virtual std::optional<std::uint64_t> begin_model_request(const ModelKey& model) = 0;
  // Its model server accepted the request (a 2xx answer): the model is loaded and keeps
  // `keep_alive.seconds` from the request's end (its policy and reason say who chose it). Returns
  // whether this request paid the load.
  virtual bool model_accepted(const ModelKey& model, const RequestKeepAlive& keep_alive,
                              std::optional<std::uint64_t> ticket) = 0;
  // The load this request paid took `took` (the server's own figure when it reports one): the
  // model's cold start, for its adaptive keep-alive's break-even.
  virtual void model_load_measured(const ModelKey& model, Seconds took) {
    (void)model;
    (void)took;
  }
  // Before a request that makes `model` load (begin_model_request gave a ticket) is forwarded:
  // room in the GPU budget for it, as for an admin load (docs/gpu.md). Blocks like wake() (called
  // from the wake threads): evictions, or a wait for in-flight work. Ok when the model is outside
  // the budget or its size is unknown.
  virtual Status make_room_for_model(const ModelKey& model) {
    (void)model;
    return Status::ok();
  }
  // Before a request for a loaded model (no ticket) is forwarded: not ok when the head of the
  // GPU budget's queue has waited half of gpu.wait_seconds for the requests on this model's server
  // to end (a stream of them would keep the server busy past its wait: it gives way; a 503 with
  // Retry-After). Never blocks: called on an I/O thread.
  virtual Status model_request_gives_way(const ModelKey& model) {
    (void)model;
    return Status::ok();
  }
  // The request ended; `accepted`: model_accepted() was called for it.
  virtual void end_model_request(const ModelKey& model, bool accepted) = 0;
  // The bounds and default for a request's keep-alive on `model`; for one not known yet, those
  // it would be learned with on its service.
  using KeepAlivePolicy = siesta::KeepAlivePolicy;  // decide.h's: the one rule
  virtual KeepAlivePolicy keep_alive_policy(const ModelKey& model) = 0;
  // The provider for models served by the named service; nullptr when there is none.
  virtual ModelProvider* provider_of(const std::string& provider_service) = 0;
};

}  // namespace siesta
