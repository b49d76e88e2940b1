// Percent-encoding of a URL query value or path segment (RFC 3986: everything but unreserved
// characters), shared by the API clients (Docker, Kubernetes).
#pragma once

#include <cctype>
#include <string>

namespace siesta {

inline std::string percent_encode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace siesta
