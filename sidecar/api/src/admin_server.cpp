#include "siesta/api/admin_server.h"

#include <httplib.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "siesta/api/status_json.h"
#include "siesta/config/config.h"
#include "siesta/core/decide.h"

namespace siesta {

using nlohmann::json;

namespace {

constexpr std::size_t kTrimAbove = 1024 * 1024;

// The text of a JSON value in an answer. Invalid UTF-8 (from a client's path or body, echoed in a
// message) becomes U+FFFD instead of an exception and a 500 (found by fuzz/admin_fuzz.cpp).
std::string text_of(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct Reply {
  int status = 200;
  json body;
  std::string text;  // sent as-is when body is null
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// An answer already written as JSON text.
Reply text_reply(std::string text) {
  Reply r;
  r.body = nullptr;
  r.text = std::move(text);
  return r;
}

Reply error_reply(int status, const std::string& code, const std::string& message) {
  Reply r;
  r.status = status;
  r.body = error_json(code, message);
  return r;
}

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 200;
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kTimeout:
      return 503;
    case ErrorCode::kFailed:
      return 500;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

Reply status_reply(const Status& st) {
  Reply r = error_reply(http_status(st.code()), error_code_name(st.code()), st.message());
  if (st.code() == ErrorCode::kTimeout || st.code() == ErrorCode::kUnavailable) {
    r.headers.emplace_back("Retry-After", "5");
  }
  return r;
}

// A request body: absent or empty means {}; otherwise a JSON object.
Result<json> body_object(const httplib::Request& req) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return Status{ErrorCode::kInvalidArgument, "the request body is not valid JSON"};
  }
  if (!body.is_object())
    return Status{ErrorCode::kInvalidArgument, "the request body must be a JSON object"};
  return body;
}

Status only_keys(const json& body, const std::set<std::string>& allowed) {
  for (const auto& [key, value] : body.items()) {
    if (allowed.count(key) == 0) {
      std::string known;
      for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
      return {ErrorCode::kInvalidArgument,
              "unknown field \"" + key + "\"" +
                  (known.empty() ? " (this endpoint takes no fields)" : " (known: " + known + ")")};
    }
  }
  return Status::ok();
}

using Handler = std::function<Reply(const httplib::Request&, const std::smatch&)>;

struct Route {
  std::string text;
  std::regex pattern;
  std::map<std::string, Handler> methods;
};

// Compiling a std::regex costs more than answering a request; the route patterns are the same
// for every AdminServer, so each is compiled once per process (a copy shares the automaton).
// This matters where many servers are made: the tests and the fuzzer (one per input).
std::regex compiled(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::regex> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(pattern);
  if (it == cache.end()) it = cache.emplace(pattern, std::regex(pattern)).first;
  return it->second;
}

}  // namespace

class AdminServer::Impl {
 public:
  Impl(Registry& registry, Controller& controller, Persister& persister, const Metrics& metrics,
       const Clock& clock, MonitorStatusFn monitor, AdminOptions options)
      : registry_(registry),
        controller_(controller),
        persister_(persister),
        metrics_(metrics),
        clock_(clock),
        monitor_(std::move(monitor)),
        options_(options) {
    add_routes();
    server_.new_task_queue = [n = options_.threads] { return new httplib::ThreadPool(n); };
    server_.set_payload_max_length(options_.max_body_bytes);
    // httplib's default adds SO_REUSEPORT, which lets a second siesta (or anything else) share
    // the port silently. SO_REUSEADDR alone still allows a quick restart.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server_.set_read_timeout(options_.read_timeout);
    server_.set_keep_alive_timeout(5);
    auto dispatch = [this](const httplib::Request& req, httplib::Response& res) {
      serve_one(req, res);
    };
    // One catch-all per method; our own router gives 404 vs 405 and the JSON error shape.
    server_.Get(".*", dispatch);
    server_.Post(".*", dispatch);
    server_.Put(".*", dispatch);
    server_.Patch(".*", dispatch);
    server_.Delete(".*", dispatch);
    server_.Options(".*", dispatch);
    // Errors httplib produces itself (413, 400 for a malformed request line, ...).
    server_.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          if (res.status == 400 && is_bodyless_post(req)) {
            // cpp-httplib 0.11 reads a POST without Content-Length until the connection closes
            // (RFC 9112 section 6.3: its body is empty), so `curl -X POST URL` ends up here
            // after the read timeout. It is a complete request: route it.
            send(res, route(req));
            return httplib::Server::HandlerResponse::Handled;
          }
          std::string code = res.status == 413   ? "payload_too_large"
                             : res.status == 404 ? "not_found"
                             : res.status == 405 ? "method_not_allowed"
                                                 : "bad_request";
          std::string message = res.status == 413   ? "the request body is too large"
                                : res.status == 400 ? "malformed HTTP request"
                                                    : "HTTP error " + std::to_string(res.status);
          res.set_content(text_of(error_json(code, message)), "application/json");
          return httplib::Server::HandlerResponse::Handled;
        }));
    server_.set_exception_handler(
        [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          spdlog::error("Admin API: {} {} failed: {}", req.method, req.path, what);
          res.status = 500;
          res.set_content(text_of(error_json("internal", "internal error")), "application/json");
        });
    server_.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      spdlog::debug("Admin API: {} {} -> {}", req.method, req.path, res.status);
    });
  }

  Result<int> bind(const std::string& host, int port) {
    int bound =
        port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    if (bound < 0) {
      return Status{ErrorCode::kUnavailable,
                    "cannot listen on " + host + ":" + std::to_string(port) +
                        " (address in use, or not an address of this machine)"};
    }
    return bound;
  }
  void serve() { server_.listen_after_bind(); }
  void stop() { server_.stop(); }

  // One request, start to end: authorization, then the route.
  void serve_one(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req)) {
      Reply r = error_reply(401, "unauthorized",
                            "this endpoint needs the admin token: Authorization: Bearer <token>");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"siesta\"");
      send(res, std::move(r));
      return;
    }
    send(res, route(req));
    // A large answer (idle-status, /metrics with thousands of services) freed many small blocks
    // in this thread's malloc arena; glibc keeps them, so each admin thread would hold its own
    // peak (docs/benchmarks.md). Give them back.
    if (res.body.size() > kTrimAbove) ::malloc_trim(0);
  }

 private:
  bool authorized(const httplib::Request& req) const {
    if (options_.token.empty()) return true;
    const bool guarded = req.path.rfind("/admin", 0) == 0 ||
                         (options_.protect_metrics && req.path.rfind("/metrics", 0) == 0);
    if (!guarded) return true;
    const std::string header = req.get_header_value("Authorization");
    constexpr std::string_view kScheme = "Bearer ";
    if (header.size() < kScheme.size() ||
        !std::equal(kScheme.begin(), kScheme.end(), header.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return false;
    }
    return constant_time_equal(std::string_view(header).substr(kScheme.size()), options_.token);
  }

  // Takes as long for any wrong token of a given length as for the right one: no timing hint
  // of how many leading characters matched.
  static bool constant_time_equal(std::string_view given, std::string_view expected) {
    unsigned diff = given.size() == expected.size() ? 0U : 1U;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
      diff |= static_cast<unsigned>(g ^ static_cast<unsigned char>(expected[i]));
    }
    return diff == 0;
  }

  static bool is_bodyless_post(const httplib::Request& req) {
    return req.body.empty() && !req.has_header("Content-Length") &&
           !req.has_header("Transfer-Encoding") &&
           (req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
            req.method == "DELETE");
  }

  static void send(httplib::Response& res, Reply reply) {
    res.status = reply.status;
    for (const auto& [k, v] : reply.headers) res.set_header(k, v);
    // Moved, not copied: idle-status and /metrics run to megabytes with a large fleet.
    res.body = reply.body.is_null() ? std::move(reply.text) : text_of(reply.body, 2) + "\n";
    res.set_header("Content-Type", reply.content_type);
  }

  Reply route(const httplib::Request& req) {
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    for (const auto& r : routes_) {
      std::smatch match;
      if (!std::regex_match(req.path, match, r.pattern)) continue;
      auto it = r.methods.find(method);
      if (it == r.methods.end()) {
        std::string allow;
        for (const auto& [m, h] : r.methods) allow += (allow.empty() ? "" : ", ") + m;
        Reply reply = error_reply(
            405, "method_not_allowed",
            req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
        reply.headers.emplace_back("Allow", allow);
        return reply;
      }
      return it->second(req, match);
    }
    return error_reply(404, "not_found", "no such endpoint: " + req.path);
  }

  void on(const std::string& pattern, const std::string& method, Handler handler) {
    for (auto& r : routes_) {
      if (r.text == pattern) {
        r.methods[method] = std::move(handler);
        return;
      }
    }
    routes_.push_back({pattern, compiled(pattern), {{method, std::move(handler)}}});
  }

  // Names in paths: unknown is 404, but names that could never be valid are a 400.
  std::optional<Reply> check_service(const std::string& name) {
    if (!valid_service_name(name)) {
      return error_reply(400, "invalid_argument", "invalid service name: " + text_of(json(name)));
    }
    if (!registry_.service(name)) return error_reply(404, "not_found", "unknown service: " + name);
    return std::nullopt;
  }
  std::optional<Reply> check_model(const std::string& name, bool must_be_known = true) {
    if (!valid_model_name(name)) {
      return error_reply(400, "invalid_argument", "invalid model name: " + text_of(json(name)));
    }
    if (must_be_known && !registry_.model(name)) {
      return error_reply(404, "not_found", "unknown model: " + name);
    }
    return std::nullopt;
  }

  Decision current_decision(Snapshot& snapshot) {
    snapshot = registry_.snapshot();
    return decide(snapshot, clock_.wall_now());
  }

  Reply service_reply(const std::string& name) {
    Snapshot snapshot;
    Decision d = current_decision(snapshot);
    for (size_t i = 0; i < d.services.size(); ++i) {
      if (d.services[i].name == name) {
        return text_reply(service_text(name, snapshot.services[i], d.services[i]));
      }
    }
    return error_reply(404, "not_found", "unknown service: " + name);
  }

  Reply model_reply(const std::string& name) {
    Snapshot snapshot;
    Decision d = current_decision(snapshot);
    for (size_t i = 0; i < d.models.size(); ++i) {
      if (d.models[i].name == name) {
        return text_reply(model_text(name, snapshot.models[i], d.models[i]));
      }
    }
    return error_reply(404, "not_found", "unknown model: " + name);
  }

  Reply settings_post(const httplib::Request& req) {
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    // The seed's camelCase keys, and the config file's snake_case ones.
    static const std::map<std::string, std::string> kKeys = {
        {"idleSleepEnabled", "idle_sleep_enabled"},
        {"idle_sleep_enabled", "idle_sleep_enabled"},
        {"idleTimeout", "idle_timeout_minutes"},
        {"idle_timeout_minutes", "idle_timeout_minutes"},
        {"modelKeepAlive", "model_keep_alive_hours"},
        {"model_keep_alive_hours", "model_keep_alive_hours"},
        {"idleCheckInterval", "idle_check_interval_minutes"},
        {"idle_check_interval_minutes", "idle_check_interval_minutes"}};
    std::map<std::string, std::pair<std::string, json>> changes;  // canonical -> (given, value)
    for (const auto& [key, value] : body->items()) {
      auto it = kKeys.find(key);
      if (it == kKeys.end()) {
        return error_reply(400, "invalid_argument",
                           "unknown setting \"" + key +
                               "\" (known: idleSleepEnabled, idleTimeout, modelKeepAlive, "
                               "idleCheckInterval, or their snake_case names)");
      }
      if (changes.count(it->second) != 0) {
        return error_reply(400, "invalid_argument",
                           "\"" + key + "\" and \"" + changes[it->second].first +
                               "\" set the same setting; give one");
      }
      changes[it->second] = {key, value};
    }
    if (changes.empty()) {
      return error_reply(400, "invalid_argument", "no settings given");
    }
    struct Rule {
      double min;
      bool min_exclusive;
      double max;
      const char* unit;
    };
    static const std::map<std::string, Rule> kRules = {
        {"idle_timeout_minutes", {0, true, kMaxMinutes, "minutes"}},
        {"model_keep_alive_hours", {0, false, kMaxHours, "hours"}},
        {"idle_check_interval_minutes", {0, true, kMaxMinutes, "minutes"}}};
    for (const auto& [canonical, given] : changes) {
      const auto& [key, value] = given;
      if (canonical == "idle_sleep_enabled") {
        if (!value.is_boolean()) {
          return error_reply(400, "invalid_argument",
                             "\"" + key + "\" must be true or false, got " + text_of(value));
        }
        continue;
      }
      const Rule& rule = kRules.at(canonical);
      if (!value.is_number() || !std::isfinite(value.get<double>())) {
        return error_reply(
            400, "invalid_argument",
            "\"" + key + "\" must be a number of " + rule.unit + ", got " + text_of(value));
      }
      double d = value.get<double>();
      if ((rule.min_exclusive ? d <= rule.min : d < rule.min) || d > rule.max) {
        return error_reply(400, "invalid_argument",
                           "\"" + key + "\" must be " +
                               (rule.min_exclusive ? "greater than 0" : "at least 0") +
                               " and at most " + fmt::format("{:g}", rule.max) + " " + rule.unit +
                               ", got " + text_of(value));
      }
    }
    // Everything is valid: apply all of it at once.
    Status st = controller_.update_settings([&](Settings& s) {
      for (const auto& [canonical, given] : changes) {
        const json& v = given.second;
        if (canonical == "idle_sleep_enabled") s.idle_sleep_enabled = v.get<bool>();
        if (canonical == "idle_timeout_minutes") s.idle_timeout_minutes = v.get<double>();
        if (canonical == "model_keep_alive_hours") s.model_keep_alive_hours = v.get<double>();
        if (canonical == "idle_check_interval_minutes") {
          s.idle_check_interval_minutes = v.get<double>();
        }
      }
    });
    if (!st) return status_reply(st);
    Reply r;
    r.body = settings_json(registry_.settings());
    return r;
  }

  // POST /admin/services/{name}/{action}
  Reply service_action(const httplib::Request& req, const std::string& name,
                       const std::string& action) {
    if (auto bad = check_service(name)) return *bad;
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    Status st;
    if (action == "idle-sleep") {
      if (Status keys = only_keys(*body, {"enabled"}); !keys) return status_reply(keys);
      if (!body->contains("enabled") || !(*body)["enabled"].is_boolean()) {
        return error_reply(400, "invalid_argument",
                           "\"enabled\" is required and must be true or false");
      }
      st = controller_.set_idle_sleep(name, (*body)["enabled"].get<bool>());
    } else if (action == "desired") {
      if (Status keys = only_keys(*body, {"desired"}); !keys) return status_reply(keys);
      const json& d = body->value("desired", json());
      auto desired = d.is_string() ? parse_desired(d.get<std::string>()) : std::nullopt;
      if (!desired) {
        return error_reply(400, "invalid_argument",
                           "\"desired\" is required and must be \"on\" or \"off\"");
      }
      st = controller_.set_desired(name, *desired);
    } else {
      if (Status keys = only_keys(*body, {}); !keys) return status_reply(keys);
      if (action == "wake") st = controller_.wake(name, "manual");
      if (action == "sleep") st = controller_.sleep(name);
      if (action == "touch") st = controller_.touch_service(name);
      if (action == "unload-models") st = controller_.unload_models_of(name);
    }
    if (!st) return status_reply(st);
    return service_reply(name);
  }

  Reply model_action(const httplib::Request& req, const std::string& name,
                     const std::string& action) {
    // A model to load may be one siesta has not seen: the controller asks the model servers.
    if (auto bad = check_model(name, action != "load")) return *bad;
    auto body = body_object(req);
    if (!body) return status_reply(body.status());
    if (Status keys = only_keys(*body, {}); !keys) return status_reply(keys);
    Status st = action == "unload" ? controller_.unload_model(name)
                : action == "load" ? controller_.load_model(name)
                                   : controller_.touch_model(name);
    if (!st) return status_reply(st);
    return model_reply(name);
  }

  void add_routes() {
    on("/healthz", "GET", [](const auto&, const auto&) {
      Reply r;
      r.body = {{"status", "ok"}};
      return r;
    });
    on("/metrics", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      Reply r;
      r.body = nullptr;
      r.text = metrics_.render(snapshot, d, monitor_());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return r;
    });
    on("/admin/idle-status", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      return text_reply(idle_status_text(snapshot, d, {monitor_(), persister_.enabled()}));
    });
    on("/admin/settings", "GET", [this](const auto&, const auto&) {
      Reply r;
      r.body = settings_json(registry_.settings());
      return r;
    });
    on("/admin/settings", "POST",
       [this](const auto& req, const auto&) { return settings_post(req); });
    on("/admin/services", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      return text_reply(services_text(snapshot, d));
    });
    on(R"(/admin/services/([^/]+)/(idle-sleep|wake|sleep|desired|touch|unload-models))", "POST",
       [this](const auto& req, const std::smatch& m) {
         return service_action(req, m[1].str(), m[2].str());
       });
    on(R"(/admin/services/([^/]+))", "GET", [this](const auto&, const std::smatch& m) {
      if (auto bad = check_service(m[1].str())) return *bad;
      return service_reply(m[1].str());
    });
    on("/admin/models", "GET", [this](const auto&, const auto&) {
      Snapshot snapshot;
      Decision d = current_decision(snapshot);
      return text_reply(models_text(snapshot, d));
    });
    // Model names hold ':' and may hold '/' (sent as %2F; httplib decodes the path).
    on(R"(/admin/models/(.+)/(unload|load|touch))", "POST",
       [this](const auto& req, const std::smatch& m) {
         return model_action(req, m[1].str(), m[2].str());
       });
    on(R"(/admin/models/(.+))", "GET", [this](const auto&, const std::smatch& m) {
      if (auto bad = check_model(m[1].str())) return *bad;
      return model_reply(m[1].str());
    });
  }

  Registry& registry_;
  Controller& controller_;
  Persister& persister_;
  const Metrics& metrics_;
  const Clock& clock_;
  MonitorStatusFn monitor_;
  AdminOptions options_;
  httplib::Server server_;
  std::vector<Route> routes_;
};

AdminServer::AdminServer(Registry& registry, Controller& controller, Persister& persister,
                         const Metrics& metrics, const Clock& clock, MonitorStatusFn monitor,
                         AdminOptions options)
    : impl_(std::make_unique<Impl>(registry, controller, persister, metrics, clock,
                                   std::move(monitor), options)) {}

AdminServer::~AdminServer() = default;

Result<int> AdminServer::bind(const std::string& host, int port) { return impl_->bind(host, port); }
void AdminServer::serve() { impl_->serve(); }
void AdminServer::stop() { impl_->stop(); }

AdminResponse AdminServer::handle(const std::string& method, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body) {
  httplib::Request req;
  req.method = method;
  req.path = httplib::detail::decode_url(path, false);
  req.body = body;
  for (const auto& [name, value] : headers) req.headers.emplace(name, value);
  httplib::Response res;
  impl_->serve_one(req, res);
  return {res.status, res.body, res.get_header_value("Content-Type")};
}

}  // namespace siesta
