// test_large.cpp — the Large tier (large.h): one mapping per span, 64 KiB-aligned and
// registered in the region map; a cache of freed mappings reused for requests of at least
// their size and at most 1.25× it (fresh = false on reuse of a resident one), bounded by kLargeCacheEntries,
// kLargeCacheBytes and kLargeCacheMaxEntry, aged out after kLargeCacheAgeNs, emptied by
// large_trim; and the statistics.
#include <criterion/criterion.h>

#include <string.h>
#include <time.h>

#include "large.h"
#include "os.h"
#include "region_map.h"

using namespace hak;

namespace {

constexpr size_t MiB = 1024 * 1024;

char* alloc(size_t bytes, bool* fresh) {
  char* p = static_cast<char*>(large_alloc(bytes, fresh));
  cr_assert_not_null(p, "large_alloc(%zu) failed", bytes);
  return p;
}

// Starts from an empty cache (Criterion's start-up may have left entries).
void start_clean() {
  large_trim();
  LargeStats st = large_stats();
  cr_assert_eq(st.cached, 0u);
  cr_assert_eq(st.cached_bytes, 0u);
}

}  // namespace

Test(large, fresh_mappings_are_aligned_registered_and_counted) {
  start_clean();
  LargeStats st0 = large_stats();
  bool fresh = false;
  char* p = alloc(2 * MiB, &fresh);
  cr_assert(fresh, "a mapping straight from the OS is fresh");
  cr_assert_eq(uintptr_t(p) % kLargeAlign, 0u, "64 KiB-aligned");
  cr_assert_eq(region_map_lookup(p), kRegionSpan);
  cr_assert_eq(region_map_lookup(p + 2 * MiB - 1), kRegionSpan);
  cr_assert_eq(p[0], 0, "fresh memory is zero");
  cr_assert_eq(p[2 * MiB - 1], 0);
  memset(p, 0xAA, 2 * MiB);
  LargeStats st1 = large_stats();
  cr_assert_eq(st1.live, st0.live + 1);
  cr_assert_eq(st1.live_bytes, st0.live_bytes + 2 * MiB);
  large_free(p, 2 * MiB);
  LargeStats st2 = large_stats();
  cr_assert_eq(st2.live, st0.live);
  cr_assert_eq(st2.live_bytes, st0.live_bytes);
  cr_assert_eq(st2.cached, 1u, "a freed mapping is cached");
  cr_assert_eq(st2.cached_bytes, 2 * MiB);
  cr_assert_eq(region_map_lookup(p), kRegionSpan, "a cached mapping stays registered");
}

Test(large, a_freed_mapping_is_reused_and_not_fresh) {
  start_clean();
  bool fresh = true;
  char* p = alloc(3 * MiB, &fresh);
  p[100] = 42;
  large_free(p, 3 * MiB);
  uint64_t mmaps0 = os_counters().mmap_calls;
  char* q = alloc(3 * MiB, &fresh);
  cr_assert_eq(q, p, "the cached mapping of the same size is reused");
  cr_assert_not(fresh, "a reused mapping is not fresh (it is not zero)");
  cr_assert_eq(q[100], 42, "a reused mapping keeps its contents (callers zero it if asked)");
  cr_assert_eq(os_counters().mmap_calls, mmaps0, "reuse makes no syscall");
  cr_assert_eq(large_stats().cached, 0u);
  large_free(q, 3 * MiB);
}

Test(large, reuse_within_125_percent_returns_the_tail) {
  start_clean();
  bool fresh;
  const size_t want = 4 * MiB;
  const size_t cached = want + want / 4;  // exactly 1.25×: still a hit
  char* p = alloc(cached, &fresh);
  large_free(p, cached);
  LargeStats st0 = large_stats();
  uint64_t unmaps0 = os_counters().munmap_calls;
  char* q = alloc(want, &fresh);
  cr_assert_eq(q, p, "a mapping up to 1.25x the request is reused");
  cr_assert_not(fresh, "a recently freed mapping within kLargeCacheResident is still resident");
  LargeStats st1 = large_stats();
  cr_assert_eq(st1.cached, st0.cached - 1);
  cr_assert_eq(st1.live_bytes, st0.live_bytes + want, "accounting uses the request's size");
  cr_assert_eq(os_counters().munmap_calls, unmaps0 + 1, "the tail goes back to the OS");
  cr_assert_eq(region_map_lookup(q + want - 1), kRegionSpan);
  cr_assert_eq(region_map_lookup(q + want), kRegionNone, "the tail is unregistered");
  large_free(q, want);
}

Test(large, mappings_outside_the_tolerance_are_not_reused) {
  start_clean();
  bool fresh;
  const size_t want = 4 * MiB;
  char* too_big = alloc(want + want / 4 + kLargeAlign, &fresh);  // just over 1.25×
  char* too_small = alloc(want - kLargeAlign, &fresh);
  large_free(too_big, want + want / 4 + kLargeAlign);
  large_free(too_small, want - kLargeAlign);
  cr_assert_eq(large_stats().cached, 2u);
  char* q = alloc(want, &fresh);
  cr_assert(fresh, "neither cached mapping fits: a new one is mapped");
  cr_assert_neq(q, too_big);
  cr_assert_neq(q, too_small);
  cr_assert_eq(large_stats().cached, 2u, "the cache is untouched");
  large_free(q, want);
}

