// test_tiny_heap.cpp — TLS free lists (tiny_heap.h): refill batches (half the cap after an
// overflow, a quarter after a refill but at least 4 blocks, a sixteenth the first time), pops without refill,
// pushes up to the cap, overflow flushing down to half (or everything, with a smaller cap, in
// a thread that only frees the class, and after kIdleRefills refills of other classes, its
// blocks and emptied run given back), tiny_flush back to the owning runs, thread exit, and
// the tiny_heap_is_valid checker.
//
// Each test empties the calling thread's list of its class first (tiny_flush), so it starts
// from a known list whatever Criterion's start-up allocated.
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include <atomic>

#include "canary.h"
#include "hakmem.h"
#include "os.h"
#include "region_map.h"
#include "run_purge.h"
#include "tiny_heap.h"
#include "seed_heap.h"

using namespace hak;

// These tests follow blocks into their runs: the release variant's seed heap, which serves each
// class's first blocks (seed_heap.h; tested in test_seed_heap.cpp), is off in this program.
__attribute__((constructor)) static void seed_off() { seed_disable(); }

namespace {

// The request that gets a block of `bytes` (a class size) in every variant: the secure one adds
// its canary's kCanaryTail to a request (canary.h).
size_t ask(size_t bytes) { return bytes - kCanaryTail; }
// hak_malloc(n) for a block of n's class in every variant: the largest request of that class.
void* alloc_in_class(size_t n) {
  if (n == 0 || n > kMidMax) return hak_malloc(n);
  return hak_malloc(class_to_size(size_to_class(n)) - kCanaryTail);
}
// The size of block p's class.
size_t block_bytes(const void* p) { return class_to_size(region_map_lookup(p)); }

// Classes with different caps: small Tiny (cap 256), large Tiny, Mid.
const size_t kSizes[] = {48, 880, 5000};

// Empties the list and gives back the blocks reserved for the class (release: a refill that
// carves reserves its fresh blocks instead of listing them; tiny_heap.h, TlsBump).
void empty_list(int cls) {
  tiny_flush(cls, t_cache[cls].count());
  tiny_drop_reserved(cls);
  cr_assert_eq(tiny_reserved(cls), 0u);
  cr_assert_eq(t_cache[cls].count(), 0u);
  cr_assert_null(t_cache[cls].head);
}

bool exhausted(const Slab* s) { return s->nfree == 0 && s->bump == s->end; }

uint32_t list_length(void* head) {
  uint32_t n = 0;
  for (void* b = head; b != nullptr; b = link_load(b)) ++n;
  return n;
}

// b is back in its run: carved, and its out-bit clear.
bool in_run(const Slab* s, const void* b) {
  uint32_t i = run_block_index(s, b);
  if (i == UINT32_MAX || static_cast<const char*>(b) >= s->bump) return false;
  return !((out_word(run_out_bits(s), i >> 6) >> (i & 63)) & 1);
}

void* g_blocks[1024];

// Allocates cap + 1 blocks of n bytes and frees them: the class's last slow-path event on this
// thread is then an overflow. Leaves the list empty.
void overflow_then_empty(size_t n, int cls) {
  uint32_t cap = class_cache_cap(cls);
  cr_assert_lt(cap + 1, sizeof g_blocks / sizeof g_blocks[0]);
  for (uint32_t i = 0; i <= cap; ++i) cr_assert_not_null(g_blocks[i] = alloc_in_class(n));
  empty_list(cls);
  for (uint32_t i = 0; i <= cap; ++i) hak_free(g_blocks[i]);
  empty_list(cls);
}

}  // namespace

Test(tiny_heap, refill_takes_a_batch_of_half_the_cap_from_one_run_after_an_overflow) {
  for (size_t n : kSizes) {
    int cls = size_to_class(n);
    overflow_then_empty(n, cls);
    uint32_t cap = class_cache_cap(cls);
    void* p = alloc_in_class(n);
    cr_assert_not_null(p);
    cr_assert_eq(t_cache[cls].cap, cap, "class %d: a refill restores the full cap, not %u", cls, t_cache[cls].cap);
    cr_assert_eq(region_map_lookup(p), cls);
    Slab* s = slab_of_block(p);
    cr_assert_eq(s->cls, cls);
    cr_assert_not_null(s->owner, "the run is owned by this thread's heap");
    uint32_t got = t_cache[cls].count() + 1;
    uint32_t want = cap / 2;
    if (exhausted(s)) cr_assert_leq(got, want, "class %d: batch %u > %u", cls, got, want);
    else cr_assert_eq(got, want, "class %d: batch of %u blocks from a run with room, want cap/2 = %u", cls, got, want);
    cr_assert_eq(list_length(t_cache[cls].head), t_cache[cls].count(), "count matches the list");
    cr_assert_geq(s->used, got, "blocks in the TLS list count as used");
    for (void* b = t_cache[cls].head; b != nullptr; b = link_load(b)) {
      cr_assert_eq(slab_of_block(b), s, "a batch comes from one run");
      cr_assert_neq(b, p);
      size_t off = size_t(static_cast<char*>(b) - slab_data_start(superslab_of_slab(s), slab_index_in_superslab(s)));
      cr_assert_eq(off % class_to_size(cls), 0u, "block on a block boundary");
    }
    // Pops: the list's blocks, in list order, with no refill (the run's count does not move).
    uint32_t used = s->used, left = t_cache[cls].count();
    for (uint32_t i = 0; i < left; ++i) {
      void* expect = t_cache[cls].head;
      void* q = alloc_in_class(n);
      cr_assert_eq(q, expect, "malloc pops the list head");
      cr_assert_eq(t_cache[cls].count(), left - i - 1);
      g_blocks[i] = q;
    }
    cr_assert_eq(s->used, used, "pops do not touch the run");
    cr_assert_null(t_cache[cls].head);
    // The next malloc refills again: a second refill in a row (the thread allocates more of the
    // class than it frees) takes a quarter of the cap, at least 4 blocks.
    void* r = alloc_in_class(n);
    cr_assert_not_null(r);
    uint32_t got2 = t_cache[cls].count() + 1, want2 = cap / 4 > 4 ? cap / 4 : 4;
    if (exhausted(slab_of_block(r))) cr_assert_leq(got2, want2, "class %d: batch %u > %u", cls, got2, want2);
    else cr_assert_eq(got2, want2, "class %d: second refill in a row took %u blocks, want max(cap/4, 4) = %u", cls, got2, want2);
    cr_assert(tiny_heap_is_valid());
    hak_free(r);
    for (uint32_t i = 0; i < left; ++i) hak_free(g_blocks[i]);
    hak_free(p);
    cr_assert(tiny_heap_is_valid());
  }
}

