#include "siesta/core/reason.h"

namespace siesta {

const char* to_string(Reason reason) {
  switch (reason) {
    case Reason::kRequest:
      return "request";
    case Reason::kManual:
      return "manual";
    case Reason::kDesired:
      return "desired";
    case Reason::kSchedule:
      return "schedule";
    case Reason::kPrewarm:
      return "prewarm";
    case Reason::kIdle:
      return "idle";
    case Reason::kExpired:
      return "expired";
    case Reason::kForced:
      return "forced";
    case Reason::kServiceSleep:
      return "service_sleep";
    case Reason::kExternal:
      return "external";
    case Reason::kSleepTier:
      return "sleep_tier";
    case Reason::kMakeRoom:
      return "make_room";
  }
  return "manual";
}

}  // namespace siesta
