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

  curl -s localhost:8081/admin/idle-status                # everything but redis asleep
  curl -s -D - localhost:9001/ -o /dev/null               # through siesta: wakes whisper
                                                          #   (X-Siesta-Wake: cold; dur=...)
  curl -s localhost:8081/admin/idle-status                # will_sleep_in_seconds counts down
  # ...15 seconds later the log says "Successfully stopped idle service whisper"
  curl -sN localhost:9002/api/generate -d '{"model": "llama3.2:3b", "prompt": "hi"}'
                                                          # wakes "ollama", loads the model,
                                                          #   streams tokens as they come
  curl -s localhost:8081/admin/models/llama3.2:3b         # loaded; unloads 30 s after the request
  curl -s localhost:8081/metrics | grep -E 'siesta_(service_state|model_loaded)'

TRY
exec ./build/sidecar/siesta --config examples/demo.json
