// KubeWatcher: one watch per resource kind (deployments, statefulsets) of the namespace, each on
// its own thread, kept alive the way the API asks of a client: list, then watch from the list's
// resourceVersion with bookmarks; when the server ends the stream, watch again from the newest
// version seen (an event's or a bookmark's); on 410 Gone ("too old resource version", as the
// answer or as an ERROR event), list again and watch from the new list's version. Other errors
// (401, 403, the server down) are reported and retried with backoff (at most 5 s).
//
// start() and stop() are called from one thread; the callbacks run on the watch threads.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "siesta/backends/kube_client.h"

namespace siesta {

class KubeWatcher {
 public:
  struct Callbacks {
    // A fresh list of `kind`: what the events since the last one would have said, and more.
    std::function<void(const std::string& kind, const WorkloadList&)> on_listed;
    std::function<void(const WatchEvent&)> on_event;
    // A list or watch failed (first failure after a success only).
    std::function<void(const Status&)> on_error;
  };

  explicit KubeWatcher(KubeClient& client) : client_(client) {}
  ~KubeWatcher() { stop(); }

  void start(Callbacks callbacks, std::vector<std::string> kinds = {"deployment", "statefulset"});
  void stop();

 private:
  void loop(const std::string& kind);

  KubeClient& client_;
  Callbacks callbacks_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace siesta
