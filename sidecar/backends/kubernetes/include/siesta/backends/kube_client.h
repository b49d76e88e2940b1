// KubeClient: the Kubernetes API calls the Kubernetes backend makes — apps/v1 Deployments and
// StatefulSets of one namespace, their `scale` subresource, and watches of them — over HTTPS
// with a service account's or a kubeconfig's credentials (KubeCredentials). An API error is
// its Status object's message with the HTTP code ("403 Forbidden: deployments.apps \"web\" is
// forbidden: User ... cannot patch resource ..."), so the operator reads what the API said.
//
// Thread-safe: every call opens its own connection; watch() runs on the caller's thread (one
// per kind at once) and interrupt() ends them all from another.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "siesta/core/status.h"

namespace httplib {
class ClientImpl;
}

namespace siesta {

// Where the API server is and who siesta is to it.
struct KubeCredentials {
  std::string scheme = "https";  // https; http only for `kubectl proxy` on loopback
  std::string host;
  int port = 443;
  std::string ca_pem;  // the CA bundle the server's certificate must chain to; empty: system's
  bool insecure_skip_tls_verify = false;  // kubeconfig's insecure-skip-tls-verify
  std::string token;                      // bearer token
  std::string token_file;       // read again on every call: projected service-account tokens rotate
  std::string client_cert_pem;  // client certificate and key (kubeconfig users)
  std::string client_key_pem;
  std::string namespace_name;  // the namespace siesta manages
  std::string source;          // for messages: "in-cluster service account", "kubeconfig ..."
  std::string server() const;  // "https://host:port"
};

// The in-cluster credentials: KUBERNETES_SERVICE_HOST/PORT (`host`, `port`) and the service
// account's token, ca.crt and namespace under `account_dir`.
Result<KubeCredentials> in_cluster_credentials(
    const char* host, const char* port,
    const std::string& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig's current context: its cluster's server and CA (certificate-authority or
// -data, insecure-skip-tls-verify), its user's token (token, tokenFile) or client certificate
// (client-certificate/-key or their -data), and its namespace ("default" when it has none).
// Relative file paths are relative to the kubeconfig's directory, as kubectl reads them.
Result<KubeCredentials> kubeconfig_credentials(const std::string& path);

// What siesta uses: `kubeconfig` when given; else the in-cluster credentials when
// KUBERNETES_SERVICE_HOST is set; else $KUBECONFIG (its first file); else ~/.kube/config. A
// non-empty `namespace_name` replaces the one found. `getenv` reads the environment.
Result<KubeCredentials> resolve_kube_credentials(
    const std::string& kubeconfig, const std::string& namespace_name,
    const std::function<const char*(const char*)>& getenv);

// A Deployment or a StatefulSet, as much of it as siesta reads.
struct Workload {
  std::string kind;  // deployment, statefulset
  std::string name;
  std::string resource_version;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  int replicas = 1;         // spec.replicas (1 when absent, as the API defaults it)
  int ready_replicas = 0;   // status.readyReplicas (absent: none)
  int status_replicas = 0;  // status.replicas: pods that exist, ready or not
  std::string key() const { return kind + "/" + name; }
};

// Parses an apps/v1 Deployment or StatefulSet object (also a watch event's object).
Result<Workload> parse_workload(const nlohmann::json& object);

struct WorkloadList {
  std::vector<Workload> items;
  std::string resource_version;  // the list's: where a watch begins
};

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK
  Workload object;   // for BOOKMARK only resource_version is set
};

// How a watch ended.
enum class WatchEnd {
  kClosed,   // the server ended the stream (its timeout): watch again from the last version
  kExpired,  // 410 Gone (the answer or an ERROR event): list again, then watch from the list's
  kFailed,   // any other error (Status says which); interrupted too
};

class KubeClient {
 public:
  explicit KubeClient(KubeCredentials credentials);
  ~KubeClient();

  const KubeCredentials& credentials() const { return credentials_; }
  const std::string& namespace_name() const { return credentials_.namespace_name; }

  // "deployment/web": GET the workload.
  Result<Workload> get(const std::string& workload);
  // Every workload of `kind` (deployment, statefulset) matching `label_selector` (may be empty).
  Result<WorkloadList> list(const std::string& kind, const std::string& label_selector);
  // PATCH the scale subresource: spec.replicas = `replicas`.
  Status scale(const std::string& workload, int replicas);
  // PATCH one annotation of the workload (a JSON merge patch).
  Status annotate(const std::string& workload, const std::string& key, const std::string& value);
  // Watches `kind` from `resource_version` with bookmarks; each event goes to on_event, and
  // `resource_version` follows the newest seen. Returns when the stream ends.
  WatchEnd watch(const std::string& kind, std::string& resource_version,
                 const std::function<void(const WatchEvent&)>& on_event, Status& why);
  // Ends the watches in progress (and every later one, until resume()).
  void interrupt();
  void resume();

 private:
  std::unique_ptr<httplib::ClientImpl> connect(int read_timeout_seconds);
  std::string path_of(const std::string& workload, bool scale_subresource) const;
  Result<nlohmann::json> request(const std::string& method, const std::string& path,
                                 const std::string& body = "",
                                 const std::string& content_type = "");

  const KubeCredentials credentials_;
  std::mutex mu_;
  std::set<httplib::ClientImpl*> watching_;  // guarded by mu_: one per kind watched
  bool interrupted_ = false;                 // guarded by mu_
};

// An API error answer (a Status object, or anything else) as a message: "<code> <reason>:
// <message>". Exposed for the tests.
std::string kube_error_text(int http_status, const std::string& body);

}  // namespace siesta
