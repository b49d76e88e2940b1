// Exposition: writes the Prometheus text format (version 0.0.4) straight into a string.
//
// Why not prometheus-cpp's ClientMetric + TextSerializer for the per-service and per-model
// series: with 10,000 services and 10,000 models a scrape holds ~350,000 samples, and building
// a ClientMetric (vectors of label strings) for each and streaming it through std::ostream took
// ~1.5 s and held ~100 MB of freed heap in the admin threads' arenas (docs/benchmarks.md). This
// writer appends each sample once, numbers by std::to_chars, into one reserved buffer.
// prometheus-cpp still owns the histograms and the few process-wide metrics; their text is appended
// after these.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <string>
#include <string_view>

namespace siesta {

class Exposition {
 public:
  explicit Exposition(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view help, std::string_view type) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }

  // A sample with no labels, one label, two or three.
  void sample(std::string_view name, double value) {
    out_ += name;
    value_(value);
  }
  void sample(std::string_view name, std::string_view k1, std::string_view v1, double value) {
    out_ += name;
    out_ += '{';
    label_(k1, v1);
    out_ += '}';
    value_(value);
  }
  void sample(std::string_view name, std::string_view k1, std::string_view v1, std::string_view k2,
              std::string_view v2, double value) {
    out_ += name;
    out_ += '{';
    label_(k1, v1);
    out_ += ',';
    label_(k2, v2);
    out_ += '}';
    value_(value);
  }
  void sample(std::string_view name, std::string_view k1, std::string_view v1, std::string_view k2,
              std::string_view v2, std::string_view k3, std::string_view v3, double value) {
    out_ += name;
    out_ += '{';
    label_(k1, v1);
    out_ += ',';
    label_(k2, v2);
    out_ += ',';
    label_(k3, v3);
    out_ += '}';
    value_(value);
  }

 private:
  void label_(std::string_view key, std::string_view value) {
    out_ += key;
    out_ += "=\"";
    bool plain = true;
    for (char c : value) plain = plain && c != '\\' && c != '"' && c != '\n';
    if (plain) {
      out_ += value;
    } else {
      for (char c : value) {
        if (c == '\\') {
          out_ += "\\\\";
        } else if (c == '"') {
          out_ += "\\\"";
        } else if (c == '\n') {
          out_ += "\\n";
        } else {
          out_ += c;
        }
      }
    }
    out_ += '"';
  }
  void value_(double v) {
    if (std::isnan(v)) {
      out_ += " NaN\n";
      return;
    }
    if (std::isinf(v)) {
      out_ += v > 0 ? " +Inf\n" : " -Inf\n";
      return;
    }
    char buf[40];
    buf[0] = ' ';
    std::to_chars_result r;
    if (v == std::trunc(v) && std::fabs(v) < 9.0e15) {  // whole numbers as integers: "2700"
      r = std::to_chars(buf + 1, buf + sizeof buf - 1, static_cast<long long>(v));
    } else {  // the shortest text that reads back as the same double
      r = std::to_chars(buf + 1, buf + sizeof buf - 1, v);
    }
    *r.ptr++ = '\n';
    out_.append(buf, static_cast<std::size_t>(r.ptr - buf));
  }

  std::string& out_;
};

}  // namespace siesta
