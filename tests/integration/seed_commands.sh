#!/usr/bin/env bash
# The seed's "Debugging Commands", verbatim, against a real siesta on localhost:8081.
set -euo pipefail
siesta=$1
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/siesta.json" <<'JSON'
{
  "services": {"ollama": {"command": ["sleep", "600"]}},
  "models": {"llama3.2:3b": {"provider": "ollama"}}
}
JSON
"$siesta" --config "$dir/siesta.json" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://localhost:8081/healthz >/dev/null && break; sleep 0.1; done

fail() { echo "FAIL: $*"; cat "$dir/log"; exit 1; }

# Check idle status
out=$(curl http://localhost:8081/admin/idle-status)
echo "$out" | grep -q '"monitor_task_running": true' || fail "idle-status: $out"
echo "$out" | grep -q '"llama3.2:3b"' || fail "idle-status has no model: $out"

# Force unload a model
curl -X POST http://localhost:8081/admin/models/llama3.2:3b/unload >"$dir/unload"
grep -q '"keep_alive_until": 0' "$dir/unload" || fail "unload: $(cat "$dir/unload")"

# Disable idle sleep for a service
curl -X POST http://localhost:8081/admin/services/ollama/idle-sleep \
  -H "Content-Type: application/json" \
  -d '{"enabled": false}' >"$dir/toggle"
grep -q '"idle_sleep_enabled": false' "$dir/toggle" || fail "toggle: $(cat "$dir/toggle")"

# The seed's settings update, as its API section writes it
code=$(curl -s -o "$dir/settings" -w '%{http_code}' -X POST http://localhost:8081/admin/settings \
  -H "Content-Type: application/json" \
  -d '{"idleSleepEnabled": true, "idleTimeout": 30, "modelKeepAlive": 1, "idleCheckInterval": 3}')
[ "$code" = 200 ] || fail "settings: $code $(cat "$dir/settings")"
curl -s http://localhost:8081/admin/idle-status | grep -q '"idle_timeout_minutes": 30.0' ||
  fail "settings not applied"
echo "1 passed, 0 failed"
