#!/usr/bin/env bash
# misuse_at_exit.sh — a double free still in the thread's cache when the program returns from
# main is reported at exit in every variant (the exit hook sends the exiting thread's cached
# blocks back to their runs, where they are checked); a program with cached blocks and no
# misuse exits 0.
set -u
prog="$HAKMEM_OUT/tests/progs/misuse_at_exit"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
fail=0
err=$(LD_PRELOAD="$HAKMEM_LIB" "$prog" double 2>&1 >/dev/null); rc=$?
want="double free (block of size class 2, 32 bytes)"
if [ $rc -eq 134 ] && [[ "$err" == *"hakmem: free("*"$want"* ]]; then echo "ok: double free at exit: $err"
else echo "FAIL: double free at exit: rc=$rc (want 134, SIGABRT), stderr: $err"; fail=1; fi
err=$(LD_PRELOAD="$HAKMEM_LIB" "$prog" clean 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && [ -z "$err" ]; then echo "ok: clean exit with cached blocks"
else echo "FAIL: clean run: rc=$rc, stderr: $err"; fail=1; fi
[ $fail -eq 0 ] && echo "PASS" || exit 1
