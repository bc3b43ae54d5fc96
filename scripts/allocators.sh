# allocators.sh — sourced by bench_compare.sh and mem_sweep.sh: the allocators found on this
# machine. find_allocators PROG fills ALLOC_NAMES, ALLOC_LIBS ('' = glibc, no preload) and
# ALLOC_KINDS (hakmem, peer, extra) from the caller's $bin (out/release), $alloc_filter (the
# --alloc list) and $extras (the --extra NAME=LIB arguments); PROG prefixes its messages.
# A bad --extra exits 2. log_failed_run keeps a failed run's output in a log.

find_lib() {  # first existing library among the names given
  local n d
  for n in "$@"; do
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
      [ -f "$d/$n" ] && { echo "$d/$n"; return 0; }
    done
    d=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1 == n { print $NF; exit }')
    [ -n "$d" ] && [ -f "$d" ] && { echo "$d"; return 0; }
  done
  return 1
}

add_alloc() {  # name, library ('' = none), kind
  if [ -n "$alloc_filter" ] && [[ ",$alloc_filter," != *",$1,"* ]]; then return; fi
  ALLOC_NAMES+=("$1"); ALLOC_LIBS+=("$2"); ALLOC_KINDS+=("$3")
}

find_allocators() {  # PROG
  local prog="$1" lib e hak_lib="$bin/libhakmem.so"
  ALLOC_NAMES=() ALLOC_LIBS=() ALLOC_KINDS=()
  if [ -f "$hak_lib" ] && nm -D --defined-only "$hak_lib" 2>/dev/null | grep -q ' T malloc$'; then
    add_alloc hakmem "$hak_lib" hakmem
  else
    echo "$prog: $hak_lib missing or not exporting malloc; hakmem left out" >&2
  fi
  add_alloc glibc "" peer
  lib=$(find_lib libmimalloc.so.2 libmimalloc.so) && add_alloc mimalloc "$lib" peer
  lib=$(find_lib libjemalloc.so.2 libjemalloc.so) && add_alloc jemalloc "$lib" peer
  lib=$(find_lib libtcmalloc_minimal.so.4 libtcmalloc.so.4) && add_alloc tcmalloc "$lib" peer
  for e in ${extras[@]+"${extras[@]}"}; do
    case "$e" in
      ?*=?*) [ -f "${e#*=}" ] || { echo "$prog: --extra $e: no such library" >&2; exit 2; }
             ALLOC_NAMES+=("${e%%=*}"); ALLOC_KINDS+=(extra)
             ALLOC_LIBS+=("$(cd "$(dirname "${e#*=}")" && pwd)/$(basename "${e#*=}")") ;;
      *) echo "$prog: --extra needs NAME=LIBRARY" >&2; exit 2 ;;
    esac
  done
}

log_failed_run() {  # LOG LABEL RC COMMAND...: keeps the failed run's $tmp/out and $tmp/err in LOG
  local log="$1" label="$2" rc="$3"
  shift 3
  { echo "command: $*"; echo "exit status: $rc"; echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; cat "$tmp/err"; } >"$log"
  echo "  $label: FAILED (exit $rc), log $log" >&2
}
