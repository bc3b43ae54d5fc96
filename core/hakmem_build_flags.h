// hakmem_build_flags.h — build variants and the macros every core file uses.
//
// Variants (one place, as mimalloc's types.h does):
//   HAKMEM_BUILD_RELEASE=1  out/release: optimised; every diagnostic, counter and invariant
//                           check compiles out, except the misuse checks on the slow paths
//                           (refill, flush, remote drain, span free) and their messages.
//   + HAKMEM_SECURE=1       out/secure: release plus free-list links hardened on the fast
//                           paths (free_link.h: encoded links, checked pops) and sized
//                           deletes checked against the block (hakmem.cpp). Every variant
//                           catches a double free at the call (the free-block key).
//   HAKMEM_BUILD_RELEASE=0  out/debug: assertions, invariant checkers on every state change,
//                           counters, the fault-injection hook, freed-memory poisoning, the
//                           secure variant's hardening, and valgrind client requests (memcheck
//                           knows every block; valgrind_support.h).
// Checks are written `if constexpr (kDebug)` rather than #ifdef, so disabled code still compiles.
#ifndef HAKMEM_BUILD_FLAGS_H
#define HAKMEM_BUILD_FLAGS_H

#ifndef HAKMEM_BUILD_RELEASE
#define HAKMEM_BUILD_RELEASE 0
#endif
#ifndef HAKMEM_SECURE
#define HAKMEM_SECURE 0
#endif

namespace hak {
inline constexpr bool kRelease = HAKMEM_BUILD_RELEASE != 0;
inline constexpr bool kDebug = !kRelease;
inline constexpr bool kSecure = HAKMEM_SECURE != 0;
// Fast-path hardening of the free lists (free_link.h): the secure and the debug variants.
inline constexpr bool kHardenLinks = kSecure || kDebug;
}  // namespace hak

// Fast paths are inlined into their callers; everything rare sits behind one cold call.
#define HAK_FAST_PATH inline __attribute__((always_inline))
#define HAK_SLOW_PATH __attribute__((noinline, cold))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_EXPORT extern "C" __attribute__((visibility("default")))
// The entry points every program calls most (malloc, free, operator new and delete) start on a
// cache line: their hit paths (90-140 bytes) then span the fewest lines and fetch windows,
// whatever code the rest of the library adds before them. Placed by where the linker happened
// to put them, fixed_size 256 B ran 3 % slower at the same instruction count
// (docs/BENCHMARKS.md, "Entry points on a cache line").
#define HAK_HOT_ENTRY __attribute__((aligned(64)))
#define HAK_TLS __thread __attribute__((tls_model("initial-exec")))

#endif  // HAKMEM_BUILD_FLAGS_H
