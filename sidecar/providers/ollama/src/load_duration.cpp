#include "siesta/providers/load_duration.h"

#include <nlohmann/json.hpp>

namespace siesta {

namespace {
// A final line with a long "context" array is a few hundred KiB; a longer line is no answer
// siesta reads, and keeping it would let a response use unbounded memory.
constexpr std::size_t kMaxLine = 4 * 1024 * 1024;
}  // namespace

std::optional<double> load_duration_of(std::string_view body) {
  if (body.find("\"load_duration\"") == std::string_view::npos) return std::nullopt;
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  auto it = doc.find("load_duration");
  if (it == doc.end() || !it->is_number() || it->get<double>() < 0) return std::nullopt;
  return it->get<double>() / 1e9;
}

void LoadDurationScanner::feed(std::string_view piece) {
  while (!piece.empty()) {
    const auto nl = piece.find('\n');
    const auto part = piece.substr(0, nl);
    if (!too_long_ && line_.size() + part.size() <= kMaxLine) {
      line_.append(part);
    } else {
      too_long_ = true;
      line_.clear();
    }
    if (nl == std::string_view::npos) return;
    line_done();
    piece.remove_prefix(nl + 1);
  }
}

void LoadDurationScanner::line_done() {
  if (!too_long_) {
    if (auto s = load_duration_of(line_)) seconds_ = s;
  }
  line_.clear();
  too_long_ = false;
}

std::optional<double> LoadDurationScanner::seconds() {
  line_done();  // a body without a final newline
  return seconds_;
}

}  // namespace siesta