Test(tiny_heap, free_pushes_until_the_cap_then_flushes_down_to_half) {
  for (size_t n : kSizes) {
    int cls = size_to_class(n);
    hak_free(alloc_in_class(n));
    uint32_t cap = t_cache[cls].cap;
    cr_assert_lt(cap + 1, sizeof g_blocks / sizeof g_blocks[0]);
    for (uint32_t i = 0; i <= cap; ++i) cr_assert_not_null(g_blocks[i] = alloc_in_class(n));
    empty_list(cls);
    for (uint32_t i = 0; i < cap; ++i) {
      hak_free(g_blocks[i]);
      cr_assert_eq(t_cache[cls].count(), i + 1, "class %d: free %u is a plain push", cls, i);
      cr_assert_eq(t_cache[cls].head, g_blocks[i]);
    }
    hak_free(g_blocks[cap]);  // count cap + 1 > cap: flush
    cr_assert_eq(t_cache[cls].count(), cap / 2, "class %d: overflow flushes down to cap/2, count %u", cls,
                 t_cache[cls].count());
    // The most recently freed blocks went back to their runs; the oldest stay cached.
    cr_assert_eq(t_cache[cls].head, g_blocks[cap / 2 - 1]);
    cr_assert_eq(list_length(t_cache[cls].head), cap / 2);
    for (uint32_t i = cap / 2; i <= cap; ++i) {
      Slab* s = slab_of_block(g_blocks[i]);
      cr_assert(in_run(s, g_blocks[i]) || s->owner == nullptr,
                "class %d: flushed block %u is neither on its run's free list nor in a released run", cls, i);
    }
    cr_assert(tiny_heap_is_valid());
  }
}

Test(tiny_heap, flush_moves_blocks_back_to_their_runs) {
  int cls = size_to_class(200);
  overflow_then_empty(200, cls);  // the run has returned blocks: the refill lists a batch of them
  void* p = alloc_in_class(200);  // refill; p keeps the run in use
  Slab* s = slab_of_block(p);
  uint32_t count = t_cache[cls].count();
  cr_assert_geq(count, 6u, "a refill of class %d should bring more than 6 blocks", cls);
  uint32_t used = s->used;
  void* first = t_cache[cls].head;
  tiny_flush(cls, 5);
  cr_assert_eq(t_cache[cls].count(), count - 5);
  cr_assert_eq(s->used, used - 5, "used drops by the blocks flushed");
  cr_assert(in_run(s, first), "the list head went to the run's free list");
  cr_assert(slab_is_valid(s));
  tiny_flush(cls, 100000);  // more than the list holds: flushes all
  cr_assert_eq(t_cache[cls].count(), 0u);
  cr_assert_null(t_cache[cls].head);
  cr_assert_eq(s->used, used - count, "only p is still out of the run");
  cr_assert(tiny_heap_is_valid());
  // The next malloc takes the flushed blocks back from the run's free list.
  void* q = alloc_in_class(200);
  cr_assert_eq(slab_of_block(q), s);
  cr_assert(tiny_heap_is_valid());
  hak_free(q);
  hak_free(p);
}

Test(tiny_heap, checker_catches_a_miscounted_run, .init = cr_redirect_stderr) {
  void* p = alloc_in_class(64);
  Slab* s = slab_of_block(p);
  cr_assert(tiny_heap_is_valid());
  s->used += 1;
  cr_assert_not(tiny_heap_is_valid(), "used + free + uncarved != capacity must be caught");
  s->used -= 1;
  int cls = s->cls;
  s->cls = uint8_t(cls == 1 ? 2 : 1);
  cr_assert_not(tiny_heap_is_valid(), "a run on the wrong class list must be caught");
  s->cls = uint8_t(cls);
  cr_assert(tiny_heap_is_valid());
  hak_free(p);
}

namespace {
struct ThreadResult {
  uint32_t count_before_exit;
  void* block;
};
void* alloc_free_exit(void* arg) {
  auto* r = static_cast<ThreadResult*>(arg);
  int cls = size_to_class(96);
  for (int i = 0; i < 100; ++i) g_blocks[i] = alloc_in_class(96);
  for (int i = 0; i < 100; ++i) hak_free(g_blocks[i]);
  r->count_before_exit = t_cache[cls].count();
  r->block = g_blocks[0];
  return nullptr;
}
}  // namespace

Test(tiny_heap, thread_exit_flushes_the_lists_and_hands_the_heap_back) {
  hak_free(alloc_in_class(8));
  TinyStats st0 = tiny_stats();
  ThreadResult r{};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, alloc_free_exit, &r), 0);
  pthread_join(t, nullptr);
  cr_assert_gt(r.count_before_exit, 0u, "the thread's list held blocks before it exited");
  TinyStats st1 = tiny_stats();
  cr_assert_eq(st1.heaps_live, st0.heaps_live, "the exited thread's heap is no longer live");
  cr_assert_eq(st1.heaps_cached, st0.heaps_cached + 1, "and is kept for the next thread");
  // Its blocks are back in the run, which is empty and no longer owned by a live heap's list.
  Slab* s = slab_of_block(r.block);
  cr_assert(s->cls == 0 || s->used == 0, "the exited thread's run still counts %u blocks out", s->used);
  // A new thread takes the cached heap.
  cr_assert_eq(pthread_create(&t, nullptr, alloc_free_exit, &r), 0);
  pthread_join(t, nullptr);
  cr_assert_eq(tiny_stats().heaps_cached, st1.heaps_cached, "a new thread reuses a cached heap");
}

