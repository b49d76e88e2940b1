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
# docker-compose.cpu.yml (Compose v2's !reset, which 1.29 cannot read) removes every GPU
# reservation the stack makes.
python3 - "$src" <<'PY'
import sys, yaml
src = sys.argv[1]
class Loader(yaml.SafeLoader):
    pass
Loader.add_constructor("!reset", lambda loader, node: "!reset")
stack = yaml.safe_load(open(f"{src}/docker-compose.yml"))
cpu = yaml.load(open(f"{src}/docker-compose.cpu.yml"), Loader=Loader)
gpu = [n for n, s in stack["services"].items()
       if any(d.get("driver") == "nvidia" for d in
              s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", []))]
assert gpu, "no service reserves a GPU"
missed = [n for n in gpu if cpu["services"].get(n, {}).get("deploy") != "!reset"]
assert not missed, f"docker-compose.cpu.yml leaves the GPU reservation of {missed}"
PY
echo "compose stack OK"
