// page_arena.h — page-granular spans for requests too big for a size class (> 32 KiB) and
// up to kArenaMaxSpan, carved from 2 MiB arena chunks so that mmap/munmap are not called per
// allocation.
//
// A chunk is 2 MiB-aligned; its first 4 KiB page holds the header (page bitmaps); spans are
// runs of 4 KiB pages found first-fit in the bitmap, under one lock. Freed pages stay
// resident ("dirty") for reuse — empty chunks stay mapped too — until the arena holds more
// dirty bytes than kArenaDirtyMin (32 MiB) + a quarter of the bytes in live spans; then, oldest chunks
// first, empty chunks are unmapped and the others' dirty pages decommitted (MADV_DONTNEED),
// down to half of that limit. Re-faulting freshly unmapped pages is what made a span churn
// slow (bench/mid_large_mix: 4× the page faults of glibc before this policy).
// The region map marks every chunk kRegionSpan; spans carry the 16-byte header (span.h).
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

// A span of `bytes` (a multiple of kArenaPage, ≤ kArenaMaxSpan). nullptr when out of memory.
void* arena_alloc(size_t bytes);
// Returns a span made by arena_alloc (same byte count).
void arena_free(void* span, size_t bytes);
// Decommits every free page and unmaps every empty chunk. Returns true if anything was released.
bool arena_trim();
// Decay: if more than kArenaDirtyMin / 4 of free pages are resident, decommit (oldest chunks
// first) down to that. Returns true if anything was released.
bool arena_decay();

struct ArenaStats {
  uint64_t chunks, mapped_bytes, used_bytes, dirty_bytes;
};
ArenaStats arena_stats();

void arena_lock();
void arena_unlock();
void arena_reinit_after_fork();

// Debug checker: bitmaps and counters of every chunk agree.
bool arena_is_valid();

}  // namespace hak

#endif  // HAKMEM_PAGE_ARENA_H
