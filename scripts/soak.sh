#!/usr/bin/env bash
# Long randomized differential soak under LD_PRELOAD, with resident-set drift.
#
#   scripts/soak.sh MINUTES [release|debug] [THREADS=4] [SEED]
#
# Builds out/<variant>/libhakmem.so and out/<variant>/tests/progs/soak (tests/progs/soak.cpp,
# the model of tests/api/diff_model.h), runs it for MINUTES with the library preloaded, and
# prints its figures: rounds, ops, forks, RSS start/min/max/end and whether the resident set
# grew over time. Exit status: 0 pass, 1 a check failed (the seed to replay is printed),
# 3 the resident set grew, other: crash or hang (the soak is killed 2 minutes after its time).
# SOAK_PRELOAD=path overrides the preloaded library (e.g. a deliberately broken allocator,
# to see the soak fail).
set -u
cd "$(dirname "$0")/.."
minutes="${1:?usage: scripts/soak.sh MINUTES [release|debug] [THREADS] [SEED]}"
variant="${2:-release}"
threads="${3:-4}"
seed="${4:-$(date +%s)}"
case "$variant" in release|debug) ;; *) echo "variant must be release or debug" >&2; exit 2 ;; esac

make --no-print-directory -j"$(nproc)" "out/$variant/libhakmem.so" "out/$variant/tests/progs/soak" >/dev/null || {
  echo "soak.sh: build failed" >&2; exit 2; }
lib="${SOAK_PRELOAD:-$PWD/out/$variant/libhakmem.so}"
prog="out/$variant/tests/progs/soak"
seconds=$(echo "$minutes * 60" | bc)
limit=$(echo "$seconds + 120" | bc)

echo "soak.sh: $minutes min, $variant, $threads threads, seed $seed, LD_PRELOAD=$lib"
LD_PRELOAD="$lib" timeout -k 10 "${limit%.*}" "$prog" "$seconds" "$threads" "$seed"
rc=$?
case $rc in
  0) echo "soak.sh: PASS" ;;
  1) echo "soak.sh: FAIL (a check failed)" ;;
  3) echo "soak.sh: FAIL (resident set grew)" ;;
  124|137) echo "soak.sh: FAIL (hung: killed by timeout)" ;;
  *) echo "soak.sh: FAIL (exit status $rc; a crash?)" ;;
esac
exit $rc
