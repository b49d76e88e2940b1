#include "siesta/core/clock.h"

#include <thread>

namespace siesta {

void SystemClock::sleep_for(std::chrono::nanoseconds duration) const {
  std::this_thread::sleep_for(duration);
}

}  // namespace siesta
