// test_page_heap.cpp — the page heap's mechanism (page_heap.h), on a PageHeap of the test's
// own over memory the test maps: extents split on take and coalesced on insert (left, right,
// both), best fit with the lowest address among equals, the search past the request's bin,
// take_at for growth in place, cut_top, the age order, and the region map marks that make
// neighbours findable. Every test ends with is_valid().
#include <criterion/criterion.h>

#include <string.h>

#include "os.h"
#include "page_heap.h"
#include "region_map.h"

using namespace hak;

namespace {

constexpr size_t MiB = 1024 * 1024;
constexpr size_t U = kRegionUnit;  // 64 KiB

// A registered mapping of `bytes`, as large.cpp hands the heap its memory.
char* mapping(size_t bytes) {
  char* m = static_cast<char*>(os_map_aligned(bytes, U));
  cr_assert_not_null(m);
  cr_assert(region_map_set(m, bytes, kRegionSpan));
  return m;
}

void unmap(char* m, size_t bytes) {
  region_map_set(m, bytes, kRegionNone);
  os_unmap(m, bytes);
}

}  // namespace

Test(page_heap, take_of_the_whole_extent_empties_the_heap) {
  PageHeap h;
  char* m = mapping(4 * MiB);
  h.insert(m, 4 * MiB, 100);
  cr_assert_eq(h.extents(), 1u);
  cr_assert_eq(h.free_bytes(), 4 * MiB);
  cr_assert_eq(region_map_lookup(m), kRegionLargeFree);
  cr_assert_eq(region_map_lookup(m + 4 * MiB - 1), kRegionLargeFree);
  cr_assert(h.is_valid());
  cr_assert_eq(h.take(4 * MiB), m);
  cr_assert_eq(h.extents(), 0u);
  cr_assert_eq(h.free_bytes(), 0u);
  cr_assert_eq(region_map_lookup(m), kRegionSpan, "a taken range is a span again");
  cr_assert_null(h.take(U), "nothing left");
  cr_assert(h.is_valid());
  unmap(m, 4 * MiB);
}

Test(page_heap, a_smaller_request_splits_the_extent_from_its_low_end) {
  PageHeap h;
  char* m = mapping(8 * MiB);
  h.insert(m, 8 * MiB, 100);
  cr_assert_eq(h.take(3 * MiB), m, "cut from the low end");
  cr_assert_eq(h.extents(), 1u);
  cr_assert_eq(h.free_bytes(), 5 * MiB);
  cr_assert_eq(region_map_lookup(m + 3 * MiB - 1), kRegionSpan);
  cr_assert_eq(region_map_lookup(m + 3 * MiB), kRegionLargeFree, "the rest stays free");
  cr_assert(h.is_valid());
  cr_assert_eq(h.take(5 * MiB), m + 3 * MiB, "the rest is an extent of its own");
  cr_assert(h.is_valid());
  unmap(m, 8 * MiB);
}

Test(page_heap, neighbours_coalesce_on_either_side) {
  PageHeap h;
  char* m = mapping(12 * MiB);
  char *a = m, *b = m + 4 * MiB, *c = m + 8 * MiB;
  h.insert(a, 4 * MiB, 1);
  h.insert(c, 4 * MiB, 2);
  cr_assert_eq(h.extents(), 2u, "a and c are not adjacent");
  h.insert(b, 4 * MiB, 3);
  cr_assert_eq(h.extents(), 1u, "b joins its left and right neighbours");
  cr_assert_eq(h.free_bytes(), 12 * MiB);
  cr_assert(h.is_valid());
  cr_assert_eq(h.take(12 * MiB), m, "the merged extent serves a request of all of it");
  // Left only, then right only.
  h.insert(a, 4 * MiB, 4);
  h.insert(b, 2 * MiB, 5);
  cr_assert_eq(h.extents(), 1u, "merged with the left neighbour");
  h.insert(c + 2 * MiB, 2 * MiB, 6);
  h.insert(c, 2 * MiB, 7);
  cr_assert_eq(h.extents(), 2u, "[a, b+2M) and [c, c+4M), with b+2M..c live between them");
  h.insert(b + 2 * MiB, 2 * MiB, 8);
  cr_assert_eq(h.extents(), 1u);
  cr_assert_eq(h.free_bytes(), 12 * MiB);
  cr_assert(h.is_valid());
  cr_assert_eq(h.take(12 * MiB), m);
  unmap(m, 12 * MiB);
}

