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

std::chrono::milliseconds kube_relist_backoff(int attempt, bool expired) {
  if (attempt <= 0 || (expired && attempt == 1)) return std::chrono::milliseconds(0);
  const int steps = std::min(attempt - (expired ? 2 : 1), 5);
  return std::min(std::chrono::milliseconds(200) * (1 << steps), std::chrono::milliseconds(5000));
}

bool KubeWatcher::wait(std::chrono::milliseconds delay) {
  // In slices, so that stop() is not kept waiting; a fake clock advances through them at once.
  const MonoTime until = clock_.mono_now() + delay;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
    }
    const MonoTime now = clock_.mono_now();
    if (now >= until) return true;
    clock_.sleep_for(
        std::min<std::chrono::nanoseconds>(until - now, std::chrono::milliseconds(50)));
  }
}

void KubeWatcher::loop(const std::string& kind) {
  int attempt = 0;       // relists in a row after a 410 or an error
  bool expired = false;  // the last one followed a 410
  bool healthy = true;   // so that the first failure is reported once
  std::string version;   // empty: list first
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
      if (attempt > 0 && !wait(kube_relist_backoff(attempt, expired))) return;
      auto listed = client_.list(kind, "");
      if (!listed) {
        failed(listed.status());
        ++attempt;
        expired = false;
        continue;
      }
      if (!healthy) spdlog::info("Kubernetes {}s: listed again", kind);
      healthy = true;
      version = listed->resource_version;
      if (callbacks_.on_listed) callbacks_.on_listed(kind, *listed);
    }
    Status why;
    bool delivered = false;
    const WatchEnd end = client_.watch(
        kind, version,
        [&](const WatchEvent& e) {
          delivered = true;
          if (e.type != "BOOKMARK" && callbacks_.on_event) callbacks_.on_event(e);
        },
        why);
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    if (delivered || end == WatchEnd::kClosed) attempt = 0;  // the watch worked
    switch (end) {
      case WatchEnd::kClosed:
        break;  // watch again from `version`
      case WatchEnd::kExpired:
        spdlog::info("Kubernetes {}s: {}; listing again", kind, why.message());
        version.clear();
        ++attempt;
        expired = true;
        break;
      case WatchEnd::kFailed:
        failed(why);
        // The version may be what failed (a 400 for a bad one): start from a list.
        version.clear();
        ++attempt;
        expired = false;
        break;
    }
  }
}

}  // namespace siesta
