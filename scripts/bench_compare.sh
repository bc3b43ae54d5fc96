#!/usr/bin/env bash
# Runs every benchmark under hakmem and the allocators people would otherwise pick, on this
# machine, and prints one markdown table per benchmark. Normally started by ./build.sh bench.
#
#   scripts/bench_compare.sh [--quick | --full] [--rounds N] [--only SUBSTRING] [--alloc LIST]
#
#   --quick        default profile, about 6 minutes on 2 cores
#   --full         more rounds and longer runs, about 20 minutes (for docs/BENCHMARKS.md)
#   --rounds N     override the number of rounds
#   --only S       run only the benchmarks whose id contains S (e.g. larson, fixed)
#   --alloc LIST   comma-separated subset of: hakmem,glibc,mimalloc,jemalloc,tcmalloc
#   --extra N=LIB  also run allocator N by LD_PRELOAD of LIB (e.g. hakmem from another
#                  checkout: --extra hakmem_old=/tmp/old/out/release/libhakmem.so); repeatable
#
# Allocators: hakmem = LD_PRELOAD of out/release/libhakmem.so on the <bench>_system binary;
# glibc = no preload; mimalloc, jemalloc, tcmalloc (minimal) = LD_PRELOAD of the Debian
# libraries, whichever are installed. All allocators run the same binary with the same
# arguments, in interleaved rounds (A B C D E, A B C D E, ...) so that drift of the machine
# (frequency, other load) spreads over all of them instead of biasing one.
#
# Output: the tables on stdout and in out/bench/results.md; raw samples in out/bench/raw.tsv;
# charts out/bench/<bench>.png (throughput and peak RSS per allocator) and
# out/bench/larson_threads.png; logs of failed runs in out/bench/logs/.
# Peak RSS is measured by /usr/bin/time -f %M (Debian package `time`), else taken from the
# benchmark's own "Peak RSS" line.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/out/release"
dest="$root/out/bench"

profile=quick rounds="" only="" alloc_filter="" extras=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) profile=quick ;;
    --full) profile=full ;;
    --rounds) rounds="${2:?}"; shift ;;
    --only) only="${2:?}"; shift ;;
    --alloc) alloc_filter="${2:?}"; shift ;;
    --extra) extras+=("${2:?}"); shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick|--full] [--rounds N] [--only SUBSTRING] [--alloc LIST] [--extra NAME=LIB]" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------------
# The benchmarks: id | binary | arguments (quick) | arguments (full) | metric
#   arguments "-": not run in that profile (memory_return's runs are 2 s of idle each).
#   metric "throughput": the "Throughput = N ops/s" line, higher is better;
#   metric "overhead":   mem_efficiency's, after_peak's and memory_return's "Overhead = X"
#                        (resident bytes per payload or freed byte), lower is better.
# larson_tN are the thread-scaling run (1, 2, 4, 8 threads): sizes 8-1000, 5000 live blocks
# per thread, 100 rounds per thread generation, as in mimalloc-bench's larson-sized.
BENCHES=(
  "larson_t1|larson|1 8 1000 5000 100 4141 1|3 8 1000 5000 100 4141 1|throughput"
  "larson_t2|larson|1 8 1000 5000 100 4141 2|3 8 1000 5000 100 4141 2|throughput"
  "larson_t4|larson|1 8 1000 5000 100 4141 4|3 8 1000 5000 100 4141 4|throughput"
  "larson_t8|larson|1 8 1000 5000 100 4141 8|3 8 1000 5000 100 4141 8|throughput"
  "random_mixed|bench_random_mixed|5000000 8192 1 16 1040|10000000 8192 1 16 1040|throughput"
  "mid_large_mix|mid_large_mix|200000 256 1 1024 1048576|1000000 256 1 1024 1048576|throughput"
  "xthread_p1|xthread|1 1 500000 16 256 64|1 1 2000000 16 256 64|throughput"
  "xthread|xthread|2 2 500000 16 256 64|2 2 2000000 16 256 64|throughput"
  "fixed_16|fixed_size|10000000 16|50000000 16|throughput"
  "fixed_64|fixed_size|10000000 64|50000000 64|throughput"
  "fixed_256|fixed_size|10000000 256|50000000 256|throughput"
  "fixed_1024|fixed_size|10000000 1024|50000000 1024|throughput"
  "mem_eff_64|mem_efficiency|1000000 64|2000000 64|overhead"
  "mem_eff_mixed|mem_efficiency|300000 0|1000000 0|overhead"
  "large_reuse|large_reuse|600 20 5 25|2000 20 5 25|throughput"
  "realloc_grow|realloc_grow|5 256 200|20 256 200|throughput"
  "batch|batch|5000 25 1600 16 4096|20000 25 1600 16 4096|throughput"
  "pipeline|pipeline|2 2 2 100000|2 2 2 300000|throughput"
  "pipeline_4x4|xthread|4 4 300000 16 256 64|4 4 1000000 16 256 64|throughput"
  "after_peak|after_peak|8000 16384 10 2.5|8000 16384 10 2.5|overhead"
  "return_small|memory_return|0 256 2000|0 1024 2000|overhead"
  "return_1mib|memory_return|-|1 1024 2000|overhead"
  "return_threads|memory_return|-|2 16000 2000|overhead"
)
if [ -z "$rounds" ]; then
  if [ $profile = full ]; then rounds=11; else rounds=5; fi
