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
# docker-compose.gpu.yml only adds (so Compose 1.29 applies it too): with it, Ollama and Whisper
# reserve an NVIDIA GPU as Compose resolves the two files; without it, nothing does.
gpu_of() {
  docker-compose "$@" config | python3 -c '
import sys, yaml
stack = yaml.safe_load(sys.stdin)
print(" ".join(sorted(n for n, s in stack["services"].items()
      if any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
             for d in s.get("deploy", {}).get("resources", {}).get("reservations", {})
                        .get("devices", [])))))'
}
[ -z "$(gpu_of -f docker-compose.yml)" ] || { echo "the base stack reserves a GPU" >&2; exit 1; }
with_gpu=$(gpu_of -f docker-compose.yml -f docker-compose.gpu.yml)
[ "$with_gpu" = "ollama whisper" ] ||
  { echo "docker-compose.gpu.yml gives a GPU to '$with_gpu', not 'ollama whisper'" >&2; exit 1; }
# The Docker socket proxy has no network: it is reached only through its socket in a volume
# that siesta alone shares with it.
docker-compose -f docker-compose.yml config | python3 -c '
import sys, yaml
s = yaml.safe_load(sys.stdin)["services"]
proxy = s["docker-socket-proxy"]
assert proxy.get("network_mode") == "none", proxy.get("network_mode")
assert "ports" not in proxy, proxy["ports"]
sharing = sorted(n for n, svc in s.items()
                 if any(isinstance(v, dict) and v.get("source") == "docker-api" or
                        isinstance(v, str) and v.startswith("docker-api:")
                        for v in svc.get("volumes", [])))
assert sharing == ["docker-socket-proxy", "siesta"], sharing
'
echo "compose stack OK"
