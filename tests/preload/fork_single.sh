#!/usr/bin/env bash
# fork_single.sh — tests/progs/fork_single under LD_PRELOAD: fork() from a process with one
# thread (hakmem takes no lock around it) and from one that has had a second thread (it takes
# them all); every child checks what it inherited and allocates in every tier and in threads.
set -u
prog="$HAKMEM_OUT/tests/progs/fork_single"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
out=$("$prog") || { echo "FAIL: fork_single fails without LD_PRELOAD (test bug?)"; exit 1; }
out=$(LD_PRELOAD="$HAKMEM_LIB" "$prog")
rc=$?
if [ $rc -ne 0 ] || [ "$out" != "fork_single: OK (50 forks)" ]; then
  echo "FAIL: LD_PRELOAD=$HAKMEM_LIB $prog -> rc=$rc, output: $out"
  exit 1
fi
echo "$out"
