// adaptive: the hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC
// 2020), on the service's own idle gaps. While the history is short or its histogram not
// representative (too many gaps out of range, or bin counts too flat), the configured timeout
// (fixed). Otherwise: awake until a high percentile of the gaps (+margin), within the min/max
// bounds and the ski-rental break-even (cold-start seconds x cold_start_weight); and when even
// a low percentile of the gaps is long, asleep right after a use and started again (pre-warmed)
// to be ready at that low percentile (-margin).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include "siesta/core/policy.h"

namespace siesta {

namespace {

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char text[200];
  std::snprintf(text, sizeof text, fmt, a, b, c);
  return text;
}

// decide() asks the policy for every service at every decision, and the answer changes only
// when the history gains a gap: the last choices are kept, per thread (the policy stays
// stateless to its callers and thread-safe), keyed by everything the choice depends on. The
// simulator's 50-service traces were 30x slower than fixed before (a histogram and two sorts per
// service per decision).
struct Memo {
  Seconds configured;
  std::string timeout_name;  // a fallback's reason names it
  double cold_start = 0;
  AdaptiveParams params;
  std::vector<double> gaps;
  PolicyChoice choice;
};

std::size_t memo_key(const PolicyInput& input, const std::vector<double>& gaps) {
  std::size_t h = std::hash<double>{}(input.configured_timeout.count());
  auto mix = [&h](double v) { h = h * 1099511628211ULL ^ std::hash<double>{}(v); };
  mix(input.cold_start_seconds);
  for (double g : gaps) mix(g);
  return h ^ gaps.size();
}

class AdaptivePolicy final : public TimeoutPolicy {
 public:
  const char* name() const override { return "adaptive"; }

  PolicyChoice choose(const PolicyInput& input) const override {
    static const std::vector<double> kNone;
    const std::vector<double>& gaps = input.idle_gaps != nullptr ? *input.idle_gaps : kNone;
    const AdaptiveParams params = input.adaptive != nullptr ? *input.adaptive : AdaptiveParams{};
    thread_local std::unordered_map<std::size_t, Memo> memo;
    const std::size_t key = memo_key(input, gaps);
    if (auto it = memo.find(key); it != memo.end()) {
      const Memo& m = it->second;
      if (m.configured == input.configured_timeout && m.timeout_name == input.timeout_name &&
          m.cold_start == input.cold_start_seconds && m.params == params && m.gaps == gaps) {
        return m.choice;
      }
    }
    PolicyChoice choice = compute(input, params, gaps);
    if (memo.size() >= 1024) memo.clear();  // bounded (~2 MB): a new gap makes a new key
    memo[key] = Memo{input.configured_timeout,
                     input.timeout_name,
                     input.cold_start_seconds,
                     params,
                     gaps,
                     choice};
    return choice;
  }

 private:
  PolicyChoice compute(const PolicyInput& input, const AdaptiveParams& params,
                       const std::vector<double>& gaps) const {
    auto fallback = [&](const std::string& why) {
      PolicyChoice choice = fixed_policy().choose(input);
      choice.reason = "adaptive falls back: " + why + "; " + choice.reason;
      return choice;
    };
    if (gaps.size() < params.min_gaps) {
      return fallback(format("history too short (%g of %g idle gaps)",
                             static_cast<double>(gaps.size()),
                             static_cast<double>(params.min_gaps)));
    }
    std::vector<double> in_range;
    for (double g : gaps) {
      if (g <= params.range_seconds) in_range.push_back(g);
    }
    const double out_share =
        1.0 - static_cast<double>(in_range.size()) / static_cast<double>(gaps.size());
    if (out_share > params.max_out_of_range || in_range.empty()) {
      return fallback(format("%g%% of idle gaps longer than the histogram's %g h", out_share * 100,
                             params.range_seconds / 3600));
    }
    const auto bins = static_cast<std::size_t>(
        std::max(1.0, std::ceil(params.range_seconds / params.bin_seconds)));
    std::vector<double> counts(bins, 0);
    for (double g : in_range) {
      counts[std::min(bins - 1, static_cast<std::size_t>(g / params.bin_seconds))] += 1;
    }
    const double mean = static_cast<double>(in_range.size()) / static_cast<double>(bins);
    double var = 0;
    for (double c : counts) var += (c - mean) * (c - mean);
    const double cv = std::sqrt(var / static_cast<double>(bins)) / mean;
    if (cv < params.min_cv) {
      return fallback(
          format("the idle-gap histogram is too flat (CV %.2f < %g)", cv, params.min_cv));
    }

    const double tail = percentile(in_range, params.keep_alive_percentile) * (1 + params.margin);
    const double head = percentile(in_range, params.prewarm_percentile) * (1 - params.margin);
    PolicyChoice choice;
    choice.policy = name();
    double keep = std::clamp(tail, params.min_timeout_seconds,
                             std::max(params.min_timeout_seconds, params.max_timeout_seconds));
    choice.reason = format("p%g of %g idle gaps (+margin) is %.0f s", params.keep_alive_percentile,
                           static_cast<double>(gaps.size()), tail);
    const double break_even = input.cold_start_seconds * params.cold_start_weight;
    if (break_even > 0 && keep > break_even) {
      keep = std::max(params.min_timeout_seconds, break_even);
      choice.reason += format("; capped at the ski-rental break-even %.0f s (cold start %g s x %g)",
                              keep, input.cold_start_seconds, params.cold_start_weight);
    } else if (keep != tail) {
      choice.reason +=
          format("; bounded to [%g, %g] s", params.min_timeout_seconds, params.max_timeout_seconds);
    }
    choice.keep_alive = Seconds(keep);
    choice.sleep_after = choice.keep_alive;
    // Pre-warm only when the sleep it buys (head, less the start and the short stay after a
    // use) is longer than the start itself: a start costs about its own time awake. Not without
    // a start known (configured or measured): neither the lead nor the break-even is, and the
    // first measured start may cap the keep-alive below the pre-warm point. Not on irregular
    // gaps either: the next use is then no more likely at the pre-warm point than before it.
    const double lead = input.cold_start_seconds;
    const double asleep = head - lead - params.min_timeout_seconds;
    const double median = percentile(in_range, 50);
    const bool regular =
        median > 0 && head / (1 - params.margin) >= params.prewarm_min_regularity * median;
    if (!params.prewarm) return choice;
    if (head < keep && asleep > lead && lead > 0 && !regular) {
      choice.reason += format("; no pre-warm: p%g is %.0f%% of the median gap (irregular gaps)",
                              params.prewarm_percentile, 100 * head / (1 - params.margin) / median);
    }
    if (head < keep && asleep > lead && lead > 0 && regular) {
      choice.prewarm_after = Seconds(head - lead);
      choice.sleep_after = Seconds(params.min_timeout_seconds);
      choice.reason += format("; p%g is %.0f s: asleep after %g s, pre-warmed before it",
                              params.prewarm_percentile, head, params.min_timeout_seconds);
    }
    return choice;
  }
};

}  // namespace

const TimeoutPolicy& adaptive_policy() {
  static const AdaptivePolicy policy;
  return policy;
}

}  // namespace siesta
