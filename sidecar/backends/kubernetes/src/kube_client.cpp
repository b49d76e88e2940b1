#include "siesta/backends/kube_client.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "siesta/core/http_client_error.h"
#include "siesta/core/percent_encode.h"

namespace siesta {

using nlohmann::json;

namespace {

// The server ends a watch after this long (timeoutSeconds), and siesta watches again from the
// newest version: no stream is silent for longer, so a dead connection is found within it.
constexpr int kWatchSeconds = 60;
constexpr int kCallSeconds = 10;

std::string plural(const std::string& kind) { return kind + "s"; }

std::map<std::string, std::string> string_map(const json& obj, const char* key) {
  std::map<std::string, std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

int int_at(const json& obj, const char* section, const char* key, int otherwise) {
  auto s = obj.find(section);
  if (s == obj.end() || !s->is_object()) return otherwise;
  auto v = s->find(key);
  if (v == s->end() || !v->is_number_integer()) return otherwise;
  return v->get<int>();
}

// Loads every PEM certificate of `pem` into a new store; nullptr when there is none.
X509_STORE* store_of(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return nullptr;
  X509_STORE* store = X509_STORE_new();
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  ERR_clear_error();  // the end of the bundle reads as an error
  BIO_free(bio);
  if (added == 0) {
    X509_STORE_free(store);
    return nullptr;
  }
  return store;
}

}  // namespace

std::string kube_error_text(int http_status, const std::string& body) {
  std::string out = std::to_string(http_status);
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.value("kind", json()) == "Status") {
    const std::string reason = doc.value("reason", std::string());
    const std::string message = doc.value("message", std::string());
    if (!reason.empty()) out += " " + reason;
    if (!message.empty()) out += ": " + message;
    return out;
  }
  std::string text = body.substr(0, 200);
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < ' ') c = ' ';
  }
  return out + (text.empty() ? "" : ": " + text);
}

Result<Workload> parse_workload(const json& object) {
  if (!object.is_object()) return Status{ErrorCode::kFailed, "not an object"};
  const json& meta = object.value("metadata", json::object());
  Workload w;
  const std::string kind = object.value("kind", std::string());
  if (kind == "Deployment") {
    w.kind = "deployment";
  } else if (kind == "StatefulSet") {
    w.kind = "statefulset";
  } else if (!kind.empty()) {
    return Status{ErrorCode::kFailed, "not a Deployment or StatefulSet: " + kind};
  }
  if (!meta.is_object()) return Status{ErrorCode::kFailed, "no metadata"};
  w.name = meta.value("name", std::string());
  w.resource_version = meta.value("resourceVersion", std::string());
  w.labels = string_map(meta, "labels");
  w.annotations = string_map(meta, "annotations");
  w.replicas = int_at(object, "spec", "replicas", 1);
  w.ready_replicas = int_at(object, "status", "readyReplicas", 0);
  w.status_replicas = int_at(object, "status", "replicas", 0);
  return w;
}

KubeClient::KubeClient(KubeCredentials credentials) : credentials_(std::move(credentials)) {}
KubeClient::~KubeClient() = default;

std::unique_ptr<httplib::ClientImpl> KubeClient::connect(int read_timeout_seconds) {
  const auto& c = credentials_;
  std::unique_ptr<httplib::ClientImpl> cli;
  if (c.scheme == "http") {
    cli = std::make_unique<httplib::ClientImpl>(c.host, c.port);
  } else {
    X509* cert = nullptr;
    EVP_PKEY* key = nullptr;
    if (!c.client_cert_pem.empty()) {
      BIO* b =
          BIO_new_mem_buf(c.client_cert_pem.data(), static_cast<int>(c.client_cert_pem.size()));
      cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
      BIO_free(b);
      b = BIO_new_mem_buf(c.client_key_pem.data(), static_cast<int>(c.client_key_pem.size()));
      key = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
      BIO_free(b);
      ERR_clear_error();
    }
    // The context takes its own references to the certificate and key.
    auto ssl = cert != nullptr && key != nullptr
                   ? std::make_unique<httplib::SSLClient>(c.host, c.port, cert, key)
                   : std::make_unique<httplib::SSLClient>(c.host, c.port);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!c.ca_pem.empty()) {
      if (X509_STORE* store = store_of(c.ca_pem)) ssl->set_ca_cert_store(store);  // owns it
    }
    ssl->enable_server_certificate_verification(!c.insecure_skip_tls_verify);
    cli = std::move(ssl);
  }
  cli->set_connection_timeout(std::chrono::seconds(5));
  cli->set_read_timeout(std::chrono::seconds(read_timeout_seconds));
  cli->set_write_timeout(std::chrono::seconds(kCallSeconds));
  std::string token = c.token;
  if (!c.token_file.empty()) {
    std::ifstream in(c.token_file);
    std::ostringstream s;
    s << in.rdbuf();
    token = s.str();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
  }
  if (!token.empty()) cli->set_bearer_token_auth(token);
  return cli;
}

std::string KubeClient::path_of(const std::string& workload, bool scale_subresource) const {
  const auto slash = workload.find('/');
  std::string path = "/apis/apps/v1/namespaces/" + credentials_.namespace_name + "/" +
                     plural(workload.substr(0, slash)) + "/" + workload.substr(slash + 1);
  if (scale_subresource) path += "/scale";
  return path;
}

