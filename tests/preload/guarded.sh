#!/usr/bin/env bash
# guarded.sh — guarded sampling (core/guarded.h) under LD_PRELOAD=$HAKMEM_LIB:
#  - each memory error of tests/progs/misuse_matrix.c that the pool can see, with
#    HAKMEM_GUARD=1: the process aborts before the program goes on, and the report names the
#    right kind (heap-buffer-overflow / -underflow, use-after-free, double free, invalid
#    pointer), with the allocation stack (and the free stack where there is one);
#  - tests/progs/guarded_check.c: guarded blocks behave as blocks (api), a fault outside the
#    pool is not swallowed (default action; the program's own handler), and a correct
#    multithreaded program at HAKMEM_GUARD=10 reports nothing (hammer);
#  - the stress test at HAKMEM_GUARD=10.
set -u
mm="$HAKMEM_OUT/tests/progs/misuse_matrix"
gc="$HAKMEM_OUT/tests/progs/guarded_check"
sp="$HAKMEM_OUT/tests/progs/stress_preload"
for p in "$mm" "$gc" "$sp"; do [ -x "$p" ] || { echo "missing $p (build the tests first)"; exit 1; }; done
fail=0

# case  expected words in the report (a grep -E pattern)  whether a free stack is printed
cases=(
  "overflow_1_tiny|heap-buffer-overflow at 0x[0-9a-f]+: 0 bytes after the 40-byte guarded block.*found at free|free"
  "overflow_32_tiny|heap-buffer-overflow at 0x[0-9a-f]+: [0-9]+ bytes after the 48-byte guarded block|"
  "overflow_memcpy_mid|heap-buffer-overflow at 0x[0-9a-f]+: [0-9]+ bytes after the 3000-byte guarded block|"
  "underflow_tiny|heap-buffer-underflow at 0x[0-9a-f]+: [0-9]+ bytes before the 64-byte guarded block|"
  "underflow_1_tiny|heap-buffer-underflow at 0x[0-9a-f]+: 1 bytes before the 64-byte guarded block|"
  "uaf_link_tiny|use-after-free at 0x[0-9a-f]+: 0 bytes into the freed 32-byte guarded block [^ ]+ \\(write\\)|free"
  "uaf_body_tiny|use-after-free at 0x[0-9a-f]+: 24 bytes into the freed 64-byte guarded block|free"
  "uaf_zero_mid|use-after-free at 0x[0-9a-f]+: 0 bytes into the freed 3000-byte guarded block|free"
  "uaf_reused_tiny|use-after-free at 0x[0-9a-f]+: 0 bytes into the freed 64-byte guarded block|free"
  "df_tiny|free\\(0x[0-9a-f]+\\): double free of the 32-byte guarded block|free"
  "df_mid|free\\(0x[0-9a-f]+\\): double free of the 3000-byte guarded block|free"
  "df_reuse|free\\(0x[0-9a-f]+\\): double free of the 64-byte guarded block|free"
  "df_cross_thread|free\\(0x[0-9a-f]+\\): double free of the 48-byte guarded block|free"
  "realloc_freed_tiny|realloc\\(0x[0-9a-f]+\\): use of freed the 32-byte guarded block|free"
  "interior_tiny|free\\(0x[0-9a-f]+\\): invalid pointer \\(16 bytes into the 64-byte guarded block|"
  "unaligned_tiny|free\\(0x[0-9a-f]+\\): invalid pointer \\(1 bytes into the 64-byte guarded block|"
  "interior_mid|free\\(0x[0-9a-f]+\\): invalid pointer \\(512 bytes into the 3000-byte guarded block|"
  "overflow_1_span|heap-buffer-overflow at 0x[0-9a-f]+: 0 bytes after the 100000-byte guarded block|"
  "uaf_span|use-after-free at 0x[0-9a-f]+: 64 bytes into the freed 100000-byte guarded block|free"
  "df_span|free\\(0x[0-9a-f]+\\): double free of the 100000-byte guarded block|free"
  "interior_span|free\\(0x[0-9a-f]+\\): invalid pointer \\(4096 bytes into the 100000-byte guarded block|"
  "realloc_freed_span|realloc\\(0x[0-9a-f]+\\): use of freed the 100000-byte guarded block|free"
)
for c in "${cases[@]}"; do
  name=${c%%|*}; rest=${c#*|}; pattern=${rest%|*}; stacks=${rest##*|}
  out=$(HAKMEM_GUARD=1 LD_PRELOAD="$HAKMEM_LIB" timeout 20 "$mm" "$name" 2>&1)
  rc=$?
  ok=1
  [ $rc -eq 134 ] || ok=0
  [[ "$out" == *went-on* ]] && ok=0
  echo "$out" | grep -Eq "hakmem: $pattern" || ok=0
  case "$pattern" in
    *invalid*) ;;
    *) echo "$out" | grep -q "hakmem: the block was allocated by thread" || ok=0 ;;
  esac
  if [ "$stacks" = free ]; then echo "$out" | grep -q "hakmem: and freed by thread" || ok=0; fi
  if [ $ok -eq 1 ]; then
    echo "ok   $name: $(echo "$out" | grep -E "hakmem: $pattern" | head -1)"
  else
    echo "FAIL $name (rc $rc, expected /$pattern/ before went-on):"
    echo "$out" | head -12 | sed 's/^/       /'
    fail=1
  fi
