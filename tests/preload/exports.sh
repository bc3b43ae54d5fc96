#!/usr/bin/env bash
# exports.sh — libhakmem.so exports the whole allocation API (C and every C++ operator
# new/delete form) and the hak_* API, depends on libc and the loader only (no libstdc++), and
# imports nothing but libc/loader symbols (weak references excepted), in particular no
# __tls_get_addr (initial-exec TLS), no dlsym and no stdio (DESIGN.md, "Invariants").
set -u
lib=${HAKMEM_LIB:?HAKMEM_LIB not set}
[ -f "$lib" ] || { echo "missing $lib"; exit 1; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }

api_c="malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc
       pvalloc malloc_usable_size malloc_trim mallinfo2"
api_cxx="_Znwm _Znam _ZnwmRKSt9nothrow_t _ZnamRKSt9nothrow_t _ZdlPv _ZdaPv _ZdlPvm _ZdaPvm
         _ZdlPvRKSt9nothrow_t _ZdaPvRKSt9nothrow_t _ZnwmSt11align_val_t _ZnamSt11align_val_t
         _ZnwmSt11align_val_tRKSt9nothrow_t _ZnamSt11align_val_tRKSt9nothrow_t
         _ZdlPvSt11align_val_t _ZdaPvSt11align_val_t _ZdlPvmSt11align_val_t _ZdaPvmSt11align_val_t
         _ZdlPvSt11align_val_tRKSt9nothrow_t _ZdaPvSt11align_val_tRKSt9nothrow_t"
api_hak="hak_malloc hak_calloc hak_realloc hak_free hak_aligned_alloc hak_usable_size hak_trim hak_heap_check
         hak_stats_get hak_stats_print"

# Defined dynamic symbols: "ADDR TYPE NAME[@VERSION]"; keep functions (T, W, i).
defined=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWi]$/ { sub(/@.*/, "", $3); print $3 }' | sort -u)
for s in $api_c $api_cxx $api_hak; do
  grep -qx -- "$s" <<<"$defined" || bad "symbol $s is not exported by $(basename "$lib")"
done
n_api=$(echo $api_c $api_cxx $api_hak | wc -w)
echo "checked $n_api API symbols"

# Anything else exported is listed (information only: visibility should be hidden).
extra=$(comm -23 <(echo "$defined") <(printf '%s\n' $api_c $api_cxx $api_hak | sort -u) \
        | grep -vxE 'mallinfo|malloc_stats|malloc_info|cfree|_init|_fini' || true)
[ -n "$extra" ] && echo "note: other exported symbols: $(echo $extra)"

# Shared-library dependencies: libc and the loader only.
needed=$(readelf -d "$lib" | awk '/\(NEEDED\)/ { gsub(/[\[\]]/, "", $5); print $5 }')
echo "NEEDED: $(echo $needed)"
for n in $needed; do
  case "$n" in
    libc.so.6|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
    *) bad "depends on $n (DESIGN: the runtime depends on libc only)" ;;
  esac
done
ldd_out=$(ldd "$lib" 2>&1)
if grep -q 'libstdc++' <<<"$ldd_out"; then bad "ldd shows libstdc++:"; echo "$ldd_out"; fi
if grep -q 'libgcc_s' <<<"$ldd_out"; then bad "ldd shows libgcc_s:"; echo "$ldd_out"; fi

# Undefined (imported) symbols: strong ones must come from libc or the loader.
libc=$(ldconfig -p | awk '$1 == "libc.so.6" && /x86-64|x86_64/ { print $NF; exit }')
[ -n "$libc" ] || libc=/lib/x86_64-linux-gnu/libc.so.6
ldso=$(readelf -l "$libc" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]/\1/p')
[ -n "$ldso" ] || ldso=/lib64/ld-linux-x86-64.so.2
provided=$(nm -D --defined-only "$libc" "$ldso" 2>/dev/null | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u)
strong=$(nm -D --undefined-only "$lib" | awk '$1 == "U" { sub(/@.*/, "", $2); print $2 }' | sort -u)
weak=$(nm -D --undefined-only "$lib" | awk '$1 == "w" || $1 == "v" { sub(/@.*/, "", $2); print $2 }' | sort -u)
echo "imports: $(echo $strong)"
[ -n "$weak" ] && echo "weak imports: $(echo $weak)"
for s in $strong; do
  grep -qx -- "$s" <<<"$provided" || bad "undefined symbol $s is not provided by libc/ld.so"
done
# Imports that break a stated invariant.
for s in __tls_get_addr dlsym dlvsym dlopen printf fprintf vfprintf fputs puts fwrite perror \
         malloc calloc realloc free; do
  if grep -qx -- "$s" <<<"$strong"; then
    bad "imports $s (DESIGN: initial-exec TLS, nothing inside calls malloc, stdio, or dlsym)"
  fi
done
# A weak import of a C++ runtime function is fine; a strong one would need libstdc++.
for s in $strong; do
  case "$s" in _Z*|__cxa_*|_Unwind_*|__gxx_personality*) bad "strong C++ runtime import $s" ;; esac
done
if readelf -d "$lib" | grep -q 'STATIC_TLS'; then
  echo "TLS: static (initial-exec) model"
elif readelf -lW "$lib" | grep -q ' TLS '; then
  bad "the library has TLS but no STATIC_TLS flag (not initial-exec?)"
fi
[ $fail -eq 0 ] && echo "exports OK"
exit $fail
