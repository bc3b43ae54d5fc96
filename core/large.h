// large.h — the Large tier: spans bigger than the page arena's (> 1 MiB), one mapping each,
// 64 KiB-aligned (so the region map never shares a unit with a foreign mapping).
//
// Freed mappings are cached for reuse (up to kLargeCacheEntries mappings and
// kLargeCacheBytes in all, each at most kLargeCacheMaxEntry). At most kLargeCacheResident of
// them stay resident; older ones are decommitted (MADV_DONTNEED) but stay mapped, which
// still saves the mmap/munmap pair and reads as zero (calloc skips its memset). A request takes a cached
// mapping of at least its size and at most 1.25× it. Entries older than kLargeCacheAgeNs are
// returned by the next Large operation or decay tick (decay.h); malloc_trim returns them all.
#ifndef HAKMEM_LARGE_H
#define HAKMEM_LARGE_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr size_t kLargeAlign = 64 * 1024;
inline constexpr int kLargeCacheEntries = 8;
inline constexpr size_t kLargeCacheBytes = 64 * 1024 * 1024;
inline constexpr size_t kLargeCacheMaxEntry = 32 * 1024 * 1024;
inline constexpr size_t kLargeCacheResident = 8 * 1024 * 1024;
inline constexpr uint64_t kLargeCacheAgeNs = 1000000000ull;  // 1 s

// A mapping of `bytes` (multiple of kLargeAlign). *fresh is set when its pages read as zero
// (straight from the OS, or decommitted in the cache). nullptr when out of memory.
void* large_alloc(size_t bytes, bool* fresh);
// Returns a mapping made by large_alloc (same byte count).
void large_free(void* base, size_t bytes);
// Returns every cached mapping to the OS. True if any.
bool large_trim();
// Returns the cached mappings older than kLargeCacheAgeNs. True if any.
bool large_decay(uint64_t now_ns);

struct LargeStats {
  uint64_t live, live_bytes, cached, cached_bytes;
};
LargeStats large_stats();

void large_lock();
void large_unlock();
void large_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_LARGE_H