Test(page_heap, best_fit_then_lowest_address) {
  PageHeap h;
  // Extents of 10, 6, 7 and 6 MiB, kept apart by live 64 KiB units.
  const size_t sizes[] = {10 * MiB, 6 * MiB, 7 * MiB, 6 * MiB};
  char* m = mapping(29 * MiB + 4 * U);
  char* at[4];
  char* p = m;
  for (int i = 0; i < 4; ++i) {
    at[i] = p;
    h.insert(p, sizes[i], uint64_t(i));
    p += sizes[i] + U;
  }
  cr_assert_eq(h.extents(), 4u);
  cr_assert_eq(h.take(6 * MiB), at[1], "the smallest that fits; of the two 6 MiB, the lower");
  cr_assert_eq(h.take(6 * MiB + U), at[2], "6 MiB + 64 KiB: the 7 MiB extent, not the 10");
  cr_assert_eq(h.free_bytes(), 10 * MiB + 6 * MiB + (7 * MiB - 6 * MiB - U));
  cr_assert_eq(h.take(8 * MiB), at[0], "a request above every extent of its bin finds a higher bin");
  cr_assert_null(h.take(7 * MiB), "no extent holds 7 MiB now");
  cr_assert(h.is_valid());
  unmap(m, 29 * MiB + 4 * U);
}

Test(page_heap, every_size_has_a_bin_that_finds_it) {
  PageHeap h;
  char* m = mapping(64 * MiB);
  // One extent of each size from 64 KiB up, in steps that cross bin boundaries.
  for (size_t units = 1; units * U <= 48 * MiB; units = units * 5 / 4 + 1) {
    h.insert(m, units * U, 1);
    cr_assert_null(h.take(units * U + U), "%zu units: a bigger request must not be served", units);
    cr_assert_eq(h.take(units * U), m, "%zu units: the exact request is", units);
    cr_assert_eq(h.extents(), 0u);
  }
  cr_assert(h.is_valid());
  unmap(m, 64 * MiB);
}

Test(page_heap, take_at_grows_a_block_into_the_extent_after_it) {
  PageHeap h;
  char* m = mapping(16 * MiB);
  h.insert(m + 2 * MiB, 14 * MiB, 1);  // [m, m+2M) is the live block
  cr_assert(h.take_at(m + 2 * MiB, 6 * MiB));
  cr_assert_eq(region_map_lookup(m + 8 * MiB - 1), kRegionSpan);
  cr_assert_eq(h.free_bytes(), 8 * MiB);
  cr_assert_not(h.take_at(m + 8 * MiB, 9 * MiB), "the extent after holds only 8 MiB");
  cr_assert_not(h.take_at(m, U), "a live block is not an extent");
  cr_assert(h.take_at(m + 8 * MiB, 8 * MiB), "all of it");
  cr_assert_eq(h.extents(), 0u);
  cr_assert(h.is_valid());
  unmap(m, 16 * MiB);
}

Test(page_heap, cut_top_returns_the_high_end) {
  PageHeap h;
  char* m = mapping(8 * MiB);
  h.insert(m, 8 * MiB, 1);
  ExtentRange r = h.cut_top(h.oldest(), 3 * MiB - 100);  // rounded up to 64 KiB
  cr_assert_eq(r.base, m + 5 * MiB);
  cr_assert_eq(r.bytes, 3 * MiB);
  cr_assert_eq(region_map_lookup(m + 5 * MiB), kRegionNone, "the cut range is no longer hakmem's");
  cr_assert_eq(region_map_lookup(m + 5 * MiB - 1), kRegionLargeFree);
  cr_assert_eq(h.free_bytes(), 5 * MiB);
  cr_assert(h.is_valid());
  cr_assert_null(h.take(5 * MiB + U));
  r = h.cut_top(h.oldest(), SIZE_MAX);
  cr_assert_eq(r.base, m);
  cr_assert_eq(r.bytes, 5 * MiB);
  cr_assert_eq(h.extents(), 0u);
  cr_assert(h.is_valid());
  os_unmap(m, 8 * MiB);
}

