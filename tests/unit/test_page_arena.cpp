// test_page_arena.cpp — the page arena (page_arena.h): spans of 4 KiB pages carved first-fit
// from 2 MiB chunks, reuse, the dirty-page bound tied to the recent peak, the decay of pages
// free through a whole period, chunk release with hysteresis, arena_trim,
// the statistics and the arena_is_valid checker.
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <signal.h>
#include <string.h>

#include "decay_thread.h"
#include "large.h"
#include "os.h"
#include "page_arena.h"
#include "region_map.h"

using namespace hak;

namespace {

constexpr size_t kPage = kArenaPage;
char* chunk_of(void* p) { return reinterpret_cast<char*>(uintptr_t(p) & ~(uintptr_t(kArenaChunkSize) - 1)); }

char* alloc(size_t pages) {
  char* p = static_cast<char*>(arena_alloc(pages * kPage));
  cr_assert_not_null(p, "arena_alloc(%zu pages) failed", pages);
  cr_assert_eq(uintptr_t(p) % kPage, 0u);
  return p;
}

void* g_fill[64];
int g_nfill;

// Allocates largest spans until a new chunk is made; returns the span that opened it
// (at page 1 of the new chunk). The others stay in g_fill.
char* open_new_chunk() {
  uint64_t chunks0 = arena_stats().chunks;
  g_nfill = 0;
  for (;;) {
    cr_assert_lt(g_nfill, 64);
    char* p = alloc(kArenaMaxSpan / kPage);
    g_fill[g_nfill++] = p;
    if (arena_stats().chunks > chunks0) return p;
  }
}

}  // namespace

Test(page_arena, spans_come_from_registered_chunks_and_are_counted) {
  arena_trim();
  ArenaStats st0 = arena_stats();
  char* p = alloc(1);
  char* q = alloc(7);
  ArenaStats st1 = arena_stats();
  cr_assert_eq(st1.used_bytes, st0.used_bytes + 8 * kPage);
  cr_assert_geq(st1.chunks, 1u);
  cr_assert_eq(st1.mapped_bytes, st1.chunks * kArenaChunkSize);
  cr_assert_neq(chunk_of(p), p, "page 0 of a chunk is its header, never a span");
  cr_assert_eq(region_map_lookup(p), kRegionSpan);
  cr_assert_eq(region_map_lookup(q + 7 * kPage - 1), kRegionSpan);
  memset(p, 1, kPage);
  memset(q, 2, 7 * kPage);  // writable, and the two spans do not overlap
  cr_assert_eq(p[kPage - 1], 1);
  cr_assert(q + 7 * kPage <= p || p + kPage <= q, "spans overlap");
  cr_assert(arena_is_valid());
  arena_free(q, 7 * kPage);
  arena_free(p, kPage);
  ArenaStats st2 = arena_stats();
  cr_assert_eq(st2.used_bytes, st0.used_bytes);
  cr_assert_geq(st2.dirty_bytes, 8 * kPage, "freed pages stay resident (dirty) for reuse");
  cr_assert(arena_is_valid());
}

Test(page_arena, first_fit_reuses_the_lowest_hole) {
  char* opener = open_new_chunk();
  char* c = chunk_of(opener);
  cr_assert_eq(opener, c + kPage, "a new chunk is carved from page 1");
  // The newest chunk is searched first: these follow the opener.
  char* a = alloc(3);
  char* b = alloc(2);
  char* d = alloc(1);
  cr_assert_eq(a, opener + kArenaMaxSpan);
  cr_assert_eq(b, a + 3 * kPage);
  cr_assert_eq(d, b + 2 * kPage);
  arena_free(a, 3 * kPage);
  cr_assert_eq(alloc(2), a, "a 2-page span fits the 3-page hole first");
  cr_assert_eq(alloc(4), d + kPage, "4 pages do not fit the 1-page remainder");
  cr_assert_eq(alloc(1), a + 2 * kPage, "the remainder of the hole is used next");
  // Freed neighbours merge: free b and the hole's pages around it → one 6-page hole at a.
  arena_free(a, 2 * kPage);
  arena_free(a + 2 * kPage, kPage);
  arena_free(b, 2 * kPage);
  cr_assert_eq(alloc(5), a, "adjacent free spans form one hole");
  cr_assert(arena_is_valid());
}

