#!/usr/bin/env bash
# smoke_programs.sh — real programs nobody here wrote, run without and with
# LD_PRELOAD=$HAKMEM_LIB; every step's stdout must be byte-for-byte identical and its exit
# status equal (issue 2, "LD_PRELOAD smoke"). Programs: python3 (dict/list/str churn, json,
# re, threads, PYTHONMALLOC=malloc so every object goes through malloc), git (a repository
# of ~3000 files: add, commit, log --stat, status, diff, grep, blame, gc, fsck, archive),
# g++ (compiling a template/iostream program; the assembly and the program's output), sort
# (2 M lines: plain, -n, -u on a key, with a small buffer and temp files), tar/gzip/xz, find,
# awk, perl. A program that is not installed is skipped; if none is, the test is skipped (77).
#
#   HAKMEM_LIB=out/release/libhakmem.so bash tests/preload/smoke_programs.sh [program...]
set -u
lib=${HAKMEM_LIB:?HAKMEM_LIB not set}
[ -f "$lib" ] || { echo "missing $lib"; exit 1; }
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
work=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
export LC_ALL=C TZ=UTC HOME="$work/home" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=hakmem GIT_AUTHOR_EMAIL=hakmem@example.invalid
export GIT_COMMITTER_NAME=hakmem GIT_COMMITTER_EMAIL=hakmem@example.invalid
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
mkdir -p "$HOME"
STEP_TIMEOUT=${HAKMEM_SMOKE_TIMEOUT:-180}

python=""
for c in /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
  [ -n "$c" ] && [ -x "$c" ] && { python=$c; break; }
done

# ---------------------------------------------------------------------------------------------
# One step: runs "$@" with the current mode's prefix, stdout to a file, records the exit status.
#   step LABEL command args...
# Modes: "base" (no preload) and "hak" (LD_PRELOAD=$lib). $dir is the mode's scratch dir.
step() {
  local label=$1; shift
  local rc
  if [ "$mode" = hak ]; then
    LD_PRELOAD="$lib" timeout "$STEP_TIMEOUT" "$@" >"$dir/out/$label" 2>>"$dir/stderr"
  else
    timeout "$STEP_TIMEOUT" "$@" >"$dir/out/$label" 2>>"$dir/stderr"
  fi
  rc=$?
  echo "$label rc=$rc" >>"$dir/status"
  return $rc
}
# Same, for a shell pipeline given as one string; every command in it is preloaded.
step_sh() {
  local label=$1 cmd=$2
  step "$label" bash -o pipefail -c "$cmd"
}

# ---------------------------------------------------------------------------------------------
# Inputs, generated once (without the preload) and shared by both modes.

gen_inputs() {
  mkdir -p "$work/in"
  # ~3000 files in 30 directories, deterministic contents (an LCG in awk).
  awk -v root="$work/in/tree" 'BEGIN {
      s = 12345
      for (d = 0; d < 30; d++) {
        dir = sprintf("%s/dir%02d", root, d); system("mkdir -p " dir)
        for (f = 0; f < 100; f++) {
          file = sprintf("%s/file%03d.txt", dir, f)
          lines = 5 + (d * 100 + f) % 60
          for (l = 0; l < lines; l++) {
            s = (s * 1103515245 + 12345) % 2147483648
            printf("line %d of %d/%d: value %d word%d %s\n", l, d, f, s, s % 997,
                   (s % 5 == 0) ? "TODO fix this" : "ok") > file
          }
          close(file)
        }
      }
    }'
  # 2 M lines for sort: a number, a word key, some text.
  awk 'BEGIN { s = 42; for (i = 0; i < 2000000; i++) {
      s = (s * 1103515245 + 12345) % 2147483648
      printf("%d k%05d %s\n", s % 1000003, s % 50021, (s % 3) ? "alpha" : "omega beta")
    } }' >"$work/in/lines.txt"
  cat >"$work/in/workload.py" <<'PY'
import collections, hashlib, json, random, re, threading, zlib
random.seed(12345)
h = hashlib.sha256()
# Dict/list/float churn with a json round trip, a few rounds (~hundreds of MB allocated).
for rnd in range(3):
    d = {}
    for i in range(100000):
        k = "key%d_%d" % (rnd, random.randrange(10**9))
        d[k] = [random.random() for _ in range(random.randrange(1, 8))]
    items = sorted(d.items())
    for k, v in items[::997]:
        h.update(k.encode()); h.update(repr(v).encode())
    s = json.dumps(d, sort_keys=True)
    d2 = json.loads(s)
    assert d2 == d
    h.update(hashlib.sha256(s.encode()).digest())
    del d, d2, s, items
