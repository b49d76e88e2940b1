#!/usr/bin/env bash
# docker-compose.yml for real, on the private engine (scripts/docker-engine.sh): the shipped file
# with tests/compose/docker-compose.test.yml over it (local stand-ins for the images, host
# network, ports of its own, short timeouts), then the seed's behaviour checked on the running
# stack. Usage: stack_test.sh SOURCE_DIR SIESTA_BINARY
set -euo pipefail
src=$(cd "$1" && pwd) siesta=$2
project=siesta-compose-e2e
admin=http://localhost:28081
docker_cli=/usr/bin/docker; [ -x "$docker_cli" ] || docker_cli=docker
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/siesta-docker/docker.sock}
case "$DOCKER_HOST" in unix://*) ;; *) echo "needs a unix DOCKER_HOST, got $DOCKER_HOST" >&2; exit 1 ;; esac
start=$(date +%s)
step() { echo "[$(( $(date +%s) - start ))s] $*"; }

work=$(mktemp -d /tmp/siesta-compose-e2e.XXXXXX)
compose() { docker-compose -p "$project" -f "$work/stack.yml" "$@"; }
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -f "$work/stack.yml" ]; then
    compose ps -a || true
    compose logs --no-color --tail 40 siesta docker-socket-proxy ollama 2>&1 | tail -n 120 || true
  fi
  [ -f "$work/stack.yml" ] && compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Polls `cmd` every 0.5 s for up to $1 seconds.
