#!/usr/bin/env python3
"""Grafana cannot be installed here, so its provisioning files are checked against the schema
Grafana documents ("Provision Grafana", administration/provisioning: data sources and dashboard
providers, apiVersion 1), and against the stack that mounts them: the provider's path is where
docker-compose.yml mounts the dashboards, and the data source is the stack's Prometheus.
    grafana_provisioning_check.py SOURCE_DIR
"""
import json
import os
import re
import sys

import yaml

SRC = os.path.abspath(sys.argv[1])
errors = []

# Documented keys and their types; "required" as the docs mark them.
DATASOURCE_TOP = {"apiVersion": int, "datasources": list, "deleteDatasources": list, "prune": bool}
DATASOURCE = {
    "name": str, "type": str, "access": str, "orgId": int, "uid": str, "url": str, "user": str,
    "database": str, "basicAuth": bool, "basicAuthUser": str, "withCredentials": bool,
    "isDefault": bool, "jsonData": dict, "secureJsonData": dict, "version": int, "editable": bool,
}
DATASOURCE_REQUIRED = ["name", "type"]
PROVIDERS_TOP = {"apiVersion": int, "providers": list}
PROVIDER = {
    "name": str, "orgId": int, "folder": str, "folderUid": str, "type": str,
    "disableDeletion": bool, "updateIntervalSeconds": int, "allowUiUpdates": bool, "options": dict,
}
PROVIDER_OPTIONS = {"path": str, "foldersFromFilesStructure": bool}


def check_keys(where, obj, schema, required=()):
    if not isinstance(obj, dict):
        errors.append(f"{where}: must be a mapping")
        return
    for key, value in obj.items():
        if key not in schema:
            errors.append(f"{where}.{key}: not a key Grafana documents ({', '.join(sorted(schema))})")
        elif not isinstance(value, schema[key]) or (schema[key] is int and isinstance(value, bool)):
            errors.append(f"{where}.{key}: must be {schema[key].__name__}, got {value!r}")
    for key in required:
        if key not in obj:
            errors.append(f"{where}.{key}: required")


def load(rel):
    with open(os.path.join(SRC, rel)) as f:
        return yaml.safe_load(f)


def check_datasources(rel):
    doc = load(rel)
    check_keys(rel, doc, DATASOURCE_TOP, ["apiVersion", "datasources"])
    if doc.get("apiVersion") != 1:
        errors.append(f"{rel}.apiVersion: must be 1")
    defaults = 0
    for i, ds in enumerate(doc.get("datasources", [])):
        where = f"{rel}.datasources[{i}]"
        check_keys(where, ds, DATASOURCE, DATASOURCE_REQUIRED)
        if ds.get("access", "proxy") not in ("proxy", "direct"):
            errors.append(f"{where}.access: must be proxy or direct")
        if ds.get("type") == "prometheus" and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", ds.get("uid", "")):
            errors.append(f"{where}.uid: a fixed uid of at most 40 [A-Za-z0-9_-] is needed")
        defaults += bool(ds.get("isDefault"))
    if defaults > 1:
        errors.append(f"{rel}: more than one isDefault data source")
    return doc


def check_providers(rel):
    doc = load(rel)
    check_keys(rel, doc, PROVIDERS_TOP, ["apiVersion", "providers"])
    if doc.get("apiVersion") != 1:
        errors.append(f"{rel}.apiVersion: must be 1")
    for i, p in enumerate(doc.get("providers", [])):
        where = f"{rel}.providers[{i}]"
        check_keys(where, p, PROVIDER, ["name", "options"])
        if p.get("type", "file") != "file":
            errors.append(f"{where}.type: must be file")
        check_keys(where + ".options", p.get("options", {}), PROVIDER_OPTIONS, ["path"])
    return doc


check_datasources("dashboards/provisioning/datasources/prometheus.yml")
stack_ds = check_datasources("deploy/grafana-datasource.yml")
providers = check_providers("dashboards/provisioning/dashboards/siesta.yml")

# Against the stack that mounts them.
stack = load("docker-compose.yml")
grafana = stack["services"]["grafana"]
mounts = {}
for v in grafana.get("volumes", []):
    host, target = v.split(":")[:2]
    mounts[target] = os.path.normpath(os.path.join(SRC, host))
for target, want in [("/etc/grafana/provisioning/datasources/siesta.yml", "deploy/grafana-datasource.yml"),
                     ("/etc/grafana/provisioning/dashboards/siesta.yml",
                      "dashboards/provisioning/dashboards/siesta.yml")]:
    if mounts.get(target) != os.path.join(SRC, want):
        errors.append(f"docker-compose.yml: grafana should mount {want} at {target}")
for p in providers.get("providers", []):
    path = p.get("options", {}).get("path", "")
    host = mounts.get(path)
    if host is None:
        errors.append(f"provider {p.get('name')}: its path {path} is not mounted in the grafana service")
    else:
        boards = [f for f in os.listdir(host) if f.endswith(".json")]
        if not boards:
            errors.append(f"provider {p.get('name')}: no dashboard JSON in {host}")
        for b in boards:
            json.load(open(os.path.join(host, b)))  # valid JSON, or this check fails loudly
prom_flags = " ".join(stack["services"]["prometheus"].get("command", []))
listen = re.search(r"--web.listen-address=(\S+)", prom_flags)
urls = [ds.get("url") for ds in stack_ds.get("datasources", []) if ds.get("type") == "prometheus"]
if not listen or f"http://{listen.group(1)}" not in urls:
    errors.append(f"deploy/grafana-datasource.yml: no Prometheus data source at the stack's "
                  f"Prometheus ({listen.group(1) if listen else '?'}); urls: {urls}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("grafana provisioning OK")