# Strings: build, join, compress, regex, count.
parts = ["%x" % (i * 2654435761 % 2**32) * (1 + i % 13) for i in range(200000)]
big = "|".join(parts)
h.update(zlib.compress(big.encode(), 6))
c = collections.Counter(re.findall(r"[0-9a-f]{3,9}", big))
h.update(repr(c.most_common(50)).encode())
# Sets, tuples, sorting with keys.
t = sorted(((random.randrange(1000), str(random.random())) for _ in range(200000)),
           key=lambda x: (x[0], x[1][::-1]))
h.update(repr(t[::1000]).encode())
# Threads allocating at the same time (blocks freed by the garbage collector's thread).
def work(n, out):
    r = random.Random(n)
    acc = []
    for i in range(25000):
        acc.append(bytes(r.randrange(256) for _ in range(r.randrange(1, 40))))
        if len(acc) > 1000:
            acc = acc[500:]
    out[n] = hashlib.md5(b"".join(acc)).hexdigest()
out = {}
ts = [threading.Thread(target=work, args=(n, out)) for n in range(4)]
for x in ts: x.start()
for x in ts: x.join()
print(h.hexdigest())
for k in sorted(out): print(k, out[k])
PY
  cat >"$work/in/prog.cpp" <<'CPP'
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>
template <class K, class V> struct Cache {
  std::map<K, std::vector<V>> m;
  void add(const K& k, V v) { m[k].push_back(std::move(v)); }
  size_t total() const {
    return std::accumulate(m.begin(), m.end(), size_t{0},
                           [](size_t a, const auto& kv) { return a + kv.second.size(); });
  }
};
struct Node { int v; std::unique_ptr<Node> l, r; };
static void insert(std::unique_ptr<Node>& n, int v) {
  if (!n) { n = std::make_unique<Node>(); n->v = v; return; }
  insert(v < n->v ? n->l : n->r, v);
}
static long sum(const std::unique_ptr<Node>& n) { return n ? n->v + sum(n->l) + sum(n->r) : 0; }
int main() {
  Cache<std::string, std::string> c;
  std::unordered_map<long, std::set<int>> u;
  std::unique_ptr<Node> root;
  unsigned s = 7;
  for (int i = 0; i < 200000; i++) {
    s = s * 1103515245u + 12345u;
    std::ostringstream k, v;
    k << "k" << (s % 1000);
    v << std::string(s % 50, 'a' + s % 26) << i;
    c.add(k.str(), v.str());
    u[s % 5000].insert(i);
    if (i % 4 == 0) insert(root, (int)(s % 100000));
  }
  std::vector<std::string> all;
  for (auto& kv : c.m) for (auto& x : kv.second) all.push_back(kv.first + x);
  std::sort(all.begin(), all.end());
  size_t h = 0;
  for (auto& x : all) h = h * 31 + std::hash<std::string>{}(x);
  std::cout << c.total() << " " << u.size() << " " << sum(root) << " " << h << "\n";
}
CPP
}

# ---------------------------------------------------------------------------------------------
# Scenarios. Each runs in $dir (a fresh directory per mode).

scenario_python() {
  step python_workload env PYTHONMALLOC=malloc "$python" "$work/in/workload.py"
  step python_default_allocator "$python" -c \
    'import json; d = {str(i): list(range(i % 50)) for i in range(100000)}; print(len(json.dumps(d)))'
}

scenario_git() {
  cp -r "$work/in/tree" "$dir/repo"
  cd "$dir/repo" || return 1
  step git_init git -c init.defaultBranch=main init -q .
  step git_add git add -A
  step git_commit git -c gc.auto=0 commit -q -m "initial import"
  for f in dir0*/file0[0-4]*.txt; do echo "changed $f" >>"$f"; done
  rm -f dir29/file09*.txt
  step git_status git status --porcelain
  step git_diff git diff --stat
  step git_commit2 git -c gc.auto=0 commit -q -a -m "second commit"
  step git_log_stat git log --stat
  step git_rev git rev-parse HEAD HEAD~1 'HEAD^{tree}'
  step git_grep git grep -c TODO
  step git_blame git blame -s dir03/file042.txt
  step git_diff_commits git diff HEAD~1 HEAD
  step git_gc git gc -q
  step git_fsck git fsck --no-progress
  step git_archive_sha bash -o pipefail -c 'git archive --format=tar HEAD | sha1sum'
  step git_log_after_gc git log --format='%H %s' --name-status
  cd "$dir" || return 1
}

scenario_gxx() {
  step gxx_compile g++ -std=c++17 -O2 -o "$dir/prog" "$work/in/prog.cpp"
  step gxx_asm_sha bash -o pipefail -c "g++ -std=c++17 -O1 -S -o - '$work/in/prog.cpp' | sha1sum"
  step gxx_run "$dir/prog"  # the compiled C++ program, also preloaded in the hak mode
}

