// page_arena.h — page-granular spans for requests too big for a size class (> 32 KiB) and
// up to kArenaMaxSpan, carved from 2 MiB arena chunks so that mmap/munmap are not called per
// allocation.
//
// A chunk is 2 MiB-aligned; its first 4 KiB page holds the header (page bitmaps); spans are
// runs of 4 KiB pages, under one lock, placed resident free pages first (arena_alloc's order
// in page_arena.cpp). Freed pages stay
// resident ("dirty") for reuse — empty chunks stay mapped too — by two rules:
//   - a bound tied to the recent peak: at most kArenaDirtyMin (32 MiB) plus the room between
//     the pages in live spans now and their recent peak (the most since the previous decay
//     pass and in the period before it); over it, oldest chunks first, empty chunks are unmapped and the others'
//     dirty pages decommitted (MADV_DONTNEED) down to the bound;
//   - time: each decay pass (decay.h, about once a second, also from the idle-decay thread
//     when the program is idle) returns as many pages as stayed dirty through the whole
//     period since the previous pass (the period's minimum): pages no allocation needed.
// A program whose spans come and go in waves (an interpreter's garbage collector freeing a
// burst, then allocating it again) keeps its wave resident instead of faulting it in anew;
// re-faulting freshly returned pages is what made span churn slow (bench/mid_large_mix: 4×
// the page faults of glibc with a fixed small cap; ruby with 2 threads: 2.5×).
// The region map marks every chunk kRegionSpan; spans carry the 16-byte header (span.h).
//
// A new chunk comes from freed Large memory when the page heap has an aligned 2 MiB of it
// (large_take_aligned; its resident pages counted dirty, the rest decommitted), else from a
// new mapping.
//
// May call: os, region_map, large (a chunk, outside the arena's lock), decay_thread (wake,
// after its lock is released), fork_locks (its lock).
#ifndef HAKMEM_PAGE_ARENA_H
#define HAKMEM_PAGE_ARENA_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr size_t kArenaChunkSize = 2 * 1024 * 1024;
inline constexpr size_t kArenaPage = 4096;
inline constexpr size_t kArenaPagesPerChunk = kArenaChunkSize / kArenaPage;  // 512, page 0 = header
inline constexpr size_t kArenaMaxSpan = 1024 * 1024;                         // largest span (bytes)
inline constexpr size_t kArenaDirtyMin = 32 * 1024 * 1024;
// Free pages resident from which a parked idle-decay thread is woken (it is started from
// kDecayThreadStartBytes: decay_thread.h).
inline constexpr size_t kArenaWakeDirty = 4 * 1024 * 1024;

// A span of `bytes` (a multiple of kArenaPage, ≤ kArenaMaxSpan). nullptr when out of memory.
// *zeroed (if given): every page of the span is known to read as zero (never used since it
// was mapped or decommitted), so calloc need not clear it (nor fault its pages in).
void* arena_alloc(size_t bytes, bool* zeroed = nullptr);
// Returns a span made by arena_alloc (same byte count).
void arena_free(void* span, size_t bytes);
// Returns n spans under one acquisition of the lock (span_cache.h's flush).
void arena_free_many(void* const* spans, const size_t* bytes, int n);
// Decommits every free page and unmaps every empty chunk. Returns true if anything was released.
bool arena_trim();
// Decay pass: returns the free pages that stayed resident through the whole period since the
// previous pass (oldest chunks first). Returns true if anything was released.
bool arena_decay();
// Free pages resident now, in bytes.
size_t arena_dirty_bytes();

struct ArenaStats {
  uint64_t chunks, mapped_bytes, used_bytes, dirty_bytes, recent_peak_bytes;
};
ArenaStats arena_stats();

void arena_lock();
void arena_unlock();
void arena_reinit_after_fork();

// Debug checker: bitmaps and counters of every chunk agree.
bool arena_is_valid();
// Debug checker: every page of [span, span + bytes) is in a live span of an arena chunk.
bool arena_span_is_used(const void* span, size_t bytes);

}  // namespace hak

#endif  // HAKMEM_PAGE_ARENA_H
