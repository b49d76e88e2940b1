// Settings: the seed's global idle-sleep settings, changeable at runtime.
#pragma once

namespace siesta {

struct Settings {
  bool idle_sleep_enabled = true;          // master switch
  double idle_timeout_minutes = 60;        // a service idle this long is stopped
  double model_keep_alive_hours = 2;       // a model unused this long is unloaded
  double idle_check_interval_minutes = 5;  // how often backends' real state is reconciled
  double price_per_kwh = 0;                // energy's price, for the cost saved; 0: no price

  bool operator==(const Settings&) const = default;
};

// The seed's limits for values given through the config file or the API.
inline constexpr double kMaxMinutes = 525600.0 * 10;  // ten years
inline constexpr double kMaxHours = kMaxMinutes / 60.0;
// A shorter check interval would have the monitor reconcile in a loop that never sleeps.
inline constexpr double kMinCheckIntervalMinutes = 0.01;  // 0.6 s

}  // namespace siesta
