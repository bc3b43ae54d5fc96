#!/usr/bin/env bash
# hakmem build entry point.
#   ./build.sh                 build everything (libraries, benches, tests) in both variants
#   ./build.sh TARGET          build one target in both variants, e.g. ./build.sh larson_hakmem
#                              -> out/release/larson_hakmem and out/debug/larson_hakmem
#   ./build.sh bench [--full]  install the peer allocators, build, and run the comparison
#                              (table in out/bench/results.md, charts in out/bench/*.png);
#                              --full adds the per-size memory sweep (out/bench/mem_sweep.md)
#   ./build.sh test            make test
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc)
case "${1:-all}" in
  all|"")
    scripts/setup.sh
    make -j"$jobs" all
    ;;
  bench)
    shift
    scripts/setup.sh --bench
    make -j"$jobs" release bench
    # --full also runs the per-size memory sweep (scripts/mem_sweep.sh), with the same --extra
    # allocators; the status is non-zero if either script fails.
    full=0 sweep_args=()
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
      case "${args[$i]}" in
        --full) full=1 ;;
        --quick) full=0 ;;
        --extra) sweep_args+=(--extra "${args[$((i + 1))]:-}"); i=$((i + 1)) ;;
        --rounds|--only|--alloc) i=$((i + 1)) ;;
      esac
    done
    rc=0
    scripts/bench_compare.sh "$@" || rc=$?
    if [ $full = 1 ]; then
      echo
      scripts/mem_sweep.sh "${sweep_args[@]}" || { s=$?; [ $rc -ne 0 ] || rc=$s; }
    fi
    exit $rc
    ;;
  test)
    exec make test
    ;;
  -h|--help)
    sed -n '2,9p' "$0"; exit 0
    ;;
  *)
    scripts/setup.sh
    t="$1"
    case "$t" in
      release|debug|secure|libs|clean|install) make -j"$jobs" "$t" ;;
      *) make -j"$jobs" "out/release/$t" "out/debug/$t" ;;
    esac
    ;;
esac
