// large.h — the Large tier: spans bigger than the page arena's (> 1 MiB), one mapping each,
// 64 KiB-aligned (so the region map never shares a unit with a foreign mapping).
//
// Freed mappings are cached for reuse (up to kLargeCacheEntries mappings and
// kLargeCacheBytes in all, each at most kLargeCacheMaxEntry); a request takes a cached
// mapping of at least its size and at most 1.25× it. Entries older than kLargeCacheAgeNs are
// returned on the next Large operation; malloc_trim returns them all.
#ifndef HAKMEM_LARGE_H
#define HAKMEM_LARGE_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr size_t kLargeAlign = 64 * 1024;
inline constexpr int kLargeCacheEntries = 8;
inline constexpr size_t kLargeCacheBytes = 64 * 1024 * 1024;
inline constexpr size_t kLargeCacheMaxEntry = 32 * 1024 * 1024;
inline constexpr uint64_t kLargeCacheAgeNs = 2000000000ull;  // 2 s

// A mapping of `bytes` (multiple of kLargeAlign). *fresh is set when it comes straight from
// the OS (zero-filled). nullptr when out of memory.
void* large_alloc(size_t bytes, bool* fresh);
// Returns a mapping made by large_alloc (same byte count).
void large_free(void* base, size_t bytes);
// Returns every cached mapping to the OS. True if any.
bool large_trim();

struct LargeStats {
  uint64_t live, live_bytes, cached, cached_bytes;
};
LargeStats large_stats();

void large_lock();
void large_unlock();
void large_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_LARGE_H
