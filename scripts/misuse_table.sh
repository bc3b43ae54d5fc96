#!/usr/bin/env bash
# Which memory errors each variant catches, and when — measured, not written by hand.
#
#   scripts/misuse_table.sh [--column release|secure|debug|guard|glibc ...] [--check FILE]
#
# Runs every case of tests/progs/misuse_matrix (one memory error each, then the program goes
# on: see that file) under LD_PRELOAD of out/<variant>/libhakmem.so, and under glibc's own
# malloc for comparison, and under the release library with guarded sampling on every
# allocation (column "guard": HAKMEM_GUARD=1, the slots permitting; the other columns run
# with HAKMEM_GUARD=0, also the secure one, whose default samples), and prints the markdown
# table docs/TUNING.md holds between the lines
# <!-- misuse-table:begin --> and <!-- misuse-table:end -->. A cell is
#   at the call   the process aborted (SIGABRT) before the program went on
#   later         it aborted after that: at malloc_trim(0) (the thread's cache flushed), at a
#                 later malloc of the same size, or at exit
#   not caught    the program ran to its end
#   crash (SIGx)  it died of another signal (a segfault is not a report)
# --column picks the columns (default: all four). --check FILE: instead of printing, compare
# the measured columns with the table in FILE and exit 1 on any difference (the test
# tests/preload/misuse_table.sh does this for its variant). Needs `make test` (or
# `make out/<v>/tests/progs/misuse_matrix`) to have built the program.
set -u
cd "$(dirname "$0")/.."
columns=()
check=""
usage() { echo "usage: $0 [--column release|secure|debug|guard|glibc ...] [--check FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --column) [ $# -ge 2 ] || usage; case "$2" in release|secure|debug|guard|glibc) columns+=("$2") ;; *) usage ;; esac; shift ;;
    --check) [ $# -ge 2 ] || usage; check="$2"; shift ;;
    *) usage ;;
  esac
  shift
done
[ ${#columns[@]} -eq 0 ] && columns=(release secure debug guard glibc)

prog=""
for v in release debug secure; do
  [ -x "out/$v/tests/progs/misuse_matrix" ] && { prog="out/$v/tests/progs/misuse_matrix"; break; }
done
[ -n "$prog" ] || { echo "misuse_table: build the tests first (make test)" >&2; exit 1; }

# One case under one column: prints the cell.
cell() {  # column case
  local lib="" guard=0 v="$1"
  [ "$v" == guard ] && { v=release; guard=1; }
  if [ "$v" != glibc ]; then
    lib="$(pwd)/out/$v/libhakmem.so"
    [ -f "$lib" ] || { echo "missing $lib"; return; }
  fi
  local out rc
  out=$(HAKMEM_GUARD=$guard LD_PRELOAD="$lib" timeout 20 "$prog" "$2" 2>/dev/null)
  rc=$?
  if [ $rc -eq 0 ] && [[ "$out" == *survived* ]]; then echo "not caught"; return; fi
  if [ $rc -eq 134 ]; then
    if [[ "$out" == *went-on* ]]; then echo "later"; else echo "at the call"; fi
    return
  fi
  if [ $rc -gt 128 ]; then echo "crash (signal $((rc - 128)))"; return; fi
  echo "exit $rc"
}

header="| misuse |"
rule="|---|"
for c in "${columns[@]}"; do header="$header $c |"; rule="$rule---|"; done
table="$header"$'\n'"$rule"
while IFS=$'\t' read -r name what; do
  row="| $what |"
  for c in "${columns[@]}"; do row="$row $(cell "$c" "$name") |"; done
  table="$table"$'\n'"$row"
done < <("$prog" --list)

if [ -z "$check" ]; then
  echo "$table"
  exit 0
fi

# --check: the documented table, reduced to the measured columns.
doc=$(awk '/<!-- misuse-table:begin -->/{f=1; next} /<!-- misuse-table:end -->/{f=0} f && /^\|/' "$check")
[ -n "$doc" ] || { echo "misuse_table: no table between the misuse-table markers in $check" >&2; exit 1; }
docheader=$(echo "$doc" | head -1)
fields=()
for c in "${columns[@]}"; do
  idx=$(echo "$docheader" | awk -F'|' -v c="$c" '{for (i = 2; i < NF; ++i) { g = $i; gsub(/^ +| +$/, "", g); if (g == c) print i }}')
  [ -n "$idx" ] || { echo "misuse_table: $check has no column $c" >&2; exit 1; }
  fields+=("$idx")
done
reduced=$(echo "$doc" | awk -F'|' -v f="${fields[*]}" 'BEGIN { n = split(f, k, " ") }
  { line = "|" $2 "|"; for (i = 1; i <= n; ++i) line = line $(k[i]) "|"; print line }' | sed 's/ *| */|/g')
measured=$(echo "$table" | sed 's/ *| */|/g')
# The rule line differs in width only.
if [ "$(echo "$reduced" | sed 1,2d)" == "$(echo "$measured" | sed 1,2d)" ]; then
  echo "misuse_table: ${columns[*]}: every row as documented in $check"
  exit 0
fi
echo "misuse_table: ${columns[*]}: measured table differs from $check:" >&2
diff <(echo "$reduced" | sed 1,2d) <(echo "$measured" | sed 1,2d) >&2
exit 1
