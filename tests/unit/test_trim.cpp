// test_trim.cpp — memory return through the API (hakmem.h): hak_trim after freeing many
// blocks of each tier gives SuperSlabs, arena chunks and Large mappings back, and the
// figures of hak_stats_get move as they should. (RSS-based checks live in
// tests/api/test_memory_return.cpp; this file checks the allocator's own accounting.)
#include <criterion/criterion.h>

#include <string.h>
#include <sys/mman.h>

#include "hakmem.h"
#include "seed_heap.h"
#include "span_cache.h"
#include "superslab.h"

namespace {

constexpr size_t kSmall = 64;
constexpr int kCount = 200000;  // ~12 MiB of 64-byte blocks: several SuperSlabs
void** g_ptrs;

hak_stats_t stats() {
  hak_stats_t st;
  hak_stats_get(&st);
  return st;
}

void setup() {
  // The pointer array is mapped directly, so it does not sit in the heap being measured.
  g_ptrs = static_cast<void**>(mmap(nullptr, kCount * sizeof(void*), PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  cr_assert_neq(g_ptrs, MAP_FAILED);
  hak_trim();
}

void check_sums(const hak_stats_t& st) {
  cr_assert_eq(st.mapped_bytes, st.tiny_mapped_bytes + st.arena_mapped_bytes + st.large_mapped_bytes + st.seed_mapped_bytes);
  cr_assert(st.seed_mapped_bytes == 0 || st.seed_mapped_bytes == hak::kSeedBytes);
  cr_assert_eq(st.tiny_mapped_bytes % hak::kSuperSlabSize, 0u);
  cr_assert_leq(st.large_cached_bytes, st.large_mapped_bytes);
  cr_assert_geq(st.large_mapped_bytes, st.large_live_bytes);
}

}  // namespace

TestSuite(trim, .init = setup);

Test(trim, small_blocks_superslabs_retire_and_revive) {
  hak_stats_t st0 = stats();
  check_sums(st0);
  for (int i = 0; i < kCount; ++i) {
    g_ptrs[i] = hak_malloc(kSmall);
    cr_assert_not_null(g_ptrs[i]);
    memset(g_ptrs[i], 0x33, kSmall);
  }
  hak_stats_t st1 = stats();
  check_sums(st1);
  size_t need = size_t(kCount) * kSmall / hak::kSuperSlabSize;
  cr_assert_geq(st1.superslabs_live, st0.superslabs_live + need, "%lu SuperSlabs live for %zu MiB of blocks",
                (unsigned long)st1.superslabs_live, size_t(kCount) * kSmall >> 20);
  cr_assert_gt(st1.slabs_in_use, st0.slabs_in_use);
  cr_assert_gt(st1.tiny_mapped_bytes, st0.tiny_mapped_bytes);
  for (int i = 0; i < kCount; ++i) hak_free(g_ptrs[i]);
  uint64_t madv0 = stats().madvise_calls;
  cr_assert_eq(hak_trim(), 1, "trim had memory to release");
  hak_stats_t st2 = stats();
  check_sums(st2);
  cr_assert_leq(st2.superslabs_live, st0.superslabs_live + 1, "superslabs live %lu after trim (%lu before)",
                (unsigned long)st2.superslabs_live, (unsigned long)st0.superslabs_live);
  cr_assert_geq(st2.superslabs_retired, st1.superslabs_retired + need - 1, "the emptied SuperSlabs were retired");
  cr_assert_leq(st2.slabs_in_use, st0.slabs_in_use, "no run of the freed blocks is still assigned");
  cr_assert_gt(st2.madvise_calls, madv0, "retiring decommits");
  // Allocating again revives retired SuperSlabs before mapping new ones.
  uint64_t mmaps = st2.mmap_calls;
  for (int i = 0; i < kCount; ++i) g_ptrs[i] = hak_malloc(kSmall);
  hak_stats_t st3 = stats();
  cr_assert_lt(st3.superslabs_retired, st2.superslabs_retired, "retired SuperSlabs were revived");
  cr_assert_eq(st3.tiny_mapped_bytes, st2.tiny_mapped_bytes, "no new SuperSlab was mapped");
  cr_assert_leq(st3.mmap_calls - mmaps, 4u, "%lu mappings for blocks that fit the retired SuperSlabs",
                (unsigned long)(st3.mmap_calls - mmaps));
  for (int i = 0; i < kCount; ++i) hak_free(g_ptrs[i]);
  hak_trim();
}

Test(trim, mid_spans_release_arena_chunks) {
  hak::span_cache_flush();  // no span of earlier allocations stashed in st0
  hak_stats_t st0 = stats();
  const size_t size = 100 * 1024;  // page-arena span (above the size classes)
  const int n = 400;               // ~40 MiB
  for (int i = 0; i < n; ++i) {
    g_ptrs[i] = hak_malloc(size);
    cr_assert_not_null(g_ptrs[i]);
    memset(g_ptrs[i], 0x44, 4096);
  }
  hak_stats_t st1 = stats();
  check_sums(st1);
  cr_assert_geq(st1.arena_used_bytes, st0.arena_used_bytes + size_t(n) * size);
  cr_assert_gt(st1.arena_chunks, st0.arena_chunks);
  for (int i = 0; i < n; ++i) hak_free(g_ptrs[i]);
  // Every span's pages came back, but for the last ones this thread stashed (span_cache.h),
  // which are still the arena's used pages until the stash gives them back.
  cr_assert_gt(hak::span_cache_bytes(), 0u);
  cr_assert_eq(stats().arena_used_bytes, st0.arena_used_bytes + hak::span_cache_bytes(), "every span's pages came back");
  cr_assert_eq(hak_trim(), 1);
  hak_stats_t st2 = stats();
  check_sums(st2);
  cr_assert_leq(st2.arena_chunks, st0.arena_chunks, "arena chunks %lu after trim, %lu before",
                (unsigned long)st2.arena_chunks, (unsigned long)st0.arena_chunks);
}

Test(trim, large_mappings_cached_then_returned) {
  hak_stats_t st0 = stats();
  const size_t size = 3 * 1024 * 1024;
  void* a = hak_malloc(size);
  void* b = hak_malloc(size);
  cr_assert(a && b);
  hak_stats_t st1 = stats();
  cr_assert_eq(st1.large_live, st0.large_live + 2);
  cr_assert_geq(st1.large_live_bytes, st0.large_live_bytes + 2 * size);
  hak_free(a);
  hak_free(b);
  hak_stats_t st2 = stats();
  check_sums(st2);
  cr_assert_eq(st2.large_live, st0.large_live);
  cr_assert_geq(st2.large_cached_bytes, 2 * size, "freed Large mappings are cached");
  uint64_t unmaps = st2.munmap_calls;
  cr_assert_eq(hak_trim(), 1);
  hak_stats_t st3 = stats();
  check_sums(st3);
  cr_assert_eq(st3.large_cached_bytes, 0u, "trim returns the cached mappings");
  // a and b may have merged into one free extent (the page heap coalesces neighbours).
  cr_assert_geq(st3.munmap_calls, unmaps + 1);
  cr_assert_eq(st3.large_mapped_bytes, st3.large_live_bytes);
}

Test(trim, a_second_trim_has_nothing_to_release) {
  void* p = hak_malloc(5 * 1024 * 1024);
  hak_free(p);
  cr_assert_eq(hak_trim(), 1);
  cr_assert_eq(hak_trim(), 0, "everything releasable was released by the first trim");
}
