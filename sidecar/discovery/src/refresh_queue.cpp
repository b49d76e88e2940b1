#include "siesta/discovery/refresh_queue.h"

namespace siesta {

void RefreshQueue::refresh_soon(const std::string& service) {
  {
    std::lock_guard lock(mu_);
    if (!queued_.insert(service).second) return;  // one refresh reads the newest state
  }
  executor_.post([this, service] {
    {
      std::lock_guard lock(mu_);
      queued_.erase(service);
    }
    controller_.refresh(service);
  });
}

}  // namespace siesta
