#!/usr/bin/env bash
# Installs what is missing, builds siesta and runs the whole test suite twice (normal build, and
# AddressSanitizer + UndefinedBehaviorSanitizer), then the monitor/proxy tests under
# ThreadSanitizer and each libFuzzer target for 60 s.
#   scripts/test.sh               everything
#   scripts/test.sh --quick       the normal build only
#   scripts/test.sh --sanitizers  the later stages only (ASan, TSan, fuzzers)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

# The Docker tests run against a private engine on loopback, the Swarm tests against a second
# one in swarm mode (they leave and re-init the swarm, which must not disturb the first one's
# tests); each is stopped again at exit if started here.
engine_root=/tmp/siesta-docker
swarm_root=/tmp/siesta-swarm
export DOCKER_HOST="unix://$engine_root/docker.sock"
export SIESTA_SWARM_DOCKER_HOST="unix://$swarm_root/docker.sock"
engine_alive() { [ -f "$1/docker.pid" ] && kill -0 "$(cat "$1/docker.pid")" 2>/dev/null; }
stop_engines=()
engine_alive "$engine_root" || stop_engines+=("$engine_root")
engine_alive "$swarm_root" || stop_engines+=("$swarm_root")
stop_started_engines() {
  for root in "${stop_engines[@]}"; do bash scripts/docker-engine.sh stop "$root"; done
}
trap stop_started_engines EXIT
bash scripts/docker-engine.sh start "$engine_root"
bash scripts/docker-engine.sh start "$swarm_root"
if [ "$(DOCKER_HOST=$SIESTA_SWARM_DOCKER_HOST docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
  DOCKER_HOST=$SIESTA_SWARM_DOCKER_HOST docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

# CI needs line numbers in its stack traces and sanitizer reports, not full debug info: -g1
# (line tables) instead of -g compiles the coroutine-heavy sources ~15% faster.
# Each stage says how long its build and its tests took (CI's time budget is spent here).
stage() { echo "== $* ($(date -u +%H:%M:%S), ${SECONDS} s in) =="; }
# Four builds of the same sources (normal, ASan, TSan, fuzzers) are most of CI's time: ccache
# keeps their objects between runs on one machine. The paths are taken relative to this clone
# (CCACHE_BASEDIR, and the directory is not hashed), so a fresh clone elsewhere hits the objects
# of an earlier one; a cold cache only costs the full build, never a different result.
launcher=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-10G}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  ccache --zero-stats >/dev/null
fi
export SIESTA_CMAKE_LAUNCHER="${launcher[*]}"  # scripts/fuzz.sh uses the same
# Ninja: it keeps both cores busy across targets where make waits at each library, and the
# same generator as a developer's build dirs, so their compiler cache serves a fresh clone. A
# build dir made earlier keeps its generator (cmake refuses to switch).
generator() { [ -f "$1/CMakeCache.txt" ] || echo "-GNinja"; }
run_suite() {  # build-dir, extra cmake args...
  local dir=$1; shift
  # shellcheck disable=SC2046  # no generator word for an existing build dir
  cmake -S . -B "$dir" $(generator "$dir") -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" "$@" >/dev/null  # later -D wins
  cmake --build "$dir" -j "$jobs" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
  stage "$dir built"
  ctest --test-dir "$dir" -j "$jobs" --timeout "${CTEST_TIMEOUT:-120}" --output-on-failure \
    ${CTEST_ARGS:-}
}

if [ "${1:-}" != "--sanitizers" ]; then
  stage "normal build"
  run_suite build
fi
if [ "${1:-}" != "--quick" ]; then
  stage "ASan + UBSan build"
  # The slow end-to-end tests run once, in the normal build: the real clients (Node, npm
  # libraries, Chromium, nginx differential: label clients), the compose stack and its checks
  # (compose, alerts: Prometheus and promtool), the Kubernetes manifests (deploy.*), the swarm stack
  # file, clang-format (lint); so does the benchmark harness's smoke test (figures under ASan mean
  # nothing). Every test of siesta's own code (unit, integration, Docker, Swarm, Kubernetes) runs
  # here too. A sanitized Debug build runs ~9x slower (CrashSafety's 200 SIGKILL rounds: 10 s
  # normal, 88 s here alone): each test gets 300 s instead of 120.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    CTEST_TIMEOUT=300 CTEST_ARGS="-LE (clients|compose|alerts|lint) -E ^(deploy|swarm)\." \
    run_suite build-asan -DSIESTA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
    -DSIESTA_BUILD_BENCH=OFF

  stage "ThreadSanitizer build: the monitor, controller, proxy, tier and activity tests"
  # A race makes siesta (or the unit test) stop with the report, and the test fail.
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
    CTEST_TIMEOUT=300 BUILD_TARGETS="siesta siesta-testserver unit_tests proxy_unit_tests gpu_unit_tests integration_tests activity_unit_tests
    activity_integration_tests" \
    CTEST_ARGS="-R (Monitor|SeedScenarios|Controller|ChangeSignal|Proxy|Models|CrashSafety|Tiers|Vllm|Activity|Gpu)" \
    run_suite build-tsan -DSIESTA_TSAN=ON -DSIESTA_DOCKER_TESTS=OFF -DSIESTA_BUILD_BENCH=OFF

  stage "fuzzers (libFuzzer, ASan + UBSan), 60 s each"
  bash scripts/fuzz.sh 60
fi
if [ ${#launcher[@]} -gt 0 ]; then ccache --show-stats | grep -E "Hits|Misses" || true; fi
stage "all stages passed"
