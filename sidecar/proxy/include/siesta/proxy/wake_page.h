// The waking page: what a browser's navigation to a sleeping service with `wake_page: true`
// gets after a short grace, instead of a blank tab for the whole start — a small page that
// polls GET /.siesta/wake-status on the service's own port and reloads the original URL once
// the service is ready (docs/proxy.md#the-waking-page). Pure functions, no I/O.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "siesta/core/embedded_asset.h"
#include "siesta/core/service.h"

namespace siesta::wake_page {

// How long a navigation waits for the wake before it gets the page: a start that is quick
// anyway shows the real page without a flash of the waking one.
inline constexpr std::chrono::milliseconds kGrace{300};

// The path prefix siesta answers itself on a service with the waking page; never forwarded.
inline constexpr std::string_view kPrefix = "/.siesta/";

// Whether a request is a browser's top-level navigation: GET, Accept naming text/html, and none
// of the markers of a script's request (fetch/XHR send Sec-Fetch-Mode cors/no-cors/same-origin,
// Sec-Fetch-Dest empty; jQuery and others X-Requested-With) or of a prefetch. Browsers send
// Sec-Fetch-* only to secure origins (https, localhost), so their absence is not held against a
// request; an API client (curl, requests, fetch) does not ask for text/html by default.
bool is_navigation(const boost::beast::http::request_header<boost::beast::http::fields>& req);

// The page for `service`; `expected_seconds`: its usual cold start, when measured.
std::string page_html(const std::string& service, std::optional<double> expected_seconds);

// GET /.siesta/wake-status: {"service", "state", "ready", "expected_seconds"}. Says nothing
// beyond what the page shows (no error text, no timers).
std::string status_json(const std::string& service, ServiceState state,
                        std::optional<double> expected_seconds);

// The page's script and style (sidecar/proxy/wake_page/, compiled in).
const EmbeddedAsset* asset(std::string_view file_name);

// What the page may load: its own script and style from /.siesta/, and the status.
inline constexpr const char* kPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace siesta::wake_page
