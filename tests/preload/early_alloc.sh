#!/usr/bin/env bash
# early_alloc.sh — tests/progs/early_alloc under LD_PRELOAD: allocation in constructors
# (priority 101, before everything else of the program), in a thread created by a
# constructor, in destructors and atexit handlers, and glibc-allocated ("foreign") pointers
# passed to the interposed free / realloc / malloc_usable_size.
set -u
prog="$HAKMEM_OUT/tests/progs/early_alloc"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
out=$("$prog") || { echo "FAIL: early_alloc fails without LD_PRELOAD (test bug?)"; exit 1; }
[ "$out" = "early_alloc: OK (system malloc)" ] || { echo "FAIL: unexpected output without preload: $out"; exit 1; }
for round in 1 2 3; do
  out=$(LD_PRELOAD="$HAKMEM_LIB" "$prog")
  rc=$?
  if [ $rc -ne 0 ] || [ "$out" != "early_alloc: OK (hakmem)" ]; then
    echo "FAIL (round $round): LD_PRELOAD=$HAKMEM_LIB $prog -> rc=$rc, output: $out"
    exit 1
  fi
done
echo "$out"
