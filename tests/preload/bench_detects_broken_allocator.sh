#!/usr/bin/env bash
# The benchmarks check the memory they get, so a broken allocator cannot look fast.
#
# out/<v>/bench/overlap_malloc.so (bench/broken/overlap_malloc.c) hands the program overlapping
# blocks. Preloaded into each benchmark (short smoke arguments), it must make the benchmark
# exit non-zero with "MEMORY CHECK FAILED" and print no throughput figure. The same commands
# must pass, with a throughput line, under plain glibc and under hakmem ($HAKMEM_LIB).
# Environment: HAKMEM_OUT, HAKMEM_LIB (see scripts/run_tests.sh). Exit 0 pass, 77 skip.
set -u
out="${HAKMEM_OUT:?HAKMEM_OUT not set}"
lib="${HAKMEM_LIB:?HAKMEM_LIB not set}"
broken="$out/bench/overlap_malloc.so"

# name and smoke arguments; fixed_size needs batch > 1 to hold two blocks at once.
cases=(
  "bench_random_mixed 100000 256"
  "larson 0.3 16 128 100 10 1 4"
  "larson 1 5 1 1000 100 10000 42"
  "xthread 1 1 20000"
  "mid_large_mix 2000 32"
  "fixed_size 10000 64 8"
  "mem_efficiency 10000 64"
  "micro_mincore_bench 20000 256"
  "memory_return 0 8 0"
  "memory_return 2 16 0"
)

[ -f "$broken" ] || { echo "skip: $broken not built (make bench-$HAKMEM_VARIANT)"; exit 77; }
for c in "${cases[@]}"; do
  set -- $c
  [ -x "$out/${1}_system" ] || { echo "skip: $out/${1}_system not built"; exit 77; }
done
[ -f "$lib" ] || { echo "FAIL: $lib not built"; exit 1; }

fails=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

run() {  # label, preload ('' for none), name, args... ; sets rc, leaves output in $tmp
  local label="$1" preload="$2" name="$3"; shift 3
  if [ -n "$preload" ]; then
    LD_PRELOAD="$preload" timeout 60 "$out/${name}_system" "$@" >"$tmp/out" 2>"$tmp/err"
  else
    timeout 60 "$out/${name}_system" "$@" >"$tmp/out" 2>"$tmp/err"
  fi
  rc=$?
}

for c in "${cases[@]}"; do
  set -- $c
  name="$1"; shift
  # 1. Broken allocator: must fail loudly, with no throughput figure.
  run broken "$broken" "$name" "$@"
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    echo "FAIL: $name $* under overlap_malloc.so: exit status $rc (expected a memory-check failure)"
    fails=$((fails+1))
  elif ! grep -q "MEMORY CHECK FAILED" "$tmp/err"; then
    echo "FAIL: $name $* under overlap_malloc.so: exit $rc without 'MEMORY CHECK FAILED':"
    tail -n 5 "$tmp/err"; fails=$((fails+1))
  elif grep -q "Throughput" "$tmp/out"; then
    echo "FAIL: $name $* under overlap_malloc.so printed a throughput line"; fails=$((fails+1))
  else
    echo "ok: $name $* under overlap_malloc.so: exit $rc, $(head -c 120 "$tmp/err")"
  fi
  # 2. The same command passes under glibc and under hakmem.
  for alloc in glibc hakmem; do
    preload=""; [ $alloc = hakmem ] && preload="$lib"
    run $alloc "$preload" "$name" "$@"
    if [ $rc -ne 0 ] || ! grep -q "^Throughput = " "$tmp/out"; then
      echo "FAIL: $name $* under $alloc: exit $rc"; tail -n 5 "$tmp/err"; fails=$((fails+1))
    else
      echo "ok: $name $* under $alloc: $(grep '^Throughput' "$tmp/out")"
    fi
  done
done

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all benchmarks detect the broken allocator"