scenario_sort() {
  step sort_plain sort "$work/in/lines.txt"
  step sort_numeric sort -n -s "$work/in/lines.txt"
  step sort_key_unique sort -t ' ' -k2,2 -u "$work/in/lines.txt"
  mkdir -p "$dir/sorttmp"
  step sort_small_buffer sort -S 4M --parallel=2 -T "$dir/sorttmp" -k3,3 -k1,1n "$work/in/lines.txt"
}

scenario_tools() {
  local tree="$work/in/tree"
  command -v tar >/dev/null && step_sh tar_sha \
    "tar -C '$tree' --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha1sum"
  command -v gzip >/dev/null && step_sh gzip_roundtrip \
    "gzip -n -6 -c '$work/in/lines.txt' | tee '$dir/l.gz' | sha1sum && gzip -dc '$dir/l.gz' | sha1sum"
  command -v xz >/dev/null && step_sh xz_sha "head -c 8000000 '$work/in/lines.txt' | xz -T2 -3 -c | xz -dc | sha1sum"
  step_sh find_sha "find '$tree' -type f -name '*7*' | sort | sha1sum"
  step awk_wordfreq awk '{ for (i = 1; i <= NF; i++) c[$i]++ } END { for (w in c) if (c[w] > 500) print w, c[w] }' \
    "$work/in/lines.txt"
  command -v perl >/dev/null && step perl_hash perl -e '
    my %h; for my $i (1..300000) { $h{"k" . ($i * 7919 % 100003)} .= chr(97 + $i % 26) }
    my $t = 0; $t += length($h{$_}) for keys %h; my @k = sort keys %h;
    print scalar(@k), " $t $k[0] $k[-1] ", join(",", map { length $h{$_} } @k[0..9]), "\n"'
}

# ---------------------------------------------------------------------------------------------

all_programs="python git gxx sort tools"
programs=${*:-$all_programs}
declare -A skipped=()
have() {
  case "$1" in
    python) [ -n "$python" ] ;;
    git) command -v git >/dev/null ;;
    gxx) command -v g++ >/dev/null ;;
    sort) command -v sort >/dev/null ;;
    tools) command -v awk >/dev/null && command -v find >/dev/null ;;
  esac
}
run_list=""
for p in $programs; do
  if have "$p"; then run_list="$run_list $p"; else skipped[$p]=1; echo "skip $p: not installed"; fi
done
[ -z "$run_list" ] && { echo "no program to run"; exit 77; }

# The preload must take effect (and the library must load at all).
if [ -n "$python" ]; then
  chk=$(LD_PRELOAD="$lib" "$python" -c 'import ctypes; print(bool(ctypes.CDLL(None).hak_malloc))' 2>&1)
  [ "$chk" = "True" ] || { echo "FAIL: LD_PRELOAD=$lib does not take effect in python3: $chk"; exit 1; }
fi

t_gen=$(date +%s.%N)
gen_inputs
echo "inputs generated in $(printf '%.1f' "$(echo "$(date +%s.%N) - $t_gen" | bc)")s"

fail=0
for p in $run_list; do
  for mode in base hak; do
    dir="$work/$mode/$p"
    mkdir -p "$dir/out"
    : >"$dir/status"
    t0=$(date +%s.%N)
    ( cd "$dir" && "scenario_$p" )
    printf -v "time_${p}_$mode" '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)"
  done
  b="$work/base/$p" h="$work/hak/$p"
  tb=time_${p}_base th=time_${p}_hak
  bad=0
  if ! cmp -s "$b/status" "$h/status"; then
    echo "FAIL $p: exit statuses differ (without | with preload):"
    diff "$b/status" "$h/status" | sed 's/^/    /'
    bad=1
  fi
  for f in "$b"/out/*; do
    label=$(basename "$f")
    if ! cmp -s "$f" "$h/out/$label"; then
      echo "FAIL $p: step $label: stdout differs with LD_PRELOAD"
      diff "$f" "$h/out/$label" | head -10 | sed 's/^/    /'
      bad=1
    fi
  done
  # A non-zero status in both modes is most likely a broken step (or a missing tool).
  if grep -v ' rc=0$' "$b/status" >/dev/null; then
    echo "note $p: steps with a non-zero status even without the preload:"
    grep -v ' rc=0$' "$b/status" | sed 's/^/    /'
    tail -5 "$b/stderr" | sed 's/^/    stderr: /'
  fi
  if [ $bad -ne 0 ]; then
    fail=1
    echo "  stderr with the preload (last lines):"
    tail -15 "$h/stderr" | sed 's/^/    /'
  fi
  if grep -qi 'hakmem' "$h/stderr"; then
    echo "  note: hakmem printed diagnostics under $p:"
    grep -i 'hakmem' "$h/stderr" | head -5 | sed 's/^/    /'
  fi
  printf '%-7s %s  steps=%d  without %ss, with preload %ss\n' "$p" \
    "$([ $bad -eq 0 ] && echo same || echo DIFFERENT)" "$(wc -l <"$b/status")" "${!tb}" "${!th}"
done
exit $fail