Result<json> KubeClient::request(const std::string& method, const std::string& path,
                                 const std::string& body, const std::string& content_type) {
  auto cli = connect(kCallSeconds);
  httplib::Headers headers = {{"Accept", "application/json"}};
  httplib::Result res =
      method == "GET" ? cli->Get(path, headers) : cli->Patch(path, headers, body, content_type);
  if (!res) {
    return Status{ErrorCode::kUnavailable,
                  "Kubernetes API at " + credentials_.server() + ": " + describe(res.error())};
  }
  if (res->status < 200 || res->status > 299) {
    const ErrorCode code = res->status == 404   ? ErrorCode::kNotFound
                           : res->status == 409 ? ErrorCode::kConflict
                           : res->status >= 500 ? ErrorCode::kUnavailable
                                                : ErrorCode::kFailed;
    return Status{code, kube_error_text(res->status, res->body)};
  }
  json doc = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status{ErrorCode::kFailed, "the API answered no JSON"};
  return doc;
}

Result<Workload> KubeClient::get(const std::string& workload) {
  auto doc = request("GET", path_of(workload, false));
  if (!doc) return doc.status();
  return parse_workload(*doc);
}

Result<WorkloadList> KubeClient::list(const std::string& kind, const std::string& label_selector) {
  std::string path = "/apis/apps/v1/namespaces/" + credentials_.namespace_name + "/" + plural(kind);
  if (!label_selector.empty()) path += "?labelSelector=" + percent_encode(label_selector);
  auto doc = request("GET", path);
  if (!doc) return doc.status();
  WorkloadList out;
  out.resource_version = doc->value("metadata", json::object()).value("resourceVersion", "");
  for (const auto& item : doc->value("items", json::array())) {
    auto w = parse_workload(item);
    if (!w) continue;
    // Items of a list carry no kind of their own.
    w.value().kind = kind;
    out.items.push_back(std::move(*w));
  }
  return out;
}

Status KubeClient::scale(const std::string& workload, int replicas) {
  const json patch = {{"spec", {{"replicas", replicas}}}};
  auto doc =
      request("PATCH", path_of(workload, true), patch.dump(), "application/merge-patch+json");
  return doc ? Status::ok() : doc.status();
}

Status KubeClient::annotate(const std::string& workload, const std::string& key,
                            const std::string& value) {
  const json patch = {{"metadata", {{"annotations", {{key, value}}}}}};
  auto doc =
      request("PATCH", path_of(workload, false), patch.dump(), "application/merge-patch+json");
  return doc ? Status::ok() : doc.status();
}

WatchEnd KubeClient::watch(const std::string& kind, std::string& resource_version,
                           const std::function<void(const WatchEvent&)>& on_event, Status& why) {
  auto cli = connect(kWatchSeconds + 30);
  {
    std::lock_guard lock(mu_);
    if (interrupted_) {
      why = {ErrorCode::kUnavailable, "interrupted"};
      return WatchEnd::kFailed;
    }
    watching_.insert(cli.get());
  }
  const std::string path =
      "/apis/apps/v1/namespaces/" + credentials_.namespace_name + "/" + plural(kind) +
      "?watch=1&allowWatchBookmarks=true&resourceVersion=" + percent_encode(resource_version) +
      "&timeoutSeconds=" + std::to_string(kWatchSeconds);
  int status = 0;
  std::string buffer;
  std::string error_body;
  bool expired = false;
  std::string event_error;
  auto res = cli->Get(
      path, httplib::Headers{{"Accept", "application/json"}},
      [&](const httplib::Response& r) {
        status = r.status;
        return true;
      },
      [&](const char* data, std::size_t size) {
        if (status != 200) {
          if (error_body.size() < 65536) error_body.append(data, size);
          return true;
        }
        buffer.append(data, size);
        std::size_t nl;
        while ((nl = buffer.find('\n')) != std::string::npos) {
          const std::string line = buffer.substr(0, nl);
          buffer.erase(0, nl + 1);
          if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
          json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
          if (!e.is_object()) continue;
          const std::string type = e.value("type", std::string());
          const json& object = e.value("object", json::object());
          if (type == "ERROR") {
            // A Status: 410 Expired ("too old resource version") means list again.
            const int code = object.is_object() ? object.value("code", 0) : 0;
            expired = code == 410;
            event_error = kube_error_text(code, object.dump());
            return false;
          }
          auto w = parse_workload(object);
          if (!w) continue;
          w.value().kind = kind;
          if (!w->resource_version.empty()) resource_version = w->resource_version;
          on_event({type, std::move(*w)});
        }
        return true;
      });
  bool interrupted = false;
  {
    std::lock_guard lock(mu_);
    watching_.erase(cli.get());
    interrupted = interrupted_;
  }
  if (interrupted) {
    why = {ErrorCode::kUnavailable, "interrupted"};
    return WatchEnd::kFailed;
  }
  if (expired) {
    why = {ErrorCode::kFailed, event_error};
    return WatchEnd::kExpired;
  }
  if (!event_error.empty()) {
    why = {ErrorCode::kFailed, event_error};
    return WatchEnd::kFailed;
  }
  if (status == 410) {
    why = {ErrorCode::kFailed, kube_error_text(status, error_body)};
    return WatchEnd::kExpired;
  }
  if (status != 0 && status != 200) {
    why = {ErrorCode::kFailed, kube_error_text(status, error_body)};
    return WatchEnd::kFailed;
  }
  if (!res) {
    why = {ErrorCode::kUnavailable,
           "Kubernetes API at " + credentials_.server() + ": " + describe(res.error())};
    return WatchEnd::kFailed;
  }
  return WatchEnd::kClosed;
}

void KubeClient::interrupt() {
  std::lock_guard lock(mu_);
  interrupted_ = true;
  for (auto* cli : watching_) cli->stop();
}

void KubeClient::resume() {
  std::lock_guard lock(mu_);
  interrupted_ = false;
}

}  // namespace siesta
