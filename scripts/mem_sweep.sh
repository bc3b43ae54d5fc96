#!/usr/bin/env bash
# Memory efficiency per object size: runs out/release/mem_efficiency_system once per size under
# hakmem and the peer allocators and prints one markdown table of the "Overhead" figures
# (resident bytes per payload byte, lower is better). ./build.sh bench --full runs it after
# scripts/bench_compare.sh.
#
#   scripts/mem_sweep.sh [--sizes "S1 S2 ..."] [--mib N] [--rounds N] [--alloc LIST] [--extra NAME=LIB]
#
#   --sizes "..."  object sizes in bytes (default: 49 sizes from 8 to 4096, class boundaries
#                  and the sizes between them)
#   --mib N        MiB of payload per size (default 64): count = N MiB / size, clamped to
#                  [16384, 4000000]
#   --rounds N     runs per allocator and size; the table shows the median (default 1: the
#                  figure is deterministic to about three decimals)
#   --alloc LIST   comma-separated subset of: hakmem,glibc,mimalloc,jemalloc,tcmalloc
#   --extra N=LIB  also run allocator N by LD_PRELOAD of LIB (another hakmem build, e.g.
#                  --extra secure=$PWD/out/secure/libhakmem.so); repeatable. Extras get a column
#                  but are not peers: "best peer" is the lowest of glibc, mimalloc, jemalloc and
#                  tcmalloc only.
#
# Allocators are found and switched as in scripts/bench_compare.sh: hakmem = LD_PRELOAD of
# out/release/libhakmem.so; glibc = no preload; mimalloc, jemalloc, tcmalloc (minimal) =
# LD_PRELOAD of the Debian libraries, whichever are installed. For each size every allocator
# runs in turn (and round after round with --rounds), so drift of the machine is spread.
#
# Output: the table on stdout and in out/bench/mem_sweep.md, with a column hakmem / best peer;
# rows where hakmem is above the best peer by more than 0.002 are marked with a trailing ▲, and
# a summary line follows (sizes where hakmem is lowest or within 0.002 of the lowest, geometric
# mean of hakmem / best peer). Raw samples in out/bench/mem_sweep.tsv; logs of failed runs in
# out/bench/logs/mem_sweep_*.log. Exit status 1 if any run failed, 2 on a bad argument.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/out/release"
dest="$root/out/bench"

usage() {
  echo "usage: $0 [--sizes \"S1 S2 ...\"] [--mib N] [--rounds N] [--alloc LIST] [--extra NAME=LIB]" >&2
  exit 2
}
sizes="8 16 24 32 40 48 56 64 80 96 100 112 128 136 160 192 200 256 300 320 384 400 500 512 520
       600 640 700 768 800 900 1000 1024 1040 1100 1200 1280 1500 1536 1600 2000 2048 2100 2500
       3000 3072 3500 4000 4096"
