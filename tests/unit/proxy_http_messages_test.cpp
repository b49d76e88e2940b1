// The proxy's HTTP messages (sidecar/proxy/src/http_messages.cpp), called directly: hop-by-hop
// and X-Forwarded-* rewriting, the Upgrade checks (RFC 9110 7.8), the relay's pieces and chunk
// terminators, the bytes read with a header, and siesta's own answers in the JSON error shape.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server.h"  // the proxy's internal header (sidecar/proxy/src)

namespace siesta::proxy {
namespace {

std::vector<std::string> values(const http::fields& fields, beast::string_view name) {
  std::vector<std::string> out;
  for (const auto& f : fields) {
    if (beast::iequals(f.name_string(), name)) out.emplace_back(f.value());
  }
  return out;
}

// Everything a serializer has to send for its current piece, appended to `out`; true when the
// message is done, false when it waits for the next piece.
bool drain(http::serializer<false, http::buffer_body>& sr, std::string& out) {
  beast::error_code ec;
  while (!sr.is_done()) {
    sr.next(ec, [&](beast::error_code&, const auto& buffers) {
      for (const auto b : beast::buffers_range_ref(buffers)) {
        out.append(static_cast<const char*>(b.data()), b.size());
      }
      sr.consume(beast::buffer_bytes(buffers));
    });
    if (ec == http::error::need_buffer) return false;
    if (ec) {
      ADD_FAILURE() << ec.message();
      return true;
    }
  }
  return true;
}

// A response parser that has read `header`, its body going into `body`.
struct ParsedHeader {
  explicit ParsedHeader(const std::string& header) {
    beast::error_code ec;
    parser.eager(false);
    parser.put(net::buffer(header), ec);
    EXPECT_TRUE(parser.is_header_done()) << ec.message();
    parser.get().body().data = body;
    parser.get().body().size = sizeof body;
  }
  std::string taken() const { return std::string(body, sizeof body - parser.get().body().size); }
  http::response_parser<http::buffer_body> parser;
  char body[64] = {};
};

TEST(ProxyHttpMessages, HopByHopHeadersStopHereAndTheFramingStays) {
  http::fields f;
  f.insert(http::field::connection, "close, X-Secret");
  f.insert(http::field::connection, "x-other");  // a second line counts too
  f.insert("X-Secret", "1");
  f.insert("X-Other", "2");
  f.insert(http::field::keep_alive, "timeout=5");
  f.insert(http::field::te, "trailers");
  f.insert(http::field::trailer, "X-Sum");
  f.insert(http::field::upgrade, "websocket");
  f.insert(http::field::proxy_authorization, "Basic eA==");
  f.insert("Proxy-Connection", "keep-alive");
  f.insert(http::field::transfer_encoding, "chunked");
  f.insert("X-Kept", "3");
  strip_hop_by_hop(f);
  for (const char* gone : {"Connection", "X-Secret", "X-Other", "Keep-Alive", "TE", "Trailer",
                           "Upgrade", "Proxy-Authorization", "Proxy-Connection"}) {
    EXPECT_TRUE(values(f, gone).empty()) << gone;
  }
  EXPECT_EQ(values(f, "Transfer-Encoding"), std::vector<std::string>{"chunked"});
  EXPECT_EQ(values(f, "X-Kept"), std::vector<std::string>{"3"});
}

// A Connection option may not remove the framing, Host, the credentials or the forwarded
// headers: a client could otherwise send the upstream a request of another length.
TEST(ProxyHttpMessages, AConnectionOptionCannotStripTheFramingOrTheForwardedHeaders) {
  http::fields f;
  f.insert(http::field::connection,
           "Content-Length, transfer-encoding, Host, Authorization, Forwarded, X-Forwarded-For");
  f.insert(http::field::content_length, "5");
  f.insert(http::field::host, "web");
  f.insert(http::field::authorization, "Bearer t");
  f.insert(http::field::forwarded, "for=1.2.3.4");
  f.insert("X-Forwarded-For", "1.2.3.4");
  strip_hop_by_hop(f);
  EXPECT_TRUE(values(f, "Connection").empty());
  for (const char* kept :
       {"Content-Length", "Host", "Authorization", "Forwarded", "X-Forwarded-For"}) {
    EXPECT_EQ(values(f, kept).size(), 1u) << kept;
  }
}

TEST(ProxyHttpMessages, AnUpgradeIsAskedOnlyWithItsConnectionOptionInHttp11) {
  http::fields f;
  f.insert(http::field::upgrade, "websocket");
  EXPECT_EQ(upgrade_asked(f, 11), "");  // no Connection: upgrade
  f.insert(http::field::connection, "keep-alive, UPGRADE");
  f.insert(http::field::upgrade, "foo/1");
  EXPECT_EQ(upgrade_asked(f, 11), "websocket, foo/1");  // every line, one list
  EXPECT_EQ(upgrade_asked(f, 10), "");                  // ignored in HTTP/1.0
}

TEST(ProxyHttpMessages, ASwitchIsOnlyToAProtocolTheClientAskedFor) {
  EXPECT_TRUE(offered("websocket", "WebSocket"));
  EXPECT_TRUE(offered("foo/1, websocket", "foo"));  // a name matches its versions
  EXPECT_TRUE(offered(" h2c ,websocket ", "websocket, h2c"));
  EXPECT_FALSE(offered("websocket", "h2c"));
  EXPECT_FALSE(offered("websocket", "websocket, h2c"));  // each one must have been asked
  EXPECT_FALSE(offered("websocket", ""));
  EXPECT_FALSE(offered("", "websocket"));
  EXPECT_EQ(joined_values(
                [] {
                  http::fields f;
                  f.insert(http::field::upgrade, "a");
                  f.insert(http::field::upgrade, "");
                  f.insert(http::field::upgrade, "b");
                  return f;
                }(),
                http::field::upgrade),
            "a, b");
}

TEST(ProxyHttpMessages, ForwardedHeadersAreBelievedOnlyWhenTrusted) {
  const auto request = [] {
    http::fields f;
    f.insert(http::field::host, "example.org");
    f.insert("X-Forwarded-For", "10.0.0.1");
    f.insert("x-forwarded-for", "10.0.0.2, 10.0.0.3");
    f.insert("X-Forwarded-Host", "evil.example");
    f.insert("X-Forwarded-Proto", "https");
    f.insert(http::field::forwarded, "for=10.0.0.9");
    return f;
  };
  http::fields untrusted = request();
  set_forwarded_headers(untrusted, "127.0.0.1", false);
  // The chain is kept (as nginx's $proxy_add_x_forwarded_for): one line, the peer last.
  EXPECT_EQ(values(untrusted, "X-Forwarded-For"),
            std::vector<std::string>{"10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"});
  EXPECT_EQ(values(untrusted, "X-Forwarded-Host"), std::vector<std::string>{"example.org"});
  EXPECT_EQ(values(untrusted, "X-Forwarded-Proto"), std::vector<std::string>{"http"});
  EXPECT_TRUE(values(untrusted, "Forwarded").empty());

  http::fields trusted = request();
  set_forwarded_headers(trusted, "127.0.0.1", true);
  EXPECT_EQ(values(trusted, "X-Forwarded-Host"), std::vector<std::string>{"evil.example"});
  EXPECT_EQ(values(trusted, "X-Forwarded-Proto"), std::vector<std::string>{"https"});
  EXPECT_EQ(values(trusted, "Forwarded"), std::vector<std::string>{"for=10.0.0.9"});

  http::fields bare;
  set_forwarded_headers(bare, "::1", false);
  EXPECT_EQ(values(bare, "X-Forwarded-For"), std::vector<std::string>{"::1"});
  EXPECT_TRUE(values(bare, "X-Forwarded-Host").empty());  // no Host to copy
}

// A chunked answer relayed piece by piece ends with one terminator: an empty piece that is not
// the last has no data pointer, else Beast writes it as a chunk of size 0, a terminator of its
// own, and the real one after it.
TEST(ProxyHttpMessages, AnEmptyPieceIsNoChunkAndTheBodyEndsWithOneTerminator) {
  char data[] = "hello";
  http::buffer_body::value_type body;
  set_piece(body, data, 0, true);
  EXPECT_EQ(body.data, nullptr);
  EXPECT_EQ(body.size, 0u);
  EXPECT_TRUE(body.more);

  http::response<http::buffer_body> res{http::status::ok, 11};
  res.chunked(true);
  http::serializer<false, http::buffer_body> sr{res};
  std::string out;
  set_piece(res.body(), data, 5, true);
  EXPECT_FALSE(drain(sr, out));
  set_piece(res.body(), data, 0, true);  // an empty read in the middle
  EXPECT_FALSE(drain(sr, out));
  set_piece(res.body(), data, 5, true);
  EXPECT_FALSE(drain(sr, out));
  set_piece(res.body(), nullptr, 0, false);  // the end
  EXPECT_TRUE(drain(sr, out));
  const std::string body_part = out.substr(out.find("\r\n\r\n") + 4);
  EXPECT_EQ(body_part, "5\r\nhello\r\n5\r\nhello\r\n0\r\n\r\n");
}

// The chunks read together with the header go out in the same write, whole and in order, and
// an incomplete one waits for its end without an error.
TEST(ProxyHttpMessages, BytesReadWithTheHeaderAreTakenWithoutReading) {
  ParsedHeader whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  beast::flat_buffer buffer;
  const std::string chunks = "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
  net::buffer_copy(buffer.prepare(chunks.size()), net::buffer(chunks));
  buffer.commit(chunks.size());
  beast::error_code ec;
  take_buffered(whole.parser, buffer, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(whole.taken(), "abcdef");
  EXPECT_TRUE(whole.parser.is_done());
  EXPECT_EQ(buffer.size(), 0u);

  ParsedHeader partial("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  beast::flat_buffer some;
  const std::string cut = "3\r\nabc\r\n5\r\nde";
  net::buffer_copy(some.prepare(cut.size()), net::buffer(cut));
  some.commit(cut.size());
  take_buffered(partial.parser, some, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(partial.parser.is_done());
  EXPECT_EQ(partial.taken().substr(0, 3), "abc");
}

TEST(ProxyHttpMessages, AStreamIsChunkedOrServerSentEventsOrNdjson) {
  http::fields f;
  EXPECT_TRUE(is_stream(f, true));
  EXPECT_FALSE(is_stream(f, false));
  f.set(http::field::content_type, "text/event-stream; charset=utf-8");
  EXPECT_TRUE(is_stream(f, false));
  f.set(http::field::content_type, "application/x-ndjson");
  EXPECT_TRUE(is_stream(f, false));
  f.set(http::field::content_type, "application/json");
  EXPECT_FALSE(is_stream(f, false));
}

// siesta's own answer: the JSON error shape, its length, no caching, Retry-After when a later
// try may do better; a client's bytes that are not UTF-8, however long, still make valid JSON.
TEST(ProxyHttpMessages, SiestasOwnAnswerIsTheJsonErrorShape) {
  auto res = error_response(http::status::service_unavailable, 11, "unavailable",
                            "service web could not be woken", 5);
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res[http::field::cache_control], "no-store");
  EXPECT_EQ(res[http::field::retry_after], "5");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
  const auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["error"]["code"], "unavailable");
  EXPECT_EQ(j["error"]["message"], "service web could not be woken");

  const std::string bytes = "target " + std::string(100 * 1024, '\xff');
  auto bad = error_response(http::status::bad_request, 10, "bad_request", bytes);
  EXPECT_EQ(bad.version(), 10u);
  EXPECT_TRUE(bad[http::field::retry_after].empty());
  EXPECT_EQ(bad[http::field::content_length], std::to_string(bad.body().size()));
  const auto parsed = nlohmann::json::parse(bad.body());  // throws if not valid UTF-8
  EXPECT_TRUE(parsed["error"]["message"].get<std::string>().starts_with("target \xef\xbf\xbd"));
}

}  // namespace
}  // namespace siesta::proxy
