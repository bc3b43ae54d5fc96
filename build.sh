#!/usr/bin/env bash
# hakmem build entry point.
#   ./build.sh                 build everything (libraries, benches, tests) in both variants
#   ./build.sh TARGET          build one target in both variants, e.g. ./build.sh larson_hakmem
#                              -> out/release/larson_hakmem and out/debug/larson_hakmem
#   ./build.sh bench [--full]  install the peer allocators, build, and run the comparison
#                              (table in out/bench/results.md, charts in out/bench/*.png)
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
    exec scripts/bench_compare.sh "$@"
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
