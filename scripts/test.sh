#!/usr/bin/env bash
# Installs what is missing, builds siesta twice (normal, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs the whole test suite on both builds.
#   scripts/test.sh            both builds
#   scripts/test.sh --quick    the normal build only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

# The Docker tests run against a private engine on loopback; stopped again if started here.
engine_root=/tmp/siesta-docker
export DOCKER_HOST="unix://$engine_root/docker.sock"
if ! [ -f "$engine_root/docker.pid" ] || ! kill -0 "$(cat "$engine_root/docker.pid")" 2>/dev/null; then
  trap 'bash scripts/docker-engine.sh stop "$engine_root"' EXIT
fi
bash scripts/docker-engine.sh start "$engine_root"

run_suite() {  # build-dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null  # later -D wins
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" -j "$jobs" --timeout 120 --output-on-failure
}

echo "== normal build =="
run_suite build
if [ "${1:-}" != "--quick" ]; then
  echo "== ASan + UBSan build =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build-asan -DSIESTA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
fi
