// deploy/kubernetes/*.yaml checked offline:
//  - every document against the Kubernetes OpenAPI schema, with the validators the
//    kubernetes-models npm package generates from it (pinned in package-lock.json);
//  - the Role grants exactly what siesta needs (get/list/watch on deployments and statefulsets,
//    get/update/patch on their scale subresource) and is bound to siesta's ServiceAccount;
//  - the Service exposes every proxy port the example workload's annotations ask for, and the
//    admin port; the ConfigMap's siesta.json is written out for siesta --check-config.
// Usage: node check_kubernetes.js DEPLOY_DIR OUT_CONFIG (node_modules via NODE_PATH)
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const [dir, outConfig] = process.argv.slice(2);
let failures = 0;
const fail = (msg) => {
  console.error("FAIL: " + msg);
  failures++;
};

function modelOf(doc) {
  // kubernetes-models/<group/version or v1>/<Kind>
  const mod = require(`kubernetes-models/${doc.apiVersion}/${doc.kind}`);
  return mod[doc.kind];
}

function validate(doc, where) {
  try {
    const Model = modelOf(doc);
    new Model(doc).validate();
    return true;
  } catch (e) {
    fail(`${where}: ${doc.kind} ${doc.metadata && doc.metadata.name}: ${e.message}`);
    return false;
  }
}

const docs = [];
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8"))) {
    if (d.errors.length) fail(`${file}: ${d.errors[0].message}`);
    const doc = d.toJS();
    if (doc) docs.push({ file, doc });
  }
}
for (const { file, doc } of docs) validate(doc, file);
console.log(`${docs.length} documents validated against the Kubernetes OpenAPI schema`);

// The check can fail: a wrong type is refused.
const broken = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" },
                 spec: { replicas: "two", selector: {}, template: {} } };
let refused = false;
try { new (modelOf(broken))(broken).validate(); } catch (e) { refused = true; }
if (!refused) fail("the validator accepted spec.replicas: \"two\"");

const find = (kind, name) => docs.map((d) => d.doc).find(
    (d) => d.kind === kind && (!name || d.metadata.name === name));

// No admin token is shipped (a public placeholder would be accepted as the token), and a restart
// of siesta's pod leaves the workloads up (on_exit "leave"; "stop" scales them all to 0).
if (find("Secret")) fail("a Secret is shipped: the admin token must be created by the operator");
{
  const cm = find("ConfigMap", "siesta-config");
  const text = (cm && cm.data && cm.data["siesta.json"]) || "";
  if (!/"on_exit":\s*"leave"/.test(text)) fail("the shipped config does not set \"on_exit\": \"leave\"");
}

// RBAC: exactly the verbs siesta uses, nothing more.
const role = find("Role", "siesta");
const want = {
  "deployments,statefulsets": ["get", "list", "watch"],
  "deployments/scale,statefulsets/scale": ["get", "patch", "update"],
};
const got = {};
for (const r of (role && role.rules) || []) {
  if (JSON.stringify(r.apiGroups) !== '["apps"]') fail(`Role rule outside apps: ${JSON.stringify(r)}`);
  got[[...r.resources].sort().join(",")] = [...r.verbs].sort();
}
if (JSON.stringify(got) !== JSON.stringify(want)) {
  fail(`Role grants ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
const binding = find("RoleBinding", "siesta");
const deployment = find("Deployment", "siesta");
if (!binding || binding.roleRef.name !== "siesta" ||
    !binding.subjects.some((s) => s.kind === "ServiceAccount" &&
                                  s.name === deployment.spec.template.spec.serviceAccountName)) {
  fail("the RoleBinding does not bind the Role to the ServiceAccount siesta's pod runs as");
}

// Ports: each labelled workload's siesta.io/listen port is a containerPort of siesta and a port
// of its Service; the workload is in siesta's namespace (one siesta per namespace).
const container = deployment.spec.template.spec.containers[0];
const containerPorts = new Map(container.ports.map((p) => [p.containerPort, p.name]));
const service = find("Service", "siesta");
const servicePorts = new Set(service.spec.ports.map((p) => p.targetPort));
const workloads = docs.map((d) => d.doc).filter(
    (d) => ["Deployment", "StatefulSet"].includes(d.kind) &&
           (d.metadata.labels || {})["siesta.io/enable"] === "true");
if (!workloads.length) fail("no workload is labelled siesta.io/enable=true");
for (const w of workloads) {
  if (w.metadata.namespace !== deployment.metadata.namespace) {
    fail(`${w.metadata.name} is not in siesta's namespace`);
  }
  const listen = (w.metadata.annotations || {})["siesta.io/listen"];
  const port = listen && Number(listen.split(":").pop());
  if (!containerPorts.has(port)) fail(`${w.metadata.name}: siesta.io/listen port ${port} is not a containerPort of siesta`);
  else if (!servicePorts.has(containerPorts.get(port))) fail(`${w.metadata.name}: port ${port} is not on the Service siesta`);
}
if (!servicePorts.has("admin")) fail("the Service siesta does not expose the admin port");

const config = find("ConfigMap", "siesta-config");
fs.writeFileSync(outConfig, config.data["siesta.json"]);

if (failures) process.exit(1);
console.log("kubernetes deploy files OK");
