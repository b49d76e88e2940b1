// Units: what siesta's numbers are counted in, written once. The settings schema's units
// (NumberRule::unit: seconds, minutes, hours; MiB and counts are no durations), the duration
// suffixes of labels and of Ollama's keep_alive (Go's time.ParseDuration: ns, us, µs, μs, ms, s,
// m, h), and how a number is printed in messages and logs. Pure; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace siesta {

// A unit's name and what one of it is worth in seconds.
struct UnitScale {
  std::string_view name;
  double seconds;
};

// The settings schema's duration units.
inline constexpr UnitScale kSchemaUnits[] = {{"seconds", 1}, {"minutes", 60}, {"hours", 3600}};

// Go's duration suffixes; where one begins another, the longer comes first ("ms" before "m").
inline constexpr UnitScale kDurationSuffixes[] = {
    {"ns", 1e-9}, {"us", 1e-6}, {"\xC2\xB5s", 1e-6}, {"\xCE\xBCs", 1e-6},
    {"ms", 1e-3}, {"s", 1},     {"m", 60},           {"h", 3600}};

// Seconds in one `unit` of the schema ("minutes": 60); 0 when it is no duration ("MiB", "").
constexpr double seconds_per(std::string_view unit) {
  for (const auto& u : kSchemaUnits) {
    if (u.name == unit) return u.seconds;
  }
  return 0;
}

// The duration suffix `text` starts with (the longest), or nullptr.
const UnitScale* duration_suffix(std::string_view text);

// An unsigned Go duration such as "30m", "1h30m", "90s", "250ms" or "0", in seconds; nullopt
// when malformed or not finite. Labels and annotations give durations this way.
std::optional<double> parse_duration(std::string_view text);

// A number as printf's %g (and fmt's {:g}) writes it: 0.01, 60, 5.256e+06.
std::string number_text(double d);

}  // namespace siesta
