#!/usr/bin/env bash
# deploy/kubernetes: the schema and RBAC checks (check_kubernetes.js, with the npm packages in
# NODE_MODULES), then siesta --check-config on the config its ConfigMap mounts.
set -euo pipefail
src=$1 siesta=$2 node_modules=$3
out=$(mktemp) token=$(mktemp)
trap 'rm -f "$out" "$token"' EXIT
NODE_PATH=$node_modules node "$src/tests/deploy/check_kubernetes.js" "$src/deploy/kubernetes" "$out"
# The Secret's mount point, here a file of our own (--check-config reads the token).
echo "a-token-of-at-least-16-characters" > "$token"
sed -i "s|/etc/siesta-admin/token|$token|" "$out"
grep -q "$token" "$out"
"$siesta" --check-config --config "$out"
echo "deploy/kubernetes OK"
