#!/usr/bin/env bash
# Instructions per malloc/free pair, per allocator, counted by callgrind on bench/fixed_size.
#
#   scripts/callgrind.sh [SIZE ...]        default sizes: 16 64 256 1024
#   env: SMALL=20000 LARGE=220000          the two iteration counts
#
# For each allocator and size, fixed_size runs twice under valgrind --tool=callgrind: with
# SMALL and with LARGE iterations. Everything that is not per-iteration (process start-up,
# allocator initialisation, the first refill, exit) is the same in both runs, so
#   (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL)
# is the cost of one iteration: one malloc + one free + the benchmark's own loop and 8-byte
# check (about 15 instructions, the same for every allocator).
# Allocators: hakmem (fixed_size_hakmem, linked; and LD_PRELOAD of out/release/libhakmem.so and
# of the secure variant's out/secure/libhakmem.so),
# glibc, mimalloc, jemalloc, tcmalloc (whichever are installed).
set -u
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind: valgrind not installed" >&2; exit 1; }
small="${SMALL:-20000}" large="${LARGE:-220000}"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(16 64 256 1024)
bin=out/release
[ -x "$bin/fixed_size_system" ] || { echo "callgrind: $bin/fixed_size_system not built (make bench)" >&2; exit 1; }

# name | binary | library to preload ('' = none)
runs=()
[ -x "$bin/fixed_size_hakmem" ] && runs+=("hakmem (linked)|$bin/fixed_size_hakmem|")
[ -f "$bin/libhakmem.so" ] && runs+=("hakmem (preload)|$bin/fixed_size_system|$(pwd)/$bin/libhakmem.so")
[ -f out/secure/libhakmem.so ] && runs+=("hakmem secure (preload)|$bin/fixed_size_system|$(pwd)/out/secure/libhakmem.so")
runs+=("glibc|$bin/fixed_size_system|")
for pair in mimalloc:libmimalloc.so.2 jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
  n="${pair%%:*}" f="/usr/lib/x86_64-linux-gnu/${pair#*:}"
  [ -f "$f" ] && runs+=("$n|$bin/fixed_size_system|$f")
done

ir() {  # preload, command..., prints the total instruction count (callgrind's "Collected")
  local preload="$1"; shift
  # The preload is given to valgrind itself, which passes it on to the program it runs.
  LD_PRELOAD="$preload" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null \
    | awk '/Collected :/ { print $NF }'
}

echo "instructions per malloc+free pair (fixed_size, iterations $small vs $large)"
echo
printf '| allocator |'; for s in "${sizes[@]}"; do printf ' %s B |' "$s"; done; echo
printf '|---|'; for s in "${sizes[@]}"; do printf -- '---:|'; done; echo
for r in "${runs[@]}"; do
  IFS='|' read -r name exe preload <<<"$r"
  printf '| %s |' "$name"
  for s in "${sizes[@]}"; do
    a=$(ir "$preload" "$exe" "$small" "$s"); b=$(ir "$preload" "$exe" "$large" "$s")
    if [ -z "$a" ] || [ -z "$b" ]; then printf ' failed |'; continue; fi
    printf ' %s |' "$(echo "scale=1; ($b - $a) / ($large - $small)" | bc)"
  done
  echo
done
