#!/usr/bin/env bash
# deploy/docker-stack.yml is a valid stack and the config it mounts is valid for siesta:
#  - docker-compose config (Debian's 1.29: the Compose file schema 3.8, deploy keys included;
#    Debian's docker CLI 20.10 has no `docker stack config`);
#  - siesta --check-config on deploy/siesta-swarm.json;
#  - `docker stack deploy` for real on the test swarm ($SIESTA_SWARM_DOCKER_HOST): the engine
#    takes it, and the labelled service's siesta.* labels land on its spec, where the Swarm
#    backend reads them (the images are not there; the tasks are not the point).
set -euo pipefail
src=$1 siesta=$2
cd "$src/deploy"
resolved=$(mktemp)
export DOCKER_HOST=${SIESTA_SWARM_DOCKER_HOST:-unix:///tmp/siesta-swarm/docker.sock}
stack=siesta-check-$$
trap 'rm -f "$resolved" "$resolved.bad"; docker stack rm "$stack" >/dev/null 2>&1 || true' EXIT
docker-compose -f docker-stack.yml config > "$resolved"
"$siesta" --check-config --config siesta-swarm.json
# The check itself can fail: a misspelt key is refused.
sed 's/^    deploy:/    deploi:/' docker-stack.yml > "$resolved.bad"
if docker-compose -f "$resolved.bad" config >/dev/null 2>&1; then
  echo "docker-compose config accepted a misspelt key" >&2; exit 1
fi
docker_cli=/usr/bin/docker; [ -x "$docker_cli" ] || docker_cli=docker
"$docker_cli" stack deploy --resolve-image never -c docker-stack.yml "$stack"
labels=$("$docker_cli" service inspect -f '{{json .Spec.Labels}}' "${stack}_web")
echo "${stack}_web spec labels: $labels"
grep -q '"siesta.enable":"true"' <<<"$labels"
grep -q '"siesta.listen":"127.0.0.1:9090"' <<<"$labels"
[ "$("$docker_cli" service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "${stack}_web")" = 1 ]
python3 - "$resolved" <<'PY'
import json, re, sys, yaml
stack = yaml.safe_load(open(sys.argv[1]))
config = json.loads(re.sub(r"^\s*//.*$", "", open("siesta-swarm.json").read(), flags=re.M))
assert config["docker"]["swarm"] is True, "siesta-swarm.json: docker.swarm must be true"
siesta = stack["services"]["siesta"]
assert "node.role == manager" in siesta["deploy"]["placement"]["constraints"], \
    "siesta must run on a manager: the Swarm API is a manager's"
labelled = {n: s for n, s in stack["services"].items()
            if s.get("deploy", {}).get("labels", {}).get("siesta.enable") == "true"}
assert labelled, "no service has deploy.labels siesta.enable=true"
for name, s in labelled.items():
    labels = s["deploy"]["labels"]
    assert s["deploy"].get("mode", "replicated") == "replicated", f"{name}: global cannot scale to 0"
    assert "siesta.upstream" in labels and "siesta.listen" in labels, f"{name}: upstream, listen"
    assert "hostnet" in s["networks"], f"{name}: must be on the host network"
    # siesta.* labels outside deploy would go to the containers, where the backend does not look.
    assert not any(k.startswith("siesta.") for k in s.get("labels", {})), f"{name}: container labels"
PY
echo "swarm stack OK"
