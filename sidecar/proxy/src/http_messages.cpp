// HTTP messages: the hop-by-hop and X-Forwarded-* rewriting, the Upgrade checks (RFC 9110 7.8),
// the serializer's pieces, and siesta's own answers in the JSON error shape.

#include "server.h"
#include "siesta/core/error_json.h"

namespace siesta::proxy {

// Every line of a header as one list ("a, b"), e.g. Upgrade.
std::string joined_values(const http::fields& fields, http::field name) {
  std::string out;
  for (const auto& f : fields) {
    if (f.name() != name || f.value().empty()) continue;
    out.append(out.empty() ? "" : ", ").append(f.value().data(), f.value().size());
  }
  return out;
}

namespace {

// The protocols of an Upgrade value ("websocket", "foo/1, bar"), trimmed.
std::vector<std::string_view> protocols_of(std::string_view value) {
  std::vector<std::string_view> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    std::string_view p = value.substr(0, comma);
    while (!p.empty() && (p.front() == ' ' || p.front() == '\t')) p.remove_prefix(1);
    while (!p.empty() && (p.back() == ' ' || p.back() == '\t')) p.remove_suffix(1);
    if (!p.empty()) out.push_back(p);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
  return out;
}

}  // namespace

// Whether every protocol `switched` (a 101's Upgrade) is one that was `asked` (the request's),
// by name, case-insensitively ("foo" matches an asked "foo/1"); an empty `switched` is not.
bool offered(std::string_view asked, std::string_view switched) {
  const auto wanted = protocols_of(asked);
  const auto given = protocols_of(switched);
  if (given.empty()) return false;
  return std::all_of(given.begin(), given.end(), [&](std::string_view to) {
    return std::any_of(wanted.begin(), wanted.end(), [&](std::string_view from) {
      const auto same = [](std::string_view a, std::string_view b) {
        return beast::iequals(beast::string_view(a.data(), a.size()),
                              beast::string_view(b.data(), b.size()));
      };
      return same(from, to) || same(from.substr(0, from.find('/')), to);
    });
  });
}

// The protocols an HTTP/1.1 request asks to switch to (RFC 9110 7.8): its Upgrade header, when
// its Connection header names "upgrade"; empty otherwise, and then Upgrade is an ordinary
// hop-by-hop header that stops here. A server must ignore Upgrade in an HTTP/1.0 request.
std::string upgrade_asked(const http::fields& req, unsigned version) {
  if (version < 11) return {};
  bool named = false;
  for (const auto& f : req) {
    if (f.name() != http::field::connection) continue;
    for (auto token : http::token_list(f.value()))
      named = named || beast::iequals(token, "upgrade");
  }
  return named ? joined_values(req, http::field::upgrade) : std::string();
}

namespace {

// Connection options a client may not use to strip a header: the framing and Host (refused,
// see http_framing::framing_error) and the headers the proxy itself adds or relies on (RFC
// 9110 7.6.1).
bool protected_from_connection(beast::string_view name) {
  return beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
         beast::iequals(name, "host") || beast::iequals(name, "authorization") ||
         beast::iequals(name, "forwarded") ||
         (name.size() >= 12 && beast::iequals(name.substr(0, 12), "x-forwarded-"));
}

}  // namespace

// Headers that describe one connection, not the message (RFC 9110 7.6.1), except the framing
// (Content-Length, Transfer-Encoding) that the relay keeps. Also every header the Connection
// header names, on every Connection line, unless it is protected.
void strip_hop_by_hop(http::fields& fields) {
  std::vector<std::string> named;
  for (const auto& f : fields) {
    if (f.name() != http::field::connection) continue;
    for (auto token : http::token_list(f.value())) {
      if (!protected_from_connection(token)) named.emplace_back(token);
    }
  }
  for (const auto& n : named) fields.erase(n);
  fields.erase(http::field::connection);
  fields.erase(http::field::keep_alive);
  fields.erase("Proxy-Connection");
  fields.erase(http::field::te);
  fields.erase(http::field::trailer);
  fields.erase(http::field::upgrade);
  fields.erase(http::field::proxy_authorization);
  fields.erase(http::field::proxy_authenticate);
}

// The X-Forwarded-* headers as nginx's usual configuration sets them: the peer appended to
// X-Forwarded-For (every line of it, as one list); X-Forwarded-Host and X-Forwarded-Proto
// describe this hop. A client's own Forwarded, X-Forwarded-Host and X-Forwarded-Proto are
// believed only when siesta sits behind a proxy that sets them (`trust`).
void set_forwarded_headers(http::fields& req, const std::string& peer, bool trust) {
  std::string xff;
  for (const auto& f : req) {
    if (beast::iequals(f.name_string(), "X-Forwarded-For") && !f.value().empty()) {
      xff.append(xff.empty() ? "" : ", ").append(f.value().data(), f.value().size());
    }
  }
  req.set("X-Forwarded-For", xff.empty() ? peer : xff + ", " + peer);
  if (!trust) {
    req.erase(http::field::forwarded);
    req.erase("X-Forwarded-Host");
    req.erase("X-Forwarded-Proto");
  }
  if (req["X-Forwarded-Proto"].empty()) req.set("X-Forwarded-Proto", "http");
  if (!req[http::field::host].empty() && req["X-Forwarded-Host"].empty()) {
    req.set("X-Forwarded-Host", req[http::field::host]);
  }
}

// The next piece of a relayed body for the serializer. An empty piece must have no data
// pointer: Beast's chunked serializer writes a non-null empty piece as a chunk of size 0, which
// is a terminator of its own, and then the real one after it.
void set_piece(http::buffer_body::value_type& body, char* data, std::size_t size, bool more) {
  body.data = size == 0 ? nullptr : data;
  body.size = size;
  body.more = more;
}

// Parses into the parser's body buffer what `buffer` already holds, without reading, until the
// body buffer is full, the message done, or a piece is incomplete.
void take_buffered(http::response_parser<http::buffer_body>& parser, beast::flat_buffer& buffer,
                   beast::error_code& ec) {
  while (!parser.is_done() && parser.get().body().size > 0 && buffer.size() > 0) {
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more || ec == http::error::need_buffer) {
      ec = {};
      return;
    }
    if (ec || used == 0) return;
  }
}

bool is_stream(const http::fields& fields, bool chunked) {
  const auto type = fields[http::field::content_type];
  return chunked || type.starts_with("text/event-stream") ||
         type.starts_with("application/x-ndjson");
}

http::response<http::string_body> error_response(http::status status, unsigned version,
                                                 const std::string& code,
                                                 const std::string& message,
                                                 std::optional<int> retry_after) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  if (retry_after) res.set(http::field::retry_after, std::to_string(*retry_after));
  res.body() =
      error_json(code, message).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
      "\n";  // a client's bytes in the message may not be UTF-8
  res.prepare_payload();
  return res;
}

}  // namespace siesta::proxy