wait_for() {
  local secs=$1; shift
  for _ in $(seq $((secs * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
status() { "$docker_cli" inspect -f '{{.State.Status}}' "$(compose ps -q "$1")"; }
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# 1. The stand-ins and the stack's own files.
step "base image"
base=$(bash "$src/tests/compose/debian_base.sh")
mkdir -p "$work/standins"
cp "$src"/tests/compose/standins/* "$src/tests/support/ollama_emulator.py" "$work/standins/"
cp "$siesta" "$work/standins/siesta"
# The shipped config and Prometheus config, on the test's ports and with short intervals.
python3 - "$src" "$work" <<'PY'
import json, re, sys
src, work = sys.argv[1], sys.argv[2]
text = open(f"{src}/deploy/siesta.json").read()
config = json.loads(re.sub(r"(?m)^\s*//.*$", "", text))
config["listen"] = "127.0.0.1:28081"
config["proxy"]["wake_listen"] = "127.0.0.1:28082"
config["idle_check_interval_minutes"] = 0.05
open(f"{work}/siesta.json", "w").write(json.dumps(config, indent=2))
prom = open(f"{src}/deploy/prometheus.yml").read()
prom = prom.replace("127.0.0.1:8081", "127.0.0.1:28081").replace("15s", "2s")
open(f"{work}/prometheus.yml", "w").write(prom)
PY
export SIESTA_STANDINS="$work/standins" SIESTA_STANDIN_BASE="$base" SIESTA_E2E_DIR="$work"
export SIESTA_DOCKER_SOCK="${DOCKER_HOST#unix://}"
mkdir -p "$work/docker-api"
# The resolved stack, without what this engine cannot do: networks with published ports (no
# bridge here: every container is on the host network, except the socket proxy, which has none).
docker-compose -p "$project" -f "$src/docker-compose.yml" -f "$src/tests/compose/docker-compose.test.yml" \
  config > "$work/resolved.yml"
python3 - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
stack = yaml.safe_load(open(f"{work}/resolved.yml"))
for name, svc in stack["services"].items():
    assert "deploy" not in svc, f"the shipped stack reserves a GPU for {name}"
    svc.pop("ports", None)
    svc.pop("networks", None)
    if svc.get("network_mode") != "none":
        svc["network_mode"] = "host"
stack.pop("networks", None)
yaml.safe_dump(stack, open(f"{work}/stack.yml", "w"), sort_keys=False)
PY
# Leftovers of an interrupted run.
compose down -v --remove-orphans >/dev/null 2>&1 || true

# 2. Up, without Grafana (not installable here: dashboards are checked against Prometheus by
# metrics.dashboards_e2e, the provisioning files by compose.grafana_provisioning).
step "docker-compose up"
services="siesta docker-socket-proxy ollama qdrant whisper redis prometheus"
compose up -d --build --no-color $services >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "up"; }
step "stack up"
wait_for 30 curl -sf "$admin/healthz" || fail "siesta's admin API never answered"

# 3. siesta finds every service by its labels, under the seed's names.
has_all() {
  curl -sf "$admin/admin/idle-status" | jq_py \
    "all(s in d['services'] for s in ['ollama','qdrant','whisper','redis']) or sys.exit(1)"
}
wait_for 15 has_all || fail "services not all discovered: $(curl -s "$admin/admin/idle-status")"
step "discovered ollama, qdrant, whisper, redis"

# 4. The socket proxy refuses what siesta must not do.
proxy=http://docker
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
pcode() { code --unix-socket "$work/docker-api/docker.sock" "$@"; }  # to the socket proxy
[ "$(pcode "$proxy/containers/json")" = 200 ] || fail "the socket proxy does not let reads through"
[ "$(pcode "$proxy/v1.41/containers/$(compose ps -q redis)/stats?stream=false&one-shot=true")" = 200 ] ||
  fail "the socket proxy refuses the stats the activity signals read"
redis_id=$(compose ps -q redis)
[ "$(pcode -X POST -H 'Content-Type: application/json' -d '{"Image": "x"}' "$proxy/containers/create")" = 403 ] ||
  fail "create not refused"
[ "$(pcode -X POST -H 'Content-Type: application/json' -d '{"Cmd": ["id"]}' "$proxy/containers/$redis_id/exec")" = 403 ] ||
  fail "exec not refused"
[ "$(pcode -X DELETE "$proxy/containers/$redis_id")" = 403 ] || fail "delete not refused"
[ "$(pcode -X POST "$proxy/v1.41/containers/$redis_id/kill")" = 403 ] || fail "kill not refused"
# A start that carries a HostConfig (API < 1.24 applies it: the host's / mounted, privileged) or
# any other body, and the old API versions themselves (found by a new user's trial: root on the
# host through a stopped container's start).
qdrant_id=$(compose ps -q qdrant)
[ "$(pcode -X POST -H 'Content-Type: application/json' -d '{"Binds": ["/:/host"], "Privileged": true}' \
  "$proxy/v1.23/containers/$qdrant_id/start")" = 403 ] || fail "a v1.23 start with a HostConfig not refused"
[ "$(pcode -X POST -H 'Content-Type: application/json' -d '{"Binds": ["/:/host"]}' \
  "$proxy/v1.41/containers/$qdrant_id/start")" = 403 ] || fail "a start with a body not refused"
[ "$(pcode -X POST -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/json' -d '{}' \
  "$proxy/containers/$qdrant_id/start")" = 403 ] || fail "a chunked start not refused"
[ "$(pcode "$proxy/v1.12/containers/json")" = 403 ] || fail "API 1.12 not refused"
[ "$(pcode "$proxy/v1.24/containers/json")" = 200 ] || fail "API 1.24 refused"
binds=$("$docker_cli" inspect -f '{{json .HostConfig.Binds}} {{.HostConfig.Privileged}}' "$qdrant_id")
case "$binds" in *"/:/host"*|*true) fail "the qdrant container was changed: $binds" ;; esac
step "socket proxy: create, exec, delete, kill, starts with a body, API < 1.24 refused with 403"

# 5. A generate through siesta's port wakes Ollama (stopped first, to see the wake), the model
# shows with the label's keep-alive, and the seed's commands answer as the seed says.
curl -sf -X POST "$admin/admin/services/ollama/sleep" >/dev/null || fail "sleep ollama"
[ "$(status ollama)" = exited ] || fail "ollama not stopped: $(status ollama)"
gen=$(curl -sf -D "$work/gen.headers" http://127.0.0.1:28434/api/generate \
  -d '{"model": "llama3.2:3b", "prompt": "hi", "stream": false}') || fail "generate through 28434"
grep -qi '^X-Siesta-Wake' "$work/gen.headers" || fail "the generate did not wake ollama"
[ "$(status ollama)" = running ] || fail "ollama not running after the generate"
model=$(curl -sf "$admin/admin/idle-status" | jq_py "json.dumps(d['models'].get('llama3.2:3b'))")
echo "$model" | jq_py "d['provider'] == 'ollama' and d['loaded'] and abs(d['keep_alive_until'] - d['last_used'] - 60) <= 1 or sys.exit(1)" \
  >/dev/null || fail "model after the generate: $model"
step "generate woke ollama; llama3.2:3b loaded, keep-alive 60 s (siesta.model-keep-alive)"

# The seed's debugging commands (its port 8081 is 28081 here).
out=$(curl -s $admin/admin/idle-status)
echo "$out" | grep -q '"monitor_task_running": true' || fail "idle-status: $out"
curl -s -X POST $admin/admin/models/llama3.2:3b/unload >"$work/unload"
grep -q '"keep_alive_until": 0' "$work/unload" || fail "unload: $(cat "$work/unload")"
curl -sf http://127.0.0.1:28435/api/ps | jq_py "d['models'] == [] or sys.exit(1)" >/dev/null ||
  fail "Ollama still has the model after the forced unload"
curl -s -X POST $admin/admin/services/ollama/idle-sleep \
  -H "Content-Type: application/json" \
  -d '{"enabled": false}' >"$work/toggle"
grep -q '"idle_sleep_enabled": false' "$work/toggle" || fail "toggle: $(cat "$work/toggle")"
[ "$(code -X POST $admin/admin/settings -H "Content-Type: application/json" \
  -d '{"idleSleepEnabled": true, "idleTimeout": 30, "modelKeepAlive": 1, "idleCheckInterval": 3}')" = 200 ] ||
  fail "settings"
step "seed's debugging commands answered"
# Back to short checks for the rest of the test.
curl -sf -X POST $admin/admin/settings -H "Content-Type: application/json" \
  -d '{"idleCheckInterval": 0.05}' >/dev/null || fail "settings back"

# 6. The model loaded again expires after its keep-alive and siesta unloads it; meanwhile Qdrant
# and Whisper (20 s) stop, Redis (idle sleep off) keeps running.
curl -sf http://127.0.0.1:28434/api/generate -d '{"model": "llama3.2:3b", "prompt": "hi", "stream": false}' \
  >/dev/null || fail "second generate"
loaded_at=$(date +%s)
stopped() { [ "$(status "$1")" = exited ]; }
wait_for 60 stopped qdrant || fail "qdrant still $(status qdrant) past its 20 s idle timeout"
wait_for 30 stopped whisper || fail "whisper still $(status whisper) past its 20 s idle timeout"
step "qdrant and whisper stopped when idle"
unloaded() {
  curl -sf "$admin/admin/idle-status" | jq_py "not d['models']['llama3.2:3b']['loaded'] or sys.exit(1)"
}
wait_for 90 unloaded || fail "llama3.2:3b not unloaded: $(curl -s "$admin/admin/idle-status")"
took=$(( $(date +%s) - loaded_at ))
[ "$took" -ge 55 ] || fail "unloaded after ${took}s, before its 60 s keep-alive"
curl -sf http://127.0.0.1:28435/api/ps | jq_py "d['models'] == [] or sys.exit(1)" >/dev/null ||
  fail "Ollama still has the model"
[ "$(status redis)" = running ] || fail "redis was stopped"
curl -sf "$admin/admin/idle-status" | jq_py "d['services']['redis']['actual'] == 'running' or sys.exit(1)" \
  >/dev/null || fail "redis not running in idle-status"
step "llama3.2:3b unloaded by siesta after ${took}s; redis still running"
# A request through its port wakes a sleeping service.
curl -sf http://127.0.0.1:28333/collections | grep -q '"status": "ok"' || fail "qdrant through 28333"
[ "$(status qdrant)" = running ] || fail "qdrant not woken"

# 7. The stack's Prometheus scrapes siesta, and siesta's rules are loaded and healthy.
prom=http://127.0.0.1:28090
scraped() {
  curl -sf "$prom/api/v1/query?query=up%7Bjob%3D%22siesta%22%7D" | jq_py \
    "d['data']['result'] and d['data']['result'][0]['value'][1] == '1' or sys.exit(1)"
}
wait_for 30 scraped || fail "Prometheus does not scrape siesta"
rules_ok() {
  curl -sf "$prom/api/v1/rules" | jq_py \
    "[r for g in d['data']['groups'] for r in g['rules']] and all(r['health'] == 'ok' for g in d['data']['groups'] for r in g['rules']) or sys.exit(1)"
}
wait_for 30 rules_ok || fail "rules: $(curl -s "$prom/api/v1/rules" | head -c 2000)"
rules=$(curl -sf "$prom/api/v1/rules" | jq_py "sum(len(g['rules']) for g in d['data']['groups'])")
step "Prometheus scrapes siesta; $rules rules healthy"

# 8. State survives a restart of siesta: the toggle and the settings.
compose restart siesta >/dev/null 2>&1 || fail "restart"
wait_for 30 curl -sf "$admin/healthz" || fail "siesta did not come back"
wait_for 15 has_all || fail "services not rediscovered after the restart"
after=$(curl -sf "$admin/admin/idle-status")
echo "$after" | jq_py "d['services']['ollama']['idle_sleep_enabled'] is False and d['idle_timeout_minutes'] == 30 or sys.exit(1)" \
  >/dev/null || fail "state lost in the restart: $after"
step "state survived docker-compose restart siesta"

# 9. down -v leaves nothing of the project.
compose down -v >/dev/null 2>&1 || fail "down"
left=$("$docker_cli" ps -aq --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "containers left: $left"
left=$("$docker_cli" network ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "networks left: $left"
left=$("$docker_cli" volume ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "volumes left: $left"
step "down -v left no container, network or volume"
echo "compose stack e2e passed in $(( $(date +%s) - start ))s"
