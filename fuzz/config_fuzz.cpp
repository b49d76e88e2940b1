// libFuzzer target: the config parser. Any input is either a Config or a ConfigError with a
// message naming the file; nothing else may escape (no other exception, crash or UB).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "siesta/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const siesta::Config config = siesta::parse_config(text, "fuzz.json");
    // What parsed is usable: every service has a valid name, listeners parse back.
    for (const auto& s : config.services) {
      if (!siesta::valid_service_name(s.spec.name)) {
        std::fprintf(stderr, "accepted an invalid service name\n");
        std::abort();
      }
    }
    siesta::ListenAddress again;
    if (!siesta::parse_listen(config.listen.to_string(), again) ||
        again.port != config.listen.port) {
      std::fprintf(stderr, "listen %s does not read back\n", config.listen.to_string().c_str());
      std::abort();
    }
  } catch (const siesta::ConfigError& e) {
    if (std::string(e.what()).find("fuzz.json") == std::string::npos) {
      std::fprintf(stderr, "a config error that does not name the file: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
