// hakmem.h — the public API of the hakmem allocator.
//
// hakmem replaces malloc/free and the rest of the C and C++ allocation API when it is
// preloaded (LD_PRELOAD=libhakmem.so) or linked (-lhakmem). The functions below reach the
// same allocator by name, for programs that want to call it explicitly or read its figures.
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HAKMEM_API __attribute__((visibility("default")))
#else
#define HAKMEM_API
#endif

// Allocation, as the C functions of the same name without the prefix.
HAKMEM_API void*  hak_malloc(size_t size);
HAKMEM_API void*  hak_calloc(size_t count, size_t size);
HAKMEM_API void*  hak_realloc(void* ptr, size_t size);
HAKMEM_API void   hak_free(void* ptr);
// Aligned allocation: alignment must be a power of two; returns NULL (errno EINVAL) if not.
HAKMEM_API void*  hak_aligned_alloc(size_t alignment, size_t size);
// Bytes the program may use in the block (malloc_usable_size): at least what was asked for; the
// secure variant reports exactly what was asked for (a canary follows it: core/canary.h).
HAKMEM_API size_t hak_usable_size(const void* ptr);

// Give every cached, empty and releasable page back to the OS now. Returns 1 if memory was
// released. malloc_trim(0) calls this.
HAKMEM_API int    hak_trim(void);

// Checks the heap's invariants: the calling thread's free lists and slab runs, every
// SuperSlab, the page arena. Prints what is wrong to stderr and returns 0; 1 if all hold.
// Walks everything: for tests and debugging (the debug variant runs it on every N-th slow
// path with HAKMEM_CHECK=N, docs/TUNING.md).
HAKMEM_API int    hak_heap_check(void);

// Figures, cheap to read (no lock held for long, nothing allocated).
typedef struct hak_stats {
  uint64_t mapped_bytes;        // address space hakmem holds from the OS (all tiers, the seed heap)
  uint64_t tiny_mapped_bytes;   // SuperSlabs (Tiny and Mid classes)
  uint64_t arena_mapped_bytes;  // page-arena chunks (Mid/Large spans)
  uint64_t large_mapped_bytes;  // Large spans, including the freed memory kept for reuse
  uint64_t large_cached_bytes;  // freed Large memory kept resident for reuse (the page heap)
  uint64_t superslabs_live;     // SuperSlabs with at least one slab assigned
  uint64_t superslabs_retired;  // SuperSlabs decommitted and kept for reuse
  uint64_t slabs_in_use;        // slab runs assigned to a size class
  uint64_t arena_chunks;        // page-arena chunks mapped
  uint64_t arena_used_bytes;    // bytes in live page-arena spans
  uint64_t large_live;          // live Large mappings
  uint64_t large_live_bytes;    // bytes in live Large mappings
  uint64_t threads_live;        // thread heaps in use
  uint64_t threads_cached;      // thread heaps of exited threads, kept for reuse
  uint64_t madvise_calls;       // decommits done (MADV_DONTNEED)
  uint64_t mmap_calls;          // mappings made
  uint64_t munmap_calls;        // mappings returned
  uint64_t peak_mapped_bytes;   // high-water mark of mapped_bytes (heap and metadata mappings)
  uint64_t tiny_in_use_bytes;   // Tiny blocks out of their slabs (in use or in thread caches) or of the seed heap
  uint64_t mid_in_use_bytes;    // Mid blocks out of their slabs (in use or in thread caches) or of the seed heap
  uint64_t remote_frees;        // blocks freed by a thread other than their slab's owner
  uint64_t process_rss_bytes;   // resident set of the whole process (/proc/self/statm)
  uint64_t minor_page_faults;   // minor page faults of the whole process so far (getrusage)
  uint64_t large_free_extents;  // free extents in the page heap (large_cached_bytes in all)
  uint64_t large_recent_peak_bytes;  // most Large bytes live in the last 1-2 s (bounds the cache)
  uint64_t guard_rate;          // guarded sampling: one allocation in N (HAKMEM_GUARD); 0 = off
  uint64_t guarded_allocs;      // blocks served from the guarded pool so far
  uint64_t guarded_live;        // guarded blocks not freed yet
  uint64_t guarded_full;        // samples served as usual because every guarded slot was in use
  uint64_t seed_mapped_bytes;   // the seed heap: each class's first blocks, packed (0 or 128 KiB; release)
  uint64_t seed_in_use_bytes;   // seed blocks out (counted in tiny_/mid_in_use_bytes too, by class)
} hak_stats_t;

HAKMEM_API void   hak_stats_get(hak_stats_t* out);
// Prints hak_stats_get's figures and a per-size-class table to stderr (HAKMEM_STATS=1 does
// this at exit).
HAKMEM_API void   hak_stats_print(void);

// The heap profiler (docs/PROFILING.md): one allocation per `mean_bytes` allocated on average
// is sampled with its call stack. hak_prof_set turns it on (mean_bytes > 0; 524288 is the
// default of HAKMEM_PROF=1) or off (0), and returns the previous mean (0: it was off;
// SIZE_MAX: its table could not be mapped, nothing changed). Turned on at run time, every
// thread samples from its next allocation on.
HAKMEM_API size_t hak_prof_set(size_t mean_bytes);
// Writes the sampled live heap (hak_prof_dump) or the sampled heap at its peak
// (hak_prof_dump_peak) as a gperftools heap profile (google-pprof reads it) to path, without
// allocating. Returns 0, or -1 with errno set (ENOENT: the profiler never ran).
HAKMEM_API int    hak_prof_dump(const char* path);
HAKMEM_API int    hak_prof_dump_peak(const char* path);
// Prints the stacks of the sampled blocks still live, largest first (at most max_stacks of
// them; 0 = 20), scaled to bytes, to stderr. HAKMEM_PROF_LEAKS=1 prints it at exit.
HAKMEM_API void   hak_prof_leak_report(int max_stacks);

#ifdef __cplusplus
}
#endif
#endif  // HAKMEM_H