// Resident free pages first: a span goes into a run of dirty pages when one is long enough,
// even past a lower hole of decommitted pages; else first fit as before.
Test(page_arena, dirty_pages_are_reused_before_decommitted_ones) {
  char* opener = open_new_chunk();
  char* a = alloc(4);
  char* b = alloc(1);
  char* c = alloc(4);
  char* d = alloc(1);
  cr_assert_eq(a, opener + kArenaMaxSpan);
  cr_assert_eq(c, b + kPage);
  arena_free(a, 4 * kPage);
  cr_assert(arena_trim());  // a's pages decommitted: a clean hole below c
  arena_free(c, 4 * kPage);  // c's pages stay resident
  cr_assert_eq(arena_stats().dirty_bytes, 4 * kPage);
  bool zeroed = true;
  char* e = static_cast<char*>(arena_alloc(3 * kPage, &zeroed));
  cr_assert_eq(e, c, "three pages go into the resident hole, not the lower decommitted one");
  cr_assert_not(zeroed);
  cr_assert_eq(arena_stats().dirty_bytes, kPage);
  cr_assert_eq(alloc(2), a, "no resident run of two pages is left: first fit");
  cr_assert_eq(alloc(1), c + 3 * kPage, "the resident page next");
  cr_assert(arena_is_valid());
  (void)d;
}

Test(page_arena, reuse_takes_dirty_pages_out_of_the_dirty_count) {
  open_new_chunk();
  char* a = alloc(10);
  ArenaStats st0 = arena_stats();
  arena_free(a, 10 * kPage);
  cr_assert_eq(arena_stats().dirty_bytes, st0.dirty_bytes + 10 * kPage);
  cr_assert_eq(alloc(10), a);
  cr_assert_eq(arena_stats().dirty_bytes, st0.dirty_bytes);
  cr_assert(arena_is_valid());
}

// arena_alloc's `zeroed`: true only for spans no byte of which was written since the chunk was
// mapped or the page decommitted (calloc then skips its memset and the page faults); a span
// over pages just freed dirty says false. Whenever it says true, the span reads as zero.
Test(page_arena, zeroed_spans_are_untouched_pages_only) {
  open_new_chunk();
  bool z = false;
  char* a = static_cast<char*>(arena_alloc(8 * kPage, &z));
  cr_assert_not_null(a);
  cr_assert(z, "a span from a fresh chunk's untouched pages is zeroed");
  memset(a, 0x5C, 8 * kPage);
  arena_free(a, 8 * kPage);
  char* b = static_cast<char*>(arena_alloc(8 * kPage, &z));
  cr_assert_eq(b, a, "first fit takes the freed pages back");
  cr_assert_not(z, "pages freed dirty are not zeroed");
  cr_assert_eq(b[0], 0x5C);
  // Half of the next span over the dirty pages: still not zeroed.
  arena_free(b, 8 * kPage);
  char* c = static_cast<char*>(arena_alloc(16 * kPage, &z));
  cr_assert_eq(c, a);
  cr_assert_not(z, "a span of which some pages are dirty is not zeroed");
  memset(c, 0x5D, 16 * kPage);
  arena_free(c, 16 * kPage);
  arena_trim();  // decommits: the pages read as zero again
  char* d = static_cast<char*>(arena_alloc(16 * kPage, &z));
  cr_assert_not_null(d);
  cr_assert(z, "decommitted pages are zeroed");
  for (size_t i = 0; i < 16 * kPage; ++i)
    if (d[i] != 0) cr_assert_fail("byte %zu of a zeroed span is %d", i, d[i]);
  arena_free(d, 16 * kPage);
  // Random spans: whenever zeroed is said, every byte is zero.
  char* live[32] = {};
  size_t len[32] = {};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int step = 0; step < 2000; ++step) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int i = int(x % 32);
    if (live[i] != nullptr) {
      arena_free(live[i], len[i]);
      live[i] = nullptr;
      if (x % 97 == 0) arena_trim();
      continue;
    }
    len[i] = (1 + (x >> 8) % 40) * kPage;
    live[i] = static_cast<char*>(arena_alloc(len[i], &z));
    cr_assert_not_null(live[i]);
    if (z) {
      size_t k = 0;
      while (k < len[i] && live[i][k] == 0) ++k;
      cr_assert_eq(k, len[i], "zeroed span %p has byte %zu set", static_cast<void*>(live[i]), k);
    }
    live[i][(x >> 20) % len[i]] = 1;  // dirty one page of it
  }
  for (int i = 0; i < 32; ++i)
    if (live[i] != nullptr) arena_free(live[i], len[i]);
  for (int i = 0; i < g_nfill; ++i) arena_free(g_fill[i], kArenaMaxSpan);
  cr_assert(arena_is_valid());
}

