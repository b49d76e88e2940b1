#!/usr/bin/env bash
# The docker-compose stack is valid as Compose sees it, and the files it mounts are valid for the
# programs that read them: siesta's config, Prometheus's config with siesta's rules.
set -euo pipefail
src=$1 siesta=$2
cd "$src"
docker-compose -f docker-compose.yml config -q
"$siesta" --check-config --config deploy/siesta.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Prometheus reads the rules at their path inside the container; point it at the repo's copy.
sed "s#/etc/prometheus/rules/siesta.rules.yml#$src/alerts/siesta.rules.yml#" deploy/prometheus.yml \
  > "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"
# Every file the stack mounts from the repository exists.
mounts=$(docker-compose -f docker-compose.yml config | grep -oE -- "- $src/[^:]+" | cut -c3-)
[ -n "$mounts" ] || { echo "no bind mounts found in the resolved stack" >&2; exit 1; }
for path in $mounts; do
  [ -e "$path" ] || { echo "mounted but missing: $path" >&2; exit 1; }
done
echo "compose stack OK"