fi
case "$rounds" in ''|*[!0-9]*|0) echo "bench_compare: --rounds needs a positive integer" >&2; exit 2 ;; esac

# ---------------------------------------------------------------------------------------------
# The allocators found on this machine.
. "$root/scripts/allocators.sh"
find_allocators bench_compare
[ ${#ALLOC_NAMES[@]} -gt 0 ] || { echo "bench_compare: no allocator selected" >&2; exit 2; }

for b in "${BENCHES[@]}"; do
  IFS='|' read -r id exe _ <<<"$b"
  [ -x "$bin/${exe}_system" ] || { echo "bench_compare: $bin/${exe}_system not built (make bench)" >&2; exit 1; }
done

have_time=0; [ -x /usr/bin/time ] && have_time=1
mkdir -p "$dest/logs"
rm -f "$dest"/logs/*.log
raw="$dest/raw.tsv"
printf 'bench\tallocator\tround\tmetric\tvalue\trss_kib\tstatus\n' >"$raw"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------------------------------------
# Header: machine and versions.
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
hak_ver=$(git -C "$root" describe --always --dirty 2>/dev/null || echo "uncommitted tree")
{
  echo "# hakmem benchmark comparison"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), profile: $profile, rounds: $rounds (interleaved, each round starting one allocator further on)"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
  echo "- hakmem: $hak_ver (out/release/libhakmem.so, LD_PRELOAD)"
  echo "- glibc: $(pkgver libc6)"
  echo "- mimalloc: $(pkgver libmimalloc2.0) ($(find_lib libmimalloc.so.2 || echo -))"
  echo "- jemalloc: $(pkgver libjemalloc2) ($(find_lib libjemalloc.so.2 || echo -))"
  echo "- tcmalloc: $(pkgver libtcmalloc-minimal4) ($(find_lib libtcmalloc_minimal.so.4 libtcmalloc.so.4 || echo -))"
  echo "- peak RSS: $([ $have_time = 1 ] && echo '/usr/bin/time -f %M' || echo "the benchmark's getrusage")"
} >"$dest/header.md"
cat "$dest/header.md"
echo

# ---------------------------------------------------------------------------------------------
# The runs.
run_one() {  # bench id, exe, args, metric, allocator index, round
  local id="$1" exe="$2" args="$3" metric="$4" i="$5" r="$6"
  local name="${ALLOC_NAMES[$i]}" preload="${ALLOC_LIBS[$i]}"
  local cmd=(env)
  [ -n "$preload" ] && cmd+=("LD_PRELOAD=$preload")
  cmd+=("$bin/${exe}_system")
  # shellcheck disable=SC2206
  cmd+=($args)
  local rc
  if [ $have_time = 1 ]; then
    timeout 300 /usr/bin/time -f '%M' -o "$tmp/rss" "${cmd[@]}" >"$tmp/out" 2>"$tmp/err"; rc=$?
  else
    timeout 300 "${cmd[@]}" >"$tmp/out" 2>"$tmp/err"; rc=$?
  fi
  local value rss status=ok
  if [ $metric = overhead ]; then
    value=$(awk '/^Overhead = / { print $3; exit }' "$tmp/out")
  else
    value=$(awk '/^Throughput = / { print $3; exit }' "$tmp/out")
  fi
  if [ $have_time = 1 ]; then rss=$(tail -1 "$tmp/rss" 2>/dev/null); fi
  case "${rss:-}" in ''|*[!0-9]*) rss=$(awk '/^Peak RSS = / { print $4; exit }' "$tmp/out") ;; esac
  if [ $rc -ne 0 ] || [ -z "$value" ]; then
    status="FAIL(rc=$rc)"; value=""
    log_failed_run "$dest/logs/${id}_${name}_r$r.log" "$id / $name round $r" $rc "${cmd[@]}"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$name" "$r" "$metric" "$value" "${rss:-}" "$status" >>"$raw"
}

t_start=$SECONDS
for b in "${BENCHES[@]}"; do
  IFS='|' read -r id exe qargs fargs metric <<<"$b"
  [ -n "$only" ] && [[ "$id" != *"$only"* ]] && continue
  args="$qargs"; [ $profile = full ] && args="$fargs"
  [ "$args" = - ] && continue  # not in this profile
  printf 'running %-14s %s x %d rounds x %d allocators ...' "$id" "$exe $args" "$rounds" ${#ALLOC_NAMES[@]} >&2
  # Each round starts one allocator further on (A B C, B C A, C A B, ...): no allocator always
  # runs first, right after another benchmark or another program (docs/BENCHMARKS.md,
  # "Rounds rotate").
  n_alloc=${#ALLOC_NAMES[@]}
  for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < n_alloc; k++)); do
      run_one "$id" "$exe" "$args" "$metric" $(((k + r - 1) % n_alloc)) "$r"
    done
  done
  echo " done ($((SECONDS - t_start)) s so far)" >&2
done

# The mincore micro-benchmark measures classification methods, not allocators: run it once.
mincore_md="$dest/mincore.md"
if [ -z "$only" ] || [[ mincore == *"$only"* ]]; then
  iters=2000000; [ $profile = full ] && iters=10000000
  if "$bin/micro_mincore_bench_system" $iters 4096 >"$tmp/mc" 2>&1; then
    { echo "## micro_mincore_bench (free-path pointer classification, $iters calls each)"; echo
      echo "| method | ns/call | TSC cycles/call |"; echo "|---|---:|---:|"
      awk '$1 ~ /^(mincore_always|hybrid|region_map)$/ { printf "| %s | %s | %s |\n", $1, $2, $3 }' "$tmp/mc"
      echo; grep '^micro_mincore_bench:' "$tmp/mc" | sed 's/^/_/; s/$/_/'; echo; } >"$mincore_md"
  else
    { echo "## micro_mincore_bench"; echo; echo "FAILED:"; echo '```'; cat "$tmp/mc"; echo '```'; echo; } >"$mincore_md"
  fi
else
  : >"$mincore_md"
fi

# ---------------------------------------------------------------------------------------------
# Tables and charts.
python3 - "$raw" "$dest" <<'PY'
import csv, statistics, subprocess, sys, os, shutil
raw, dest = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(raw), delimiter='\t'))
benches, allocs = [], []
for r in rows:
    if r['bench'] not in benches: benches.append(r['bench'])
    if r['allocator'] not in allocs: allocs.append(r['allocator'])

def fnum(v):
    if v >= 1e9: return f"{v/1e9:.2f} G"
    if v >= 1e6: return f"{v/1e6:.2f} M"
    if v >= 1e3: return f"{v/1e3:.1f} k"
    return f"{v:.3g}"

def fmt_rss(k):
    return f"{k/1024:.1f} MiB" if k >= 1024 else f"{k:.0f} KiB"

about = {
    'larson_t1': 'Larson server benchmark, 1 thread (ops/s, higher is better)',
    'larson_t2': 'Larson server benchmark, 2 threads', 'larson_t4': 'Larson, 4 threads',
    'larson_t8': 'Larson, 8 threads',
    'random_mixed': 'bench_random_mixed, 16-1040 B, 8192 slots (ops/s)',
    'mid_large_mix': 'mid_large_mix, 1 KiB-1 MiB log-uniform (ops/s)',
    'xthread_p1': 'xthread, 1 producer -> 1 consumer, 16-256 B (blocks/s)',
    'xthread': 'xthread, 2 producers -> 2 consumers, 16-256 B (blocks/s)',
    'fixed_16': 'fixed_size 16 B malloc+free pairs/s', 'fixed_64': 'fixed_size 64 B pairs/s',
    'fixed_256': 'fixed_size 256 B pairs/s', 'fixed_1024': 'fixed_size 1024 B pairs/s',
    'mem_eff_64': 'mem_efficiency, 64 B objects: resident bytes per payload byte (lower is better)',
    'mem_eff_mixed': 'mem_efficiency, 16-1024 B objects: resident bytes per payload byte (lower is better)',
    'large_reuse': 'large_reuse, 5-25 MiB buffers, 20 live, each filled (bytes/s)',
    'realloc_grow': 'realloc_grow, a buffer doubled from 4 KiB to 256 MiB (bytes appended/s)',
    'batch': 'batch, N = 25-1600 blocks of one size (16 B-4 KiB) allocated then freed (blocks/s)',
    'pipeline': 'pipeline, 2 producers -> 2 workers -> 2 consumers, 16 B-32 KiB, idle pauses (requests/s)',
    'pipeline_4x4': 'xthread, 4 producers -> 4 consumers on 2 CPUs, 16-256 B (blocks/s)',
    'after_peak': 'after_peak, 8000 x 16 KiB, 90 % freed at random, 2.5 s of light work: resident bytes per live byte at the end (lower is better)',
    'return_small': 'memory_return, blocks of 16-256 B (256 MiB quick, 1 GiB full) all freed, then 2 s idle: resident bytes per freed byte at the end (lower is better)',
    'return_1mib': 'memory_return, 1 GiB of 1 MiB blocks (full profile only) all freed, then 2 s idle: resident bytes per freed byte at the end',
    'return_threads': 'memory_return, 16000 threads that start, allocate and free 64 blocks of 16-256 B, and exit (full profile only), then 2 s idle: resident growth per byte they freed',
}
summary = {}  # (bench, alloc) -> dict
md = []
for b in benches:
    metric = next(r['metric'] for r in rows if r['bench'] == b)
    lower_better = metric == 'overhead'
    md.append(f"## {b}\n\n_{about.get(b, b)}_\n")
    unit = 'bytes/byte' if lower_better else 'ops/s'
    md.append(f"| allocator | median {unit} | spread (min-max) | peak RSS (median) | vs hakmem | runs |")
    md.append("|---|---:|---:|---:|---:|---|")
    for a in allocs:
        rs = [r for r in rows if r['bench'] == b and r['allocator'] == a]
        vals = [float(r['value']) for r in rs if r['status'] == 'ok' and r['value']]
        rss = [float(r['rss_kib']) for r in rs if r['rss_kib']]
        fails = [r['status'] for r in rs if r['status'] != 'ok']
        s = {'n': len(rs), 'ok': len(vals), 'fails': fails,
             'med': statistics.median(vals) if vals else None,
             'min': min(vals) if vals else None, 'max': max(vals) if vals else None,
             'rss': statistics.median(rss) if rss else None}
        summary[(b, a)] = s
    base = summary.get((b, 'hakmem'), {}).get('med')
    for a in allocs:
        s = summary[(b, a)]
        if s['med'] is None:
            md.append(f"| {a} | FAILED | | {fmt_rss(s['rss']) if s['rss'] else ''} | | {s['fails'][0] if s['fails'] else ''} x{len(s['fails'])} |")
            continue
        if lower_better:
            med, spread = f"{s['med']:.3f}", f"{s['min']:.3f}-{s['max']:.3f}"
        else:
            med, spread = fnum(s['med']), f"{fnum(s['min'])}-{fnum(s['max'])}"
        ratio = f"{s['med']/base:.2f}x" if base else "-"
        runs = f"{s['ok']}/{s['n']}" + (f" ({len(s['fails'])} failed)" if s['fails'] else "")
        md.append(f"| {a} | {med} | {spread} | {fmt_rss(s['rss']) if s['rss'] else '-'} | {ratio} | {runs} |")
    md.append("")
md.append("_vs hakmem_: the allocator's median divided by hakmem's (throughput: above 1.00x the "
          "allocator is faster than hakmem; bytes/byte: above 1.00x it uses more memory).\n")
body = "\n".join(md)
mc = open(os.path.join(dest, 'mincore.md')).read() if os.path.exists(os.path.join(dest, 'mincore.md')) else ''
header = open(os.path.join(dest, 'header.md')).read()
with open(os.path.join(dest, 'results.md'), 'w') as f:
    f.write(header + "\n" + body + "\n" + mc)
print(body)
print(mc)

# Charts (gnuplot, PNG): per benchmark, median metric and peak RSS per allocator; Larson vs threads.
gp = shutil.which('gnuplot')
if not gp:
    print("(gnuplot not installed: no charts)")
    sys.exit(0)
term = 'pngcairo' if 'pngcairo' in subprocess.run([gp, '-e', 'set terminal'], capture_output=True, text=True).stderr + \
       subprocess.run([gp, '-e', 'set terminal'], capture_output=True, text=True).stdout else 'png'
charts = []
for b in benches:
    lower_better = next(r['metric'] for r in rows if r['bench'] == b) == 'overhead'
    dat = os.path.join(dest, f"{b}.dat")
    with open(dat, 'w') as f:
        for a in allocs:
            s = summary[(b, a)]
            f.write(f"\"{a}\" {s['med'] if s['med'] is not None else 0} {(s['rss'] or 0)/1024:.2f}\n")
    ylabel = 'resident bytes per payload byte (lower is better)' if lower_better else 'ops/s (median, higher is better)'
    png = os.path.join(dest, f"{b}.png")
    script = f"""
set terminal {term} size 1000,420
set output '{png}'
set multiplot layout 1,2 title '{b}' noenhanced
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set format y '%.1s%c'
set yrange [0:*]
set xtics rotate by -30
unset key
set title '{'memory overhead' if lower_better else 'throughput'}'
set ylabel '{ylabel}'
plot '{dat}' using 0:2:xtic(1) with boxes lc rgb '#4477aa'
set format y '%g'
set title 'peak RSS'
set ylabel 'MiB (median)'
plot '{dat}' using 0:3:xtic(1) with boxes lc rgb '#cc6677'
unset multiplot
"""
    r = subprocess.run([gp], input=script, capture_output=True, text=True)
    if r.returncode == 0: charts.append(png)
    else: print(f"gnuplot failed for {b}: {r.stderr.strip()[:200]}")
threads = [(t, f"larson_t{t}") for t in (1, 2, 4, 8) if f"larson_t{t}" in benches]
if threads:
    dat = os.path.join(dest, "larson_threads.dat")
    with open(dat, 'w') as f:
        f.write("threads " + " ".join(allocs) + "\n")
        for t, b in threads:
            f.write(f"{t} " + " ".join(str(summary[(b, a)]['med'] or 'NaN') for a in allocs) + "\n")
    png = os.path.join(dest, "larson_threads.png")
    plots = ", ".join(f"'{dat}' using 1:{i+2} with linespoints lw 2 title '{a}'" for i, a in enumerate(allocs))
    script = f"""
set terminal {term} size 800,500
set output '{png}'
set title 'Larson throughput vs threads ({os.cpu_count()} CPUs)'
set xlabel 'threads'
set ylabel 'ops/s (median)'
set format y '%.1s%c'
set logscale x 2
set xtics (1,2,4,8)
set xrange [0.8:10]
set yrange [0:*]
set grid
set key outside right top
plot {plots}
"""
    r = subprocess.run([gp], input=script, capture_output=True, text=True)
    if r.returncode == 0: charts.append(png)
    else: print(f"gnuplot failed for larson_threads: {r.stderr.strip()[:200]}")
print(f"results: {os.path.join(dest, 'results.md')}; charts: {len(charts)} PNG files in {dest}")
PY
rc=$?
echo "elapsed: $((SECONDS - t_start)) s" >&2
failed=$(awk -F'\t' 'NR > 1 && $7 != "ok"' "$raw" | wc -l)
if [ "$failed" -ne 0 ]; then
  echo "bench_compare: $failed run(s) failed; see $dest/logs/" >&2
  [ $rc -eq 0 ] && rc=1
fi
exit $rc
