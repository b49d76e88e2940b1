// MonitorActions: what the idle monitor (monitor.h) asks of the runtime to carry out decide()'s
// actions, so that it depends on this and not on the Controller (and is unit-tested with a
// fake: Monitor.CarriesOutEachDecisionThroughItsActionsAlone in tests/unit/monitor_test.cpp).
// Controller implements it; each method is documented there.
#pragma once

#include <cstddef>
#include <string>

#include "siesta/core/model.h"
#include "siesta/core/reason.h"
#include "siesta/core/status.h"

namespace siesta {

class MonitorActions {
 public:
  virtual ~MonitorActions() = default;

  // Each sleep, light sleep or unload in two steps: the claim re-checks under the registry lock
  // that the action is still due and marks it in progress (it runs on the monitor's thread);
  // the finish does the slow part (on the executor). A use in between makes the finish a no-op.
  virtual bool claim_sleep(const std::string& service) = 0;
  virtual void finish_sleep(const std::string& service) = 0;
  virtual bool claim_light_sleep(const std::string& service, std::size_t tier) = 0;
  virtual void finish_light_sleep(const std::string& service, std::size_t tier) = 0;
  virtual bool claim_unload(const ModelKey& model) = 0;
  virtual void finish_unload(const ModelKey& model, Reason reason) = 0;
  // A start decide() asked for (desired on, a schedule window, a pre-warm); shares one in
  // progress.
  virtual Status wake(const std::string& service, Reason reason) = 0;
  // Re-reads every service's real state (every idle_check_interval_minutes).
  virtual void reconcile() = 0;
};

}  // namespace siesta
