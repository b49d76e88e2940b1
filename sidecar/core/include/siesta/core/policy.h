// Timeout policies: how long a service stays awake after its last use, and whether it is started
// again before a predicted use (pre-warm). A policy is a pure function of the service's own
// history of idle gaps and its bounds; decide() asks it, so the monitor, idle-status and the
// simulator (`siesta simulate`) all see one choice. A new policy is one file in
// core/src/policies/ and one line in policy.cpp's list. Policies are stateless and thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "siesta/core/clock.h"

namespace siesta {

// The adaptive policy's knobs (Shahrad et al., "Serverless in the Wild", USENIX ATC 2020).
struct AdaptiveParams {
  std::size_t min_gaps = 10;        // fewer gaps: the history is too short, fixed timeout
  double bin_seconds = 60;          // the histogram's bin width ...
  double range_seconds = 4 * 3600;  // ... and range; longer gaps are counted as out of range
  double max_out_of_range = 0.5;    // a larger share of gaps out of range: not representative
  double min_cv = 2;                // bin counts' coefficient of variation below it: too flat
  double keep_alive_percentile = 99;
  double prewarm_percentile = 5;
  double margin = 0.1;  // keep-alive +10 %, pre-warm point -10 %
  // A pre-warm needs regular gaps: the pre-warm percentile at least this share of the median
  // (a periodic job: ~0.9; memoryless arrivals, Poisson: ~0.07, which a short history's sparse
  // histogram does not reveal to the CV test).
  double prewarm_min_regularity = 0.5;
  double min_timeout_seconds = 60;  // the keep-alive's bounds
  double max_timeout_seconds = 4 * 3600;
  // Ski rental: a cold start costs as much as this many seconds awake per second it takes. The
  // keep-alive is at most cold-start seconds x this (break-even: 2-competitive); 0: no bound.
  double cold_start_weight = 60;
  // Pre-warm at all: not for a model (loading one before a predicted use is not done yet).
  bool prewarm = true;
  bool operator==(const AdaptiveParams&) const = default;
};

// How many idle gaps a service or model keeps (ServiceRuntime::idle_gaps, ModelRuntime::idle_gaps,
// the state file): the oldest go.
inline constexpr std::size_t kMaxIdleGaps = 256;
// A pause between uses shorter than this is part of one use (a burst), not an idle gap.
inline constexpr double kMinIdleGapSeconds = 10;
// Longer than this is no gap siesta measured (a state file's value past it is refused): a year.
inline constexpr double kMaxIdleGapSeconds = 365.0 * 24 * 3600;

struct PolicyInput {
  Seconds configured_timeout{0};                   // the service's (or global) idle timeout
  const char* timeout_name = "idle timeout";       // what it is, for the reason: "keep-alive"
  const std::vector<double>* idle_gaps = nullptr;  // seconds, oldest first; may be null
  double cold_start_seconds = 0;                   // measured or configured; 0: unknown
  const AdaptiveParams* adaptive = nullptr;        // null: the defaults
};

struct PolicyChoice {
  // Awake this long after the last use (for a pre-warmed run: from that same last use).
  Seconds keep_alive{0};
  // Pre-warm: the service sleeps `sleep_after` after a use, is started again `prewarm_after`
  // the use (ready before the predicted next one) and sleeps at `keep_alive`.
  std::optional<Seconds> prewarm_after;
  Seconds sleep_after{0};
  const char* policy = "fixed";  // the policy that chose it (a fallback names "fixed")
  std::string reason;            // for people: why this timeout
};

class TimeoutPolicy {
 public:
  virtual ~TimeoutPolicy() = default;
  virtual const char* name() const = 0;
  virtual PolicyChoice choose(const PolicyInput& input) const = 0;
};

// The policy named `name` ("fixed", "adaptive"); nullptr for none.
const TimeoutPolicy* find_policy(std::string_view name);
// Every policy's name, for error messages: "fixed, adaptive".
std::string policy_names();

// The policies' parts, each in its own file.
const TimeoutPolicy& fixed_policy();
const TimeoutPolicy& adaptive_policy();

// A use begins at `now` after `last_used`: the gap joins `gaps` (bounded by kMaxIdleGaps) when
// it is at least kMinIdleGapSeconds (returns whether it did). The live runtime and the simulator
// both call it.
bool record_idle_gap(std::vector<double>& gaps, std::optional<WallTime> last_used, WallTime now);

// The p-th percentile (0..100) of `values` by linear interpolation; `values` need not be sorted.
double percentile(std::vector<double> values, double p);

}  // namespace siesta
