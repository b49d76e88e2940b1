// Where the API server is and who siesta is to it: the in-cluster service account, or a
// kubeconfig's current context (read with libyaml; kubeconfigs are YAML, JSON being YAML too).
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "siesta/backends/kube_client.h"

namespace siesta {

using nlohmann::json;
namespace fs = std::filesystem;

std::string KubeCredentials::server() const {
  return scheme + "://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

namespace {

Status bad(const std::string& source, const std::string& why) {
  return {ErrorCode::kInvalidArgument, source + ": " + why};
}

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::optional<std::string> base64_decode(const std::string& text) {
  std::string clean;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
  }
  if (clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  std::size_t size = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (!clean.empty() && clean.back() == '=') --size;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') --size;
  out.resize(size);
  return out;
}

// One YAML node as JSON: mappings, sequences and scalars (all scalars as strings except
// plain true/false, which kubeconfig's insecure-skip-tls-verify uses).
json to_json(yaml_document_t* doc, yaml_node_t* node, int depth) {
  if (node == nullptr || depth > 64) return nullptr;
  switch (node->type) {
    case YAML_SCALAR_NODE: {
      std::string value(reinterpret_cast<const char*>(node->data.scalar.value),
                        node->data.scalar.length);
      if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (value == "true") return true;
        if (value == "false") return false;
        if (value == "null" || value == "~") return nullptr;
      }
      return value;
    }
    case YAML_SEQUENCE_NODE: {
      json out = json::array();
      for (yaml_node_item_t* item = node->data.sequence.items.start;
           item < node->data.sequence.items.top; ++item) {
        out.push_back(to_json(doc, yaml_document_get_node(doc, *item), depth + 1));
      }
      return out;
    }
    case YAML_MAPPING_NODE: {
      json out = json::object();
      for (yaml_node_pair_t* pair = node->data.mapping.pairs.start;
           pair < node->data.mapping.pairs.top; ++pair) {
        json key = to_json(doc, yaml_document_get_node(doc, pair->key), depth + 1);
        if (!key.is_string()) continue;
        out[key.get<std::string>()] =
            to_json(doc, yaml_document_get_node(doc, pair->value), depth + 1);
      }
      return out;
    }
    case YAML_NO_NODE:
      break;
  }
  return nullptr;
}

Result<json> parse_yaml(const std::string& text, const std::string& source) {
  yaml_parser_t parser;
  if (yaml_parser_initialize(&parser) == 0) return bad(source, "cannot start the YAML parser");
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  yaml_document_t doc;
  if (yaml_parser_load(&parser, &doc) == 0) {
    std::string why = parser.problem != nullptr ? parser.problem : "invalid YAML";
    why += " at line " + std::to_string(parser.problem_mark.line + 1);
    yaml_parser_delete(&parser);
    return bad(source, why);
  }
  json out = to_json(&doc, yaml_document_get_root_node(&doc), 0);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return out;
}

// The entry of `list` (clusters, users, contexts) named `name`: its inner object.
const json* named(const json& config, const char* list, const std::string& name,
                  const char* inner) {
  auto it = config.find(list);
  if (it == config.end() || !it->is_array()) return nullptr;
  for (const auto& e : *it) {
    if (e.is_object() && e.value("name", json()) == name) {
      auto in = e.find(inner);
      return in != e.end() && in->is_object() ? &*in : nullptr;
    }
  }
  return nullptr;
}

// A PEM given as a file (`file_key`) or inline base64 (`data_key`).
Result<std::string> pem_of(const json& obj, const char* file_key, const char* data_key,
                           const fs::path& base, const std::string& source) {
  if (auto d = obj.find(data_key); d != obj.end() && d->is_string()) {
    auto pem = base64_decode(d->get<std::string>());
    if (!pem) return bad(source, std::string(data_key) + " is not base64");
    return *pem;
  }
  if (auto f = obj.find(file_key); f != obj.end() && f->is_string()) {
    fs::path p = f->get<std::string>();
    if (p.is_relative()) p = base / p;
    auto pem = read_file(p);
    if (!pem) return bad(source, std::string(file_key) + ": cannot read " + p.string());
    return *pem;
  }
  return std::string();
}

bool parse_server(const std::string& server, KubeCredentials& out) {
  const auto colon_slash = server.find("://");
  if (colon_slash == std::string::npos) return false;
  out.scheme = server.substr(0, colon_slash);
  if (out.scheme != "https" && out.scheme != "http") return false;
  std::string rest = server.substr(colon_slash + 3);
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/") return false;  // a path prefix: not supported
    rest = rest.substr(0, slash);
  }
  out.port = out.scheme == "https" ? 443 : 80;
  std::string host = rest;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) return false;
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    if (!rest.empty())
      rest = rest.substr(1);
    else
      rest.clear();
    if (!rest.empty()) {
      try {
        out.port = std::stoi(rest);
      } catch (...) {
        return false;
      }
    }
  } else if (auto c = rest.rfind(':'); c != std::string::npos) {
    host = rest.substr(0, c);
    try {
      out.port = std::stoi(rest.substr(c + 1));
    } catch (...) {
      return false;
    }
  }
  out.host = host;
  return !host.empty() && out.port > 0 && out.port < 65536;
}

}  // namespace

