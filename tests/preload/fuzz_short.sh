#!/usr/bin/env bash
# fuzz_short.sh — a short bounded libFuzzer run of tests/fuzz/fuzz_ops.cpp (the differential
# model driven by fuzzer bytes) against this variant's hakmem: FUZZ_SECONDS (default 20)
# seconds from an empty corpus with a fixed seed. Builds out/<v>/fuzz/fuzz_ops through make
# (tests/fuzz/fuzz.mk) if needed. Exit 77 (skip) when clang++ or its libFuzzer runtime is
# missing (Debian: clang-14 + libclang-rt-14-dev). A finding is kept as
# out/<v>/fuzz/crash-*; replay it with out/<v>/fuzz/fuzz_ops <file>.
set -u
v="${HAKMEM_VARIANT:?}"; out="${HAKMEM_OUT:?}"; root="${HAKMEM_ROOT:?}"
bin="$out/fuzz/fuzz_ops"
if [ ! -x "$bin" ]; then
  cxx=$(command -v clang++-14 || command -v clang++) || { echo "skip: clang++ not installed (Debian package clang-14)"; exit 77; }
  rt="$("$cxx" -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a"
  [ -f "$rt" ] || { echo "skip: libFuzzer runtime missing: $rt (Debian package libclang-rt-14-dev)"; exit 77; }
  make -C "$root" --no-print-directory "out/$v/fuzz/fuzz_ops" || { echo "FAIL: building the fuzzer failed"; exit 1; }
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" -max_total_time="${FUZZ_SECONDS:-20}" -seed=1 -max_len=4096 -timeout=20 -rss_limit_mb=4096 \
       -print_final_stats=1 -artifact_prefix="$out/fuzz/" "$work" >"$work/log" 2>&1
rc=$?
grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|fuzz_ops:|ERROR|SUMMARY|Test unit written" "$work/log"
if [ $rc -ne 0 ]; then
  tail -40 "$work/log"
  echo "FAIL: the fuzzer found a failing input (rc=$rc); see above and $out/fuzz/crash-*"
  exit 1
fi
echo "PASS: fuzz_ops ran ${FUZZ_SECONDS:-20} s without a finding"
