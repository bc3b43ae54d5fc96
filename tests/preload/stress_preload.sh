#!/usr/bin/env bash
# stress_preload.sh — tests/progs/stress_preload (mimalloc test-stress style: threads doing
# random alloc/free/realloc over every tier, blocks swapped between threads through atomic
# slots, patterns checked) under LD_PRELOAD=$HAKMEM_LIB, in a few shapes; ~10-20 s in all.
set -u
prog="$HAKMEM_OUT/tests/progs/stress_preload"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
#        threads scale iterations seed
configs=("8 150 10 1"     # the default shape: 8 threads on 2 cores
         "2 600 10 2"     # few threads, long-lived lists
         "32 20 8 3"      # many threads, short lives: heaps of exited threads reused
         "4 100 30 4")    # many iterations: blocks outlive their owner threads
for c in "${configs[@]}"; do
  t0=$(date +%s.%N)
  out=$(LD_PRELOAD="$HAKMEM_LIB" timeout 120 "$prog" $c 2>&1)
  rc=$?
  dt=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "[$c] rc=$rc ${dt%???????}s: $out"
  if [ $rc -ne 0 ]; then
    echo "FAIL: LD_PRELOAD=$HAKMEM_LIB $prog $c exited with $rc"
    exit 1
  fi
  case "$out" in
    *"(hakmem)"*) ;;
    *) echo "FAIL: the program did not run on hakmem (preload not effective?)"; exit 1 ;;
  esac
done
# Debug variant: the whole-heap checker after every slow-path call of every thread.
if [ "${HAKMEM_VARIANT:-}" = debug ]; then
  c="8 100 6 5"
  out=$(HAKMEM_CHECK=1 LD_PRELOAD="$HAKMEM_LIB" timeout 120 "$prog" $c 2>&1)
  rc=$?
  echo "[$c, HAKMEM_CHECK=1] rc=$rc: $out"
  [ $rc -eq 0 ] || { echo "FAIL: HAKMEM_CHECK=1 LD_PRELOAD=$HAKMEM_LIB $prog $c exited with $rc"; exit 1; }
fi
