#include "siesta/backends/event_watcher.h"

#include <spdlog/spdlog.h>

namespace siesta {

void EventWatcher::start(Callbacks callbacks) {
  stop();
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  client_.resume();
  callbacks_ = std::move(callbacks);
  thread_ = std::thread([this] { loop(); });
}

void EventWatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  client_.interrupt();
  if (thread_.joinable()) thread_.join();
}

void EventWatcher::loop() {
  auto delay = std::chrono::milliseconds(100);
  bool was_connected = true;  // so that an engine down at start-up is reported once
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    bool connected = false;
    Status ended = [&]() -> Status {
      // The engine may have come back as another version.
      if (auto v = client_.negotiate(); !v) return v.status();
      return client_.follow_events(
          [&] {
            connected = true;
            if (!was_connected)
              spdlog::info("Docker engine at {} is back", client_.endpoint().to_string());
            was_connected = true;
            delay = std::chrono::milliseconds(100);
            if (callbacks_.on_connected) callbacks_.on_connected();
          },
          [&](const DockerEvent& e) {
            if (callbacks_.on_event) callbacks_.on_event(e);
          });
    }();
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    if (connected || was_connected) {
      spdlog::warn("Docker events: {}; reconnecting", ended.message());
      was_connected = false;
      if (callbacks_.on_disconnected) callbacks_.on_disconnected(ended);
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, delay, [&] { return stopping_; });
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace siesta
