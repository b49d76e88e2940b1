#include "siesta/backends/kube_watcher.h"

#include <spdlog/spdlog.h>

namespace siesta {

void KubeWatcher::start(Callbacks callbacks, std::vector<std::string> kinds) {
  stop();
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  client_.resume();
  callbacks_ = std::move(callbacks);
  for (const auto& kind : kinds) threads_.emplace_back([this, kind] { loop(kind); });
}

void KubeWatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  client_.interrupt();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void KubeWatcher::loop(const std::string& kind) {
  auto delay = std::chrono::milliseconds(200);
  bool healthy = true;  // so that the first failure is reported once
  std::string version;  // empty: list first
  auto wait = [&] {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, delay, [&] { return stopping_; });
    delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    return !stopping_;
  };
  auto failed = [&](const Status& st) {
    if (healthy) {
      spdlog::warn("Kubernetes {}s: {}; retrying", kind, st.message());
      if (callbacks_.on_error) callbacks_.on_error(st);
    }
    healthy = false;
  };
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    if (version.empty()) {
      auto listed = client_.list(kind, "");
      if (!listed) {
        failed(listed.status());
        if (!wait()) return;
        continue;
      }
      if (!healthy) spdlog::info("Kubernetes {}s: listed again", kind);
      healthy = true;
      delay = std::chrono::milliseconds(200);
      version = listed->resource_version;
      if (callbacks_.on_listed) callbacks_.on_listed(kind, *listed);
    }
    Status why;
    const WatchEnd end = client_.watch(
        kind, version,
        [&](const WatchEvent& e) {
          if (e.type != "BOOKMARK" && callbacks_.on_event) callbacks_.on_event(e);
        },
        why);
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    switch (end) {
      case WatchEnd::kClosed:
        break;  // watch again from `version`
      case WatchEnd::kExpired:
        spdlog::info("Kubernetes {}s: {}; listing again", kind, why.message());
        version.clear();
        break;
      case WatchEnd::kFailed:
        failed(why);
        // The version may be what failed (a 400 for a bad one): start from a list.
        version.clear();
        if (!wait()) return;
        break;
    }
  }
}

}  // namespace siesta
