#include "siesta/core/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>

namespace siesta {

const UnitScale* duration_suffix(std::string_view text) {
  for (const auto& u : kDurationSuffixes) {
    if (text.substr(0, u.name.size()) == u.name) return &u;
  }
  return nullptr;
}

std::optional<double> parse_duration(std::string_view text) {
  if (text == "0") return 0.0;
  if (text.empty()) return std::nullopt;
  double total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      ++i;
    }
    if (i == start) return std::nullopt;
    double number = 0;
    auto [end, ec] = std::from_chars(text.data() + start, text.data() + i, number);
    if (ec != std::errc() || end != text.data() + i) return std::nullopt;
    const UnitScale* unit = duration_suffix(text.substr(i));
    if (unit == nullptr) return std::nullopt;
    i += unit->name.size();
    total += number * unit->seconds;
  }
  if (!std::isfinite(total)) return std::nullopt;
  return total;
}

std::string number_text(double d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

}  // namespace siesta
