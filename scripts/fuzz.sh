#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time from the
# committed seed corpus (fuzz/corpus/<target>). New inputs go to build-fuzz/corpus, never into
# the repository. A crash leaves its input as build-fuzz/crash-* and fails this script; turn it
# into a regression test and add it to the seed corpus.
#   scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
# Ninja for a new build dir (scripts/test.sh says why); -g1: line tables are all a crash report
# needs, and compile faster than -g.
generator=()
[ -f build-fuzz/CMakeCache.txt ] || generator=(-GNinja)
# shellcheck disable=SC2086  # the launcher flags from scripts/test.sh, if any, are words
cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_CXX_COMPILER=clang++ ${SIESTA_CMAKE_LAUNCHER:-} \
  -DSIESTA_FUZZ=ON -DSIESTA_SANITIZE=ON -DSIESTA_WERROR=OFF -DSIESTA_BUILD_TESTS=OFF \
  -DSIESTA_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target admin_fuzz config_fuzz proxy_fuzz
for name in admin config proxy; do
  work=build-fuzz/corpus/$name
  mkdir -p "$work"
  echo "== fuzz $name: $seconds s =="
  dict=()
  if [ -f "fuzz/$name.dict" ]; then dict=("-dict=fuzz/$name.dict"); fi
  rc=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build-fuzz/fuzz/${name}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=build-fuzz/ -print_final_stats=1 "${dict[@]}" "$work" "fuzz/corpus/$name" \
    >"build-fuzz/$name.log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|contract|proxy_fuzz: invariant)" \
    "build-fuzz/$name.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -60 "build-fuzz/$name.log"
    echo "fuzz $name FAILED (exit $rc)"
    exit 1
  fi
done
echo "fuzzers clean"
