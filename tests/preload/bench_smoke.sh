#!/usr/bin/env bash
# Every benchmark of this variant runs in smoke mode and reports a throughput:
#   out/<v>/<name>_hakmem                        (libhakmem.a linked in)
#   LD_PRELOAD=$HAKMEM_LIB out/<v>/<name>_system (hakmem preloaded)
# including the original hakmem smoke command `larson_hakmem 1 5 1 1000 100 10000 42`
# (42 threads), and a bad argument makes each one exit with status 2.
# Environment: HAKMEM_OUT, HAKMEM_LIB (see scripts/run_tests.sh). Exit 0 pass, 77 skip.
set -u
out="${HAKMEM_OUT:?HAKMEM_OUT not set}"
lib="${HAKMEM_LIB:?HAKMEM_LIB not set}"
root="${HAKMEM_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"

# Smoke arguments per benchmark; every bench/*.cpp must have an entry.
declare -A smoke=(
  [larson]="1 5 1 1000 100 10000 42"
  [bench_random_mixed]="200000 1024"
  [micro_mincore_bench]="20000 256"
  [xthread]="2 2 50000"
  [mid_large_mix]="5000 64"
  [fixed_size]="200000 64"
  [mem_efficiency]="20000 64"
  [large_reuse]="40 4 1 4"
  [realloc_grow]="2 8"
  [batch]="200 25 200"
  [pipeline]="1 1 1 20000"
  [after_peak]="300 16384 10 0.05"
  [memory_return]="0 8 50"
)
extra=(  # more smoke commands: name and arguments
  "larson 0.5 16 1024 500 10 7 4"
  "fixed_size 20000 1024 64"
  "mem_efficiency 5000 0"
  "large_reuse 30 3 1 3 1 0"
  "realloc_grow 3 4 125"
  "batch 100 10 100 16 1024 2 2"
  "pipeline 2 1 2 5000 16 4096 16 4 100"
  "after_peak 200 9000 25 0.02 7 1"
  "memory_return 1 16 20"
  "memory_return 2 40 10 3"
)

fails=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
names=$(ls "$root"/bench/*.cpp | xargs -n1 basename | sed 's/\.cpp$//')
for n in $names; do
  [ -n "${smoke[$n]:-}" ] || { echo "FAIL: bench/$n.cpp has no smoke arguments in $0"; fails=$((fails+1)); }
  for b in "$out/${n}_hakmem" "$out/${n}_system"; do
    [ -x "$b" ] || { echo "skip: $b not built (make bench-$HAKMEM_VARIANT)"; exit 77; }
  done
done
[ -f "$lib" ] || { echo "FAIL: $lib not built"; exit 1; }
# The _hakmem binaries must really contain hakmem (its malloc, not libc's).
for n in $names; do
  if ! nm "$out/${n}_hakmem" 2>/dev/null | grep -q ' T hak_malloc$'; then
    echo "FAIL: $out/${n}_hakmem does not define hak_malloc: libhakmem.a was not linked in"
    fails=$((fails+1))
  fi
done
if ! nm -D --defined-only "$lib" 2>/dev/null | grep -q ' T malloc$'; then
  echo "FAIL: $lib does not export malloc"; fails=$((fails+1))
fi

check() {  # label, command...
  local label="$1"; shift
  local t0=$SECONDS
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -ne 0 ] || ! grep -q "^Throughput = [0-9]* ops/s" "$tmp/out"; then
    echo "FAIL: $label: exit $rc"; tail -n 5 "$tmp/out" "$tmp/err"; fails=$((fails+1))
  else
    echo "ok: $label ($((SECONDS-t0)) s): $(grep '^Throughput' "$tmp/out")"
  fi
}

for n in $names; do
  args="${smoke[$n]:-}"
  [ -n "$args" ] || continue
  check "${n}_hakmem $args" "$out/${n}_hakmem" $args
  check "LD_PRELOAD=hakmem ${n}_system $args" env LD_PRELOAD="$lib" "$out/${n}_system" $args
  # A bad argument: usage and exit status 2, under hakmem too.
  bad=(notanumber); [ "$n" = larson ] && bad=(1 5 1 1000 100 x 42)
  "$out/${n}_hakmem" "${bad[@]}" >/dev/null 2>"$tmp/err"
  rc=$?
  if [ $rc -ne 2 ] || ! grep -q usage "$tmp/err"; then
    echo "FAIL: ${n}_hakmem ${bad[*]}: exit $rc, expected 2 with a usage message"
    fails=$((fails+1))
  fi
done
for c in "${extra[@]}"; do
  set -- $c
  n="$1"; shift
  check "${n}_hakmem $*" "$out/${n}_hakmem" "$@"
done

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all benchmarks pass their smoke runs"
