#!/bin/sh
# siesta simulate as a user runs it: the table for three policies, --json, and exit 2 with
# file, line and reason for a bad trace or policy. $1: the siesta binary, $2: the traces.
set -eu
siesta=$1 traces=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$siesta" simulate --trace "$traces/diurnal.csv" --policy fixed:60m --policy fixed:15m \
  --policy adaptive --cold-start 60)
echo "$out"
for p in fixed:60m fixed:15m adaptive; do
  echo "$out" | grep -q "^$p " || fail "no row for $p"
done
json=$("$siesta" simulate --trace "$traces/bursty.csv" --json)
echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = {r["policy"]: r for r in d["policies"]}
assert set(p) == {"fixed:60m", "fixed:15m", "adaptive"}, p.keys()
assert p["adaptive"]["cold_starts"] < p["fixed:15m"]["cold_starts"]
assert p["adaptive"]["idle_service_hours"] < p["fixed:60m"]["idle_service_hours"]
' || fail "--json"
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
printf 'time,service\n1,a\nsoon,a\n' > "$bad"
set +e
err=$("$siesta" simulate --trace "$bad" 2>&1 >/dev/null); rc=$?
set -e
[ "$rc" = 2 ] || fail "bad trace: exit $rc, not 2"
[ "$err" = "siesta simulate: $bad:3: time: must be a number, got \"soon\"" ] || fail "got: $err"
set +e
err=$("$siesta" simulate --trace "$traces/diurnal.csv" --policy lru 2>&1 >/dev/null); rc=$?
set -e
[ "$rc" = 2 ] || fail "bad policy: exit $rc, not 2"
echo "$err" | grep -q 'unknown policy "lru" (fixed, adaptive)' || fail "got: $err"
echo OK
