// The Kubernetes backend's pure parts: credentials from a kubeconfig and from a service
// account's files, the API's objects and errors as the reference shows them (the shapes the
// stand-in serves, support/kube/shapes.json), the count to wake to, and workloads' annotations
// as services.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "siesta/backends/kube_backend.h"
#include "siesta/backends/kube_client.h"
#include "siesta/config/config.h"
#include "siesta/config/labels.h"
#include "siesta/discovery/kube_sync.h"

namespace siesta {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json shape(const std::string& which) {
  std::ifstream in(std::string(SIESTA_SOURCE_DIR) + "/tests/support/kube/shapes.json");
  return json::parse(in)[which]["shape"];
}

class TempFiles {
 public:
  TempFiles() {
    dir_ = fs::temp_directory_path() /
           ("siesta-kube-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  ~TempFiles() { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

constexpr const char* kPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

TEST(KubeCredentials, AKubeconfigsCurrentContextWithATokenAndARelativeCaFile) {
  TempFiles files;
  files.write("ca.crt", kPem);
  const auto path = files.write("config", R"(apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: other
  cluster: {server: "https://10.0.0.1:6443"}
- name: prod-cluster
  cluster:
    server: https://api.example.test:6443
    certificate-authority: ca.crt
contexts:
- name: dev
  context: {cluster: other, user: nobody}
- name: prod
  context:
    cluster: prod-cluster
    user: ops
    namespace: apps
users:
- name: ops
  user:
    token: abc.def
)");
  auto c = kubeconfig_credentials(path.string());
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->host, "api.example.test");
  EXPECT_EQ(c->port, 6443);
  EXPECT_EQ(c->server(), "https://api.example.test:6443");
  EXPECT_EQ(c->ca_pem, kPem);
  EXPECT_EQ(c->token, "abc.def");
  EXPECT_EQ(c->namespace_name, "apps");
  EXPECT_NE(c->source.find("context prod"), std::string::npos);
}

TEST(KubeCredentials, InlineClientCertificateDataIsDecoded) {
  TempFiles files;
  // base64 of "CERT" and "KEY!", and of kPem for the CA.
  const auto path = files.write("config", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://127.0.0.1", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZIQ==}}]
)");
  auto c = kubeconfig_credentials(path.string());
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->port, 443);
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY!");
  EXPECT_EQ(c->namespace_name, "default");
}

TEST(KubeCredentials, WhatSiestaCannotUseIsAnErrorNamingTheFileAndWhy) {
  TempFiles files;
  auto expect_error = [&](const std::string& text, const std::string& why) {
    const auto path = files.write("config", text);
    auto c = kubeconfig_credentials(path.string());
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.status().message().find(path.string()), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find(why), std::string::npos) << c.status().message();
  };
  expect_error("current-context: x\n", "no context named x");
  expect_error("clusters: []\n", "current-context is not set");
  expect_error("key: [unclosed\n", "line");
  expect_error(R"(current-context: c
clusters: [{name: k, cluster: {server: "https://h"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {exec: {command: aws}}}]
)",
               "exec and auth-provider plugins are not supported");
  expect_error(R"(current-context: c
clusters: [{name: k, cluster: {server: "ftp://h"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {token: t}}]
)",
               "server must be https://host[:port]");
  auto missing = kubeconfig_credentials((files.dir() / "absent").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("cannot read"), std::string::npos);
}

TEST(KubeCredentials, InClusterFromTheServiceAccountFiles) {
  TempFiles files;
  files.write("token", "sa-token\n");
  files.write("ca.crt", kPem);
  files.write("namespace", "team-a\n");
  auto c = in_cluster_credentials("10.96.0.1", "443", files.dir().string());
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->server(), "https://10.96.0.1:443");
  EXPECT_EQ(c->token_file, (files.dir() / "token").string());  // read again on every call
  EXPECT_EQ(c->namespace_name, "team-a");
  EXPECT_EQ(c->ca_pem, kPem);
  EXPECT_FALSE(in_cluster_credentials(nullptr, "443", files.dir().string()));
  fs::remove(files.dir() / "token");
  auto no_token = in_cluster_credentials("10.96.0.1", "443", files.dir().string());
  ASSERT_FALSE(no_token);
  EXPECT_NE(no_token.status().message().find("token"), std::string::npos);
}

TEST(KubeCredentials, TheKubeconfigKeyWinsThenTheClusterThenKUBECONFIG) {
  TempFiles files;
  const auto path = files.write("config", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://from-file:1"}}]
contexts: [{name: c, context: {cluster: k, user: u, namespace: n1}}]
users: [{name: u, user: {token: t}}]
)");
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                                            {"KUBECONFIG", path.string() + ":/other"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto c = resolve_kube_credentials(path.string(), "override", getenv);
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->host, "from-file");
  EXPECT_EQ(c->namespace_name, "override");
  env.erase("KUBERNETES_SERVICE_HOST");
  c = resolve_kube_credentials("", "", getenv);
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->namespace_name, "n1");
}

