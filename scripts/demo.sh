#!/usr/bin/env bash
# Installs what is missing, builds siesta and runs it on the demo config: two local web
# servers that fall asleep after 15 seconds idle and wake on demand. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target siesta
cat <<'TRY'

siesta is starting on http://127.0.0.1:8081 with examples/demo.json. In another terminal:

  curl -s localhost:8081/admin/idle-status                      # both services asleep
  curl -s -X POST localhost:8081/admin/services/whisper/wake    # starts it, waits until ready
  curl -s localhost:9101/                                       # whisper answers
  curl -s localhost:8081/admin/idle-status                      # will_sleep_in_seconds counts down
  # ...15 seconds later the log says "Successfully stopped idle service whisper"
  curl -s -X POST localhost:8081/admin/models/llama3.2:3b/touch # a model use: loaded, keep-alive 30 s
  curl -s localhost:8081/metrics | grep siesta_service_state

TRY
exec ./build/sidecar/siesta --config examples/demo.json