namespace {
struct FreerResult {
  int cls;
  uint32_t blocks;                        // g_blocks[0..blocks) to free
  uint32_t count_after_overflow, cap_after_overflow;
  uint32_t cap_after_refill, refill_batch;
  uint32_t first_batch;                   // first refill of another class in this thread
  size_t first_size;
};

// Frees blocks another thread allocated (it never refilled the class), then allocates once.
void* free_others_blocks(void* arg) {
  auto* r = static_cast<FreerResult*>(arg);
  for (uint32_t i = 0; i < r->blocks; ++i) hak_free(g_blocks[i]);
  r->count_after_overflow = t_cache[r->cls].count();
  r->cap_after_overflow = t_cache[r->cls].cap;
  void* p = alloc_in_class(class_to_size(r->cls));
  r->cap_after_refill = t_cache[r->cls].cap;
  r->refill_batch = t_cache[r->cls].count() + 1;
  hak_free(p);
  int fc = size_to_class(r->first_size);
  void* q = alloc_in_class(r->first_size);
  r->first_batch = t_cache[fc].count() + 1;
  hak_free(q);
  return nullptr;
}
}  // namespace

Test(tiny_heap, a_thread_that_only_frees_a_class_flushes_it_all_and_caches_less) {
  for (size_t n : kSizes) {
    int cls = size_to_class(n);
    uint32_t cap = class_cache_cap(cls);
    FreerResult r{};
    r.cls = cls;
    r.blocks = cap + 1;  // the last free overflows
    r.first_size = 100;  // class 8 (112 B), cap 256: a first refill takes 16
    for (uint32_t i = 0; i < r.blocks; ++i) cr_assert_not_null(g_blocks[i] = alloc_in_class(n));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, nullptr, free_others_blocks, &r), 0);
    pthread_join(t, nullptr);
    uint32_t small = cap / 8 < 8 ? 8 : cap / 8;
    cr_assert_eq(r.count_after_overflow, 0u, "class %d: an overflow with no refill before flushes everything", cls);
    cr_assert_eq(r.cap_after_overflow, small, "class %d: and the cap drops to %u, not %u", cls, small,
                 r.cap_after_overflow);
    cr_assert_eq(r.cap_after_refill, cap, "class %d: a refill restores the cap", cls);
    cr_assert_leq(r.refill_batch, cap / 2, "class %d: refill after an overflow takes at most cap/2", cls);
    cr_assert_leq(r.first_batch, 16u, "a thread's first refill of a class takes at most cap/16");
    cr_assert_gt(r.first_batch, 0u);
    cr_assert(tiny_heap_is_valid());
  }
}

