#!/usr/bin/env bash
# Runs every test of every variant (or only what the options select) and prints a summary
# line "N passed, N failed". Used by `make test` and `make valgrind`.
#
#   scripts/run_tests.sh [--valgrind] [--variant release|debug|secure] [--filter SUBSTRING]
#
# Shell tests (tests/preload/*.sh) run with:
#   HAKMEM_VARIANT  release | debug | secure
#   HAKMEM_OUT      out/<variant>            (absolute path)
#   HAKMEM_LIB      out/<variant>/libhakmem.so (absolute path)
#   HAKMEM_ROOT     the checkout (absolute path)
# and exit 0 (pass), 77 (skipped), anything else (fail).
# Every test runs with HAKMEM_GUARD=0: the secure variant samples allocations into the guarded
# pool by default (one in a million, at random), and a sampled block would change the exact
# messages other tests assert. tests/preload/guarded.sh sets the rate itself, and checks the
# secure default with the variable unset.
set -u
export HAKMEM_GUARD=0
cd "$(dirname "$0")/.."
root=$(pwd)
variants="release debug secure"
valgrind=0
filter=""
while [ $# -gt 0 ]; do
  case "$1" in
    --valgrind) valgrind=1; variants="debug" ;;
    --variant) variants="$2"; shift ;;
    --filter) filter="$2"; shift ;;
    *) echo "usage: $0 [--valgrind] [--variant release|debug|secure] [--filter SUBSTRING]" >&2; exit 2 ;;
  esac
  shift
done

pass=0; fail=0; skip=0; failed=()
logdir=out/test-logs; mkdir -p "$logdir"

run_one() {  # name, command...
  local name="$1"; shift
  local log="$logdir/$(echo "$name" | tr '/ ' '__').log"
  local t0=$(date +%s.%N)
  "$@" >"$log" 2>&1
  local rc=$?
  local dt=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
  if [ $rc -eq 0 ]; then pass=$((pass+1)); printf '  PASS  %-50s %6ss\n' "$name" "$dt"
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); printf '  SKIP  %-50s %s\n' "$name" "$(tail -1 "$log")"
  else fail=$((fail+1)); failed+=("$name"); printf '  FAIL  %-50s (rc=%d, log %s)\n' "$name" $rc "$log"; tail -25 "$log" | sed 's/^/        | /'
  fi
}

for v in $variants; do
  out="$root/out/$v"
  echo "== $v =="
  for t in $(ls "$out"/tests/ 2>/dev/null); do
    [ -f "$out/tests/$t" ] && [ -x "$out/tests/$t" ] || continue
    case "$t" in *"$filter"*) ;; *) continue ;; esac
    if [ $valgrind -eq 1 ]; then
      case "$t" in test_*) ;; *) continue ;; esac
      # Unit tests only: the API tests (tests/api) run GiB-sized and thousand-thread
      # workloads that take far too long under memcheck.
      [ -f "tests/unit/$t.cpp" ] || continue
      run_one "$v/valgrind/$t" valgrind --error-exitcode=99 --trace-children=yes --quiet \
          --suppressions="$root/tests/valgrind.supp" "$out/tests/$t" --jobs=1 --timeout 600
    else
      run_one "$v/$t" timeout 600 "$out/tests/$t" --jobs=2
    fi
  done
  [ $valgrind -eq 1 ] && continue
  for s in tests/preload/*.sh; do
    [ -f "$s" ] || continue
    case "$s" in *"$filter"*) ;; *) continue ;; esac
    run_one "$v/$(basename "$s" .sh)" env HAKMEM_VARIANT="$v" HAKMEM_OUT="$out" \
        HAKMEM_LIB="$out/libhakmem.so" HAKMEM_ROOT="$root" timeout 900 bash "$s"
  done
done

echo
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
