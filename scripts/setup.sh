#!/usr/bin/env bash
# Installs what the build, the tests and the benchmarks need, when it is missing.
# Idempotent and silent when everything is present. Debian packages only.
#   scripts/setup.sh          build + test dependencies
#   scripts/setup.sh --bench  also the peer allocators and the chart tools
#   scripts/setup.sh --real   also the programs of scripts/real_bench.sh
set -eu
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
want() { for p in "$@"; do have_pkg "$p" || need+=("$p"); done; }

want g++ make bc libcriterion-dev valgrind python3 git clang-14 libclang-rt-14-dev google-perftools
if [ "${1:-}" = "--bench" ] || [ "${1:-}" = "--real" ]; then
  want libmimalloc2.0 libjemalloc2 libgoogle-perftools4 libtcmalloc-minimal4 gnuplot-nox linux-perf time
fi
if [ "${1:-}" = "--real" ]; then  # the programs of scripts/real_bench.sh
  want python3 perl ruby lua5.4 sqlite3 rocksdb-tools redis-server redis-tools g++ binutils z3 coreutils gawk xz-utils gzip sed
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "setup: installing ${need[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
