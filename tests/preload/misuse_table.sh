#!/usr/bin/env bash
# misuse_table.sh — the variant's column of docs/TUNING.md's misuse table is what the variant
# does: scripts/misuse_table.sh re-runs every case of tests/progs/misuse_matrix.c (one memory
# error, then the program goes on) under this variant's libhakmem.so and compares each cell
# (at the call / later / not caught) with the documented one. A check that stops catching an
# error, or catches it later, fails here; so does a table edited by hand. The release run
# also checks the "guard" column (HAKMEM_GUARD=1).
set -u
v=${HAKMEM_VARIANT:?HAKMEM_VARIANT not set}
root=${HAKMEM_ROOT:?HAKMEM_ROOT not set}
[ -x "$HAKMEM_OUT/tests/progs/misuse_matrix" ] || { echo "missing $HAKMEM_OUT/tests/progs/misuse_matrix (build the tests first)"; exit 1; }
# The release library also measures its column with guarded sampling on every allocation.
cols=(--column "$v")
[ "$v" = release ] && cols+=(--column guard)
"$root/scripts/misuse_table.sh" "${cols[@]}" --check "$root/docs/TUNING.md"
