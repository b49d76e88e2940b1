// RefreshQueue: re-reads one service's real state soon, on a short-lived thread (a refresh waits
// for a start or stop in progress, and the event watcher must not). Refreshes of a service
// asked for while one is queued are one refresh: it reads the newest state. Thread-safe.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "siesta/runtime/discovery_actions.h"
#include "siesta/runtime/executor.h"

namespace siesta {

class RefreshQueue {
 public:
  explicit RefreshQueue(DiscoveryActions& controller) : controller_(controller) {}
  void refresh_soon(const std::string& service);
  // Re-reads every service (after events may have been missed).
  void reconcile_soon() {
    executor_.post([this] { controller_.reconcile(); });
  }
  void join_all() { executor_.join_all(); }

 private:
  DiscoveryActions& controller_;
  ThreadExecutor executor_;
  std::mutex mu_;
  std::set<std::string> queued_;  // guarded by mu_: refreshes posted, not yet begun
};

}  // namespace siesta
