// HTTP/1.1 request framing, as both of siesta's listeners read it (the proxy's ports and the
// admin API): the rules Beast's parser leaves to its user, so that a request is read one way
// only, and a malformed one is refused instead of guessed at (RFC 9112 sections 2.2, 3.2,
// 6.1-6.3, 7.1; RFC 9110 7.6.1). Pure functions, except read_body_some (one connection's I/O).
#pragma once

// clang-format off
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange unincluded
// clang-format on

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace siesta::http_framing {

namespace beast = boost::beast;
namespace http = beast::http;

// Why a request's framing or Host cannot be read unambiguously; nullopt when it can. Beast's
// parser already refuses two different Content-Lengths and Content-Length with chunked.
struct FramingError {
  http::status status;
  std::string code;
  std::string message;
};
std::optional<FramingError> framing_error(const http::fields& fields, unsigned version);

// For parser.on_chunk_header: refuses an extension holding a control character (a bare CR or LF
// inside a quoted value, which Beast accepts and another parser may frame differently).
void check_chunk_extensions(std::uint64_t size, beast::string_view extensions,
                            beast::error_code& ec);

// Whether `ec` is a parse error of Beast's (the peer's bytes are malformed), not the socket's.
bool is_framing_error(const beast::error_code& ec);

// Whether bytes the parser could not use yet hold a line ended by a bare LF. Beast looks for
// CRLF only, so it would wait for more forever (a chunk-size or trailer line of "5\n").
bool holds_bare_lf(const beast::flat_buffer& buffer);

// Reads the next piece of a request body into the parser, as http::async_read_some does, but
// refuses a line that Beast would wait on forever (holds_bare_lf) with bad_line_ending, and a
// framing line over 64 KiB with bad_chunk, so the client gets an error instead of a hang. ec is
// need_buffer when a buffer_body's buffer filled.
template <class Stream, class Body>
boost::asio::awaitable<void> read_body_some(Stream& stream, beast::flat_buffer& buffer,
                                            http::request_parser<Body>& parser,
                                            beast::error_code& ec) {
  constexpr std::size_t kRead = 16 * 1024;
  constexpr std::size_t kLineLimit = 64 * 1024;
  while (true) {
    if (buffer.size() > 0) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
      } else if (ec || used > 0 || parser.is_done()) {
        co_return;
      }
      if (used > 0) co_return;
      if (holds_bare_lf(buffer)) {
        ec = http::error::bad_line_ending;
        co_return;
      }
      // A chunk-size, extension or trailer line this long is not one: Beast sets no limit, so
      // the client could grow the buffer until the body timeout.
      if (buffer.size() >= kLineLimit) {
        ec = http::error::bad_chunk;
        co_return;
      }
    }
    // As much as the buffer has room for (a relay grows it for a large body), 16 KiB at least.
    const std::size_t got = co_await stream.async_read_some(
        buffer.prepare(std::max(kRead, buffer.capacity() - buffer.size())),
        boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    buffer.commit(got);
    if (ec == boost::asio::error::eof) ec = http::error::partial_message;  // the body was cut
    if (ec) co_return;
  }
}

}  // namespace siesta::http_framing
