// valgrind_support.h — what the debug variant tells Valgrind's memcheck about its blocks.
//
// Under memcheck with hakmem's own malloc running (docs/PROFILING.md, "Memcheck": valgrind
// must be told not to replace it, --soname-synonyms=somalloc=nouserintercepts), memcheck knows
// nothing of hakmem's blocks unless hakmem tells it, through client requests (valgrind/memcheck.h;
// a few instructions that do nothing outside valgrind):
//
//   malloc & co. (hakmem.cpp)   MALLOCLIKE(p, requested bytes) once the block is out of its
//                               list; calloc: marked defined (zeroed). The rest of the
//                               block's usable size is made NOACCESS, so overruns into it are
//                               reported, as with memcheck's own malloc.
//   free (hak_free_api.inc.h)   FREELIKE(p) first, before hakmem writes into the block (a block
//                               pushed to another thread's queue could be handed out there
//                               before a later FREELIKE): from then on every access by the
//                               program is an "Invalid read/write ... inside a block of size N
//                               free'd", with the stacks of the malloc and the free.
//   realloc                     RESIZEINPLACE when it keeps the block, otherwise MALLOCLIKE of
//                               the new block before the copy (so the copy keeps the V bits)
//                               and FREELIKE of the old one. The old requested size, which
//                               hakmem does not store, is read back from memcheck: the length
//                               of the block's addressable prefix (vg_block_size).
//   malloc_usable_size          the requested size (memcheck's own malloc does the same).
//   free-list links             the allocator's own accesses to a free block (its first word:
//   (free_link.h)               the list link) are bracketed by MAKE_MEM_DEFINED / NOACCESS,
//                               so they are not reported and the block stays NOACCESS.
//   span_alloc (hakmem.cpp)     the whole span NOACCESS, then its 16-byte header (span.h)
//                               addressable before hakmem writes it (the memory may be an
//                               earlier block's).
// The debug variant's freed-block poisoning and its check on reuse are skipped under valgrind:
// memcheck reports the write itself, when it happens. Every request is guarded by
// vg_running() where it costs more than the request itself, so natively the debug variant
// pays a few instructions per call.
//
// Only the debug variant includes <valgrind/memcheck.h> (Debian package `valgrind`); without
// it (or in release/secure) every function here is empty and kValgrind is false, so callers
// write `if constexpr (kValgrind)` and release code is unchanged.
#ifndef HAKMEM_VALGRIND_SUPPORT_H
#define HAKMEM_VALGRIND_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

#if !HAKMEM_BUILD_RELEASE && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAKMEM_VALGRIND 1
#endif
#endif
#ifndef HAKMEM_VALGRIND
#define HAKMEM_VALGRIND 0
#endif

namespace hak {

// True in a debug build that has the client requests compiled in.
inline constexpr bool kValgrind = HAKMEM_VALGRIND != 0;

#if HAKMEM_VALGRIND
// Running under any valgrind tool (a client request: 0 outside valgrind).
HAK_FAST_PATH bool vg_running() { return RUNNING_ON_VALGRIND != 0; }
HAK_FAST_PATH void vg_defined(const void* p, size_t n) { (void)VALGRIND_MAKE_MEM_DEFINED(p, n); }
HAK_FAST_PATH void vg_undefined(const void* p, size_t n) { (void)VALGRIND_MAKE_MEM_UNDEFINED(p, n); }
HAK_FAST_PATH void vg_noaccess(const void* p, size_t n) { (void)VALGRIND_MAKE_MEM_NOACCESS(p, n); }
HAK_FAST_PATH void vg_malloclike(const void* p, size_t n, bool zeroed) { VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, zeroed); }
HAK_FAST_PATH void vg_freelike(const void* p) { VALGRIND_FREELIKE_BLOCK(p, 0); }
HAK_FAST_PATH void vg_resizeinplace(const void* p, size_t old_n, size_t new_n) {
  VALGRIND_RESIZEINPLACE_BLOCK(p, old_n, new_n, 0);
}
// The size memcheck has for block p (announced with MALLOCLIKE, its tail up to `usable` made
// NOACCESS): the length of its addressable prefix, found without reporting anything.
// `usable` outside valgrind.
HAK_FAST_PATH size_t vg_block_size(const void* p, size_t usable) {
  VALGRIND_DISABLE_ERROR_REPORTING;
  uintptr_t bad = VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, usable);
  VALGRIND_ENABLE_ERROR_REPORTING;
  return bad != 0 ? size_t(bad - reinterpret_cast<uintptr_t>(p)) : usable;
}
#else
HAK_FAST_PATH bool vg_running() { return false; }
HAK_FAST_PATH void vg_defined(const void*, size_t) {}
HAK_FAST_PATH void vg_undefined(const void*, size_t) {}
HAK_FAST_PATH void vg_noaccess(const void*, size_t) {}
HAK_FAST_PATH void vg_malloclike(const void*, size_t, bool) {}
HAK_FAST_PATH void vg_freelike(const void*) {}
HAK_FAST_PATH void vg_resizeinplace(const void*, size_t, size_t) {}
HAK_FAST_PATH size_t vg_block_size(const void*, size_t usable) { return usable; }
#endif

}  // namespace hak

#endif  // HAKMEM_VALGRIND_SUPPORT_H