TEST(KubeObjects, AWorkloadAsTheReferenceShowsIt) {
  json d = shape("deployment");
  d["metadata"]["name"] = "web";
  d["metadata"]["resourceVersion"] = "42";
  d["metadata"]["labels"] = {{"siesta.io/enable", "true"}};
  d["metadata"]["annotations"] = {{"siesta.io/replicas", "3"}};
  d["spec"]["replicas"] = 0;
  d["status"]["readyReplicas"] = 0;
  auto w = parse_workload(d);
  ASSERT_TRUE(w) << w.status().message();
  EXPECT_EQ(w->key(), "deployment/web");
  EXPECT_EQ(w->resource_version, "42");
  EXPECT_EQ(w->replicas, 0);
  EXPECT_EQ(kube_wake_replicas(*w, RememberedReplicas{5, std::nullopt}), 3);  // the annotation
  // The state file's count learned while the annotation said 3 is the newer; one learned before
  // the annotation was changed to 3 is not.
  EXPECT_EQ(kube_wake_replicas(*w, RememberedReplicas{5, "3"}), 5);
  EXPECT_EQ(kube_wake_replicas(*w, RememberedReplicas{5, "2"}), 3);
  EXPECT_EQ(kube_wake_replicas(*w, RememberedReplicas{5, ""}), 3);
  json s = shape("statefulset");
  s["spec"].erase("replicas");      // defaulted to 1 by the API
  s["status"] = {{"replicas", 1}};  // readyReplicas absent: none ready
  auto ss = parse_workload(s);
  ASSERT_TRUE(ss);
  EXPECT_EQ(ss->kind, "statefulset");
  EXPECT_EQ(ss->replicas, 1);
  EXPECT_EQ(ss->ready_replicas, 0);
  EXPECT_EQ(kube_wake_replicas(*ss, RememberedReplicas{4, std::nullopt}), 4);  // the state file
  EXPECT_EQ(kube_wake_replicas(*ss, std::nullopt), 1);
  ss.value().annotations["siesta.io/replicas"] = "zero";
  EXPECT_EQ(kube_wake_replicas(*ss, RememberedReplicas{4, std::nullopt}), 4);  // bad: ignored
  // An annotation must not make a wake start a hundred thousand pods (docs/security.md).
  ss.value().annotations["siesta.io/replicas"] = "100000";
  EXPECT_EQ(kube_wake_replicas(*ss, RememberedReplicas{4, std::nullopt}), 4);
  EXPECT_EQ(kube_wake_replicas(*ss, std::nullopt), 1);
  ss.value().annotations["siesta.io/replicas"] = "1000";
  EXPECT_EQ(kube_wake_replicas(*ss, std::nullopt), 1000);
}

TEST(KubeObjects, ErrorsReadAsTheirStatus) {
  json forbidden = shape("status_403");
  forbidden["message"] =
      "deployments.apps \"web\" is forbidden: User \"u\" cannot patch resource "
      "\"deployments/scale\" in API group \"apps\" in the namespace \"default\"";
  EXPECT_EQ(kube_error_text(403, forbidden.dump()),
            "403 Forbidden: deployments.apps \"web\" is forbidden: User \"u\" cannot patch "
            "resource \"deployments/scale\" in API group \"apps\" in the namespace \"default\"");
  EXPECT_EQ(kube_error_text(401, shape("status_401").dump()), "401 Unauthorized: Unauthorized");
  EXPECT_EQ(kube_error_text(502, "bad\ngateway"), "502: bad gateway");
}

