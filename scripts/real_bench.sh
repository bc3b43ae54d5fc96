#!/usr/bin/env bash
# Real programs, run as users run them, under hakmem and the allocators people would otherwise
# pick. Normally started by ./build.sh bench --real (or --full).
#
#   scripts/real_bench.sh [--rounds N] [--only SUBSTRING] [--alloc LIST] [--extra NAME=LIB]
#                         [--profile]
#
#   --rounds N     interleaved rounds (default 3; ./build.sh bench --full uses 5)
#   --only S       run only the programs whose name contains S
#   --alloc LIST   comma-separated subset of: hakmem,glibc,mimalloc,jemalloc,tcmalloc
#   --extra N=LIB  also run allocator N by LD_PRELOAD of LIB; repeatable
#   --profile      instead of timed rounds, one run of each program under each allocator with
#                  `perf record -e cpu-clock -g` (the whole tree): how much of the program's
#                  time is the allocator's own code and how much is page faults, the bound
#                  on what any allocator could gain there (out/bench/real/profile.md)
#
# Every program comes from a Debian package (scripts/setup.sh --real installs what is missing;
# python3 is run as /usr/bin/python3, so that a version manager's shim on PATH, a shell script
# that starts more processes, is not what gets measured)
# and works on inputs this script generates (deterministic, no downloads) in
# out/bench/real/work. Each run is the whole process tree under LD_PRELOAD of the allocator
# (glibc: no preload), timed by /usr/bin/time: wall time, the peak RSS of the biggest process
# of the tree, minor page faults. The program's output (only what is deterministic) is
# compared with glibc's: a run whose output differs is reported as DIFF and counts as failed.
# Rounds are interleaved (A B C D E, A B C D E, ...), so drift of the machine spreads over
# every allocator. The programs:
#
#   python_json     python3: a 9 MB JSON document dumped, parsed and dumped again (big strings
#                   grown by realloc, the dict/list churn of a parser)
#   python_startup  python3: 40 short interpreters importing json, re, collections (start-up)
#   perl_hash       perl: 300 000 hash entries built from strings, sorted, filtered, deleted
#   ruby_threads    ruby: two threads building hashes, strings and arrays of hashes
#   lua_tables      lua5.4: tables of tables built, concatenated, sorted, collected
#   sqlite3         sqlite3 in memory: 150 000 inserts, an index, aggregates, updates, a join
#   rocksdb         RocksDB's db_bench: fillrandom, readrandom, overwrite (300 000 keys)
#   redis           redis-server driven on loopback by redis-benchmark (SET, GET, LPUSH,
#                   LPOP, SADD, HSET; 16-deep pipelines, 200-byte values); only the server
#                   is preloaded, the load generator runs on glibc
#   gxx_templates   g++ -O1 on generated template-heavy C++ (std containers, variants,
#                   recursive templates): the whole driver -> cc1plus -> as tree
#   z3_solver       z3 on generated bit-vector and 3-SAT formulas
#   sort_pipeline   sort | uniq -c | sort -rn | head, and awk, over 30 MB of words
#   xz_gzip         xz -6 of 6 MB of the words, then xz -d | gzip | gzip -d
#   shell_many      bash running 150 short pipelines of awk, tr and sed (process start-up)
#
# Output: out/bench/real/results.md (the table: median wall time and spread per allocator,
# which peer is fastest and by how much, hakmem against it, peak RSS against glibc's,
# geometric means), raw samples in out/bench/real/raw.tsv, the chart
# out/bench/real/real_programs.png, logs of failed runs in out/bench/real/logs.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/out/release"
dest="$root/out/bench/real"
work="$dest/work"

rounds=3 only="" alloc_filter="" extras=() profile=0
usage() { echo "usage: $0 [--rounds N] [--only SUBSTRING] [--alloc LIST] [--extra NAME=LIB] [--profile]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] || usage; rounds="$2"; shift ;;
    --only) [ $# -ge 2 ] || usage; only="$2"; shift ;;
    --alloc) [ $# -ge 2 ] || usage; alloc_filter="$2"; shift ;;
    --extra) [ $# -ge 2 ] || usage; extras+=("$2"); shift ;;
    --profile) profile=1 ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
    *) usage ;;
  esac
  shift
