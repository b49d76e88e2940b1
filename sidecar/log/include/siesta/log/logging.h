// Logging set-up: spdlog's default logger on stderr, as text or one JSON object a line.
#pragma once

#include <string>

namespace siesta {

enum class LogFormat { kText, kJson };

// level: trace, debug, info, warn, error, critical, off.
void configure_logging(LogFormat format, const std::string& level);

}  // namespace siesta
