#include "siesta/core/policy.h"

#include <algorithm>
#include <cmath>

namespace siesta {

namespace {
// A new policy: its file in policies/ and one line here.
const TimeoutPolicy* const kPolicies[] = {&fixed_policy(), &adaptive_policy()};
}  // namespace

const TimeoutPolicy* find_policy(std::string_view name) {
  for (const TimeoutPolicy* p : kPolicies) {
    if (name == p->name()) return p;
  }
  return nullptr;
}

std::string policy_names() {
  std::string out;
  for (const TimeoutPolicy* p : kPolicies) {
    if (!out.empty()) out += ", ";
    out += p->name();
  }
  return out;
}

bool record_idle_gap(std::vector<double>& gaps, std::optional<WallTime> last_used, WallTime now) {
  if (!last_used) return false;
  const double gap = Seconds(now - *last_used).count();
  if (!(gap >= kMinIdleGapSeconds)) return false;
  if (gaps.size() >= kMaxIdleGaps) gaps.erase(gaps.begin(), gaps.end() - (kMaxIdleGaps - 1));
  gaps.push_back(gap);
  return true;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace siesta