Test(page_heap, the_age_list_is_in_free_order_and_a_merge_is_a_free) {
  PageHeap h;
  char* m = mapping(12 * MiB);
  h.insert(m, 2 * MiB, 10);                // A
  h.insert(m + 4 * MiB, 2 * MiB, 20);      // B
  h.insert(m + 8 * MiB, 4 * MiB, 30);      // C
  cr_assert_eq(static_cast<void*>(h.oldest()), m, "A was freed first");
  h.insert(m + 2 * MiB, MiB, 40);          // merges into A: A is now the newest
  cr_assert_eq(static_cast<void*>(h.oldest()), m + 4 * MiB, "B is the oldest now");
  cr_assert_eq(h.oldest()->freed_at, 20u);
  // Splitting B keeps its rest in B's place in the order.
  cr_assert_eq(h.take(MiB), m + 4 * MiB, "best fit for 1 MiB: B (2 MiB), its low end");
  cr_assert_eq(static_cast<void*>(h.oldest()), m + 5 * MiB, "B's rest keeps B's age");
  cr_assert_eq(h.oldest()->freed_at, 20u);
  cr_assert(h.is_valid());
  unmap(m, 12 * MiB);
}

// take_aligned (the page arena's chunks): the range starts on the alignment, the parts of the
// extent before and after it stay free with the extent's age, and an extent that is big
// enough but holds no aligned range is passed over.
Test(page_heap, take_aligned_cuts_an_aligned_range_and_keeps_both_sides) {
  PageHeap h;
  const size_t A = 2 * MiB;
  char* m = mapping(12 * MiB);
  char* base = reinterpret_cast<char*>((uintptr_t(m) + A - 1) & ~(uintptr_t(A) - 1));  // aligned, within m
  char* lo = base + U;  // an extent starting 64 KiB past an aligned address
  // X: 3 MiB from lo: big enough for 2 MiB, but its only aligned address leaves too little.
  h.insert(lo, 3 * MiB - 2 * U, 10);
  cr_assert_null(h.take_aligned(A, A), "no aligned 2 MiB in X");
  // Y: 4 MiB + 64 KiB, starting 64 KiB before an aligned address (a gap after X keeps them apart).
  char* y = base + 4 * MiB - U;
  h.insert(y, 4 * MiB + U, 20);
  cr_assert(h.is_valid());
  size_t free0 = h.free_bytes();
  void* p = h.take_aligned(A, A);
  cr_assert_eq(p, base + 4 * MiB, "the aligned 2 MiB inside Y");
  cr_assert_eq(h.free_bytes(), free0 - A);
  cr_assert_eq(h.extents(), 3u, "X, Y's front (64 KiB) and Y's back (2 MiB)");
  cr_assert_eq(region_map_lookup(p), kRegionSpan);
  cr_assert_eq(region_map_lookup(static_cast<char*>(p) - 1), kRegionLargeFree, "the front stays free");
  cr_assert_eq(region_map_lookup(static_cast<char*>(p) + A), kRegionLargeFree, "the back stays free");
  cr_assert(h.is_valid());
  cr_assert_eq(static_cast<void*>(h.oldest()), lo, "X is still the oldest");
  // An extent that starts aligned is cut from its low end.
  void* q = h.take_aligned(A, A);
  cr_assert_eq(q, base + 6 * MiB, "Y's back is aligned");
  cr_assert(h.is_valid());
  // Given back, both ranges merge with Y's front into one extent again (X stays apart: the gap).
  h.insert(p, A, 30);
  h.insert(q, A, 40);
  cr_assert_eq(h.extents(), 2u);
  cr_assert(h.is_valid());
  unmap(m, 12 * MiB);
}