done

# guarded_check: the API (N = 1), faults outside the pool, a correct program (N = 10).
run() {  # expected-rc expected-stdout-words env... -- args
  local want_rc=$1 want=$2; shift 2
  local out rc
  out=$(env "$@" LD_PRELOAD="$HAKMEM_LIB" timeout 60 "$gc" "${ARGS[@]}" 2>&1)
  rc=$?
  if [ $rc -eq "$want_rc" ] && [[ "$out" == *"$want"* ]]; then
    echo "ok   guarded_check ${ARGS[*]} ($*): rc $rc"
  else
    echo "FAIL guarded_check ${ARGS[*]} ($*): rc $rc (want $want_rc), output:"
    echo "$out" | head -12 | sed 's/^/       /'
    fail=1
  fi
}
ARGS=(api); run 0 ok HAKMEM_GUARD=1
# A segfault outside the pool: the default action, no report.
ARGS=(wild); run 139 "" HAKMEM_GUARD=1
out=$(HAKMEM_GUARD=1 LD_PRELOAD="$HAKMEM_LIB" "$gc" wild 2>&1)
if [[ "$out" == *hakmem:* ]]; then echo "FAIL: a fault outside the pool was reported: $out"; fail=1; fi
# The program's handler (installed first) gets the faults outside the pool; the pool's own
# are still reported.
ARGS=(handler-wild); run 7 "program handler" HAKMEM_GUARD=1 GUARDED_CHECK_HANDLER=1
ARGS=(handler-pool); run 134 "use-after-free" HAKMEM_GUARD=1 GUARDED_CHECK_HANDLER=1
ARGS=(hammer); run 0 ok HAKMEM_GUARD=10
# Guarding off: nothing guarded.
out=$(HAKMEM_GUARD=0 HAKMEM_STATS=1 LD_PRELOAD="$HAKMEM_LIB" "$gc" hammer 2>&1)
if [[ "$out" != *"only 0 blocks guarded"* ]]; then echo "FAIL: HAKMEM_GUARD=0 still guarded blocks: $out" | head -3; fail=1; fi

# The default: off, but one in a million in the secure variant.
out=$(env -u HAKMEM_GUARD HAKMEM_STATS=1 LD_PRELOAD="$HAKMEM_LIB" "$gc" hammer 2>&1)
line=$(echo "$out" | grep "guarded sampling")
if [ "$HAKMEM_VARIANT" = secure ]; then
  if ! echo "$line" | grep -Eq "guarded sampling 1 in 1000000: [0-9]+ blocks guarded"; then
    echo "FAIL: the secure variant does not sample by default: ${line:-no guarded-sampling line in HAKMEM_STATS}"; fail=1
  else
    echo "ok   secure default: $line"
  fi
elif [ -n "$line" ]; then
  echo "FAIL: $HAKMEM_VARIANT samples without HAKMEM_GUARD: $line"; fail=1
fi

# The stress test with one allocation in 10 guarded.
for c in "8 100 8 21" "32 20 6 22"; do
  out=$(HAKMEM_GUARD=10 LD_PRELOAD="$HAKMEM_LIB" timeout 120 "$sp" $c 2>&1)
  rc=$?
  echo "[stress $c, HAKMEM_GUARD=10] rc=$rc: $(echo "$out" | tail -1)"
  [ $rc -eq 0 ] || { echo "FAIL: stress_preload $c with HAKMEM_GUARD=10: $out" | head -8; fail=1; }
done
exit $fail