Result<KubeCredentials> in_cluster_credentials(const char* host, const char* port,
                                               const std::string& account_dir) {
  const std::string source = "in-cluster service account (" + account_dir + ")";
  if (host == nullptr || *host == '\0') return bad(source, "KUBERNETES_SERVICE_HOST is not set");
  KubeCredentials c;
  c.source = source;
  c.host = host;
  c.port = 443;
  if (port != nullptr && *port != '\0') {
    try {
      c.port = std::stoi(port);
    } catch (...) {
      return bad(source, std::string("KUBERNETES_SERVICE_PORT is not a port: ") + port);
    }
  }
  const fs::path dir = account_dir;
  c.token_file = (dir / "token").string();
  if (!read_file(c.token_file)) return bad(source, "cannot read the token " + c.token_file);
  auto ca = read_file(dir / "ca.crt");
  if (!ca) return bad(source, "cannot read " + (dir / "ca.crt").string());
  c.ca_pem = *ca;
  auto ns = read_file(dir / "namespace");
  c.namespace_name = ns ? trim(*ns) : "default";
  return c;
}

Result<KubeCredentials> kubeconfig_credentials(const std::string& path) {
  std::string source = "kubeconfig " + path;
  auto text = read_file(path);
  if (!text) return bad(source, "cannot read the file");
  auto config = parse_yaml(*text, source);
  if (!config) return config.status();
  if (!config->is_object()) return bad(source, "is not a kubeconfig (no mapping at the top)");
  const std::string context = config->value("current-context", json("")).is_string()
                                  ? config->value("current-context", std::string())
                                  : std::string();
  if (context.empty()) return bad(source, "current-context is not set");
  source += " (context " + context + ")";
  const json* ctx = named(*config, "contexts", context, "context");
  if (ctx == nullptr) return bad(source, "no context named " + context);
  const std::string cluster_name = ctx->value("cluster", std::string());
  const std::string user_name = ctx->value("user", std::string());
  const json* cluster = named(*config, "clusters", cluster_name, "cluster");
  if (cluster == nullptr) return bad(source, "no cluster named \"" + cluster_name + "\"");
  KubeCredentials c;
  c.source = source;
  if (!parse_server(cluster->value("server", std::string()), c)) {
    return bad(source, "cluster " + cluster_name + ": server must be https://host[:port], got \"" +
                           cluster->value("server", std::string()) + "\"");
  }
  const fs::path base = fs::path(path).parent_path();
  auto ca = pem_of(*cluster, "certificate-authority", "certificate-authority-data", base, source);
  if (!ca) return ca.status();
  c.ca_pem = *ca;
  c.insecure_skip_tls_verify = cluster->value("insecure-skip-tls-verify", false) == true;
  c.namespace_name = ctx->value("namespace", std::string("default"));
  if (!user_name.empty()) {
    const json* user = named(*config, "users", user_name, "user");
    if (user == nullptr) return bad(source, "no user named \"" + user_name + "\"");
    c.token = user->value("token", std::string());
    if (auto tf = user->find("tokenFile"); tf != user->end() && tf->is_string()) {
      fs::path p = tf->get<std::string>();
      if (p.is_relative()) p = base / p;
      c.token_file = p.string();
      if (!read_file(p)) return bad(source, "user " + user_name + ": cannot read " + p.string());
    }
    auto cert = pem_of(*user, "client-certificate", "client-certificate-data", base, source);
    if (!cert) return cert.status();
    auto key = pem_of(*user, "client-key", "client-key-data", base, source);
    if (!key) return key.status();
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return bad(source, "user " + user_name +
                             ": a client certificate needs its key, and a key "
                             "its certificate");
    }
    if (user->contains("exec") || user->contains("auth-provider")) {
      if (c.token.empty() && c.token_file.empty() && c.client_cert_pem.empty()) {
        return bad(source, "user " + user_name +
                               ": exec and auth-provider plugins are not supported: give a "
                               "token, tokenFile or client certificate");
      }
    }
  }
  if (c.token.empty() && c.token_file.empty() && c.client_cert_pem.empty()) {
    return bad(source, "user \"" + user_name +
                           "\" has no credentials siesta can use (token, tokenFile, "
                           "client-certificate and client-key)");
  }
  return c;
}

Result<KubeCredentials> resolve_kube_credentials(
    const std::string& kubeconfig, const std::string& namespace_name,
    const std::function<const char*(const char*)>& getenv) {
  Result<KubeCredentials> found = Status{ErrorCode::kInternal, "unset"};
  const char* service_host = getenv("KUBERNETES_SERVICE_HOST");
  if (!kubeconfig.empty()) {
    found = kubeconfig_credentials(kubeconfig);
  } else if (service_host != nullptr && *service_host != '\0') {
    found = in_cluster_credentials(service_host, getenv("KUBERNETES_SERVICE_PORT"));
  } else if (const char* env = getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    std::string first = env;
    first = first.substr(0, first.find(':'));
    found = kubeconfig_credentials(first);
  } else if (const char* home = getenv("HOME"); home != nullptr && *home != '\0') {
    found = kubeconfig_credentials((fs::path(home) / ".kube" / "config").string());
  } else {
    return Status{ErrorCode::kInvalidArgument,
                  "no Kubernetes credentials: not in a cluster (KUBERNETES_SERVICE_HOST unset), "
                  "no kubernetes.kubeconfig, KUBECONFIG or HOME"};
  }
  if (found && !namespace_name.empty()) found.value().namespace_name = namespace_name;
  return found;
}

}  // namespace siesta