done
case "$rounds" in ''|*[!0-9]*|0) echo "real_bench: --rounds needs a positive integer" >&2; exit 2 ;; esac

scripts/setup.sh --real || { echo "real_bench: installing the programs failed" >&2; exit 1; }
. "$root/scripts/allocators.sh"
find_allocators real_bench
[ ${#ALLOC_NAMES[@]} -gt 0 ] || { echo "real_bench: no allocator selected" >&2; exit 2; }
glibc_selected=0
for n in "${ALLOC_NAMES[@]}"; do [ "$n" = glibc ] && glibc_selected=1; done
[ $glibc_selected = 1 ] || { echo "real_bench: glibc must be among the allocators (outputs are checked against it)" >&2; exit 2; }

mkdir -p "$work/in" "$work/cmd" "$dest/logs"
rm -f "$dest"/logs/*.log
tmp=$(mktemp -d)
redis_port=$((20000 + $$ % 20000))
trap 'rm -rf "$tmp"; redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1' EXIT

# ---------------------------------------------------------------------------------------------
# Inputs (generated once; a stamp names the generator version).
gen_version=1
if [ "$(cat "$work/in/.stamp" 2>/dev/null)" != "$gen_version" ]; then
  echo "real_bench: generating inputs in $work/in" >&2
  python3 - "$work/in" <<'PY'
import random, sys, os
d = sys.argv[1]
# json_rt.py: the document is built inside the program (same seed every run).
open(os.path.join(d, "json_rt.py"), "w").write('''import json, hashlib, random
random.seed(7)
def node(d):
    if d == 0:
        r = random.random()
        if r < 0.3: return random.randint(-10**9, 10**9)
        if r < 0.5: return random.random() * 1e6
        if r < 0.9: return "".join(random.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(random.randint(3, 40)))
        return None
    if random.random() < 0.5:
        return [node(d - 1) for _ in range(random.randint(2, 8))]
    return {"k%d" % random.randint(0, 99999): node(d - 1) for _ in range(random.randint(2, 8))}
doc = {"items": [node(5) for _ in range(80)]}
h = hashlib.sha256()
for _ in range(3):
    s = json.dumps(doc, sort_keys=True)
    doc = json.loads(s)
    s2 = json.dumps(doc, indent=1, sort_keys=True)
    h.update(s2.encode())
print(len(s), len(s2), h.hexdigest())
''')
open(os.path.join(d, "hash.pl"), "w").write('''use strict; my %h; my @a; my $s = 0;
for my $i (1..300000) { my $k = "k" . (($i * 7919) % 1000003) . join("", map { chr(97 + ($i * $_) % 26) } 1..(3 + $i % 17));
  $h{$k} .= "v$i,"; push @a, $k if $i % 3 == 0; }
for my $r (1..2) { for my $k (sort keys %h) { $s = ($s * 31 + length($h{$k})) % 1000000007; }
  my @t = map { uc } grep { /a.b|c.d/ } @a; $s = ($s + scalar(@t)) % 1000000007; }
delete $h{$_} for grep { length($_) % 2 } keys %h;
my %g; $g{substr($_, 0, 4)} .= $_ for keys %h;
print scalar(keys %h), " ", scalar(keys %g), " $s\\n";
''')
open(os.path.join(d, "threads.rb"), "w").write('''ths = 2.times.map do |t|
  Thread.new do
    acc = 0; h = {}
    120_000.times do |i|
      s = "item-#{t}-#{i}" * (1 + i % 7)
      h[s[0, 24]] = [i, s, s.reverse]
      acc = (acc * 31 + s.length) % 1_000_000_007
      h.delete(h.keys.first) if h.size > 5000
    end
    arr = (1..60_000).map { |i| { id: i, name: "n#{i}" * 3, tags: [i % 7, i % 11] } }
    acc = (acc + arr.sort_by { |x| [x[:tags][0], -x[:id]] }.first(10).sum { |x| x[:id] }) % 1_000_000_007
    acc
  end
end
puts ths.map(&:value).join(" ")
''')
open(os.path.join(d, "tables.lua"), "w").write('''local t, acc = {}, 0
for r = 1, 3 do
  for i = 1, 150000 do t[i] = { i, tostring(i) .. "x" .. r, { r, i % 13 } } end
  local parts = {}
  for i = 1, 150000, 3 do parts[#parts + 1] = t[i][2] end
  local s = table.concat(parts, ",")
  acc = (acc * 31 + #s) % 1000000007
  table.sort(t, function(a, b) return a[3][2] < b[3][2] or (a[3][2] == b[3][2] and a[1] > b[1]) end)
  acc = (acc + t[1][1]) % 1000000007
  t = {}
  collectgarbage()
end
print(acc)
''')
random.seed(3)
with open(os.path.join(d, "work.sql"), "w") as f:
    f.write("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;\n")
    f.write("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, p TEXT);\nBEGIN;\n")
    for i in range(150000):
        f.write("INSERT INTO t(k, v, p) VALUES('key%d', %d, '%s');\n" % (random.randint(0, 40000), random.randint(0, 10**6), "x" * random.randint(10, 200)))
    f.write("COMMIT;\nCREATE INDEX tk ON t(k);\n")
    f.write("SELECT count(*), sum(v), count(DISTINCT k) FROM t;\n")
    f.write("SELECT k, count(*), max(v) FROM t GROUP BY k ORDER BY 2 DESC, 1 LIMIT 5;\n")
    f.write("SELECT sum(length(p)) FROM (SELECT p FROM t ORDER BY v DESC LIMIT 50000);\n")
    f.write("UPDATE t SET p = p || p WHERE v % 3 = 0;\nDELETE FROM t WHERE v % 5 = 1;\n")
    f.write("SELECT count(*), sum(length(p)) FROM t;\n")
    f.write("SELECT a.k, count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.v < 20000 GROUP BY a.k ORDER BY 2 DESC, 1 LIMIT 3;\n")
random.seed(11)
with open(os.path.join(d, "formulas.smt2"), "w") as f:
    f.write("(set-logic QF_BV)\n")
    for i in range(40): f.write("(declare-const x%d (_ BitVec 32))\n" % i)
    for i in range(60):
        a, b, c = random.sample(range(40), 3)
        op = random.choice(["bvadd", "bvmul", "bvxor", "bvand", "bvor"])
        f.write("(assert (bvule (%s x%d x%d) (bvadd x%d #x%08x)))\n" % (op, a, b, c, random.randint(0, 2**20)))
    for i in range(40): f.write("(assert (not (= x%d #x%08x)))\n" % (i, random.randint(0, 2**32 - 1)))
    f.write("(check-sat)\n(reset)\n")
    n = 225
    for i in range(n): f.write("(declare-const p%d Bool)\n" % i)
    for _ in range(int(n * 4.26)):
        lits = [("(not p%d)" if random.random() < 0.5 else "p%d") % v for v in random.sample(range(n), 3)]
        f.write("(assert (or %s))\n" % " ".join(lits))
    f.write("(check-sat)\n")
with open(os.path.join(d, "templates.cpp"), "w") as f:
    f.write("#include <map>\n#include <string>\n#include <vector>\n#include <variant>\n#include <tuple>\n"
            "#include <functional>\n#include <algorithm>\n#include <memory>\n#include <unordered_map>\n")
    f.write("template <int N> struct Fib { static constexpr long v = Fib<N-1>::v + Fib<N-2>::v; };\n")
    f.write("template <> struct Fib<1> { static constexpr long v = 1; }; template <> struct Fib<0> { static constexpr long v = 0; };\n")
    f.write("template <class... T> struct List {}; template <class L, class T> struct Push;\n")
    f.write("template <class... A, class T> struct Push<List<A...>, T> { using type = List<A..., T>; };\n")
    f.write("template <int N, class L = List<>> struct Build { using type = typename Build<N-1, typename Push<L, std::integral_constant<int, N>>::type>::type; };\n")
    f.write("template <class L> struct Build<0, L> { using type = L; };\n")
    S = 30
    for i in range(S):
        f.write("""struct S%d { std::map<std::string, std::vector<std::tuple<int, double, std::string>>> m; std::variant<int, std::string, std::vector<int>> v; std::unordered_map<int, std::function<int(int)>> f;
  long go(int x) { std::vector<std::pair<std::string, int>> w; for (auto& [k, vec] : m) for (auto& t : vec) w.emplace_back(k + std::get<2>(t), std::get<0>(t) + x);
    std::sort(w.begin(), w.end()); auto r = std::visit([](auto&& a) -> long { using A = std::decay_t<decltype(a)>; if constexpr (std::is_same_v<A, int>) return a; else return (long)a.size(); }, v);
    return r + (long)w.size() + Fib<%d>::v + (long)sizeof(typename Build<%d>::type); } };\n""" % (i, 20 + i % 30, 40 + i % 40))
    f.write("long run_all(int x) { long s = 0;\n")
    for i in range(S):
        f.write('  { S%d a; a.m["k"].emplace_back(x, 1.0, "z"); a.f[1] = [](int y) { return y * %d; }; s += a.go(x) + a.f[1](x); }\n' % (i, i))
    f.write("  return s; }\n")
random.seed(5)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9))) for _ in range(20000)]
with open(os.path.join(d, "words.txt"), "w") as f:
    total = 0
    while total < 30 * 1024 * 1024:
        line = " ".join(random.choice(words) for _ in range(random.randint(3, 12))) + "\n"
        f.write(line)
        total += len(line)
PY
  [ $? -eq 0 ] || { echo "real_bench: input generation failed" >&2; exit 1; }
  echo "$gen_version" >"$work/in/.stamp"
fi

# ---------------------------------------------------------------------------------------------
# The programs: each a script run by bash in $work/run/<name> (the whole tree preloaded);
# stdout is what gets compared with glibc's run.
in="$work/in"
cat >"$work/cmd/python_json.sh" <<EOF
/usr/bin/python3 "$in/json_rt.py"
EOF
cat >"$work/cmd/python_startup.sh" <<'EOF'
for i in $(seq 40); do /usr/bin/python3 -c 'import json, re, collections; print(len(json.dumps(collections.Counter(re.findall("[a-z]+", "the quick brown fox jumps over the lazy dog " * 50)))))'; done | sort | uniq -c
EOF
cat >"$work/cmd/perl_hash.sh" <<EOF
perl "$in/hash.pl"
EOF
cat >"$work/cmd/ruby_threads.sh" <<EOF
ruby "$in/threads.rb"
EOF
cat >"$work/cmd/lua_tables.sh" <<EOF
lua5.4 "$in/tables.lua"
EOF
cat >"$work/cmd/sqlite3.sh" <<EOF
sqlite3 :memory: <"$in/work.sql"
EOF
cat >"$work/cmd/rocksdb.sh" <<'EOF'
rm -rf rdb
db_bench --db=rdb --benchmarks=fillrandom,readrandom,overwrite --num=300000 --value_size=200 \
  --compression_type=none --seed=42 --threads=1 --disable_wal=1 --cache_size=33554432 2>&1 |
  sed -n 's/.*(\([0-9]* of [0-9]* found\)).*/readrandom: \1/p'
rm -rf rdb
EOF
cat >"$work/cmd/redis.sh" <<EOF
port=$redis_port
redis-server --port \$port --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >server.log 2>&1 &
server=\$!
for i in \$(seq 100); do env -u LD_PRELOAD redis-cli -p \$port ping >/dev/null 2>&1 && break; sleep 0.05; done
env -u LD_PRELOAD redis-benchmark -p \$port -q -n 150000 -P 16 -d 200 -r 100000 -t set,get,lpush,lpop,sadd,hset >bench.log 2>&1
env -u LD_PRELOAD redis-cli -p \$port flushall >/dev/null
env -u LD_PRELOAD redis-cli -p \$port eval "for i = 1, 20000 do redis.call('set', 'k' .. i, string.rep('v', i % 300)); redis.call('rpush', 'l' .. (i % 100), i) end; local n = 0; for i = 1, 20000, 7 do n = n + redis.call('strlen', 'k' .. i) end; return {redis.call('dbsize'), n}" 0
env -u LD_PRELOAD redis-cli -p \$port shutdown nosave >/dev/null 2>&1
wait \$server
grep -c 'requests per second' bench.log
EOF
cat >"$work/cmd/gxx_templates.sh" <<EOF
g++ -std=c++17 -O1 -frandom-seed=1 -c "$in/templates.cpp" -o templates.o && nm -C templates.o | sort | md5sum
EOF
cat >"$work/cmd/z3_solver.sh" <<EOF
z3 "$in/formulas.smt2"
EOF
cat >"$work/cmd/sort_pipeline.sh" <<EOF
tr ' ' '\n' <"$in/words.txt" | sort | uniq -c | sort -k1,1nr -k2,2 | head -20
awk '{ n += NF; c += length(\$0) } END { print NR, n, c }' "$in/words.txt"
EOF
cat >"$work/cmd/xz_gzip.sh" <<EOF
head -c 6000000 "$in/words.txt" | xz -T1 -6 -c >w.xz
xz -d -c w.xz | gzip -6 -c | gzip -d -c | md5sum
rm -f w.xz
EOF
cat >"$work/cmd/shell_many.sh" <<'EOF'
for i in $(seq 150); do echo "$i $((i * 7)) word$i" | awk '{ print $2 * 2, $3 }' | tr 'a-z' 'A-Z' | sed 's/WORD/w/'; done | md5sum
EOF
PROGRAMS=(python_json python_startup perl_hash ruby_threads lua_tables sqlite3 rocksdb redis gxx_templates z3_solver sort_pipeline xz_gzip shell_many)

have_prog() {  # the executables a program needs
  case "$1" in
    python_json|python_startup) [ -x /usr/bin/python3 ] ;; perl_hash) command -v perl ;; ruby_threads) command -v ruby ;;
    lua_tables) command -v lua5.4 ;; sqlite3) command -v sqlite3 ;; rocksdb) command -v db_bench ;;
    redis) command -v redis-server && command -v redis-benchmark ;; gxx_templates) command -v g++ ;;
    z3_solver) command -v z3 ;; sort_pipeline) command -v sort && command -v awk ;; xz_gzip) command -v xz && command -v gzip ;;
    shell_many) command -v awk && command -v sed ;;
  esac >/dev/null
}

