#!/usr/bin/env bash
# `curl -s .../metrics | promtool check metrics` prints nothing, on a live siesta that has
# slept and woken a real service (so counters and histograms have samples).
set -euo pipefail
siesta=$1 testserver=$2
command -v promtool >/dev/null || { echo "FAIL: promtool is not installed (Debian package prometheus)"; exit 1; }
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
up=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/siesta.json" <<JSON
{
  "listen": "127.0.0.1:0",
  "services": {"web": {"command": ["$testserver", "--port", "$up"], "upstream": "127.0.0.1:$up"}},
  "models": {"llama3.2:3b": {"provider": "web"}}
}
JSON
"$siesta" --config "$dir/siesta.json" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  port=$(sed -n 's/.*Admin API listening on http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$dir/log")
  [ -n "$port" ] && break; sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: siesta did not start"; cat "$dir/log"; exit 1; }
base=http://127.0.0.1:$port
curl -sf -X POST $base/admin/services/web/wake >/dev/null
curl -sf -X POST $base/admin/models/llama3.2:3b/touch >/dev/null
curl -sf -X POST $base/admin/services/web/sleep >/dev/null
curl -s $base/metrics >"$dir/metrics"
grep -q '^siesta_service_wake_duration_seconds_count{service="web"} 1$' "$dir/metrics" ||
  { echo "FAIL: no wake observed"; cat "$dir/metrics"; exit 1; }
problems=$(promtool check metrics <"$dir/metrics" 2>&1) || true
if [ -n "$problems" ]; then echo "FAIL: promtool check metrics:"; echo "$problems"; exit 1; fi
echo "1 passed, 0 failed"
