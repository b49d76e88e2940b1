#pragma once
// What a failed cpp-httplib request means, in words: httplib::to_string gives the enum's name
// ("Connection", "Read"), which reads as a cut-off sentence in a log line or a last_error.
// Header-only: include it only where cpp-httplib is linked.

#include <httplib.h>

#include <string>

namespace siesta {

inline std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "could not connect: refused, unreachable or no such host";
    case httplib::Error::ConnectionTimeout:
      return "could not connect: timed out";
    case httplib::Error::Read:
      return "no complete answer: the connection closed or the read timed out";
    case httplib::Error::Write:
      return "the request could not be sent: the connection closed or the write timed out";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed";
    case httplib::Error::SSLLoadingCerts:
      return "the TLS certificates could not be loaded";
    case httplib::Error::SSLServerVerification:
      return "the server's TLS certificate was not accepted";
    case httplib::Error::ExceedRedirectCount:
      return "too many redirects";
    case httplib::Error::Canceled:
      return "canceled";
    case httplib::Error::Compression:
      return "the answer could not be decompressed";
    default:
      return "failed (" + httplib::to_string(error) + ")";
  }
}

}  // namespace siesta
