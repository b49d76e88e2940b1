// fixed: the seed's rule. Awake for the configured idle timeout after the last use.
#include <cstdio>

#include "siesta/core/policy.h"

namespace siesta {

namespace {

class FixedPolicy final : public TimeoutPolicy {
 public:
  const char* name() const override { return "fixed"; }
  PolicyChoice choose(const PolicyInput& input) const override {
    PolicyChoice choice;
    choice.keep_alive = input.configured_timeout;
    choice.sleep_after = input.configured_timeout;
    choice.policy = name();
    char text[96];
    std::snprintf(text, sizeof text, "the configured %s (%g minutes)", input.timeout_name,
                  input.configured_timeout.count() / 60.0);
    choice.reason = text;
    return choice;
  }
};

}  // namespace

const TimeoutPolicy& fixed_policy() {
  static const FixedPolicy policy;
  return policy;
}

}  // namespace siesta
