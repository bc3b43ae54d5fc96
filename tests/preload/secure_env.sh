#!/usr/bin/env bash
# secure_env.sh — hakmem ignores its environment options in a setuid or setgid program
# (AT_SECURE; docs/TUNING.md) and honours them in a normal one.
#
# out/<v>/tests/linked/secure_env (tests/linked/secure_env.c, libhakmem.a linked in) runs with
# HAKMEM_VERBOSE=1 HAKMEM_STATS=1:
#   - as it is: stderr must have the start-up options ("hakmem: option HAKMEM_VERBOSE = 1",
#     "... normal environment") and the statistics table at exit ("hakmem: stats: ...");
#     without the variables, stderr must be empty (so "no output" below means something);
#   - as a copy owned by nobody with the setuid bit, and a copy with group nogroup and the
#     setgid bit (we are root: euid/egid != ruid/rgid, so the kernel sets AT_SECURE): the
#     program must report at_secure=1, the changed id and both variables still in its
#     environment (hakmem_vars=2), and stderr must be empty.
# Debug variant: HAKMEM_FAULT_MMAP=1 must make malloc fail in the plain program and not in
# the setuid/setgid copies.
# Skips (77) when not root or when no directory lets a setuid bit take effect (nosuid
# mounts of $TMPDIR and out/, or no_new_privs). Environment: see scripts/run_tests.sh.
set -u
v=${HAKMEM_VARIANT:?HAKMEM_VARIANT not set}
out=${HAKMEM_OUT:?HAKMEM_OUT not set}
prog="$out/tests/linked/secure_env"
[ -x "$prog" ] || { echo "FAIL: missing $prog (make tests-$v)"; exit 1; }

fails=0
bad() { echo "FAIL: $*"; fails=$((fails+1)); }
dirs=()
cleanup() { for d in "${dirs[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
log=$(mktemp -d); dirs+=("$log")

# run LABEL PROGRAM [VAR=VALUE...]: stdout in $log/LABEL.out, stderr in $log/LABEL.err, $rc.
run() {
  local label=$1 p=$2; shift 2
  env -u HAKMEM_VERBOSE -u HAKMEM_STATS -u HAKMEM_FAULT_MMAP "$@" timeout 20 "$p" \
      >"$log/$label.out" 2>"$log/$label.err"
  rc=$?
  [ $rc -eq 0 ] || bad "$label: exit status $rc; stderr: $(head -c 300 "$log/$label.err")"
}
has_out() { grep -q -- "$2" "$log/$1.out" || bad "$1: stdout lacks '$2': $(cat "$log/$1.out")"; }
has_err() { grep -q -- "$2" "$log/$1.err" || bad "$1: stderr lacks '$2'"; }
empty_err() {
  [ -s "$log/$1.err" ] && { bad "$1: stderr is not empty:"; head -20 "$log/$1.err" | sed 's/^/    | /'; }
}
opts=(HAKMEM_VERBOSE=1 HAKMEM_STATS=1)

# 1. Normal program: options honoured, nothing printed without them.
run plain_noenv "$prog"
has_out plain_noenv "at_secure=0 .* hakmem_vars=0 "
empty_err plain_noenv
run plain "$prog" "${opts[@]}"
has_out plain "at_secure=0 "
has_out plain " hakmem_vars=2 "
has_out plain " malloc=ok"
has_err plain "^hakmem: build: .*, normal environment$"
has_err plain "^hakmem: option HAKMEM_VERBOSE = 1 "
has_err plain "^hakmem: option HAKMEM_STATS = 1 "
has_err plain "^hakmem: stats: tier "
has_err plain "^hakmem: stats: mapped "
if [ "$v" = debug ]; then
  run plain_fault "$prog" HAKMEM_FAULT_MMAP=1
  has_out plain_fault " hakmem_vars=1 malloc=failed"
fi
echo "plain: $(cat "$log/plain.out"); stderr $(wc -l <"$log/plain.err") lines:"
sed -n '1,3p' "$log/plain.err" | sed 's/^/    | /'
[ $fails -eq 0 ] || { echo "$fails failure(s) in the normal program"; exit 1; }

# 2. setuid / setgid copies.
[ "$(id -u)" -eq 0 ] || { echo "skip: not root (uid $(id -u)): cannot make a setuid copy owned by another user"; exit 77; }
uid=$(id -u nobody 2>/dev/null || echo 65534)
gid=$(getent group nogroup 2>/dev/null | cut -d: -f3)
[ -n "$gid" ] || gid=$(getent group nobody 2>/dev/null | cut -d: -f3)
[ -n "$gid" ] || gid=65534

# A directory where a setuid bit takes effect: $TMPDIR (or /tmp), else under out/.
work="" why=()
for base in "${TMPDIR:-/tmp}" "$out"; do
  d=$(mktemp -d "$base/hakmem-secure.XXXXXX" 2>/dev/null) || { why+=("$base: cannot create a directory"); continue; }
  dirs+=("$d")
  cp "$prog" "$d/suid" && cp "$prog" "$d/sgid" || { why+=("$base: copy failed"); continue; }
  if ! chown "$uid" "$d/suid" 2>"$log/chown" || ! chgrp "$gid" "$d/sgid" 2>>"$log/chown"; then
    why+=("$base: chown/chgrp to $uid/$gid failed: $(head -1 "$log/chown")"); continue
  fi
  chmod 4755 "$d/suid" && chmod 2755 "$d/sgid"
  probe=$("$d/suid" 2>/dev/null)
  case "$probe" in
    *" euid=$uid "*) work=$d; break ;;
  esac
  mnt=$(findmnt -no OPTIONS -T "$d" 2>/dev/null)
  nnp=$(awk '/^NoNewPrivs:/ { print $2 }' /proc/self/status 2>/dev/null)
  why+=("$base: setuid bit not honoured (mount options: ${mnt:-?}; NoNewPrivs: ${nnp:-?})")
done
if [ -z "$work" ]; then
  printf '  %s\n' "${why[@]}"
  echo "skip: no directory where a setuid bit takes effect: ${why[*]}"
  exit 77
fi
echo "setuid/setgid copies in $work (owner $uid, group $gid)"

for kind in suid sgid; do
  run "$kind" "$work/$kind" "${opts[@]}"
  has_out "$kind" "at_secure=1 "
  if [ $kind = suid ]; then has_out "$kind" " ruid=0 euid=$uid "; else has_out "$kind" " rgid=0 egid=$gid "; fi
  has_out "$kind" " hakmem_vars=2 "  # the variables reached the program: hakmem ignored them itself
  has_out "$kind" " malloc=ok"
  empty_err "$kind"
  if [ "$v" = debug ]; then
    run "${kind}_fault" "$work/$kind" HAKMEM_FAULT_MMAP=1
    has_out "${kind}_fault" " hakmem_vars=1 malloc=ok"
    empty_err "${kind}_fault"
  fi
  echo "$kind: $(cat "$log/$kind.out"); stderr $(wc -c <"$log/$kind.err") bytes"
done

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "options honoured in a normal program, ignored in setuid and setgid programs"
