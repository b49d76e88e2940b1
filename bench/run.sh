#!/usr/bin/env bash
# The benchmarks in one command: installs what they need (nginx, wrk, perf), builds siesta and
# the bench programs in Release (build-bench/), runs bench/run.py and writes the tables into
# docs/benchmarks.md. About 13 minutes on 2 cores (the data plane alone, --only dataplane, 9).
# Extra arguments go to bench/run.py (e.g. --rounds 3, --only warm,stream, --out /tmp/bench.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSIESTA_BUILD_TESTS=OFF \
  -DSIESTA_BUILD_BENCH=ON >/dev/null
cmake --build build-bench -j "$(nproc)" --target siesta bench-upstream bench-client
out=docs/benchmarks.md
for arg in "$@"; do [ "$arg" = "--out" ] && out=""; done
exec python3 bench/run.py --build-dir build-bench ${out:+--out "$out"} "$@"
