#!/usr/bin/env bash
# Installs what is missing, builds siesta and runs the whole test suite twice (normal build, and
# AddressSanitizer + UndefinedBehaviorSanitizer), then the monitor/proxy tests under
# ThreadSanitizer and each libFuzzer target for 60 s.
#   scripts/test.sh            everything
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
  ctest --test-dir "$dir" -j "$jobs" --timeout "${CTEST_TIMEOUT:-120}" --output-on-failure \
    ${CTEST_ARGS:-}
}

echo "== normal build =="
run_suite build
if [ "${1:-}" != "--quick" ]; then
  echo "== ASan + UBSan build =="
  # The client matrix and the WebSocket clients (minutes of real clients, Chromium) run once, in
  # the normal build. A sanitized Debug build runs ~9x slower (CrashSafety's 200 SIGKILL rounds:
  # 10 s normal, 88 s here alone): each test gets 300 s instead of 120.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    CTEST_TIMEOUT=300 CTEST_ARGS="-E clients\.(matrix|websockets)" run_suite build-asan -DSIESTA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

  echo "== ThreadSanitizer build: the monitor, controller and proxy tests =="
  # A race makes siesta (or the unit test) stop with the report, and the test fail.
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
    CTEST_TIMEOUT=300 \
    CTEST_ARGS="-R (Monitor|SeedScenarios|Controller|ChangeSignal|Proxy|Models|CrashSafety)" \
    run_suite build-tsan -DSIESTA_TSAN=ON -DSIESTA_DOCKER_TESTS=OFF -DSIESTA_BUILD_BENCH=OFF

  echo "== fuzzers (libFuzzer, ASan + UBSan), 60 s each =="
  bash scripts/fuzz.sh 60
fi
