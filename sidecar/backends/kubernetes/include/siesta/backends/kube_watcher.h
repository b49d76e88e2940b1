// KubeWatcher: one watch per resource kind (deployments, statefulsets) of the namespace, each on
// its own thread, kept alive the way the API asks of a client: list, then watch from the list's
// resourceVersion with bookmarks; when the server ends the stream, watch again from the newest
// version seen (an event's or a bookmark's); on 410 Gone ("too old resource version", as the
// answer or as an ERROR event), list again and watch from the new list's version. Other errors
// (401, 403, the server down) are reported and retried. Each relist after a 410 or an error
// waits kube_relist_backoff() first, timed by the injected Clock: a server that expires every
// watch, or refuses every list, is asked at most every 5 s, not in a loop.
//
// start() and stop() are called from one thread; the callbacks run on the watch threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "siesta/backends/kube_client.h"
#include "siesta/core/clock.h"

namespace siesta {

// The wait before the `attempt`-th relist in a row (1-based) after a 410 or an error: none
// before the first after a 410 (`expired`, as the API asks), else 200 ms doubling up to 5 s.
// Reset by a watch that delivered an event or ran to the server's timeout.
std::chrono::milliseconds kube_relist_backoff(int attempt, bool expired);

class KubeWatcher {
 public:
  struct Callbacks {
    // A fresh list of `kind`: what the events since the last one would have said, and more.
    std::function<void(const std::string& kind, const WorkloadList&)> on_listed;
    std::function<void(const WatchEvent&)> on_event;
    // A list or watch failed (first failure after a success only).
    std::function<void(const Status&)> on_error;
  };

  KubeWatcher(KubeClient& client, const Clock& clock) : client_(client), clock_(clock) {}
  ~KubeWatcher() { stop(); }

  void start(Callbacks callbacks, std::vector<std::string> kinds = {"deployment", "statefulset"});
  void stop();

 private:
  void loop(const std::string& kind);
  // Waits `delay` on the clock; false when stop() came first.
  bool wait(std::chrono::milliseconds delay);

  KubeClient& client_;
  const Clock& clock_;
  Callbacks callbacks_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace siesta
