#!/usr/bin/env bash
# prof.sh — the heap profiler (core/prof.h) under LD_PRELOAD=$HAKMEM_LIB, read back by
# google-pprof (Debian package google-perftools, which `make test` installs):
#  - accuracy: tests/progs/prof_sites (four threads: 200 MiB live in 64-byte blocks, 20 MiB in
#    8 KiB blocks, 2 GiB allocated and freed, 5 MiB leaked in 100-byte blocks) at the default
#    mean of 512 KiB. A site holding B live bytes in blocks much smaller than the mean gets
#    about B / 512 KiB samples (Poisson), so its estimate has a relative standard deviation of
#    sqrt(512 KiB / B): 5 % for 200 MiB, 16 % for 20 MiB, 32 % for 5 MiB. The bounds below are
#    four of those (a failure by chance is rarer than 1 in 10 000 per check); the cumulative
#    2 GiB (about 4000 samples) within 10 %;
#  - every dump path: hak_prof_dump mid-run, the signal (HAKMEM_PROF_SIGNAL), the exit
#    profile and the peak profile (HAKMEM_PROF_AT_EXIT), a forked child's own pair; the leak
#    report (HAKMEM_PROF_LEAKS) names the leaking function;
#  - the stress test with a sample every 4 KiB on average finds nothing wrong.
set -u
sites="$HAKMEM_OUT/tests/progs/prof_sites"
sp="$HAKMEM_OUT/tests/progs/stress_preload"
for p in "$sites" "$sp"; do [ -x "$p" ] || { echo "missing $p (build the tests first)"; exit 1; }; done
command -v google-pprof >/dev/null || { echo "google-pprof not installed (scripts/setup.sh installs google-perftools)"; exit 1; }
tmp=$(mktemp -d)
[ -n "${PROF_KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
fail=0

# MB (pprof's MiB) a site holds in a profile: the largest "flat" figure of the lines naming it.
site_mb() {  # file, site, [pprof option]
  google-pprof --text ${3:-} "$sites" "$1" 2>/dev/null |
    awk -v s="$2" '$6 == s { if ($1 + 0 > m) m = $1 + 0; f = 1 } END { printf "%s\n", f ? m : 0 }'
}
check() {  # what, value, low, high
  if awk -v v="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v >= lo && v <= hi) }'; then
    echo "ok   $1: $2 (expected $3 .. $4)"
  else
    echo "FAIL $1: $2 (expected $3 .. $4)"
    fail=1
  fi
}

# "%p": each process of the tree (timeout, the program, its forked child) writes its own pair.
out=$(cd "$tmp" && HAKMEM_PROF=1 HAKMEM_PROF_AT_EXIT="$tmp/exit.%p.heap" HAKMEM_PROF_LEAKS=1 HAKMEM_PROF_SIGNAL=12 \
  LD_PRELOAD="$HAKMEM_LIB" timeout 300 "$sites" "$tmp/mid.heap" fork signal 2>&1)
rc=$?
pid=$(echo "$out" | awk '/^prof_sites: pid / { print $3 }')
cpid=$(echo "$out" | awk '/^prof_sites: child / { print $3 }')
if [ $rc -ne 0 ] || [[ "$out" != *"prof_sites: done"* ]] || [ -z "$pid" ] || [ -z "$cpid" ]; then
  echo "FAIL prof_sites: rc $rc"
  echo "$out" | head -20 | sed 's/^/       /'
  exit 1
fi
echo "ok   prof_sites ran (4 threads, a fork, a signal)"

# The mid-run dump: what is live once the four threads are done.
check "live 64-byte site (200 MiB)" "$(site_mb "$tmp/mid.heap" site_keep_small)" 160 240
check "live 8 KiB site (20 MiB)" "$(site_mb "$tmp/mid.heap" site_keep_8k)" 7.4 32.6
check "leaking site (5 MiB)" "$(site_mb "$tmp/mid.heap" site_leak)" 0.01 11.4
check "churning site, live (0)" "$(site_mb "$tmp/mid.heap" site_churn)" 0 1
check "churning site, allocated (2048 MiB)" "$(site_mb "$tmp/mid.heap" site_churn --alloc_space)" 1843 2253
# At exit: the keepers freed, the leak still there.
check "exit profile: 64-byte site freed" "$(site_mb "$tmp/exit.$pid.heap" site_keep_small)" 0 0.5
check "exit profile: leaking site" "$(site_mb "$tmp/exit.$pid.heap" site_leak)" 0.01 11.4
# The peak profile: saved when the estimate grows 10 % past the last saved peak.
check "peak profile: 64-byte site" "$(site_mb "$tmp/exit.$pid.heap.peak" site_keep_small)" 144 240
# The signal's dump (<HAKMEM_PROF_AT_EXIT>.<pid>.<n>.heap), and the forked child's pair: it
# inherited the live heap and allocated 3 MiB in main (above the mean: always sampled).
sig="$tmp/exit.%p.heap.$pid.1.heap"
if [ -s "$sig" ]; then check "signal dump: 64-byte site" "$(site_mb "$sig" site_keep_small)" 160 240
else echo "FAIL no signal dump $sig in: $(ls "$tmp")"; fail=1; fi
if [ -s "$tmp/exit.$cpid.heap" ] && [ -s "$tmp/exit.$cpid.heap.peak" ]; then
  check "forked child's exit profile: 3 MiB in main" "$(site_mb "$tmp/exit.$cpid.heap" main)" 2.9 3.1
  check "forked child's exit profile: the inherited 64-byte site" "$(site_mb "$tmp/exit.$cpid.heap" site_keep_small)" 160 240
else
  echo "FAIL no exit profile of the forked child in: $(ls "$tmp")"; fail=1
fi
# The leak report, from the parent (the last one printed).
report=$(echo "$out" | awk '/hakmem: leak report:/ { r = "" } { r = r $0 "\n" } END { printf "%s", r }')
if echo "$report" | grep -q "hakmem: about [0-9]* bytes in [0-9]* blocks of ~100 bytes" &&
   echo "$report" | grep -q "site_leak+0x" && ! echo "$report" | grep -q site_keep_small; then
  echo "ok   leak report names site_leak: $(echo "$report" | head -1)"
else
  echo "FAIL leak report:"; echo "$report" | head -12 | sed 's/^/       /'; fail=1
fi

# The stress test, sampling every 4 KiB on average: every sampled block is a span of its own.
for c in "8 100 8 21" "32 20 6 22"; do
  o=$(HAKMEM_PROF=1 HAKMEM_PROF_SAMPLE=4096 LD_PRELOAD="$HAKMEM_LIB" timeout 300 "$sp" $c 2>&1)
  rc=$?
  echo "[stress $c, HAKMEM_PROF_SAMPLE=4096] rc=$rc: $(echo "$o" | tail -1)"
  [ $rc -eq 0 ] || { echo "FAIL: stress_preload $c with profiling: $o" | head -8; fail=1; }
done
exit $fail
