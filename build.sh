#!/usr/bin/env bash
# hakmem build entry point.
#   ./build.sh                 build everything (libraries, benches, tests) in both variants
#   ./build.sh TARGET          build one target in both variants, e.g. ./build.sh larson_hakmem
#                              -> out/release/larson_hakmem and out/debug/larson_hakmem
#   ./build.sh bench [--full]  install the peer allocators, build, and run the comparison
#                              (table in out/bench/results.md, charts in out/bench/*.png);
#                              --full adds the per-size memory sweep (out/bench/mem_sweep.md)
#                              and the real programs (5 rounds)
#   ./build.sh bench --real    only the real programs (scripts/real_bench.sh: python3, perl,
#                              ruby, lua, sqlite3, RocksDB, redis, g++, z3, shell pipelines;
#                              table in out/bench/real/results.md, chart real_programs.png)
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
    full=0 real=0 sweep_args=() real_args=() cmp_args=()
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
      case "${args[$i]}" in
        --full) full=1; cmp_args+=(--full) ;;
        --quick) full=0; cmp_args+=(--quick) ;;
        --real) real=1 ;;
        --extra) sweep_args+=(--extra "${args[$((i + 1))]:-}"); real_args+=(--extra "${args[$((i + 1))]:-}")
                 cmp_args+=(--extra "${args[$((i + 1))]:-}"); i=$((i + 1)) ;;
        --alloc) real_args+=(--alloc "${args[$((i + 1))]:-}"); cmp_args+=(--alloc "${args[$((i + 1))]:-}"); i=$((i + 1)) ;;
        --rounds|--only) real_args+=("${args[$i]}" "${args[$((i + 1))]:-}"); cmp_args+=("${args[$i]}" "${args[$((i + 1))]:-}"); i=$((i + 1)) ;;
        *) cmp_args+=("${args[$i]}") ;;
      esac
    done
    rc=0
    if [ $real = 1 ] && [ $full = 0 ]; then
      exec scripts/real_bench.sh "${real_args[@]}"
    fi
    scripts/bench_compare.sh "${cmp_args[@]}" || rc=$?
    if [ $full = 1 ]; then
      echo
      scripts/mem_sweep.sh "${sweep_args[@]}" || { s=$?; [ $rc -ne 0 ] || rc=$s; }
      echo
      has_rounds=0; for a in "${real_args[@]}"; do [ "$a" = --rounds ] && has_rounds=1; done
      [ $has_rounds = 1 ] || real_args+=(--rounds 5)
      scripts/real_bench.sh "${real_args[@]}" || { s=$?; [ $rc -ne 0 ] || rc=$s; }
    fi
    exit $rc
    ;;
  test)
    exec make test
    ;;
  -h|--help)
    sed -n '2,13p' "$0"; exit 0
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