# ---------------------------------------------------------------------------------------------
# The runs.
raw="$dest/raw.tsv"
printf 'program\tallocator\tround\twall_s\trss_kib\tminor_faults\toutput\tstatus\n' >"$raw"
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "-"; }
{
  echo "# hakmem on real programs"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), rounds: $rounds (interleaved, each round starting one allocator further on)"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- hakmem: $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') (out/release/libhakmem.so); glibc $(pkgver libc6), mimalloc $(pkgver libmimalloc2.0), jemalloc $(pkgver libjemalloc2), tcmalloc $(pkgver libtcmalloc-minimal4)"
  echo "- programs: python3 $(pkgver python3), perl $(pkgver perl), ruby $(pkgver ruby), lua5.4 $(pkgver lua5.4), sqlite3 $(pkgver sqlite3), db_bench $(pkgver rocksdb-tools), redis $(pkgver redis-server), g++ $(pkgver g++), z3 $(pkgver z3), coreutils $(pkgver coreutils), xz $(pkgver xz-utils), gawk $(pkgver gawk)"
} >"$dest/header.md"
cat "$dest/header.md" >&2

run_one() {  # program, allocator index, round
  local p="$1" i="$2" r="$3" name="${ALLOC_NAMES[$2]}" lib="${ALLOC_LIBS[$2]}"
  local dir="$work/run/$p.$name"
  rm -rf "$dir"; mkdir -p "$dir"
  local pre=()
  [ -n "$lib" ] && pre=("LD_PRELOAD=$lib")
  ( cd "$dir" && timeout 600 /usr/bin/time -f '%e %M %R' -o "$tmp/time" env ${pre[@]+"${pre[@]}"} bash "$work/cmd/$p.sh" >"$tmp/out" 2>"$tmp/err" )
  local rc=$? status=ok
  local t rss flt sum
  read -r t rss flt < <(tail -1 "$tmp/time" 2>/dev/null)
  sum=$(sha256sum <"$tmp/out" | cut -c1-16)
  if [ $rc -ne 0 ] || [ ! -s "$tmp/out" ]; then
    status="FAIL(rc=$rc)"
    log_failed_run "$dest/logs/${p}_${name}_r$r.log" "$p / $name round $r" $rc bash "$work/cmd/$p.sh"
  fi
  [ "$name" = glibc ] && [ "$r" = 1 ] && cp "$tmp/out" "$dest/logs/${p}.glibc.out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$name" "$r" "${t:-}" "${rss:-}" "${flt:-}" "$sum" "$status" >>"$raw"
  rm -rf "$dir"
}

