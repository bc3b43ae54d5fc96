#!/usr/bin/env bash
# Records a CPU profile of one benchmark binary from out/release and prints its top symbols.
#
#   scripts/perf_record.sh [--preload LIB] BENCH [ARGS...]
#
#   BENCH      a binary in out/release: larson_hakmem, bench_random_mixed_system, ... (the
#              suffix may be left out: "larson" means larson_hakmem)
#   --preload  run with LD_PRELOAD=LIB (e.g. another allocator, with a *_system binary)
#
# Uses `perf record -e cpu-clock -g` (a software clock: works in VMs without hardware
# counters) with frame-pointer call graphs (the release build keeps frame pointers). The data
# goes to out/perf/<bench>.data; open it again with
#   perf report -i out/perf/<bench>.data
# Example: scripts/perf_record.sh bench_random_mixed_hakmem 2000000
set -eu
cd "$(dirname "$0")/.."
preload=""
if [ "${1:-}" = "--preload" ]; then preload="${2:?--preload needs a library}"; shift 2; fi
[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
bench="$1"; shift
exe="out/release/$bench"
[ -x "$exe" ] || exe="out/release/${bench}_hakmem"
[ -x "$exe" ] || { echo "perf_record: no out/release/$bench or out/release/${bench}_hakmem (make bench)" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf_record: perf not installed (Debian package linux-perf)" >&2; exit 1; }
mkdir -p out/perf
data="out/perf/$(basename "$exe").data"
env_cmd=(env); [ -n "$preload" ] && env_cmd+=("LD_PRELOAD=$preload")
if ! perf record -q -e cpu-clock -g -o "$data" -- "${env_cmd[@]}" "$exe" "$@"; then
  echo "perf_record: perf record failed; if access is denied, try:" >&2
  echo "  sudo sysctl kernel.perf_event_paranoid=1" >&2
  exit 1
fi
echo
echo "== top symbols (self time), $exe $*${preload:+ (LD_PRELOAD=$preload)}"
perf report -i "$data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40
echo
echo "== call graphs of the top entries: perf report -i $data --stdio --no-children"
