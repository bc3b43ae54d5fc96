// test_span_cache.cpp — the per-thread stash of freed arena spans (span_cache.h): a freed span
// comes back to the thread's next span allocation of its size (up to a quarter smaller)
// without the arena, the bounds (entries, bytes, the largest span stashed), and the stash goes
// back to the arena at malloc_trim, at the thread's decay part and at thread exit. A double
// free of a stashed span is still caught at the call (tests/api/test_misuse.cpp).
#include <criterion/criterion.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "decay_thread.h"
#include "hakmem.h"
#include "page_arena.h"
#include "prof.h"
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

// The arena may start the idle-decay thread while it takes spans back from the stash (its
// first start, once 32 MiB of free pages are resident: decay_thread.h), and pthread_create
// allocates the new thread's DTV with malloc on the thread whose stash is going back. With
// every allocation sampled by the heap profiler that malloc is a one-page span: it must not
// be one of the spans the arena is taking back (it was: the block lived on pages the arena
// counted free, and a stress run under the profiler crashed once those pages were unmapped).
namespace {
int thread_count() {  // without malloc: a freed block would sit in this thread's stash
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (got <= 0) return -1;
  buf[got] = 0;
  const char* at = strstr(buf, "\nThreads:");
  return at != nullptr ? atoi(at + 9) : -1;
}
struct Stasher {
  char* starts[kSpanCacheEntries];
  size_t bytes;
  std::atomic<int> state{0};  // 1: stashed, 2: may exit
};
void* stash_one_page_spans_and_wait(void* arg) {
  auto* s = static_cast<Stasher*>(arg);
  void* p[kSpanCacheEntries];
  for (int i = 0; i < kSpanCacheEntries; ++i) {
    p[i] = hak_malloc(100);  // sampled: a span of one page
    s->starts[i] = span_start(p[i]);
    s->bytes = span_bytes(p[i]);
  }
  for (void* q : p) hak_free(q);
  s->state.store(1);
  while (s->state.load() != 2) sched_yield();
  return nullptr;  // the exit hook flushes the stash: the arena starts the decay thread
}
}  // namespace

Test(span_cache, a_malloc_made_while_the_stash_goes_back_never_gets_one_of_its_spans) {
  cr_assert(decay_thread_available(), "the idle-decay thread is disabled here");
  const int threads0 = thread_count();
  hak_prof_set(1);  // every allocation sampled
  static Stasher s;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, stash_one_page_spans_and_wait, &s), 0);
  while (s.state.load() != 1) sched_yield();
  cr_assert_eq(s.bytes, kArenaPage, "a sampled 100-byte block is not a span of one page");
  // Free arena pages resident: just under the decay thread's start (32 MiB), so that the
  // stasher's flush crosses it. Spans of 1 MiB (never stashed) are freed one at a time; the
  // last step is cut to size by a span taken from those free pages.
  constexpr size_t kStart = kDecayThreadStartBytes;
  constexpr size_t kBig = kArenaMaxSpan;
  static void* big[40];
  for (void*& b : big) cr_assert_not_null(b = hak_malloc(kBig - kProfLead));
  span_cache_flush();  // nothing of this thread's own stash serves the cut below
  int freed = 0;
  while (arena_dirty_bytes() + kBig < kStart) hak_free(big[freed++]);
  size_t want = kStart - kArenaPage * 2;  // the stasher gives back 8 pages
  size_t dirty = arena_dirty_bytes();
  cr_assert_lt(dirty, kStart);
  void* cut = nullptr;
  if (dirty < want) {
    cut = hak_malloc(dirty + kBig - want - kProfLead);  // from free pages: they are resident
    hak_free(big[freed++]);
  }
  dirty = arena_dirty_bytes();
  cr_assert(dirty >= kStart - kArenaPage * kSpanCacheEntries && dirty < kStart,
            "%zu bytes of free pages, not just under %zu", dirty, kStart);
  cr_assert_eq(thread_count(), threads0 + 1, "the decay thread started too early");
  s.state.store(2);
  cr_assert_eq(pthread_join(t, nullptr), 0);
  cr_assert_eq(thread_count(), threads0 + 1, "the stasher's exit did not start the decay thread");
  // A block that lives on one of the stasher's pages now (the new thread's DTV may) holds
  // pages the arena counts used.
  for (char* st : s.starts) {
    auto* h = reinterpret_cast<SpanHeader*>(st + kProfLead - sizeof(SpanHeader));
    if (span_is_live(h)) cr_assert(arena_span_is_used(st, s.bytes), "a live span at %p is on free arena pages", st);
  }
  hak_prof_set(0);
  hak_free(cut);
  for (int i = freed; i < 40; ++i) hak_free(big[i]);
  cr_assert(arena_is_valid());
}