Test(large, the_smallest_fitting_mapping_is_chosen) {
  start_clean();
  bool fresh;
  const size_t want = 8 * MiB;
  const size_t sizes[] = {want + 2 * MiB, want + MiB, want + 3 * kLargeAlign, want + 2 * MiB - kLargeAlign};
  char* maps[4];
  for (int i = 0; i < 4; ++i) maps[i] = alloc(sizes[i], &fresh);
  for (int i = 0; i < 4; ++i) maps[i][0] = 7;  // a cached mapping may be decommitted: then it reads 0
  for (int i = 0; i < 4; ++i) large_free(maps[i], sizes[i]);
  char* q = alloc(want, &fresh);
  cr_assert_eq(q, maps[2], "best fit: the smallest cached mapping ≥ the request");
  cr_assert(fresh ? q[0] == 0 : q[0] == 7, "fresh (%d) must say whether the memory reads as zero", int(fresh));
  large_free(q, want);
}

Test(large, the_cache_holds_at_most_kLargeCacheEntries) {
  start_clean();
  bool fresh;
  constexpr int n = kLargeCacheEntries + 3;
  static char* maps[n];
  const size_t size = 2 * MiB;
  cr_assert_leq(size * n, kLargeCacheBytes, "the byte limit must not interfere here");
  for (char*& m : maps) m = alloc(size, &fresh);
  for (char* m : maps) {
    large_free(m, size);
    struct timespec ts = {0, 1000};  // distinct free times
    nanosleep(&ts, nullptr);
  }
  LargeStats st = large_stats();
  cr_assert_eq(st.cached, uint64_t(kLargeCacheEntries));
  cr_assert_eq(st.cached_bytes, uint64_t(kLargeCacheEntries) * size);
  // The oldest entries were evicted (unmapped and unregistered).
  for (int i = 0; i < n - kLargeCacheEntries; ++i)
    cr_assert_eq(region_map_lookup(maps[i]), kRegionNone, "entry %d (among the oldest) should be evicted", i);
  for (int i = n - kLargeCacheEntries; i < n; ++i)
    cr_assert_eq(region_map_lookup(maps[i]), kRegionSpan, "entry %d (recent) should be cached", i);
}

Test(large, the_cache_holds_at_most_kLargeCacheBytes) {
  start_clean();
  bool fresh;
  const size_t size = kLargeCacheMaxEntry;  // largest cacheable
  const int n = int(kLargeCacheBytes / size) + 1;
  static char* maps[64];
  cr_assert_lt(n, 64);
  for (int i = 0; i < n; ++i) maps[i] = alloc(size, &fresh);  // address space only
  for (int i = 0; i < n; ++i) large_free(maps[i], size);
  LargeStats st = large_stats();
  cr_assert_leq(st.cached_bytes, kLargeCacheBytes);
  cr_assert_eq(st.cached, uint64_t(kLargeCacheBytes / size));
  cr_assert_eq(region_map_lookup(maps[0]), kRegionNone, "the oldest went back to make room");
}

Test(large, mappings_bigger_than_kLargeCacheMaxEntry_are_not_cached) {
  start_clean();
  bool fresh;
  const size_t size = kLargeCacheMaxEntry + kLargeAlign;
  char* p = alloc(size, &fresh);
  uint64_t unmaps0 = os_counters().munmap_calls;
  large_free(p, size);
  cr_assert_eq(large_stats().cached, 0u);
  cr_assert_eq(os_counters().munmap_calls, unmaps0 + 1, "unmapped at once");
  cr_assert_eq(region_map_lookup(p), kRegionNone);
}

Test(large, trim_empties_the_cache) {
  start_clean();
  bool fresh;
  char* a = alloc(2 * MiB, &fresh);
  char* b = alloc(5 * MiB, &fresh);
  char* keep = alloc(3 * MiB, &fresh);
  large_free(a, 2 * MiB);
  large_free(b, 5 * MiB);
  LargeStats st0 = large_stats();
  cr_assert_eq(st0.cached, 2u);
  cr_assert(large_trim(), "trim had mappings to return");
  LargeStats st1 = large_stats();
  cr_assert_eq(st1.cached, 0u);
  cr_assert_eq(st1.cached_bytes, 0u);
  cr_assert_eq(st1.live, st0.live, "live mappings are not touched");
  cr_assert_eq(region_map_lookup(a), kRegionNone);
  cr_assert_eq(region_map_lookup(b), kRegionNone);
  cr_assert_eq(region_map_lookup(keep), kRegionSpan);
  cr_assert_not(large_trim(), "nothing left to return");
  char* c = alloc(2 * MiB, &fresh);
  cr_assert(fresh, "after a trim, mappings are new");
  large_free(c, 2 * MiB);
  large_free(keep, 3 * MiB);
}

Test(large, entries_older_than_the_age_limit_go_back_on_the_next_operation) {
  start_clean();
  bool fresh;
  char* p = alloc(2 * MiB, &fresh);
  large_free(p, 2 * MiB);
  cr_assert_eq(large_stats().cached, 1u);
  struct timespec ts = {time_t(kLargeCacheAgeNs / 1000000000ull), long(kLargeCacheAgeNs % 1000000000ull) + 50000000L};
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec += 1, ts.tv_nsec -= 1000000000L;
  nanosleep(&ts, nullptr);
  cr_assert_eq(large_stats().cached, 1u, "nothing happens without a Large operation");
  uint64_t unmaps0 = os_counters().munmap_calls;
  char* q = alloc(6 * MiB, &fresh);  // a miss: expired entries are returned
  cr_assert_eq(large_stats().cached, 0u, "the aged entry was returned");
  cr_assert_geq(os_counters().munmap_calls, unmaps0 + 1, "the aged entry was unmapped");
  large_free(q, 6 * MiB);
}