mib=64 rounds=1 alloc_filter="" extras=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) [ $# -ge 2 ] || usage; sizes="$2"; shift ;;
    --mib) [ $# -ge 2 ] || usage; mib="$2"; shift ;;
    --rounds) [ $# -ge 2 ] || usage; rounds="$2"; shift ;;
    --alloc) [ $# -ge 2 ] || usage; alloc_filter="$2"; shift ;;
    --extra) [ $# -ge 2 ] || usage; extras+=("$2"); shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) usage ;;
  esac
  shift
done
is_count() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; [ "$1" -gt 0 ] 2>/dev/null; }
is_count "$rounds" || { echo "mem_sweep: --rounds needs a positive integer" >&2; usage; }
is_count "$mib" && [ "$mib" -le 16384 ] || { echo "mem_sweep: --mib needs an integer in 1-16384" >&2; usage; }
read -r -d '' -a SIZES <<<"$sizes"  # every line (the default list spans several)
[ ${#SIZES[@]} -gt 0 ] || { echo "mem_sweep: --sizes is empty" >&2; usage; }
for s in "${SIZES[@]}"; do
  is_count "$s" && [ "$s" -le 16777216 ] || { echo "mem_sweep: bad size '$s' (1-16777216 bytes)" >&2; usage; }
done

# ---------------------------------------------------------------------------------------------
# The allocators found on this machine (scripts/allocators.sh).
. "$root/scripts/allocators.sh"
find_allocators mem_sweep
[ ${#ALLOC_NAMES[@]} -gt 0 ] || { echo "mem_sweep: no allocator selected" >&2; exit 2; }

exe="$bin/mem_efficiency_system"
[ -x "$exe" ] || { echo "mem_sweep: $exe not built (make bench)" >&2; exit 1; }

mkdir -p "$dest/logs"
rm -f "$dest"/logs/mem_sweep_*.log
raw="$dest/mem_sweep.tsv"
printf 'size\tcount\tallocator\tkind\tround\toverhead\tstatus\n' >"$raw"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

count_for() {  # size -> count: mib MiB of payload, clamped to [16384, 4000000]
  local c=$(( mib * 1048576 / $1 ))
  [ $c -lt 16384 ] && c=16384
  [ $c -gt 4000000 ] && c=4000000
  echo $c
}

run_one() {  # size, count, allocator index, round
  local size="$1" count="$2" i="$3" r="$4"
  local name="${ALLOC_NAMES[$i]}" preload="${ALLOC_LIBS[$i]}"
  local cmd=(env)
  [ -n "$preload" ] && cmd+=("LD_PRELOAD=$preload")
  cmd+=("$exe" "$count" "$size" 1)
  local rc value status=ok
  timeout 300 "${cmd[@]}" >"$tmp/out" 2>"$tmp/err"; rc=$?
  value=$(awk '/^Overhead = / { print $3; exit }' "$tmp/out")
  if [ $rc -ne 0 ] || [ -z "$value" ]; then
    status="FAIL(rc=$rc)"; value=""
    log_failed_run "$dest/logs/mem_sweep_${size}_${name}_r$r.log" "size $size / $name round $r" $rc "${cmd[@]}"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$count" "$name" "${ALLOC_KINDS[$i]}" "$r" "$value" "$status" >>"$raw"
}

t_start=$SECONDS
echo "mem_sweep: ${#SIZES[@]} sizes x $rounds round(s) x ${#ALLOC_NAMES[@]} allocators (${ALLOC_NAMES[*]}), $mib MiB of payload per size" >&2
for size in "${SIZES[@]}"; do
  count=$(count_for "$size")
  printf '  size %5d: %7d blocks ...' "$size" "$count" >&2
  for ((r = 1; r <= rounds; r++)); do
    for ((i = 0; i < ${#ALLOC_NAMES[@]}; i++)); do
      run_one "$size" "$count" "$i" "$r"
    done
  done
  echo " done ($((SECONDS - t_start)) s so far)" >&2
done

# ---------------------------------------------------------------------------------------------
# The table.
hak_ver=$(git -C "$root" describe --always --dirty 2>/dev/null || echo "uncommitted tree")
python3 - "$raw" "$dest/mem_sweep.md" "$mib" "$rounds" "$hak_ver" <<'PY'
import csv, math, statistics, sys
raw, out_md, mib, rounds, hak_ver = sys.argv[1:6]
TOL = 0.002
rows = list(csv.DictReader(open(raw), delimiter='\t'))
sizes, allocs, kind = [], [], {}
for r in rows:
    s = int(r['size'])
    if s not in sizes: sizes.append(s)
    if r['allocator'] not in allocs: allocs.append(r['allocator'])
    kind[r['allocator']] = r['kind']
peers = [a for a in allocs if kind[a] == 'peer']
extras = [a for a in allocs if kind[a] == 'extra']
cols = [a for a in allocs if kind[a] in ('hakmem', 'peer')] + extras
have_hak = 'hakmem' in allocs

med = {}    # (size, alloc) -> median overhead, or None if every round failed
for s in sizes:
    for a in allocs:
        vals = [float(r['overhead']) for r in rows
                if int(r['size']) == s and r['allocator'] == a and r['status'] == 'ok' and r['overhead']]
        med[(s, a)] = statistics.median(vals) if vals else None

md = [f"## mem_efficiency per object size ({mib} MiB of payload per size)", "",
      f"_Resident bytes per payload byte, lower is better; median of {rounds} run(s); hakmem {hak_ver}. "
      f"best peer = lowest of {', '.join(peers) or '(none)'}; ▲ = hakmem above the best peer by more than {TOL}._", "",
      "| size | " + " | ".join(cols) + " | best peer | hakmem / best peer |",
      "|---:|" + "---:|" * len(cols) + "---|---:|"]
ratios, wins, compared = [], 0, 0
for s in sizes:
    cells = [f"{med[(s, a)]:.3f}" if med[(s, a)] is not None else "FAIL" for a in cols]
    pv = [(med[(s, a)], a) for a in peers if med[(s, a)] is not None]
    best = min(pv) if pv else None
    h = med.get((s, 'hakmem'))
    best_cell = f"{best[0]:.3f} ({best[1]})" if best else "-"
    ratio_cell = "-"
    if best and h is not None and best[0] > 0:
        ratio = h / best[0]
        ratios.append(ratio)
        compared += 1
        ratio_cell = f"{ratio:.3f}"
        if h <= best[0] + TOL:
            wins += 1
        else:
            ratio_cell += " ▲"
    md.append(f"| {s} | " + " | ".join(cells) + f" | {best_cell} | {ratio_cell} |")
md.append("")
if compared:
    gmean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    md.append(f"hakmem is lowest or within {TOL} of the best peer at {wins} of {compared} sizes; "
              f"geometric mean of hakmem / best peer = {gmean:.3f}")
elif not have_hak:
    md.append("hakmem was not run: no hakmem / best peer comparison")
else:
    md.append("no size with both a hakmem and a peer result: no comparison")
text = "\n".join(md) + "\n"
open(out_md, 'w').write(text)
print(text, end='')
PY
rc=$?
echo "mem_sweep: $((SECONDS - t_start)) s; table in $dest/mem_sweep.md, raw samples in $raw" >&2
failed=$(awk -F'\t' 'NR > 1 && $7 != "ok"' "$raw" | wc -l)
if [ "$failed" -ne 0 ]; then
  echo "mem_sweep: $failed run(s) failed; see $dest/logs/mem_sweep_*.log" >&2
  [ $rc -eq 0 ] && rc=1
fi
exit $rc