TEST(KubeAnnotations, TheDockerLabelsUnderSiestaIoBecomeAService) {
  auto sc = service_from_annotations("deployment/web", {{"siesta.io/idle-timeout", "30m"},
                                                        {"siesta.io/upstream", "web:8080"},
                                                        {"siesta.io/listen", "127.0.0.1:8080"},
                                                        {"siesta.io/replicas", "3"},
                                                        {"kubectl.kubernetes.io/x", "ignored"}});
  ASSERT_TRUE(sc) << sc.status().message();
  EXPECT_EQ(sc->spec.name, "web");
  EXPECT_EQ(sc->spec.backend, "kubernetes");
  EXPECT_EQ(sc->spec.workload, "deployment/web");
  EXPECT_EQ(sc->spec.idle_timeout_minutes, 30);
  EXPECT_EQ(sc->spec.upstream_port, 8080);

  auto named = service_from_annotations("statefulset/db", {{"siesta.io/name", "database"}});
  ASSERT_TRUE(named);
  EXPECT_EQ(named->spec.name, "database");
  EXPECT_EQ(named->spec.workload, "statefulset/db");

  auto bad = service_from_annotations("deployment/web", {{"siesta.io/idle-timeout", "soon"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().message().rfind("deployment web: annotation siesta.io/idle-timeout:", 0),
            0u)
      << bad.status().message();
  auto unknown = service_from_annotations("deployment/web", {{"siesta.io/colour", "red"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("unknown annotation (known: siesta.io/enable"),
            std::string::npos)
      << unknown.status().message();
  // The Docker prefix means nothing on a workload.
  auto docker_style = service_from_annotations("deployment/web", {{"siesta.idle-timeout", "1s"}});
  ASSERT_TRUE(docker_style);
  EXPECT_FALSE(docker_style->spec.idle_timeout_minutes);
}

// Relists in a row after a 410 or an error wait longer each time, bounded (finding 6 of a new
// user's trial: a server that expired every watch was listed in a loop).
TEST(KubeWatch, RelistsBackOffExponentiallyUpToFiveSeconds) {
  using std::chrono::milliseconds;
  EXPECT_EQ(kube_relist_backoff(1, /*expired=*/true), milliseconds(0));  // as the API asks
  EXPECT_EQ(kube_relist_backoff(2, true), milliseconds(200));
  EXPECT_EQ(kube_relist_backoff(3, true), milliseconds(400));
  EXPECT_EQ(kube_relist_backoff(1, /*expired=*/false), milliseconds(200));
  EXPECT_EQ(kube_relist_backoff(2, false), milliseconds(400));
  EXPECT_EQ(kube_relist_backoff(5, false), milliseconds(3200));
  EXPECT_EQ(kube_relist_backoff(6, false), milliseconds(5000));
  EXPECT_EQ(kube_relist_backoff(1000, false), milliseconds(5000));
  EXPECT_EQ(kube_relist_backoff(1000, true), milliseconds(5000));
}

// "True" passes siesta's boolean parser but not the label selector siesta.io/enable=true: only
// "true" opts a workload in, wherever siesta reads the label.
TEST(KubeAnnotations, OnlyTheLabelValueTheSelectorMatchesOptsIn) {
  Workload w;
  w.kind = "deployment";
  w.name = "x";
  w.labels = {{"siesta.io/enable", "true"}};
  EXPECT_TRUE(kube_labelled(w));
  for (const char* value : {"True", "TRUE", "1", "yes", "false", ""}) {
    w.labels["siesta.io/enable"] = value;
    EXPECT_FALSE(kube_labelled(w)) << value;
    EXPECT_TRUE(labelled_workload_services({w}, {}).empty()) << value;
  }
}

TEST(KubeAnnotations, OnlyLabelledWorkloadsAndTheConfigWins) {
  Workload labelled;
  labelled.kind = "deployment";
  labelled.name = "a";
  labelled.labels = {{"siesta.io/enable", "true"}};
  Workload unlabelled = labelled;
  unlabelled.name = "b";
  unlabelled.labels = {{"siesta.io/enable", "false"}};
  Workload configured = labelled;
  configured.name = "c";
  ServiceConfig taken;
  taken.spec.name = "c-service";
  taken.spec.backend = "kubernetes";
  taken.spec.workload = "deployment/c";
  auto found = labelled_workload_services({labelled, unlabelled, configured}, {taken});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].spec.name, "a");
}

TEST(KubeConfig, TheSectionAndTheWorkloadKey) {
  Config c = parse_config(R"({"kubernetes": {"namespace": "apps", "label_discovery": false},
      "services": {"web": {"backend": "kubernetes"},
                   "db": {"backend": "kubernetes", "workload": "statefulset/db-0.x"}}})",
                          "test");
  EXPECT_TRUE(c.kubernetes.configured);
  EXPECT_EQ(c.kubernetes.namespace_name, "apps");
  EXPECT_FALSE(c.kubernetes.label_discovery);
  EXPECT_EQ(c.services.size(), 2u);
  for (const auto& s : c.services) {
    if (s.spec.name == "web") {
      EXPECT_EQ(s.spec.workload, "deployment/web");
    } else {
      EXPECT_EQ(s.spec.workload, "statefulset/db-0.x");
    }
  }
  auto fails = [](const std::string& text, const std::string& why) {
    try {
      parse_config(text, "f.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  fails(R"({"services": {"w": {"backend": "kubernetes", "workload": "pod/w"}}})",
        "services.w.workload: must be \"deployment/NAME\" or \"statefulset/NAME\"");
  fails(R"({"services": {"w": {"backend": "docker", "workload": "deployment/w"}}})",
        "is for backend \"kubernetes\" only");
  fails(R"({"kubernetes": {"namespace": "Apps"}})", "kubernetes.namespace: must be a namespace");
  fails(R"({"kubernetes": {"context": "x"}})", "context");
  fails(R"({"services": {"w": {"backend": "kubernetes", "sleep_tiers":
          [{"after_minutes": 1, "action": "pause"}, {"after_minutes": 2, "action": "stop"}]}}})",
        "cannot be paused");
}

}  // namespace
}  // namespace siesta
