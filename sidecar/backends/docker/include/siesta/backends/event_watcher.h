// EventWatcher: follows a Docker engine's event stream on a thread of its own, and reconnects
// with a backoff from 100 ms to one second when the engine goes away, renegotiating the API
// version when it comes back (it may come back newer). Shared by the container and the Swarm
// backends; which events it follows is the client's (DockerClient::set_events).
//
// start() and stop() are called from one thread; the callbacks run on the watcher's thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "siesta/backends/docker_client.h"

namespace siesta {

class EventWatcher {
 public:
  struct Callbacks {
    // Each event.
    std::function<void(const DockerEvent&)> on_event;
    // After every (re)connection: events may have been missed, so re-read everything.
    std::function<void()> on_connected;
    // The stream broke (the engine stopped or restarted).
    std::function<void(const Status&)> on_disconnected;
  };
  explicit EventWatcher(DockerClient& client) : client_(client) {}
  ~EventWatcher() { stop(); }
  EventWatcher(const EventWatcher&) = delete;
  EventWatcher& operator=(const EventWatcher&) = delete;

  // Starts following events (stopping a previous watch first).
  void start(Callbacks callbacks);
  void stop();

 private:
  void loop();

  DockerClient& client_;
  Callbacks callbacks_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace siesta
