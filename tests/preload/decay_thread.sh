#!/usr/bin/env bash
# decay_thread.sh — the idle-decay thread (core/decay_thread.h) as a program sees it:
#   default: no thread until the first Large free; then one named "hakmem-decay"; the freed
#     64 MiB stay resident right after the free (kept for reuse) and are back with the OS after
#     2 s of idleness; 256 MiB of small blocks freed (their SuperSlab slots released) are back
#     with the OS after 2 s of idleness too, but for what the idle thread's own caches pin
#     (the release wakes the parked thread: at most 32 MiB stay); fork + exec
#     still work;
#   HAKMEM_DECAY_THREAD=0: never a second thread, and at most 8 MiB (kLargeRetainSlack) of the
#     freed block stays resident.
set -u
prog="$HAKMEM_OUT/tests/progs/decay_thread"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
fail=0
val() { awk -v k="$1" '$1 == k { print $2; exit }' <<<"$2"; }
want() {  # label value op bound
  if [ -n "$2" ] && [ "$2" "$3" "$4" ]; then echo "ok: $1 = $2 ($3 $4)"
  else echo "FAIL: $1 = '$2', want $3 $4"; fail=1; fi
}
out=$(LD_PRELOAD="$HAKMEM_LIB" "$prog") || { echo "FAIL: default run exited $?"; fail=1; }
echo "$out" | sed 's/^/  default: /'
want "default threads before" "$(val threads_before "$out")" -eq 1
want "default threads after" "$(val threads_after "$out")" -eq 2
[ "$(val thread_name "$out")" = "hakmem-decay" ] && echo "ok: thread name" || { echo "FAIL: thread name"; fail=1; }
want "default kept right after the free (MiB)" "$(val kept_mib "$out")" -ge 48
want "default kept after 2 s idle (MiB)" "$(val idle_mib "$out")" -le 4
want "default small blocks freed, after 2 s idle (MiB, of 256)" "$(val small_idle_mib "$out")" -le 32
want "default fork+exec" "$(val single_threaded "$out")" -eq 1
out=$(HAKMEM_DECAY_THREAD=0 LD_PRELOAD="$HAKMEM_LIB" "$prog") || { echo "FAIL: HAKMEM_DECAY_THREAD=0 run exited $?"; fail=1; }
echo "$out" | sed 's/^/  off: /'
want "off threads after" "$(val threads_after "$out")" -eq 1
want "off kept right after the free (MiB)" "$(val kept_mib "$out")" -le 10
want "off fork+exec" "$(val single_threaded "$out")" -eq 1
[ $fail -eq 0 ] && echo "PASS" || exit 1
