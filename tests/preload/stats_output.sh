#!/usr/bin/env bash
# stats_output.sh — HAKMEM_STATS=1's table, mallinfo2 and malloc_info, parsed and checked
# against what tests/progs/stats_known holds at exit: 1000 × 64 B (class 4), 10 spans of
# 100 000 B (25 pages of 4 KiB each with the 16-byte header: 102 400 B), 3 Large blocks of
# 3 MiB (3 MiB + 16 B rounded to 64 KiB: 3 211 264 B each).
set -u
prog="$HAKMEM_OUT/tests/progs/stats_known"
[ -x "$prog" ] || { echo "missing $prog (build the tests first)"; exit 1; }
out=$(mktemp); err=$(mktemp); trap 'rm -f "$out" "$err"' EXIT
HAKMEM_STATS=1 LD_PRELOAD="$HAKMEM_LIB" "$prog" >"$out" 2>"$err" || { echo "FAIL: exit status $?"; cat "$err"; exit 1; }
cat "$err"
fail=0
check() {  # name value lo hi
  if [ -z "$2" ] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then echo "FAIL: $1 = '${2}', want $3..$4"; fail=1
  else echo "ok: $1 = $2 (want $3..$4)"; fi
}
field() { awk -v t="$1" -v c="$2" '$1 == "hakmem:" && $2 == "stats:" && $3 == t { print $(c); exit }' "$err"; }
# Tiny: the 1000 live blocks, plus what the loader and libc allocated, plus the TLS cache
# (at most one cap: 256 blocks of 64 B) counted as out of the slabs.
check "tiny in use" "$(field tiny 4)" 64000 $((64000 + 256 * 64 + 65536))
check "spans in use" "$(field spans 4)" 1024000 $((1024000 + 102400))
check "large in use" "$(field large 4)" 9633792 9633792
grep -q "(3 live, 0 B cached in 0 free extents, recent peak " "$err" && echo "ok: 3 live Large blocks" || { echo "FAIL: large line"; fail=1; }
row=$(awk '$1 == "hakmem:" && $2 == "stats:" && $3 == "4" && $4 == "64" { print $6; exit }' "$err")
check "class 4 blocks out" "$row" 1000 $((1000 + 256 + 1024))
mapped=$(awk '$3 == "mapped" { print $4; exit }' "$err")
check "mapped" "$mapped" $((64000 + 1024000 + 9633792)) $((1 << 30))
# mallinfo2 (glibc's meaning): uordblks = bytes in use outside mmapped blocks (Tiny, Mid,
# spans), hblkhd = bytes in mmapped blocks (Large).
uord=$(sed -n 's/.*uordblks=\([0-9]*\).*/\1/p' "$out"); hblk=$(sed -n 's/.*hblkhd=\([0-9]*\).*/\1/p' "$out")
check "mallinfo2 uordblks" "$uord" $((64000 + 1024000)) $((64000 + 1024000 + 256 * 64 + 65536 + 102400))
check "mallinfo2 hblkhd" "$hblk" 9633792 9633792
# malloc_info: glibc's XML form, with the totals hakmem knows.
grep -q '^<malloc version=' "$out" && grep -q '^</malloc>' "$out" || { echo "FAIL: malloc_info XML not framed"; fail=1; }
xml_mmap=$(sed -n 's/.*<total type="mmap" count="\([0-9]*\)" size="\([0-9]*\)".*/\1 \2/p' "$out" | head -1)
[ "$xml_mmap" = "3 9633792" ] && echo "ok: malloc_info mmap total $xml_mmap" || { echo "FAIL: malloc_info mmap total '$xml_mmap', want '3 9633792'"; sed -n '/<malloc/,/<\/malloc>/p' "$out"; fail=1; }
# A program that closes its stderr before exit (coreutils do, in an atexit handler): the table
# still reaches the stderr it started with.
closed=$(HAKMEM_STATS=1 LD_PRELOAD="$HAKMEM_LIB" sh -c 'exec 3>&2; exec ls / 2>&3' 2>&1 >/dev/null)
if [[ "$closed" == *"hakmem: stats: tier"* ]]; then echo "ok: the table after the program closed stderr (ls)"
else echo "FAIL: no statistics table from ls, which closes its stderr at exit: '$closed'"; fail=1; fi
exit $fail