Test(page_arena, empty_chunks_stay_mapped_until_trim) {
  arena_trim();
  char* first = open_new_chunk();
  char* older = chunk_of(first);
  char* x = alloc(4);  // in the same (newest) chunk
  cr_assert_eq(chunk_of(x), older);
  char* second = open_new_chunk();
  char* newest = chunk_of(second);
  cr_assert_neq(newest, older);
  ArenaStats st0 = arena_stats();
  arena_free(first, kArenaMaxSpan);
  arena_free(x, 4 * kPage);
  // Well under the dirty limit: the empty chunk stays mapped for reuse.
  cr_assert_eq(arena_stats().chunks, st0.chunks, "an empty chunk is kept while under the dirty limit");
  cr_assert_eq(region_map_lookup(older + kPage), kRegionSpan);
  cr_assert(arena_is_valid());
  for (int i = 0; i < g_nfill; ++i) arena_free(g_fill[i], kArenaMaxSpan);
  cr_assert(arena_trim(), "trim has empty chunks to release");
  cr_assert_eq(region_map_lookup(older + kPage), kRegionNone, "trim unmaps empty chunks and clears their entries");
  cr_assert_eq(region_map_lookup(newest + kPage), kRegionNone, "trim unmaps the newest empty chunk too");
  cr_assert_eq(arena_stats().dirty_bytes, 0u, "trim decommits every free page");
  cr_assert(arena_is_valid());
}

// Pages that stayed free through a whole decay period go back at the next pass: empty chunks
// unmapped oldest first (never the newest, which is decommitted instead).
Test(page_arena, pages_free_for_a_whole_period_go_back_oldest_chunks_first) {
  arena_trim();
  const int n = 12;  // chunks' worth of 1 MiB spans
  static char* spans[64];
  static char* opened[64];
  int nspans = 0, nopened = 0;
  for (int i = 0; i < 2 * n; ++i) {
    uint64_t before = arena_stats().chunks;
    char* a = alloc(kArenaMaxSpan / kPage);
    memset(a, 1, kArenaMaxSpan);
    if (arena_stats().chunks > before) opened[nopened++] = chunk_of(a);
    spans[nspans++] = a;
  }
  cr_assert_geq(nopened, n - 1);
  char* newest = opened[nopened - 1];
  arena_decay();  // starts a period
  for (int i = 0; i < nspans; ++i) arena_free(spans[i], kArenaMaxSpan);
  ArenaStats st = arena_stats();
  cr_assert_geq(st.dirty_bytes, size_t(nspans) * kArenaMaxSpan, "under the bound: everything freed stays resident");
  uint64_t unmaps0 = os_counters().munmap_calls;
  arena_decay();  // they were freed during this period: the next one starts with them free
  arena_decay();  // and none was needed through it
  // (the idle-decay thread may have run this pass already: the outcome is the same)
  cr_assert_eq(arena_stats().dirty_bytes, 0u, "pages free through the period went back");
  cr_assert_geq(os_counters().munmap_calls, unmaps0);
  cr_assert_eq(region_map_lookup(opened[0] + kPage), kRegionNone, "the oldest empty chunk is unmapped");
  cr_assert_eq(region_map_lookup(newest + kPage), kRegionSpan, "the newest chunk stays mapped (decommitted)");
  cr_assert(arena_is_valid());
}

// Pages reused during the period are not returned: only the period's minimum goes.
Test(page_arena, pages_reused_during_the_period_stay) {
  arena_trim();
  static char* spans[16];
  for (char*& s : spans) {
    s = alloc(kArenaMaxSpan / kPage);
    memset(s, 2, kArenaMaxSpan);
  }
  for (int i = 0; i < 16; ++i) arena_free(spans[i], kArenaMaxSpan);
  arena_decay();  // the period starts with these 16 MiB free
  for (int i = 0; i < 12; ++i) spans[i] = alloc(kArenaMaxSpan / kPage);  // 12 of them reused
  for (int i = 0; i < 12; ++i) arena_free(spans[i], kArenaMaxSpan);
  size_t before = arena_stats().dirty_bytes;
  arena_decay();
  size_t after = arena_stats().dirty_bytes;
  cr_assert_leq(after, before - 3 * kArenaMaxSpan, "the ~4 MiB never reused go (dirty %zu -> %zu)", before, after);
  cr_assert_geq(after, 11 * kArenaMaxSpan, "the reused part stays resident (dirty %zu)", after);
  cr_assert(arena_is_valid());
}

