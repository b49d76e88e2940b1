#include "siesta/http/framing.h"

namespace siesta::http_framing {

std::optional<FramingError> framing_error(const http::fields& fields, unsigned version) {
  auto bad = [](std::string message) {
    return FramingError{http::status::bad_request, "bad_request", std::move(message)};
  };
  for (const auto& f : fields) {
    if (f.name() != http::field::connection) continue;
    for (auto token : http::token_list(f.value())) {
      if (beast::iequals(token, "content-length") || beast::iequals(token, "transfer-encoding") ||
          beast::iequals(token, "host")) {
        return bad("the Connection header may not name " + std::string(token));
      }
    }
  }
  if (const auto te = fields.count(http::field::transfer_encoding); te > 0) {
    if (fields.count(http::field::content_length) > 0) {
      return bad("a request may not have both Content-Length and Transfer-Encoding");
    }
    if (version < 11) return bad("an HTTP/1.0 request may not have a Transfer-Encoding");
    if (te > 1) return bad("a request may have one Transfer-Encoding header only");
    if (!beast::iequals(fields[http::field::transfer_encoding], "chunked")) {
      return FramingError{http::status::not_implemented, "not_implemented",
                          "unsupported Transfer-Encoding \"" +
                              std::string(fields[http::field::transfer_encoding]) +
                              "\" (only \"chunked\" is)"};
    }
  }
  const auto hosts = fields.count(http::field::host);
  if (hosts > 1) return bad("a request may have one Host header only");
  if (hosts == 0 && version >= 11) return bad("an HTTP/1.1 request needs a Host header");
  return std::nullopt;
}

void check_chunk_extensions(std::uint64_t, beast::string_view extensions, beast::error_code& ec) {
  for (const char c : extensions) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      ec = http::error::bad_chunk_extension;
      return;
    }
  }
}

bool is_framing_error(const beast::error_code& ec) {
  return ec.category() == make_error_code(http::error::bad_line_ending).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

bool holds_bare_lf(const beast::flat_buffer& buffer) {
  const auto data = buffer.data();
  const std::string_view pending(static_cast<const char*>(data.data()), data.size());
  for (std::size_t at = pending.find('\n'); at != std::string_view::npos;
       at = pending.find('\n', at + 1)) {
    if (at == 0 || pending[at - 1] != '\r') return true;
  }
  return false;
}

}  // namespace siesta::http_framing
