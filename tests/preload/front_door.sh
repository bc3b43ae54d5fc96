#!/usr/bin/env bash
# front_door.sh — scripts/hakmem, the one command that runs a program on hakmem: each variant's
# library preloaded (checked by the library's own start-up line), the options it sets, the
# program's exit status passed on, the user's LD_PRELOAD kept, usage errors (exit 2), and the
# installed layout (make install PREFIX=…: bin/hakmem finds lib/ and lib/hakmem/<variant>/).
set -u
root=${HAKMEM_ROOT:?HAKMEM_ROOT not set}
h="$root/scripts/hakmem"
prog="$HAKMEM_OUT/tests/progs/stats_known"
gc="$HAKMEM_OUT/tests/progs/guarded_check"
for p in "$prog" "$gc"; do [ -x "$p" ] || { echo "missing $p (build the tests first)"; exit 1; }; done
fail=0
expect() {  # description, expected status, expected words in the output ('' = any), command...
  local what=$1 want=$2 words=$3; shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$want" ] && [[ "$out" == *"$words"* ]]; then echo "ok   $what (rc $rc)"
  else echo "FAIL $what: rc $rc (want $want), output (want '$words'):"; echo "$out" | head -8 | sed 's/^/       /'; fail=1; fi
}
flag=""
[ "$HAKMEM_VARIANT" != release ] && flag="--$HAKMEM_VARIANT"
expect "run $HAKMEM_VARIANT: its library" 0 "build: $HAKMEM_VARIANT variant" env HAKMEM_VERBOSE=1 "$h" run $flag -- "$prog"
expect "run --stats" 0 "hakmem: stats: tier" "$h" run $flag --stats -- "$prog"
expect "run --guard 1" 0 "ok" "$h" run $flag --guard 1 -- "$gc" api
expect "the program's exit status" 7 "" "$h" run $flag -- sh -c 'exit 7'
expect "the user's LD_PRELOAD kept, hakmem first" 0 "$HAKMEM_OUT/libhakmem.so /nonexistent.so" \
  env LD_PRELOAD=/nonexistent.so "$h" run $flag -- sh -c 'echo "$LD_PRELOAD"'
expect "--version" 0 "hakmem 0." "$h" --version
expect "--help" 0 "hakmem run [--debug|--secure]" "$h" --help
expect "no arguments" 2 "usage:" "$h"
expect "unknown command" 2 "unknown command 'walk'" "$h" walk
expect "unknown option" 2 "unknown option '--fast'" "$h" run --fast -- true
expect "no program" 2 "no program given" "$h" run --stats
expect "--guard without a number" 2 "--guard x: not a number" "$h" run --guard x -- true
expect "--guard at the end" 2 "--guard needs a number" "$h" run --guard
expect "--prof without a file" 2 "--prof needs a file name" "$h" run --prof
expect "--prof into a missing directory" 2 "no such directory" "$h" run --prof /nonexistent/dir/f -- true
expect "prof without a file" 2 "prof: give a profile file" "$h" prof
expect "prof of a missing file" 2 "no such file" "$h" prof /nonexistent.prof
expect "prof of a file that is not a profile" 2 "not a heap profile" "$h" prof "$h"
# --prof and --leaks: the exit profile (and its peak) written, the leak report printed, and
# `hakmem prof` naming the program's top site from the profile alone.
ptmp=$(mktemp -d)
sites="$HAKMEM_OUT/tests/progs/prof_sites"
expect "run --prof --leaks" 0 "hakmem: leak report: about" "$h" run $flag --prof "$ptmp/p.heap" --leaks -- "$sites" "$ptmp/mid.heap"
for f in p.heap p.heap.peak; do
  if [ -s "$ptmp/$f" ] && head -1 "$ptmp/$f" | grep -q '^heap profile: .* @ heap_v2/524288$'; then echo "ok   --prof wrote $f"
  else echo "FAIL --prof did not write $f"; ls -la "$ptmp" | sed 's/^/       /'; fail=1; fi
done
expect "prof names the top site of the peak profile" 0 "site_keep_small" "$h" prof "$ptmp/p.heap.peak"
mkdir "$ptmp/bin"  # the tools the script uses, without google-pprof
for t in bash env awk head grep sort basename dirname readlink sed cat; do ln -s "$(command -v $t)" "$ptmp/bin/$t"; done
expect "prof without google-pprof: the largest stacks" 0 "first frame 0x" env PATH="$ptmp/bin" bash "$h" prof "$ptmp/p.heap.peak"
rm -rf "$ptmp"
# The installed layout, once (release run of the test): every variant under a temporary prefix.
if [ "$HAKMEM_VARIANT" = release ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  if make -C "$root" -s install PREFIX="$tmp" >"$tmp/install.log" 2>&1; then
    expect "installed bin/hakmem, release" 0 "build: release variant" env HAKMEM_VERBOSE=1 "$tmp/bin/hakmem" run -- "$prog"
    expect "installed bin/hakmem, secure" 0 "build: secure variant" env HAKMEM_VERBOSE=1 "$tmp/bin/hakmem" run --secure -- "$prog"
    expect "installed bin/hakmem, debug" 0 "build: debug variant" env HAKMEM_VERBOSE=1 "$tmp/bin/hakmem" run --debug -- "$prog"
  else
    echo "FAIL make install PREFIX=$tmp:"; tail -5 "$tmp/install.log"; fail=1
  fi
fi
exit $fail