t_start=$SECONDS
selected=()
for p in "${PROGRAMS[@]}"; do
  [ -n "$only" ] && [[ "$p" != *"$only"* ]] && continue
  if ! have_prog "$p"; then echo "real_bench: $p: program not installed, skipped" >&2; continue; fi
  selected+=("$p")
done
[ ${#selected[@]} -gt 0 ] || { echo "real_bench: no program selected" >&2; exit 2; }

# --profile: one perf run per program and allocator; the allocator's own samples (its library's
# self time; glibc: the malloc functions of libc.so.6) and the samples with a page fault on
# their stack (the kernel's fault handling, whoever touched the page), as shares of all.
if [ $profile = 1 ]; then
  command -v perf >/dev/null || { echo "real_bench: --profile needs perf (linux-perf)" >&2; exit 1; }
  prof_tsv="$dest/profile.tsv"
  printf 'program\tallocator\tsamples\talloc_pct\tfault_pct\ttop\n' >"$prof_tsv"
  for p in "${selected[@]}"; do
    for ((i = 0; i < ${#ALLOC_NAMES[@]}; i++)); do
      name="${ALLOC_NAMES[$i]}" lib="${ALLOC_LIBS[$i]}" dir="$work/run/$p.$name"
      rm -rf "$dir"; mkdir -p "$dir"
      pre=(); [ -n "$lib" ] && pre=("LD_PRELOAD=$lib")
      ( cd "$dir" && timeout 600 perf record -q -e cpu-clock -F 4000 -g -o "$tmp/perf.data" -- \
          env ${pre[@]+"${pre[@]}"} bash "$work/cmd/$p.sh" >"$tmp/out" 2>"$tmp/err" ) ||
        { echo "real_bench: $p under $name failed under perf" >&2; continue; }
      perf report -i "$tmp/perf.data" --stdio --no-children --sort dso,sym -g none --percent-limit 0 \
        2>/dev/null >"$tmp/self.txt"
      perf report -i "$tmp/perf.data" --stdio --children --sort sym -g none --percent-limit 0 \
        2>/dev/null >"$tmp/children.txt"
      python3 - "$p" "$name" "$lib" "$tmp/self.txt" "$tmp/children.txt" >>"$prof_tsv" <<'PY'
import os, re, sys
prog, name, lib, self_txt, children_txt = sys.argv[1:6]
malloc_fns = re.compile(r'^(__libc_)?(malloc|free|calloc|realloc|cfree|memalign|valloc|pvalloc|posix_memalign|'
                        r'aligned_alloc|malloc_usable_size)$|^_int_|^malloc_|^tcache_|^sysmalloc|^unlink_chunk|'
                        r'^_mid_memalign|^arena_get2|^systrim|^mtrim|^heap_trim|^alloc_perturb|^checked_request2size')
samples = 0
alloc = 0.0
top = []
for line in open(self_txt):
    if line.startswith('# Samples:'):
        m = re.search(r'(\d+)([KM]?)', line.split(':', 1)[1])
        samples = int(m.group(1)) * {'': 1, 'K': 1000, 'M': 1000000}[m.group(2)]
    m = re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*\S)', line)
    if not m: continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    # Without a preload the program's allocator is glibc's, or one it links itself (Debian's
    # redis-server links libjemalloc.so.2).
    mine = (lib and dso == os.path.basename(os.path.realpath(lib))) or \
           (not lib and dso.startswith('libc.so') and malloc_fns.search(sym)) or \
           (not lib and dso.startswith(('libjemalloc.so', 'libtcmalloc')))
    if mine:
        alloc += pct
        if len(top) < 3: top.append(f"{sym} {pct:.1f}")
fault = 0.0
for line in open(children_txt):
    m = re.match(r'\s*([\d.]+)%\s+[\d.]+%\s+\[k\]\s+(\S+)', line)
    if m and m.group(2) in ('asm_exc_page_fault', 'exc_page_fault'):
        fault = max(fault, float(m.group(1)))
print(f"{prog}\t{name}\t{samples}\t{alloc:.2f}\t{fault:.2f}\t{'; '.join(top)}")
PY
      rm -rf "$dir" "$tmp/perf.data"
      printf ' %s/%s' "$p" "$name" >&2
    done
  done
  echo >&2
  python3 - "$prof_tsv" "$dest/profile.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
allocs = []
for r in rows:
    if r['allocator'] not in allocs: allocs.append(r['allocator'])
progs = []
for r in rows:
    if r['program'] not in progs: progs.append(r['program'])
get = {(r['program'], r['allocator']): r for r in rows}
md = ["| program | " + " | ".join(f"{a}: allocator % / faults %" for a in allocs) + " | hakmem's top functions |",
      "|---|" + "---:|" * len(allocs) + "---|"]
for p in progs:
    cells = []
    for a in allocs:
        r = get.get((p, a))
        cells.append(f"{float(r['alloc_pct']):.1f} / {float(r['fault_pct']):.1f}" if r else "-")
    h = get.get((p, 'hakmem'))
    md.append(f"| {p} | " + " | ".join(cells) + f" | {h['top'] if h else '-'} |")
md.append("")
md.append("_Shares of all cpu-clock samples of the process tree (perf record -g, one run each): the "
          "allocator's own functions (its library's self time; glibc: the malloc functions of libc.so.6), "
          "and samples with the kernel's page-fault entry on their stack (any page, touched by anyone)._")
open(sys.argv[2], 'w').write("\n".join(md) + "\n")
print("\n".join(md))
PY
  exit 0
fi
for ((r = 1; r <= rounds; r++)); do
  printf 'round %d/%d:' "$r" "$rounds" >&2
  for p in "${selected[@]}"; do
    # Each round starts one allocator further on: the first run of a program after another
    # program ran slower, and with a fixed order that was always hakmem's (docs/BENCHMARKS.md,
    # "Rounds rotate").
    for ((k = 0; k < ${#ALLOC_NAMES[@]}; k++)); do run_one "$p" $(((k + r - 1) % ${#ALLOC_NAMES[@]})) "$r"; done
    printf ' %s' "$p" >&2
  done
  echo " ($((SECONDS - t_start)) s so far)" >&2
done

# ---------------------------------------------------------------------------------------------
# Table and chart.
python3 - "$raw" "$dest" <<'PY'
import csv, math, os, shutil, statistics, subprocess, sys
raw, dest = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(raw), delimiter='\t'))
progs, allocs = [], []
for r in rows:
    if r['program'] not in progs: progs.append(r['program'])
    if r['allocator'] not in allocs: allocs.append(r['allocator'])
ref = {}  # program -> glibc's output checksum (round 1)
for r in rows:
    if r['allocator'] == 'glibc' and r['status'] == 'ok': ref.setdefault(r['program'], r['output'])
S = {}
for p in progs:
    for a in allocs:
        rs = [r for r in rows if r['program'] == p and r['allocator'] == a]
        ok = [r for r in rs if r['status'] == 'ok' and r['output'] == ref.get(p)]
        bad = [r for r in rs if r['status'] != 'ok' or r['output'] != ref.get(p)]
        t = [float(r['wall_s']) for r in ok if r['wall_s']]
        m = [float(r['rss_kib']) for r in ok if r['rss_kib']]
        f = [float(r['minor_faults']) for r in ok if r['minor_faults']]
        S[(p, a)] = dict(n=len(rs), ok=len(ok), bad=bad, t=statistics.median(t) if t else None,
                         tmin=min(t) if t else None, tmax=max(t) if t else None,
                         rss=statistics.median(m) if m else None, flt=statistics.median(f) if f else None)
peers = [a for a in allocs if a in ('glibc', 'mimalloc', 'jemalloc', 'tcmalloc')]  # not --extra builds
md = []
md.append("| program | " + " | ".join(f"{a} (s)" for a in allocs) + " | fastest peer | hakmem vs fastest | peak RSS hakmem / glibc (MiB) | output |")
md.append("|---|" + "---:|" * len(allocs) + "---|---:|---:|---|")
geo = {a: [] for a in allocs}
georss = {a: [] for a in allocs}
for p in progs:
    cells = []
    for a in allocs:
        s = S[(p, a)]
        if s['t'] is None:
            cells.append("FAILED" if not any(r['status'] == 'ok' for r in s['bad']) else "DIFF")
        else:
            cells.append(f"{s['t']:.2f} ({s['tmin']:.2f}-{s['tmax']:.2f})")
    best = min((a for a in peers if S[(p, a)]['t'] is not None), key=lambda a: S[(p, a)]['t'], default=None)
    h = S.get((p, 'hakmem'))
    vs = f"{(h['t'] / S[(p, best)]['t'] - 1) * 100:+.1f} %" if best and h and h['t'] else "-"
    g = S.get((p, 'glibc'))
    rss = f"{h['rss']/1024:.1f} / {g['rss']/1024:.1f} ({(h['rss']/g['rss']-1)*100:+.1f} %)" if h and g and h['rss'] and g['rss'] else "-"
    outs = "identical" if all(S[(p, a)]['ok'] == S[(p, a)]['n'] for a in allocs) else \
        "; ".join(f"{a}: {len(S[(p, a)]['bad'])} bad" for a in allocs if S[(p, a)]['bad'])
    md.append(f"| {p} | " + " | ".join(cells) + f" | {best or '-'} | {vs} | {rss} | {outs} |")
    if g and g['t']:
        for a in allocs:
            if S[(p, a)]['t']: geo[a].append(S[(p, a)]['t'] / g['t'])
            if S[(p, a)]['rss'] and g['rss']: georss[a].append(S[(p, a)]['rss'] / g['rss'])
gm = lambda v: math.exp(sum(math.log(x) for x in v) / len(v)) if v else float('nan')
md.append("")
md.append("| allocator | geometric mean of time / glibc's | geometric mean of peak RSS / glibc's | programs |")
md.append("|---|---:|---:|---:|")
for a in allocs:
    md.append(f"| {a} | {gm(geo[a]):.3f} | {gm(georss[a]):.3f} | {len(geo[a])} |")
md.append("")
md.append("_Times are medians of the rounds with the spread (min-max) in parentheses; a run whose output "
          "differs from glibc's, or that failed, is left out and reported in the output column. "
          "hakmem vs fastest: hakmem's median against the fastest peer's (glibc, mimalloc, jemalloc, tcmalloc; "
          "builds added with --extra are shown but are not peers; negative: hakmem is faster)._")
body = "\n".join(md)
header = open(os.path.join(dest, 'header.md')).read()
open(os.path.join(dest, 'results.md'), 'w').write(header + "\n" + body + "\n")
print(header)
print(body)
gp = shutil.which('gnuplot')
if not gp:
    print("(gnuplot not installed: no chart)"); sys.exit(0)
dat = os.path.join(dest, 'real_programs.dat')
with open(dat, 'w') as f:
    f.write("# program " + " ".join(allocs) + "\n")
    for p in progs:
        g = S[(p, 'glibc')]['t'] if (p, 'glibc') in S else None
        f.write(p.replace('_', '-') + " " + " ".join(f"{S[(p, a)]['t'] / g:.4f}" if g and S[(p, a)]['t'] else "NaN" for a in allocs) + "\n")
png = os.path.join(dest, 'real_programs.png')
term = 'pngcairo' if 'pngcairo' in subprocess.run([gp, '-e', 'set terminal'], capture_output=True, text=True).stdout + \
       subprocess.run([gp, '-e', 'set terminal'], capture_output=True, text=True).stderr else 'png'
plot = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title '{a}'" for i, a in enumerate(allocs))
script = f"""set terminal {term} size 1200,500
set output '{png}'
set title 'Real programs: wall time relative to glibc (lower is better; median of the rounds; bars cut at 3)'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -35 scale 0
set yrange [0:3]
set grid ytics
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot {plot}
"""
r = subprocess.run([gp], input=script, capture_output=True, text=True)
print(f"chart: {png}" if r.returncode == 0 else f"gnuplot failed: {r.stderr.strip()[:200]}")
PY