Test(page_arena, trim_decommits_free_pages_of_live_chunks) {
  char* keep = alloc(1);
  char* a = alloc(16);
  memset(a, 0x77, 16 * kPage);
  arena_free(a, 16 * kPage);
  cr_assert_geq(arena_stats().dirty_bytes, 16 * kPage);
  uint64_t madv0 = os_counters().madvise_calls;
  cr_assert(arena_trim());
  cr_assert_eq(arena_stats().dirty_bytes, 0u);
  cr_assert_gt(os_counters().madvise_calls, madv0);
  cr_assert_eq(region_map_lookup(keep), kRegionSpan, "a chunk with a live span stays");
  char* b = alloc(16);
  cr_assert_eq(b[0], 0, "decommitted pages read as zero when reused");  // (if b reuses a's pages)
  cr_assert_not(arena_trim() && arena_stats().dirty_bytes != 0);
  cr_assert(arena_is_valid());
}

// The bound: at most kArenaDirtyMin plus the room to the recent peak of pages in live spans.
// Holes that new spans cannot use (255-page holes, 256-page requests) make the arena grow
// back to its peak with the old holes still resident: then the free pages above the bound go
// back at the next free, decommitted in chunks that still have live spans.
Test(page_arena, over_the_bound_tied_to_the_recent_peak_free_pages_go_back) {
  decay_thread_set_worker(nullptr, false);  // no background pass: this test is about the bound
  arena_trim();
  const size_t hole = (kArenaPagesPerChunk - 2) / 2;  // 255 pages: [hdr][span][pin][span]
  const int chunks = int(kArenaDirtyMin / kArenaChunkSize) + 8;
  static char* spans[256];
  static char* pins[128];
  static char* big[256];
  cr_assert_leq(chunks, 128);
  static char* junk[64];
  int n = 0, njunk = 0;
  auto page_of = [](char* p) { return size_t(p - chunk_of(p)) / kPage; };
  for (int i = 0; i < chunks; ++i) {
    char* a = alloc(hole);
    while (page_of(a) != 1) {  // fills the room of older chunks until a new chunk opens
      cr_assert_lt(njunk, 64);
      junk[njunk++] = a;
      a = alloc(hole);
    }
    spans[n++] = a;
    pins[i] = alloc(1);
    spans[n++] = alloc(hole);
    cr_assert(page_of(pins[i]) == 1 + hole && page_of(spans[n - 1]) == 2 + hole && chunk_of(pins[i]) == chunk_of(a),
              "layout [header][span][pin][span] in chunk %d", i);
  }
  for (int i = 0; i < n; ++i) memset(spans[i], 3, hole * kPage);
  uint64_t madv0 = os_counters().madvise_calls;
  for (int i = 0; i < n; ++i) arena_free(spans[i], hole * kPage);
  ArenaStats st = arena_stats();
  cr_assert_eq(os_counters().madvise_calls, madv0, "within the room to the peak nothing is decommitted");
  cr_assert_geq(st.dirty_bytes, size_t(n) * hole * kPage);
  // As many pages again, in 256-page spans that fit no hole: new chunks, back at the peak.
  const int nbig = int(size_t(n) * hole / (kArenaMaxSpan / kPage));
  for (int i = 0; i < nbig; ++i) big[i] = alloc(kArenaMaxSpan / kPage);
  cr_assert_eq(os_counters().madvise_calls, madv0, "allocation alone releases nothing");
  arena_free(big[0], kArenaMaxSpan);
  st = arena_stats();

  cr_assert_gt(os_counters().madvise_calls, madv0, "over the bound, free pages are decommitted");
  size_t bound = kArenaDirtyMin + (st.recent_peak_bytes - st.used_bytes);
  cr_assert_leq(st.dirty_bytes, bound, "%lu dirty bytes over the bound %zu", (unsigned long)st.dirty_bytes, bound);
  cr_assert_geq(st.dirty_bytes + hole * kPage, bound, "down to the bound, not far below it");
  cr_assert(arena_is_valid());
  for (int i = 1; i < nbig; ++i) arena_free(big[i], kArenaMaxSpan);
  for (int i = 0; i < chunks; ++i) arena_free(pins[i], kPage);
  for (int i = 0; i < njunk; ++i) arena_free(junk[i], hole * kPage);
  cr_assert(arena_is_valid());
}

Test(page_arena, largest_span_and_many_small_ones) {
  char* big = alloc(kArenaMaxSpan / kPage);
  memset(big, 0x11, kArenaMaxSpan);
  static char* small[600];
  for (char*& s : small) s = alloc(1);  // more than one chunk's worth
  for (size_t i = 0; i < 600; ++i)
    for (size_t j = i + 1; j < 600 && j < i + 4; ++j) cr_assert_neq(small[i], small[j]);
  cr_assert(arena_is_valid());
  for (char* s : small) arena_free(s, kPage);
  arena_free(big, kArenaMaxSpan);
  cr_assert(arena_is_valid());
}

