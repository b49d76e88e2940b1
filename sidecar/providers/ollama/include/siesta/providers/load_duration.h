// Ollama's own measure of a model load, read from the response it streams through the proxy.
// The final JSON object of an answer (the whole body, or an NDJSON stream's last line) carries
// `load_duration` in nanoseconds; siesta's own clock would also count the queue and, for an
// answer that is not streamed, the whole generation.
// Not thread-safe: one per response.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace siesta {

class LoadDurationScanner {
 public:
  // Passes on the next piece of the body, as it arrives.
  void feed(std::string_view piece);
  // Seconds, from the last JSON object seen with a load_duration; call once the body ended.
  std::optional<double> seconds();

 private:
  void line_done();
  std::string line_;       // the current line, up to kMaxLine
  bool too_long_ = false;  // the current line is over kMaxLine: skipped
  std::optional<double> seconds_;
};

// The load_duration of one whole JSON body, in seconds.
std::optional<double> load_duration_of(std::string_view body);

}  // namespace siesta
