// test_span_cache.cpp — the per-thread stash of freed arena spans (span_cache.h): a freed span
// comes back to the thread's next span allocation of its size (up to a quarter smaller)
// without the arena, the bounds (entries, bytes, the largest span stashed), and the stash goes
// back to the arena at malloc_trim, at the thread's decay part and at thread exit. A double
// free of a stashed span is still caught at the call (tests/api/test_misuse.cpp).
#include <criterion/criterion.h>

#include <pthread.h>

#include "hakmem.h"
#include "page_arena.h"
#include "span.h"
#include "span_cache.h"
#include "tiny_heap.h"

using namespace hak;

namespace {

constexpr size_t KiB = 1024;

// The span (start, bytes) behind block p.
char* span_start(void* p) { return static_cast<char*>(p) - span_header_of(p)->offset; }
size_t span_bytes(void* p) { return size_t(span_header_of(p)->span_bytes); }

uint64_t arena_used() { return arena_stats().used_bytes; }

}  // namespace

Test(span_cache, a_freed_span_serves_the_next_request_of_its_size_without_the_arena) {
  hak_trim();
  cr_assert_eq(span_cache_bytes(), 0u, "trim empties the stash");
  void* p = hak_malloc(100 * KiB);
  cr_assert_not_null(p);
  char* s = span_start(p);
  size_t bytes = span_bytes(p);
  uint64_t used = arena_used();
  hak_free(p);
  cr_assert_eq(span_cache_bytes(), bytes, "the freed span is stashed");
  cr_assert_eq(arena_used(), used, "a stashed span is still the arena's used pages");
  void* q = hak_malloc(90 * KiB);  // a quarter smaller at most: the same span
  cr_assert_eq(span_start(q), s, "the stashed span came back");
  cr_assert_eq(span_bytes(q), bytes, "whole: its free gives all of it back");
  cr_assert_geq(hak_usable_size(q), 90 * KiB);
  cr_assert_eq(span_cache_bytes(), 0u);
  cr_assert_eq(span_header_of(q)->magic, kSpanMagicLive);
  hak_free(q);
  // Too small for it (more than a quarter smaller) or bigger: from the arena.
  void* r = hak_malloc(60 * KiB);
  cr_assert_neq(span_start(r), s, "a much smaller request took the stashed span");
  void* t = hak_malloc(120 * KiB);
  cr_assert_neq(span_start(t), s, "a bigger request took the stashed span");
  cr_assert_eq(span_cache_bytes(), bytes);
  hak_free(r);
  hak_free(t);
  hak_trim();
  cr_assert_eq(span_cache_bytes(), 0u);
  cr_assert(arena_is_valid());
}

Test(span_cache, the_stash_keeps_the_newest_spans_within_its_bounds) {
  hak_trim();
  uint64_t used0 = arena_used();
  static void* ps[kSpanCacheEntries + 4];
  static char* starts[kSpanCacheEntries + 4];
  size_t each = 0;
  for (int i = 0; i < kSpanCacheEntries + 4; ++i) {
    cr_assert_not_null(ps[i] = hak_malloc(40 * KiB));
    starts[i] = span_start(ps[i]);
    each = span_bytes(ps[i]);
  }
  for (void* p : ps) hak_free(p);
  cr_assert_eq(span_cache_bytes(), kSpanCacheEntries * each, "the stash holds %d spans", kSpanCacheEntries);
  cr_assert_eq(arena_used(), used0 + kSpanCacheEntries * each, "the oldest went back to the arena");
  // The newest comes back first.
  void* q = hak_malloc(40 * KiB);
  cr_assert_eq(span_start(q), starts[kSpanCacheEntries + 3]);
  hak_free(q);
  // A span bigger than half the stash's bytes is never stashed; big ones push the others out.
  void* big = hak_malloc(kSpanCacheBytes / 2 + 64 * KiB);
  uint64_t used1 = arena_used();
  size_t stashed = span_cache_bytes();
  hak_free(big);
  cr_assert_eq(span_cache_bytes(), stashed, "a span over half the bound was stashed");
  cr_assert_lt(arena_used(), used1);
  static void* halves[3];
  for (void*& h : halves) cr_assert_not_null(h = hak_malloc(kSpanCacheBytes / 2 - 64 * KiB));
  for (void* h : halves) hak_free(h);
  cr_assert_leq(span_cache_bytes(), kSpanCacheBytes, "the stash went over its bound");
  hak_trim();
  cr_assert_eq(span_cache_bytes(), 0u);
  cr_assert_eq(arena_used(), used0, "every span went back at trim");
  cr_assert(arena_is_valid());
}

namespace {
struct ExitResult {
  size_t stashed_before_exit;
  uint64_t used_before_exit;
};
void* free_spans_and_exit(void* arg) {
  auto* r = static_cast<ExitResult*>(arg);
  void* p[4];
  for (void*& q : p) q = hak_malloc(64 * KiB);
  for (void* q : p) hak_free(q);
  r->stashed_before_exit = span_cache_bytes();
  r->used_before_exit = arena_used();
  return nullptr;
}
}  // namespace

Test(span_cache, a_thread_that_exits_gives_its_stash_back) {
  hak_trim();
  uint64_t used0 = arena_used();
  ExitResult r{};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, free_spans_and_exit, &r), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
  cr_assert_gt(r.stashed_before_exit, 0u, "the thread stashed nothing");
  cr_assert_eq(r.used_before_exit, used0 + r.stashed_before_exit);
  cr_assert_eq(arena_used(), used0, "the exited thread's stash stayed out of the arena");
  cr_assert(arena_is_valid());
}

Test(span_cache, the_threads_decay_part_gives_its_stash_back) {
  hak_trim();
  uint64_t used0 = arena_used();
  void* p = hak_malloc(200 * KiB);
  hak_free(p);
  cr_assert_gt(span_cache_bytes(), 0u);
  tiny_decay_thread();
  cr_assert_eq(span_cache_bytes(), 0u);
  cr_assert_eq(arena_used(), used0);
}