#if !HAKMEM_BUILD_RELEASE
Test(page_arena, double_free_of_a_span_is_fatal_in_debug, .signal = SIGABRT, .init = cr_redirect_stderr) {
  char* p = alloc(2);
  arena_free(p, 2 * kPage);
  arena_free(p, 2 * kPage);
}
#endif

// A new chunk comes from freed Large memory when the page heap holds an aligned 2 MiB of it:
// no new mapping, no page faults for the pages it hands out (they are resident), and its
// free pages count as dirty so that the bound and the decay can return them.
// Freed Large memory that was written is resident: a span goes into a chunk cut from it
// before the never-used pages of an existing chunk, and of that chunk only the pages the
// Large block wrote count dirty (the others are decommitted, so they read as zero even if
// they had been swapped out).
Test(page_arena, freed_large_memory_before_clean_pages) {
  large_trim();
  arena_trim();
  char* opener = open_new_chunk();  // a chunk with clean pages after its first span
  (void)opener;
  const size_t big = 6 * 1024 * 1024;
  bool fresh = false;
  char* l = static_cast<char*>(large_alloc(big, &fresh));
  cr_assert_not_null(l);
  // Write every page but those of one 512 KiB stretch in each 2 MiB of the block.
  for (size_t off = 0; off < big; off += kPage)
    if (((uintptr_t(l) + off) & (kArenaChunkSize - 1)) < kArenaChunkSize - 512 * 1024) l[off] = 1;
  large_free(l, big);
  uint64_t chunks0 = arena_stats().chunks;
  char* p = alloc(64);
  char* c = chunk_of(p);
  cr_assert_eq(arena_stats().chunks, chunks0 + 1, "a chunk was cut from the freed Large memory");
  cr_assert(c >= l && c + kArenaChunkSize <= l + big, "the span's chunk %p is not inside the freed Large memory %p", c, l);
  uint64_t faults0 = os_minor_faults();
  memset(p, 2, 64 * kPage);
  cr_assert_lt(os_minor_faults() - faults0, 4u, "the span is on pages the Large block wrote");
  ArenaStats st = arena_stats();
  cr_assert_eq(st.dirty_bytes, kArenaChunkSize - kPage - 512 * 1024 - 64 * kPage,
               "only the written pages of the chunk count dirty (%zu)", size_t(st.dirty_bytes));
  // The written pages left after p: 319, one run; a span of 256 takes them first.
  char* q = alloc(256);
  cr_assert_eq(q, p + 64 * kPage, "the next written pages, not the unwritten stretch");
  cr_assert_eq(arena_stats().dirty_bytes, (383 - 64 - 256) * kPage);
  cr_assert(arena_is_valid());
  arena_trim();
  large_trim();
}

Test(page_arena, a_new_chunk_comes_from_freed_large_memory) {
  large_trim();
  arena_trim();
  const size_t big = 6 * 1024 * 1024;
  bool fresh = false;
  char* l = static_cast<char*>(large_alloc(big, &fresh));
  cr_assert_not_null(l);
  memset(l, 0x5A, big);  // resident
  large_free(l, big);
  cr_assert_eq(large_stats().cached_bytes, big, "the page heap keeps the freed buffer");
  char* p = open_new_chunk();
  char* c = chunk_of(p);
  cr_assert(c >= l && c + kArenaChunkSize <= l + big, "the new chunk %p is not inside the freed Large memory %p", c, l);
  cr_assert_eq(large_stats().cached_bytes, big - kArenaChunkSize, "the chunk left the page heap");
  cr_assert_eq(region_map_lookup(c), kRegionSpan);
  uint64_t faults0 = os_minor_faults();
  memset(p, 1, kArenaMaxSpan);
  cr_assert_lt(os_minor_faults() - faults0, 8u, "the chunk's pages were resident");
  ArenaStats st = arena_stats();
  cr_assert_geq(st.dirty_bytes, kArenaChunkSize - kPage - kArenaMaxSpan, "the chunk's free pages are counted dirty");
  cr_assert(arena_is_valid());
  for (int i = 0; i < g_nfill; ++i) arena_free(g_fill[i], kArenaMaxSpan);
  cr_assert(arena_is_valid());
  arena_trim();
  large_trim();
}