// A miss that would carve fresh blocks takes a block cached for one of the next four classes
// (at most 32 bytes or 1/8 larger) instead, if that list holds more than a quarter of its cap; an aligned request never does
// (it picked its class for the class's alignment); fresh blocks come at most 4 KiB at a time.
Test(tiny_heap, a_miss_borrows_from_a_neighbour_with_spare_blocks_but_not_for_aligned_requests) {
  pthread_t t;
  // In a new thread: no list of this thread has been refilled yet.
  auto body = [](void*) -> void* {
    const int c64 = size_to_class(64), c80 = size_to_class(80);
    cr_assert_eq(c80, c64 + 1);
    uint32_t spare = class_cache_cap(c80) / 4 + 8;
    static void* blocks[512];
    cr_assert_lt(spare, 512u);
    for (uint32_t i = 0; i < spare; ++i) blocks[i] = alloc_in_class(80);
    for (uint32_t i = 0; i < spare; ++i) hak_free(blocks[i]);
    cr_assert_geq(t_cache[c80].count(), spare, "the frees stay cached");
    uint32_t before = t_cache[c80].count();
    // The first malloc(64) of the thread: its run has nothing but fresh memory.
    void* p = alloc_in_class(64);
    cr_assert_not_null(p);
    cr_assert_eq(region_map_lookup(p), c80, "malloc(64) took an 80-byte block cached for the next class");
    cr_assert_eq(hak_usable_size(p), kCanary ? ask(64) : 80u);
    cr_assert_eq(t_cache[c80].count(), before - 1);
    cr_assert_null(t_cache[c64].head, "the borrowing class's list stays empty");
    // An aligned request of the same class carves its own, aligned block.
    void* q = hak_aligned_alloc(64, ask(64));
    cr_assert_not_null(q);
    cr_assert_eq(region_map_lookup(q), c64, "aligned_alloc(64, 64) must not borrow");
    cr_assert_eq(reinterpret_cast<uintptr_t>(q) % 64, 0u);
    uint32_t fresh = t_cache[c64].count() + 1;  // the first refill: a sixteenth of the cap
    cr_assert_leq(fresh * 64, 4096u, "at most 4 KiB of fresh blocks per refill");
    hak_free(p);
    hak_free(q);
    cr_assert_eq(t_cache[c80].count(), before, "the borrowed block came back to its own class's list");
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

// The borrowing window: up to four classes, at most max(32 bytes, 1/8) larger.
Test(tiny_heap, a_miss_borrows_only_within_32_bytes_or_an_eighth) {
  pthread_t t;
  auto body = [](void*) -> void* {
    static void* blocks[512];
    // Caches spare blocks of n bytes (more than a quarter of the class's cap).
    auto cache_spare = [](size_t n) {
      int c = size_to_class(n);
      uint32_t spare = class_cache_cap(c) / 4 + 8;
      cr_assert_lt(spare, 512u);
      for (uint32_t i = 0; i < spare; ++i) blocks[i] = alloc_in_class(n);
      for (uint32_t i = 0; i < spare; ++i) hak_free(blocks[i]);
      cr_assert_geq(t_cache[c].count(), spare);
    };
    // 512 B may take 576 B (four classes up, 1/8 larger).
    cache_spare(576);
    void* p = alloc_in_class(512);
    cr_assert_eq(block_bytes(p), 576u, "malloc(512) took a %zu-byte block", block_bytes(p));
    // 48 B may not take 96 B (48 bytes more: over max(32, 48/8)); it carves its own.
    cache_spare(96);
    void* q = alloc_in_class(48);
    cr_assert_eq(block_bytes(q), 48u, "malloc(48) took a %zu-byte block", block_bytes(q));
    // 1024 B (Tiny) never takes a Mid block, though 1056 B is within 1/8.
    cache_spare(1056);
    void* r = alloc_in_class(1024);
    cr_assert_eq(block_bytes(r), 1024u, "malloc(1024) took a %zu-byte block", block_bytes(r));
    hak_free(p);
    hak_free(q);
    hak_free(r);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

Test(tiny_heap, fresh_blocks_come_at_most_4_kib_at_a_time) {
  pthread_t t;
  auto body = [](void*) -> void* {
    const size_t n = 528;
    const int cls = size_to_class(n);
    static void* blocks[64];
    // Only allocations: every refill of a new run's class carves fresh memory.
    for (int i = 0; i < 64; ++i) {
      blocks[i] = alloc_in_class(n);
      cr_assert_not_null(blocks[i]);
      cr_assert_leq((t_cache[cls].count() + 1) * class_to_size(cls), 4096u + class_to_size(cls),
                    "refill %d carved %u blocks of %zu bytes", i, t_cache[cls].count() + 1, class_to_size(cls));
    }
    for (int i = 0; i < 64; ++i) hak_free(blocks[i]);
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

namespace {
// Handoff: a thread allocates blocks and exits (or waits to be told to); a new thread frees
// them first, then allocates.
struct Handoff {
  static constexpr int kBlocks = 64;
  static constexpr size_t kSize = 208;  // a class no other test here allocates
  void* blocks[kBlocks];
  ThreadHeap* maker_heap;
  std::atomic<bool> made{false};       // the maker has made its blocks
  std::atomic<bool> maker_may_exit{false};
  std::atomic<bool> took{false};       // the taker has its first heap
  std::atomic<bool> taker_may_go_on{false};
  ThreadHeap* first_heap;
  ThreadHeap* heap_after_refills;
};

void* make_blocks(void* arg) {
  auto* h = static_cast<Handoff*>(arg);
  for (void*& b : h->blocks) cr_assert_not_null(b = alloc_in_class(Handoff::kSize));
  h->maker_heap = tiny_current_heap();
  h->made.store(true);
  while (!h->maker_may_exit.load()) sched_yield();
  return nullptr;
}

// Takes a heap while the maker holds its own, and parks it after the maker's.
void* park_another_heap(void* arg) {
  auto* go = static_cast<std::atomic<int>*>(arg);
  hak_free(alloc_in_class(96));
  go->store(1);
  while (go->load() < 2) sched_yield();
  return nullptr;
}

// Frees the maker's blocks, allocates another class (first refill: heap_get), then, once
// the maker has exited, keeps refilling a third class.
void* take_over(void* arg) {
  auto* h = static_cast<Handoff*>(arg);
  for (void* b : h->blocks) hak_free(b);
  void* p = alloc_in_class(1000);
  h->first_heap = tiny_current_heap();
  hak_free(p);
  h->took.store(true);
  while (!h->taker_may_go_on.load()) sched_yield();
  static void* more[2048];
  for (void*& q : more) q = alloc_in_class(40);  // a refill every few mallocs
  h->heap_after_refills = tiny_current_heap();
  for (void* q : more) hak_free(q);
  cr_assert(tiny_heap_is_valid());
  return nullptr;
}
}  // namespace

Test(tiny_heap, a_thread_that_frees_an_exited_threads_blocks_takes_that_threads_heap) {
  auto* h = new Handoff;
  pthread_t maker, other, taker;
  cr_assert_eq(pthread_create(&maker, nullptr, make_blocks, h), 0);
  while (!h->made.load()) sched_yield();
  // Another heap, parked after the maker's: the cache would hand that one out first.
  std::atomic<int> go{0};
  cr_assert_eq(pthread_create(&other, nullptr, park_another_heap, &go), 0);
  while (go.load() < 1) sched_yield();
  h->maker_may_exit.store(true);
  cr_assert_eq(pthread_join(maker, nullptr), 0);
  go.store(2);
  cr_assert_eq(pthread_join(other, nullptr), 0);
  h->taker_may_go_on.store(true);
  cr_assert_eq(pthread_create(&taker, nullptr, take_over, h), 0);
  cr_assert_eq(pthread_join(taker, nullptr), 0);
  cr_assert_eq(h->first_heap, h->maker_heap, "the new thread took heap %p, not the maker's %p",
               static_cast<void*>(h->first_heap), static_cast<void*>(h->maker_heap));
  delete h;
}

Test(tiny_heap, a_thread_that_took_over_blocks_of_a_live_thread_switches_to_its_heap_once_it_exits) {
  auto* h = new Handoff;
  pthread_t maker, taker;
  cr_assert_eq(pthread_create(&maker, nullptr, make_blocks, h), 0);
  while (!h->made.load()) sched_yield();
  cr_assert_eq(pthread_create(&taker, nullptr, take_over, h), 0);
  while (!h->took.load()) sched_yield();
  cr_assert_neq(h->first_heap, h->maker_heap, "the maker's heap was still in use");
  h->maker_may_exit.store(true);
  cr_assert_eq(pthread_join(maker, nullptr), 0);  // parked now
  h->taker_may_go_on.store(true);
  cr_assert_eq(pthread_join(taker, nullptr), 0);
  cr_assert_eq(h->heap_after_refills, h->maker_heap, "after the maker exited the taker kept heap %p, not %p",
               static_cast<void*>(h->heap_after_refills), static_cast<void*>(h->maker_heap));
  delete h;
}

// The decay clock (decay.cpp): set far ahead, so that only the test's own passes run.
namespace hak::detail {
extern std::atomic<uint64_t> g_next_decay_ns;
extern std::atomic<uint64_t> g_decay_passes;  // passes run so far, by any thread
}

// A class's last empty run stays with the heap for the next refill, but a decay pass releases
// it when the class was not refilled since the pass before.
Test(tiny_heap, decay_releases_the_kept_empty_run_of_a_class_not_refilled_since_the_last_pass) {
  hak::detail::g_next_decay_ns.store(UINT64_MAX);
  pthread_t t;
  auto body = [](void*) -> void* {
    const size_t n = 1500;  // a Mid class no other step of this thread uses
    const int cls = size_to_class(n);
    static void* blocks[32];
    for (void*& b : blocks) cr_assert_not_null(b = alloc_in_class(n));
    for (void* b : blocks) hak_free(b);
    empty_list(cls);
    ThreadHeap* h = tiny_current_heap();
    Slab* s = h->avail[cls].head;
    cr_assert_not_null(s, "the class's emptied run is kept as its last");
    cr_assert_eq(s->used, 0u);
    tiny_decay();  // refilled in this period: kept
    cr_assert_eq(h->avail[cls].head, s, "a pass right after a refill released the run");
    tiny_decay();  // no refill since: released
    cr_assert_null(h->avail[cls].head, "the run of a class idle for a whole period is still kept");
    cr_assert(tiny_heap_is_valid());
    // The class still works, from the pool's cached run or a new one.
    void* p = alloc_in_class(n);
    cr_assert_not_null(p);
    hak_free(p);
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

// Every thread does its own part of a decay pass (its heap is owner-only) at a slow path soon
// after another thread ran the pass: its idle classes' kept runs go back too.
Test(tiny_heap, a_thread_decays_its_own_heap_after_another_thread_ran_a_pass) {
  hak::detail::g_next_decay_ns.store(UINT64_MAX);  // passes only as the test says
  pthread_t t;
  auto body = [](void*) -> void* {
    const size_t idle = 1800, busy = 64;
    const int cls = size_to_class(idle);
    static void* blocks[16];
    // Blocks of another class, allocated first: freeing them below makes slow-path calls (its
    // list overflows, each a decay_tick) without refills, which would end the idle class's
    // spell after kIdleRefills of them (tiny_idle.h) and give its run back before any pass.
    constexpr int kBusy = 3000;
    static void* busy_blocks[2][kBusy];
    for (auto& half : busy_blocks)
      for (void*& b : half) cr_assert_not_null(b = alloc_in_class(busy));
    for (int i = 0; i < 16; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(idle));
    for (int i = 0; i < 16; ++i) hak_free(blocks[i]);
    empty_list(cls);
    ThreadHeap* h = tiny_current_heap();
    Slab* s = h->avail[cls].head;
    cr_assert_not_null(s, "the class's emptied run is kept as its last");
    hak::detail::g_decay_passes.fetch_add(1);  // a pass by "another thread"
    for (void* b : busy_blocks[0]) hak_free(b);  // this thread's part: the idle class was refilled since its last part, kept
    cr_assert_eq(h->avail[cls].head, s, "released although refilled in this period");
    hak::detail::g_decay_passes.fetch_add(1);
    for (void* b : busy_blocks[1]) hak_free(b);  // not refilled since: released
    cr_assert_null(h->avail[cls].head, "the thread did not decay its own heap after a pass it did not run");
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

// tiny_flush keeps the run of the blocks it returns while the next ones belong to it too: a
// list whose blocks alternate between runs, with runs of several blocks of one run between,
// must leave every run with exactly the blocks it got back (counts, free list, out-bitmap).
Test(tiny_heap, flush_returns_blocks_of_interleaved_runs_each_to_its_own) {
  pthread_t t;
  auto body = [](void*) -> void* {
    const size_t n = 3000;  // a Mid class: few blocks per run, so three runs fill quickly
    const int cls = size_to_class(n);
    static void* by_run[3][256];
    static Slab* runs[3];
    int nruns = 0, count[3] = {0, 0, 0};
    while (nruns < 3 || count[2] < 8) {
      void* p = alloc_in_class(n);
      cr_assert_not_null(p);
      Slab* s = slab_of_block(p);
      int r = 0;
      while (r < nruns && runs[r] != s) ++r;
      if (r == nruns) {
        cr_assert_lt(nruns, 3, "a fourth run before the third had 8 blocks");
        runs[nruns++] = s;
      }
      cr_assert_lt(count[r], 256);
      by_run[r][count[r]++] = p;
    }
    empty_list(cls);
    uint32_t used0[3];
    for (int r = 0; r < 3; ++r) used0[r] = runs[r]->used;
    // Free in turns: two blocks of run 0, one of run 1, one of run 2, ... keeping each run's
    // last block out (so that no run empties and leaves the heap).
    int next[3] = {0, 0, 0};
    uint32_t returned[3] = {0, 0, 0};
    for (bool any = true; any;) {
      any = false;
      for (int r = 0; r < 3; ++r) {
        for (int j = 0; j < (r == 0 ? 2 : 1) && next[r] < count[r] - 1; ++j) {
          hak_free(by_run[r][next[r]++]);
          ++returned[r];
          any = true;
        }
      }
    }
    tiny_flush(cls, t_cache[cls].count());
    for (int r = 0; r < 3; ++r) {
      cr_assert_eq(runs[r]->used, used0[r] - returned[r], "run %d: %u blocks out, expected %u", r, runs[r]->used,
                   used0[r] - returned[r]);
      cr_assert(slab_is_valid(runs[r]));
    }
    cr_assert(tiny_heap_is_valid());
    for (int r = 0; r < 3; ++r) hak_free(by_run[r][count[r] - 1]);
    empty_list(cls);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

// A refill takes the run's free blocks lowest address first, whatever order they came back
// in (its out-bitmap is the run's free set): a run whose blocks are all back hands them out
// from its first block again, and blocks returned below the refill's scan word are found.
Test(tiny_heap, a_refill_takes_a_runs_free_blocks_in_address_order) {
  pthread_t t;
  auto body = [](void*) -> void* {
    const size_t n = 1800;  // a Mid class no other step of this thread uses
    const int cls = size_to_class(n);
    static void* blocks[16];
    for (void*& b : blocks) cr_assert_not_null(b = alloc_in_class(n));
    Slab* s = slab_of_block(blocks[0]);
    for (void* b : blocks) cr_assert_eq(slab_of_block(b), s, "16 blocks of 1800 B fit one run");
    for (int i = 15; i >= 0; --i) hak_free(blocks[i]);
    empty_list(cls);
    cr_assert_eq(tiny_current_heap()->avail[cls].head, s, "the emptied run is kept as the class's last");
    cr_assert_eq(s->used, 0u);
    cr_assert_eq(s->nfree, uint32_t(size_t(s->bump - s->start) / class_to_size(cls)), "every carved block is back");
    cr_assert_geq(s->nfree, 16u);
    for (int i = 0; i < 16; ++i) {
      cr_assert(in_run(s, static_cast<char*>(s->start) + size_t(i) * class_to_size(cls)));
    }
    for (int i = 0; i < 16; ++i) {
      blocks[i] = alloc_in_class(n);
      cr_assert_eq(blocks[i], static_cast<void*>(s->start + size_t(i) * class_to_size(cls)),
                   "block %d: the refills hand the run out again from its first block", i);
    }
    cr_assert(slab_is_valid(s));
    // Three blocks come back out of order, after the refills' scan has moved past them.
    hak_free(blocks[11]);
    hak_free(blocks[2]);
    hak_free(blocks[7]);
    empty_list(cls);
    cr_assert_geq(s->nfree, 3u, "the three, and what the last refill left cached");
    cr_assert(slab_is_valid(s));
    const int order[3] = {2, 7, 11};
    for (int k : order) {
      void* p = alloc_in_class(n);
      cr_assert_eq(p, blocks[k], "block %d is taken back first (lowest address)", k);
    }
    cr_assert(tiny_heap_is_valid());
    for (void* b : blocks) hak_free(b);
    empty_list(cls);
    return nullptr;
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

namespace {
// The cap of a class in a freeing spell (tiny_heap.cpp's freer_cap).
uint32_t freer_cap_of(int cls) { return class_cache_cap(cls) / 8 < 8 ? 8 : class_cache_cap(cls) / 8; }
// One malloc in each of `n` classes from 2 KiB up (64 bytes apart), which the calling thread
// has not used: n refills of classes other than the one a test watches (a first malloc in a
// class whose list is empty). Their blocks go to `out`.
void refill_other_classes(void** out, uint32_t n, uint32_t first = 0) {
  for (uint32_t j = 0; j < n; ++j) {
    const size_t bytes = 2048 + 64 * (first + j);
    cr_assert_null(t_cache[size_to_class(bytes)].head, "class of %zu bytes: not a miss", bytes);
    cr_assert_not_null(out[j] = alloc_in_class(bytes));
  }
}
// Runs body on a new thread (a fresh heap and lists) with the decay clock stopped, so that no
// pass flushes what the test watches.
void in_new_thread_without_decay(void* (*body)(void*)) {
  hak::detail::g_next_decay_ns.store(UINT64_MAX);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}
}  // namespace

// A batch allocated and then freed whole puts the class in a freeing spell: the frees flush
// it all and a freer's cap of blocks stays cached, with the class's last run. The spell ends
// after kIdleRefills refills of other classes: the blocks go back, and the run, empty then,
// goes back to the pool.
Test(tiny_heap, a_class_only_freed_gives_back_its_blocks_and_run_after_its_spell) {
  in_new_thread_without_decay([](void*) -> void* {
    const size_t n = 1500;  // a Mid class, far from the ones refill_other_classes uses
    const int cls = size_to_class(n);
    const uint32_t k = 3 * class_cache_cap(cls);  // the frees overflow twice: a spell
    static void* blocks[256];
    cr_assert_leq(k, 256u);
    for (uint32_t i = 0; i < k; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(n));
    for (uint32_t i = 0; i < k; ++i) hak_free(blocks[i]);
    ThreadHeap* h = tiny_current_heap();
    const uint32_t cached = t_cache[cls].count();
    cr_assert_gt(cached, 0u, "the batch's last frees are cached");
    cr_assert_leq(cached, freer_cap_of(cls));
    cr_assert_not_null(h->avail[cls].head, "and pin the class's run");
    static void* others[kIdleRefills];
    refill_other_classes(others, kIdleRefills - 1);
    cr_assert_eq(t_cache[cls].count(), cached, "given back after %u refills, not %u", kIdleRefills - 1,
                 kIdleRefills);
    cr_assert_not_null(h->avail[cls].head);
    refill_other_classes(others + kIdleRefills - 1, 1, kIdleRefills - 1);
    cr_assert_eq(t_cache[cls].count(), 0u, "%u refills later the class still caches %u blocks", kIdleRefills,
                 t_cache[cls].count());
    cr_assert_null(h->avail[cls].head, "its emptied run is still the thread's");
    cr_assert_null(h->full[cls].head);
    cr_assert(tiny_heap_is_valid());
    // The class works as before.
    void* p = alloc_in_class(n);
    cr_assert_not_null(p);
    hak_free(p);
    for (void* b : others) hak_free(b);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  });
}

// A refill of the class ends its freeing spell and begins an idle one: while a block of the
// class is live, what it caches stays, however many refills of other classes follow.
Test(tiny_heap, a_refill_ends_the_freeing_spell_and_a_class_in_use_keeps_its_cache) {
  in_new_thread_without_decay([](void*) -> void* {
    const size_t n = 1500;
    const int cls = size_to_class(n);
    const uint32_t k = 3 * class_cache_cap(cls);
    static void* blocks[256];
    for (uint32_t i = 0; i < k; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(n));
    for (uint32_t i = 0; i < k; ++i) hak_free(blocks[i]);
    static void* others[2 * kIdleRefills];
    refill_other_classes(others, kIdleRefills / 2);
    // The class allocates again, past what it caches and reserves: a refill. One block stays live.
    const uint32_t again = t_cache[cls].count() + tiny_reserved(cls) + 2;
    for (uint32_t i = 0; i < again; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(n));
    for (uint32_t i = 1; i < again; ++i) hak_free(blocks[i]);
    const uint32_t cached = t_cache[cls].count(), reserved = tiny_reserved(cls);
    cr_assert_gt(cached, 0u);
    refill_other_classes(others + kIdleRefills / 2, 2 * kIdleRefills - kIdleRefills / 2, kIdleRefills / 2);
    cr_assert_eq(t_cache[cls].count(), cached, "a class with a live block gave its cache back");
    cr_assert_eq(tiny_reserved(cls), reserved);
    cr_assert_not_null(tiny_current_heap()->avail[cls].head);
    hak_free(blocks[0]);
    for (void* b : others) hak_free(b);
    empty_list(cls);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  });
}

// A class that allocated a batch smaller than its cap and freed it whole never overflows: its
// blocks all sit on the list, holding its run. kIdleRefills refills of other classes after its
// own, it is idle (tiny_idle.h): the list and what it reserved go back, and the run with them.
Test(tiny_heap, an_idle_class_gives_back_its_list_and_run_after_its_spell) {
  in_new_thread_without_decay([](void*) -> void* {
    const size_t n = 1500;
    const int cls = size_to_class(n);
    const uint32_t k = class_cache_cap(cls) / 2;  // no overflow
    static void* blocks[256];
    for (uint32_t i = 0; i < k; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(n));
    for (uint32_t i = 0; i < k; ++i) hak_free(blocks[i]);
    ThreadHeap* h = tiny_current_heap();
    const uint32_t cached = t_cache[cls].count();  // and what the last refill listed beyond it (not release)
    cr_assert_geq(cached, k, "the batch is cached: %u blocks, not %u", cached, k);
    cr_assert_not_null(h->avail[cls].head, "and holds the class's run");
    static void* others[kIdleRefills];
    refill_other_classes(others, kIdleRefills - 1);
    cr_assert_eq(t_cache[cls].count(), cached, "given back after %u refills, not %u", kIdleRefills - 1, kIdleRefills);
    refill_other_classes(others + kIdleRefills - 1, 1, kIdleRefills - 1);
    cr_assert_eq(t_cache[cls].count(), 0u, "%u refills later the idle class still caches %u blocks", kIdleRefills,
                 t_cache[cls].count());
    cr_assert_eq(tiny_reserved(cls), 0u, "nor reserves any");
    cr_assert_null(h->avail[cls].head, "its emptied run is still the thread's");
    cr_assert_null(h->full[cls].head);
    cr_assert(tiny_heap_is_valid());
    void* p = alloc_in_class(n);  // the class works as before
    cr_assert_not_null(p);
    hak_free(p);
    for (void* b : others) hak_free(b);
    empty_list(cls);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  });
}

// Release: a refill that carves reserves the fresh blocks (t_bump) instead of listing them —
// at least 4 KiB of them, 16 KiB when the thread's previous refill was the class's too — and
// the class's misses hand them out in address order; the other variants list a batch of at
// most 4 KiB. Either way the run counts them out; given back, they are uncarved again.
Test(tiny_heap, a_carving_refill_reserves_fresh_blocks_and_hands_them_out_in_order) {
  in_new_thread_without_decay([](void*) -> void* {
    const size_t n = 1500;
    const int cls = size_to_class(n);
    const uint32_t size = uint32_t(class_to_size(cls));
    char* p = static_cast<char*>(alloc_in_class(n));  // the thread's first refill of the class
    cr_assert_not_null(p);
    Slab* s = slab_of_block(p);
    cr_assert_eq(s->bump, p + size * (1 + t_cache[cls].count() + tiny_reserved(cls)), "carved: p and what follows");
    cr_assert_eq(s->used, 1 + t_cache[cls].count() + tiny_reserved(cls));
    const uint32_t first = 4096 / size > 4 ? 4096 / size : 4;
    if (kBumpCarve) {
      cr_assert_eq(t_cache[cls].count(), 0u, "release lists no fresh block");
      cr_assert_eq(tiny_reserved(cls) + 1, first, "a first refill reserves 4 KiB (at least 4 blocks)");
    } else {
      cr_assert_eq(tiny_reserved(cls), 0u, "only release reserves");
    }
    // The next blocks follow p in address order, listed or reserved.
    static char* got[64];
    const uint32_t more = t_cache[cls].count() + tiny_reserved(cls);
    for (uint32_t i = 0; i < more; ++i) {
      got[i] = static_cast<char*>(alloc_in_class(n));
      cr_assert_eq(got[i], p + size * (i + 1), "block %u of the carve is not the next in address order", i + 1);
    }
    // A refill right after this class's own: a streak, 16 KiB reserved in release.
    got[more] = static_cast<char*>(alloc_in_class(n));
    cr_assert_eq(slab_of_block(got[more]), s);
    if (kBumpCarve) {
      const uint32_t streak = 16384 / size;
      cr_assert_eq(tiny_reserved(cls) + 1, streak, "a streak reserves 16 KiB: %u blocks, not %u", streak,
                   tiny_reserved(cls) + 1);
      const uint32_t used = s->used, reserved = tiny_reserved(cls);
      char* bump = s->bump;
      tiny_drop_reserved(cls);
      cr_assert_eq(tiny_reserved(cls), 0u);
      cr_assert_eq(s->used, used - reserved, "given back, reserved blocks are no longer out");
      cr_assert_eq(s->bump, bump - size_t(reserved) * size, "and uncarved again");
      cr_assert(slab_is_valid(s));
    }
    for (uint32_t i = 0; i <= more; ++i) hak_free(got[i]);
    hak_free(p);
    empty_list(cls);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  });
}

// A class whose list overflows gives back what it reserved: its next refill takes the blocks
// it returned to the run before fresh ones (a class that also frees would otherwise grow).
Test(tiny_heap, an_overflow_gives_the_reservation_back_and_returned_blocks_come_first) {
  in_new_thread_without_decay([](void*) -> void* {
    const size_t n = 1500;
    const int cls = size_to_class(n);
    const uint32_t cap = class_cache_cap(cls);
    static void* blocks[256];
    cr_assert_lt(cap + 1, 256u);
    for (uint32_t i = 0; i <= cap; ++i) cr_assert_not_null(blocks[i] = alloc_in_class(n));
    Slab* s = slab_of_block(blocks[cap]);
    for (uint32_t i = 0; i <= cap; ++i) hak_free(blocks[i]);  // the last free overflows
    cr_assert_eq(tiny_reserved(cls), 0u, "an overflow gives the reservation back");
    empty_list(cls);
    void* q = alloc_in_class(n);
    cr_assert_not_null(q);
    cr_assert(static_cast<char*>(q) < s->bump, "the refill carved instead of taking a returned block");
    cr_assert_eq(tiny_reserved(cls), 0u, "a refill from returned blocks reserves nothing");
    hak_free(q);
    empty_list(cls);
    cr_assert(tiny_heap_is_valid());
    return nullptr;
  });
}

// Free blocks of a large class inside runs that still hold live blocks: a decay pass after a
// whole period without a refill of the class gives back the pages inside them (run_purge.h),
// keeps each block's head (link, free-block key; secure: poison words) and every live block's
// bytes, and the class works on with the purged blocks; malloc_trim does it at once. The
// debug variant keeps them (its free blocks are poisoned whole and checked at reuse).
namespace {
bool resident(const void* p, size_t bytes) {
  const uintptr_t page = os_page_size();
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes + page - 1) & ~(page - 1);
  unsigned char vec[64];
  cr_assert_leq((hi - lo) / page, sizeof vec);
  cr_assert(os_residency(reinterpret_cast<void*>(lo), hi - lo, vec));
  for (uintptr_t i = 0; i < (hi - lo) / page; ++i)
    if (!(vec[i] & 1)) return false;
  return true;
}
// The whole pages inside block b past its head: [first, last).
void interior(void* b, size_t size, uintptr_t* first, uintptr_t* last) {
  const uintptr_t page = os_page_size();
  *first = (reinterpret_cast<uintptr_t>(b) + kPurgeKeep + page - 1) & ~(page - 1);
  *last = (reinterpret_cast<uintptr_t>(b) + size) & ~(page - 1);
}
}  // namespace

Test(tiny_heap, free_pages_inside_part_used_runs_of_large_classes_go_back) {
  if (os_page_size() > 4096) cr_skip_test("pages of %zu bytes: an 8-16 KiB block may hold none", os_page_size());
  hak::detail::g_next_decay_ns.store(UINT64_MAX);  // passes only as the test says
  for (int by_trim = 0; by_trim < 2; ++by_trim) {
    static int trim;
    trim = by_trim;
    pthread_t t;
    auto body = [](void*) -> void* {
      const size_t n = trim ? 12288 : 16384;  // Mid classes of 8 KiB and up no other test here uses
      const int cls = size_to_class(n);
      cr_assert_geq(class_to_size(cls), kPurgeMinBlock);
      constexpr int kBlocks = 48;
      static char* blocks[kBlocks];
      for (char*& b : blocks) {
        cr_assert_not_null(b = static_cast<char*>(alloc_in_class(n)));
        memset(b, 0x5a, n - kCanaryTail);
      }
      for (int i = 0; i < kBlocks; ++i)
        if (i % 8 != 0) hak_free(blocks[i]);
      empty_list(cls);  // every freed block back in its run
      uintptr_t first, last;
      interior(blocks[1], class_to_size(cls), &first, &last);
      cr_assert_lt(first, last, "a %zu-byte block holds no whole page past its head", class_to_size(cls));
      cr_assert(resident(reinterpret_cast<void*>(first), last - first));
      if (trim) {
        malloc_trim(0);
      } else {
        tiny_decay();  // refilled in this period: kept
        cr_assert(resident(reinterpret_cast<void*>(first), last - first), "a pass right after a refill purged");
        tiny_decay();  // idle for a whole period: purged
        const uint64_t calls = os_counters().madvise_calls;
        tiny_decay();  // nothing came back since: no run is purged again
        cr_assert_eq(os_counters().madvise_calls, calls, "a pass purged runs it had purged already");
      }
      size_t purged = 0, kept = 0;
      for (int i = 0; i < kBlocks; ++i) {
        interior(blocks[i], class_to_size(cls), &first, &last);
        if (i % 8 == 0) {
          cr_assert(resident(blocks[i], n - kCanaryTail), "a live block lost pages");
          for (size_t k = 0; k < n - kCanaryTail; ++k) cr_assert_eq(blocks[i][k], 0x5a);
        } else if (region_map_lookup(blocks[i]) == cls) {  // its run holds a survivor: not released
          (resident(reinterpret_cast<void*>(first), last - first) ? kept : purged) += 1;
          cr_assert(key_held(blocks[i]), "a free block's key went with its pages");
        }
      }
      cr_assert_geq(kept + purged, size_t(kBlocks / 2), "only %zu free blocks sit in part-used runs", kept + purged);
      if (kRunPurge) cr_assert_eq(kept, 0u, "%zu of %zu free blocks kept their pages", kept, kept + purged);
      else cr_assert_eq(purged, 0u, "the debug variant purged %zu free blocks", purged);
      cr_assert(tiny_heap_is_valid());
      // The class goes on: the purged blocks come back (reading zeros past their head).
      for (int i = 0; i < kBlocks; ++i)
        if (i % 8 != 0) {
          cr_assert_not_null(blocks[i] = static_cast<char*>(alloc_in_class(n)));
          memset(blocks[i], 0x33, n - kCanaryTail);
        }
      for (char* b : blocks) hak_free(b);
      cr_assert(tiny_heap_is_valid());
      return nullptr;
    };
    cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
    cr_assert_eq(pthread_join(t, nullptr), 0);
  }
}

// The same for the heap of a thread that has exited (parked, tiny_heap.h): malloc_trim, from
// another thread, gives back the pages inside the free blocks of its part-used runs.
Test(tiny_heap, free_pages_inside_part_used_runs_of_an_exited_threads_heap_go_back_at_malloc_trim) {
  if (os_page_size() > 4096) cr_skip_test("pages of %zu bytes: an 8-16 KiB block may hold none", os_page_size());
  hak::detail::g_next_decay_ns.store(UINT64_MAX);  // passes only as the test says
  constexpr int kBlocks = 48;
  static char* blocks[kBlocks];
  const size_t n = 20480;  // a Mid class of 8 KiB and up no other test here uses
  const int cls = size_to_class(n);
  pthread_t t;
  auto body = [](void*) -> void* {
    for (char*& b : blocks) {
      cr_assert_not_null(b = static_cast<char*>(alloc_in_class(20480)));
      memset(b, 0x5a, 20480 - kCanaryTail);
    }
    for (int i = 0; i < kBlocks; ++i)
      if (i % 8 != 0) hak_free(blocks[i]);
    return nullptr;  // its exit hook flushes its lists and parks its heap
  };
  cr_assert_eq(pthread_create(&t, nullptr, body, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
  uintptr_t first, last;
  size_t examined = 0, kept = 0;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) malloc_trim(0);
    examined = kept = 0;
    for (int i = 0; i < kBlocks; ++i) {
      if (i % 8 == 0 || region_map_lookup(blocks[i]) != cls) continue;  // a survivor, or its run went back
      interior(blocks[i], class_to_size(cls), &first, &last);
      ++examined;
      kept += resident(reinterpret_cast<void*>(first), last - first);
    }
    cr_assert_geq(examined, size_t(kBlocks / 2), "only %zu free blocks sit in part-used runs", examined);
    if (pass == 0) cr_assert_eq(kept, examined, "pages went back before malloc_trim");
  }
  if (kRunPurge) cr_assert_eq(kept, 0u, "%zu of %zu free blocks kept their pages", kept, examined);
  else cr_assert_eq(kept, examined, "the debug variant purged free blocks");
  for (int i = 0; i < kBlocks; i += 8) {
    for (size_t k = 0; k < n - kCanaryTail; ++k) cr_assert_eq(blocks[i][k], 0x5a);
    hak_free(blocks[i]);
  }
}
