#!/usr/bin/env bash
# valgrind_client.sh — the debug variant tells memcheck about its blocks (core/valgrind_support.h):
# a program preloading out/debug/libhakmem.so under valgrind gets memcheck's use-after-free and
# leak reports, and hakmem's own accesses to its free blocks produce none.
#
# out/<v>/tests/progs/valgrind_client (tests/progs/valgrind_client.cpp) runs under
#   LD_PRELOAD=$HAKMEM_LIB valgrind --soname-synonyms=somalloc=nouserintercepts \
#       --leak-check=full --error-exitcode=42
# (the option keeps valgrind from replacing hakmem's malloc with its own, which it does by
# default in any library that exports malloc; docs/PROFILING.md):
#   debug, "bugs" mode: exit status 42; memcheck reports an invalid write 20 bytes inside a
#     32-byte block free'd, an invalid read 0 bytes inside it (the free-list link word), an
#     invalid write 5,000 bytes inside a 102,400-byte block free'd, each with hakmem's free and
#     malloc on the stacks (not valgrind's replacements), 777 bytes definitely lost in 1 block,
#     and nothing else (4 errors).
#   debug, "clean" mode (every allocation function, realloc in place and moving, threads,
#     trim): exit status 0, "ERROR SUMMARY: 0 errors", thousands of blocks seen by memcheck.
#   release / secure: no client requests there; the clean mode must still run under memcheck
#     with 0 errors (hakmem itself works under valgrind: callgrind, scripts/callgrind.sh).
# Skips (77) when valgrind is not installed, or (debug) when /usr/include/valgrind/memcheck.h
# is missing (the library was then built without client requests). About 3 s.
set -u
v=${HAKMEM_VARIANT:?HAKMEM_VARIANT not set}
out=${HAKMEM_OUT:?HAKMEM_OUT not set}
lib=${HAKMEM_LIB:?HAKMEM_LIB not set}
prog="$out/tests/progs/valgrind_client"
[ -x "$prog" ] || { echo "FAIL: missing $prog (make tests-$v)"; exit 1; }
command -v valgrind >/dev/null || { echo "skip: valgrind is not installed (scripts/setup.sh installs it)"; exit 77; }

log=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-vg.XXXXXX")
trap 'rm -rf "$log"' EXIT
fails=0
bad() { echo "FAIL: $*"; fails=$((fails+1)); }

# vg MODE: runs the program under memcheck; memcheck's output in $log/MODE.vg, the program's
# stdout in $log/MODE.out, the exit status in $rc.
vg() {
  LD_PRELOAD="$lib" timeout 120 valgrind --soname-synonyms=somalloc=nouserintercepts \
      --leak-check=full --error-exitcode=42 --log-file="$log/$1.vg" "$prog" "$1" >"$log/$1.out" 2>&1
  rc=$?
}
has() {  # MODE PATTERN [COUNT]: memcheck's output has lines matching PATTERN (exactly COUNT)
  local n
  n=$(grep -cE -- "$2" "$log/$1.vg")
  if [ -n "${3:-}" ]; then
    [ "$n" -eq "$3" ] || bad "$1: $3 line(s) matching '$2' expected, $n found"
  else
    [ "$n" -gt 0 ] || bad "$1: memcheck's output lacks '$2'"
  fi
}
show() { sed 's/^/    | /' "$log/$1.vg"; }

# Clean mode, every variant: no error, the program ran to its end.
vg clean
[ $rc -eq 0 ] || bad "clean: exit status $rc (42: memcheck reported errors)"
grep -q "valgrind_client: clean done" "$log/clean.out" || bad "clean: the program did not finish: $(head -c 300 "$log/clean.out")"
has clean "ERROR SUMMARY: 0 errors from 0 contexts" 1
allocs=$(sed -nE 's/.*total heap usage: ([0-9,]+) allocs.*/\1/p' "$log/clean.vg" | tr -d ,)
echo "$v clean: exit $rc; memcheck: $(grep -E 'ERROR SUMMARY' "$log/clean.vg" | sed 's/^==[0-9]*== //'); heap blocks seen: ${allocs:-?}"

if [ "$v" != debug ]; then
  [ $fails -eq 0 ] || { show clean; echo "$fails failure(s)"; exit 1; }
  echo "$v: no client requests in this variant (memcheck saw ${allocs:-?} heap blocks); hakmem runs cleanly under memcheck"
  exit 0
fi

if [ "${allocs:-0}" -lt 10000 ]; then
  if [ "${allocs:-0}" -eq 0 ] && [ ! -f /usr/include/valgrind/memcheck.h ]; then
    echo "skip: no /usr/include/valgrind/memcheck.h, so $lib was built without client requests (install the valgrind package and rebuild)"
    exit 77
  fi
  bad "clean: memcheck saw ${allocs:-?} heap blocks, expected hakmem's ≥ 10000 (client requests missing?)"
fi
# (A LEAK SUMMARY with zeros is printed when blocks are still reachable, such as the TLS that
# glibc allocates for the idle-decay thread: only a loss counts.)
has clean "(definitely|indirectly|possibly) lost: [1-9]" 0
[ $fails -eq 0 ] || { show clean; echo "$fails failure(s) in the clean run"; exit 1; }

# Bugs mode: the use after free, the read of the link word and the leak, nothing else.
vg bugs
[ $rc -eq 42 ] || bad "bugs: exit status $rc, expected 42 (memcheck found errors)"
grep -q "valgrind_client: bugs done" "$log/bugs.out" || bad "bugs: the program did not finish: $(head -c 300 "$log/bugs.out")"
has bugs "Invalid write of size 1" 2
has bugs "Invalid read of size 8" 1
has bugs "Address 0x[0-9a-f]+ is 20 bytes inside a block of size 32 free'd" 1
has bugs "Address 0x[0-9a-f]+ is 0 bytes inside a block of size 32 free'd" 1
has bugs "Address 0x[0-9a-f]+ is 5,000 bytes inside a block of size 102,400 free'd" 1
has bugs "777 bytes in 1 blocks are definitely lost in loss record" 1
has bugs "definitely lost: 777 bytes in 1 blocks" 1
has bugs "ERROR SUMMARY: 4 errors from 4 contexts" 1
# The stacks name hakmem's free and malloc, right below the client request ...
has bugs "free'd\$" 3
[ "$(grep -A3 "free'd\$" "$log/bugs.vg" | grep -cE "by 0x[0-9A-F]+: free \(hakmem\.cpp:")" -eq 3 ] ||
  bad "bugs: the free'd stacks do not go through hakmem's free (hakmem.cpp)"
[ "$(grep -A4 "Block was alloc'd at" "$log/bugs.vg" | grep -cE "by 0x[0-9A-F]+: malloc \(hakmem\.cpp:")" -eq 3 ] ||
  bad "bugs: the alloc'd stacks do not go through hakmem's malloc (hakmem.cpp)"
# ... and never valgrind's replacement allocator.
has bugs "(malloc|free|calloc|realloc|operator new|operator delete).*(vgpreload_memcheck|vg_replace_malloc)" 0
grep -E "Invalid (write|read)|inside a block|definitely lost|ERROR SUMMARY" "$log/bugs.vg" | sed 's/^==[0-9]*== /  /'

[ $fails -eq 0 ] || { show bugs; echo "$fails failure(s)"; exit 1; }
echo "memcheck reports the use after free and the leak; hakmem's own accesses report nothing"
