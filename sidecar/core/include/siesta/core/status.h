// Status and Result<T>: errors as values on every request path and in the monitor.
// Only the config loader throws, and only at start-up.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace siesta {

enum class ErrorCode {
  kOk,
  kInvalidArgument,  // bad input from a client; maps to 400
  kNotFound,         // unknown service or model; 404
  kConflict,         // the request contradicts the current state; 409
  kUnavailable,      // a backend or provider did not answer; 503
  kTimeout,          // a start or stop did not finish in time; 503
  kFailed,           // a backend or provider answered with an error; 500
  kInternal,         // a bug or an I/O failure inside siesta; 500
};

// Stable snake_case name used in the JSON error shape and in logs.
const char* error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  // An error that the same request cannot overcome by trying again later (e.g. a wake that can
  // never fit in the GPU budget): its 503 carries no Retry-After.
  static Status final_error(ErrorCode code, std::string message) {
    Status st(code, std::move(message));
    st.final_ = true;
    return st;
  }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Retry-After makes sense: a 503 that a later try may not get.
  bool retry_may_help() const { return !final_; }
  // The Retry-After of its 503, in seconds: none for a final error; else 5, or the time until a
  // later try can do better when that is known (with_retry_after).
  std::optional<int> retry_after() const {
    if (final_) return std::nullopt;
    return retry_after_;
  }
  Status&& with_retry_after(int seconds) && {
    retry_after_ = std::max(1, seconds);
    return std::move(*this);
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
  bool final_ = false;
  int retry_after_ = 5;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  const T& operator*() const { return *value_; }
  const Status& status() const { return status_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace siesta
