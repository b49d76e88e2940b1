// The wake gate: every request or connection to a sleeping service waits on one wake per
// service (single-flight: the first starts it on wake_threads_, the others join it), without
// blocking an I/O thread, while its client is watched. And the waking page's answers
// (docs/proxy.md#the-waking-page): a navigation that outlasts the grace gets the page, and
// /.siesta/ paths are answered here.

#include "server.h"
#include "siesta/proxy/wake_page.h"

namespace siesta::proxy {

// Starts the wake (or joins the one in progress) and calls `done` with its outcome.
void Server::request_wake(const std::string& service,
                          std::function<void(Status, WakeReport)> done) {
  {
    std::lock_guard lock(wake_mu_);
    auto [it, first] = waking_.try_emplace(service);
    it->second.push_back(std::move(done));
    if (!first) return;
  }
  wake_threads_.post([this, service] {
    WakeReport report;
    Status st = control_.wake(service, Reason::kRequest, &report);
    std::vector<std::function<void(Status, WakeReport)>> waiters;
    {
      std::lock_guard lock(wake_mu_);
      waiters = std::move(waking_[service]);
      waking_.erase(service);
    }
    for (auto& w : waiters) w(st, report);
  });
}

// Waits (without blocking an I/O thread) for the service to be woken. With `client`, a client
// that closes meanwhile ends the wait at once (*gone is set); the wake itself goes on for the
// others.
// With `grace`, the wait ends after it with *still_waking set if the wake is not done (the wake
// goes on).
awaitable<Status> Server::wake(const std::string& service, tcp::socket* client, bool* gone,
                               std::optional<std::chrono::milliseconds> grace, bool* still_waking,
                               WakeReport* report) {
  auto ex = co_await net::this_coro::executor;
  auto wait = std::make_shared<WakeWait>(ex);
  double limit = kDefaultStartTimeoutSeconds;
  if (auto view = registry_.service(service)) {
    limit = view->spec->start_timeout_seconds;
    // A resume from a light tier that fails (within start_timeout_seconds) is followed by a
    // stop and a cold start.
    if (light_asleep(view->runtime)) {
      limit = 2 * limit + view->spec->stop_timeout_seconds;
    }
  }
  // The controller gives up at start_timeout_seconds; this is only a backstop.
  auto wait_for = std::chrono::milliseconds(static_cast<long>(limit * 1000) + 5000);
  if (grace) wait_for = std::min(wait_for, *grace);
  wait->timer.expires_after(wait_for);
  request_wake(service, [wait, ex](Status st, WakeReport told) {
    net::post(ex, [wait, st = std::move(st), told = std::move(told)]() mutable {
      wait->result = std::move(st);
      wait->report = std::move(told);
      wait->timer.cancel();
    });
  });
  auto watch = std::make_shared<ClientWatch>();
  watch->on_gone = [wait] { wait->timer.cancel(); };
  std::optional<ClientWatchScope> watching;
  if (client != nullptr) {
    watch_client(*client, watch);
    watching.emplace(*client, watch);
  }
  beast::error_code ec;
  co_await wait->timer.async_wait(ec_token(ec));
  watching.reset();
  if (watch->gone && !wait->result) {
    if (gone != nullptr) *gone = true;
    co_return Status{ErrorCode::kUnavailable, "the client went away during the wake"};
  }
  if (!wait->result && grace && still_waking != nullptr) {
    *still_waking = true;
    co_return Status{ErrorCode::kUnavailable, "service " + service + " is still waking"};
  }
  if (!wait->result) {
    co_return Status{ErrorCode::kTimeout, "service " + service + " was not ready in time"};
  }
  if (report != nullptr) *report = wait->report;
  co_return *wait->result;
}

std::optional<double> Server::expected_wake(const std::string& service) const {
  return options_.expected_wake_seconds ? options_.expected_wake_seconds(service) : std::nullopt;
}

// 503 (the real page is not there yet; nothing caches it) with the page and Retry-After.
http::response<http::string_body> Server::waking_page(const Listener& l, unsigned version) {
  http::response<http::string_body> res{http::status::service_unavailable, version};
  res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.set(http::field::retry_after, "2");
  res.set("Content-Security-Policy", wake_page::kPolicy);
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Siesta-Wake", "waking-page");
  res.body() = wake_page::page_html(l.service, expected_wake(l.service));
  res.prepare_payload();
  return res;
}

// GET /.siesta/{wake-status,wake.js,wake.css} on a service with the waking page: answered by

// siesta, never forwarded; neither a use nor a wake.
http::response<http::string_body> Server::siesta_path(const Listener& l,
                                                      const http::request_header<http::fields>& req,
                                                      std::string_view target) {
  const unsigned version = req.version();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = error_response(http::status::method_not_allowed, version, "method_not_allowed",
                              "use GET on " + std::string(target));
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  const std::string_view path = target.substr(0, target.find('?'));
  const std::string_view file = path.substr(wake_page::kPrefix.size());
  http::response<http::string_body> res{http::status::ok, version};
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  if (file == "wake-status") {
    const auto view = registry_.service(l.service);
    if (!view) {
      return error_response(http::status::not_found, version, "not_found",
                            "unknown service: " + l.service);
    }
    res.set(http::field::content_type, "application/json");
    res.body() = wake_page::status_json(l.service, view->runtime.state, expected_wake(l.service));
  } else if (const EmbeddedAsset* a = wake_page::asset(file)) {
    res.set(http::field::content_type, std::string(a->content_type));
    res.body() = std::string(a->content);
  } else {
    return error_response(
        http::status::not_found, version, "not_found",
        "no such path: " + std::string(path) + " (siesta answers /.siesta/wake-status here)");
  }
  res.prepare_payload();
  if (req.method() == http::verb::head) {
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

}  // namespace siesta::proxy
