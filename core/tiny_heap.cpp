// tiny_heap.cpp — refill, flush, remote queues and thread lifetime of the Tiny/Mid tiers (the
// checks that name a bad free and the debug variant's poison are in tiny_misuse.cpp, the
// spells of idle classes in tiny_idle.h).
// See tiny_heap.h for the picture; the hot pops and pushes are in tiny_alloc_fast.inc.h and
// tiny_free_fast_v2.inc.h.
#include "tiny_heap.h"

#include <errno.h>
#include <pthread.h>

#include "decay.h"
#include "diag.h"
#include "fork_locks.h"
#include "free_link.h"
#include "os.h"
#include "run_purge.h"
#include "shared_pool.h"
#include "span_cache.h"
#include "stats.h"
#include "tiny_idle.h"

namespace hak {

HAK_TLS TlsCaches t_cache;
HAK_TLS TlsBump t_bump[kNumClasses + 1];

namespace {

HAK_TLS ThreadHeap* t_heap;

HAK_TLS bool t_key_set;
HAK_TLS bool t_exited;  // tiny_thread_exit ran: frees go straight back, nothing is cached
// Per class, the last slow-path event of this thread. An overflow with no refill since the
// previous one means the thread frees more of the class than it allocates (a consumer of
// blocks other threads made); two refills in a row, that it allocates more than it frees.
// kSlowBorrow: a refill that borrowed a neighbour's block (tiny_refill) — a refill all the same.
enum : uint8_t { kSlowNone = 0, kSlowRefill = 1, kSlowOverflow = 2, kSlowBorrow = 3 };
HAK_TLS uint8_t t_last_slow[kNumClasses + 1];
// Classes this thread refilled since its last decay pass (bit per class id): a class's empty
// runs are kept for the next refill (run_became_empty), but not past a pass without one, and
// only one of them past a pass with one.
HAK_TLS uint64_t t_refilled[(kNumClasses + 64) / 64];

// The spells of this thread's classes (tiny_idle.h).
HAK_TLS IdleSpells t_spells;

// Fresh blocks carved from a run per refill, in bytes (at least 4 blocks): see take_batch.
// Release reserves them (t_bump) instead of linking them, and reserves kStreakCarveBytes
// when the class's previous refill was the thread's previous one (a batch being allocated):
// reserved blocks are not touched until handed out, but a run with blocks reserved ahead is
// not empty, and a class that also frees would take fresh blocks before its returned ones
// (random_mixed's peak RSS +2 % with 16 KiB at every refill).
constexpr size_t kCarveBytes = 4096;
constexpr size_t kStreakCarveBytes = 16384;

// Cap of a class this thread frees more of than it allocates: what it caches there is surplus
// that no malloc of this thread takes, pinning pages of other threads' runs.
uint32_t freer_cap(int cls) {
  uint32_t c = class_cache_cap(cls) / 8;
  return c < 8 ? 8 : c;
}

pthread_key_t g_key;
pthread_mutex_t& g_heap_lock = g_fork_locks.heaps;
ThreadHeap* g_heaps_all = nullptr;     // under g_heap_lock
ThreadHeap* g_heaps_cached = nullptr;  // under g_heap_lock
uint64_t g_heaps_live = 0, g_heaps_cached_count = 0;
// Heap metadata comes from page-sized chunks that are never returned (heaps are reused).
char* g_meta_cur = nullptr;
size_t g_meta_left = 0;

void thread_key_destructor(void*) { tiny_thread_exit(); }

// Sets this thread's caps and registers the exit hook.
void thread_setup() {
  for (int c = 1; c <= kNumClasses; ++c) t_cache[c].set_cap(class_cache_cap(c));
  if (!t_key_set) {
    t_key_set = true;  // first: pthread_setspecific may allocate (keys ≥ 32)
    pthread_setspecific(g_key, reinterpret_cast<void*>(1));
  }
}

// The first thread's heap: in the library's data (.lbss, after its small globals: a short
// process whose blocks all come from the seed heap never touches it), not in a mapping of its
// own (one mmap fewer per process).
__attribute__((section(".lbss.hakmem"), aligned(64))) char g_first_heap[sizeof(ThreadHeap)];

ThreadHeap* heap_new_locked() {
  size_t need = (sizeof(ThreadHeap) + 63) & ~size_t(63);
  if (g_heaps_all == nullptr) {
    auto* h = reinterpret_cast<ThreadHeap*>(g_first_heap);  // zero, as a fresh mapping
    g_heaps_all = h;
    return h;
  }
  if (g_meta_left < need) {
    size_t chunk = 64 * 1024;
    void* m = os_map(chunk);
    if (m == nullptr) return nullptr;
    g_meta_cur = static_cast<char*>(m);
    g_meta_left = chunk;
  }
  auto* h = reinterpret_cast<ThreadHeap*>(g_meta_cur);  // zeroed by the OS
  g_meta_cur += need;
  g_meta_left -= need;
  h->next_all = g_heaps_all;
  g_heaps_all = h;
  return h;
}

// The heap that owns most of the blocks at the heads of this thread's TLS lists, or nullptr.
// A thread that frees before its first refill is taking over blocks another thread made (a
// worker replacing one that exited; Larson hands each lane to a new thread): with their
// heap, its frees stay local and its new blocks come from the pages its data lives in.
ThreadHeap* owner_of_cached_blocks() {
  // One pass over the list heads, counting up to 8 distinct owners (a thread rarely holds
  // blocks of more than a couple of heaps here); owners beyond those are not counted.
  ThreadHeap* owners[8];
  uint32_t votes[8], n = 0, best = 0;
  for (int c = 1; c <= kNumClasses; ++c) {
    void* b = t_cache[c].head;
    if (b == nullptr) continue;
    ThreadHeap* o = slab_of_block(b)->owner;  // b's run has a block out: it stays assigned
    if (o == nullptr) continue;
    uint32_t i = 0;
    while (i < n && owners[i] != o) ++i;
    if (i == n) {
      if (n == 8) continue;
      owners[n] = o;
      votes[n++] = 0;
    }
    if (++votes[i] > votes[best]) best = i;
  }
  return n == 0 ? nullptr : owners[best];
}

// Removes parked heap h from the cache list. Under g_heap_lock.
void heap_unpark_locked(ThreadHeap* h) {
  ThreadHeap** link = &g_heaps_cached;
  while (*link != h) link = &(*link)->next_cached;
  *link = h->next_cached;
  --g_heaps_cached_count;
  h->live.store(true, std::memory_order_relaxed);
}

// The heap the thread would rather have (owner_of_cached_blocks) while its thread is still
// exiting, and how many more refills look whether it has been parked since.
HAK_TLS ThreadHeap* t_wanted_heap;
HAK_TLS uint32_t t_wanted_tries;
constexpr uint32_t kWantedHeapTries = 4096;

ThreadHeap* heap_get() {
  if (HAK_LIKELY(t_heap != nullptr)) return t_heap;
  ThreadHeap* want = owner_of_cached_blocks();
  pthread_mutex_lock(&g_heap_lock);
  ThreadHeap* h;
  if (want != nullptr && !want->live.load(std::memory_order_relaxed)) {
    h = want;
    heap_unpark_locked(h);
    want = nullptr;
  } else if ((h = g_heaps_cached) != nullptr) {
    heap_unpark_locked(h);
  } else if ((h = heap_new_locked()) != nullptr) {
    h->live.store(true, std::memory_order_relaxed);
  }
  if (h != nullptr) ++g_heaps_live;
  pthread_mutex_unlock(&g_heap_lock);
  t_heap = h;
  t_wanted_heap = want;
  t_wanted_tries = kWantedHeapTries;
  return h;
}

// (A run is at most 4 slabs: its length is within class_block_index's exact range, no division.)
size_t uncarved_of(const Slab* s) { return class_block_index(s->cls, size_t(s->end - s->bump)); }
bool run_exhausted(const Slab* s) { return s->nfree == 0 && s->bump == s->end; }

[[noreturn]] HAK_SLOW_PATH void report_bad_return(const Slab* s, const void* b) {
  if (static_cast<const char*>(b) >= s->bump)
    hak_fatal("free(%p): invalid pointer (never handed out: beyond the carved part of its slab)", b);
  hak_fatal("free(%p): double free (block of size class %d, %zu bytes)", b, int(s->cls), class_to_size(s->cls));
}

// b is not the start of a block of run s: inside the run and 16-byte aligned, a free of an
// interior pointer (free lets those through to its list in release); otherwise a link (after
// `prev`) that was overwritten (free never lists a pointer that is not 16-byte aligned).
[[noreturn]] HAK_SLOW_PATH void report_bad_block(const Slab* s, const void* prev, const void* b, int cls) {
  const char* c = static_cast<const char*>(b);
  if (kBumpCarve && c >= t_bump[cls].cur && c < t_bump[cls].end && size_t(c - t_bump[cls].cur) % class_to_size(cls) == 0)
    hak_fatal("free(%p): invalid pointer (never handed out: reserved for a later malloc)", b);
  if (c >= s->start && c < s->end && (reinterpret_cast<uintptr_t>(b) & 15) == 0) {
    if (c >= s->bump && size_t(c - s->start) % class_to_size(cls) == 0) report_bad_return(s, b);
    hak_fatal("free(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start)", b,
              class_to_size(cls), cls);
  }
  link_corrupted(prev, b, cls);
}

// Sets (or clears) bits [lo, hi) of an out-bitmap.
template <bool kSet>
void write_bits(uint64_t* bits, uint32_t lo, uint32_t hi) {
  while (lo < hi) {
    uint32_t w = lo >> 6, b = lo & 63, n = hi - lo < 64 - b ? hi - lo : 64 - b;
    const uint64_t m = (n == 64 ? ~uint64_t(0) : ((uint64_t(1) << n) - 1)) << b;
    out_word(bits, w) = kSet ? out_word(bits, w) | m : out_word(bits, w) & ~m;
    lo += n;
  }
}

// Block b (block i of run s) comes back to its run: it must be out (else: a double free, or
// a block never handed out). Owner only.
HAK_FAST_PATH void mark_returned(Slab* s, uint64_t* bits, const void* b, uint32_t i) {
  uint64_t m = uint64_t(1) << (i & 63);
  if (HAK_UNLIKELY(!(out_word(bits, i >> 6) & m))) report_bad_return(s, b);
  out_word(bits, i >> 6) &= ~m;
}

// Takes a chain of remote blocks back into the run; returns how many. Every block of the
// chain is checked: a block of this run (the pusher checked that too, but the links between
// may have been overwritten since), out of it (else a double free).
uint32_t splice_remote(Slab* s, uintptr_t chain) {
  void* first = reinterpret_cast<void*>(chain & ~kRemoteNotified);
  if (first == nullptr) return 0;
  s->purged = 0;  // blocks come back: the next purge looks at the run again
  uint64_t* bits = run_out_bits(s);
  const RunIndex index(s);
  const uint32_t used = s->used;
  uint32_t n = 0, scan = s->scan;
  void *last = nullptr, *b = first;
  do {
    uint32_t i = index(b);
    if (HAK_UNLIKELY(i == UINT32_MAX)) report_bad_block(s, last, b, s->cls);
    mark_returned(s, bits, b, i);
    if (i >> 6 < scan) scan = i >> 6;
    last = b;
    b = link_load(b);
    if (HAK_UNLIKELY(++n > used)) link_corrupted(last, b, s->cls);  // a cycle, or foreign blocks
  } while (b != nullptr);
  s->scan = scan;
  s->nfree += n;
  HAK_ASSERT(s->used >= n);
  s->used -= n;
  return n;
}

// Takes the run's remote blocks without touching its notified bit (the run may be on the
// pending list; only the pending-list consumer clears the bit).
uint32_t drain_remote_keep_flag(Slab* s) {
  uintptr_t v = s->remote.load(std::memory_order_relaxed);
  if ((v & ~kRemoteNotified) == 0) return 0;
  while (!s->remote.compare_exchange_weak(v, v & kRemoteNotified, std::memory_order_acquire, std::memory_order_relaxed)) {
  }
  return splice_remote(s, v);
}

// What becomes of a run of the heap's avail list whose `used` reached 0 (run_became_empty).
enum class KeepEmpty : uint8_t {
  // The pool takes it (trim and thread exit: heap_collect; the decay pass and an idle
  // expiry: release_empty_runs).
  kNone,
  // Kept if it is its class's only available run, so that a class at steady state does not
  // bounce runs through the pool (a local flush: the thread frees what it allocated).
  kLast,
  // Kept while the class has fewer than kKeptEmptyRuns other empty runs (remote frees
  // brought its blocks back: the thread allocates what others free, and will carve again at
  // once). Released, such a run went to whatever class claimed its slots next, whose blocks
  // sit at other offsets in the pages, and the producer carved a fresh run on pages only
  // partly resident (pipeline: 4 500 of 6 900 releases in 0.15 s were such runs; peak RSS
  // 101 → 92 MiB and 9 % fewer page faults now; docs/BENCHMARKS.md, "Runs emptied by remote
  // frees stay"). The decay pass and an idle expiry give them back. A run emptied where it
  // stands deep in the list (past kEmptyRunsLooked) is not counted: the bound is soft there,
  // and the decay pass, which looks at the whole list, gives such runs back.
  kSome,
};

// Runs of a class's avail list looked at for empty ones.
constexpr int kEmptyRunsLooked = 16;

// Whether a class's avail list holds at least `n` (≥ 1) empty runs other than s among its
// first kEmptyRunsLooked.
static_assert(kKeptEmptyRuns >= 1, "has_empty_runs counts down to zero");
bool has_empty_runs(const SlabRunList& avail, const Slab* s, int n) {
  int looked = 0;
  for (const Slab* t = avail.head; t != nullptr && looked < kEmptyRunsLooked; t = t->next, ++looked) {
    if (t != s && t->used == 0 && --n == 0) return true;
  }
  return false;
}

// A run whose `used` reached 0: kept on its owner's list as `keep` says, or back to the pool.
// Returns true if the run went back to the pool.
bool run_became_empty(ThreadHeap* h, Slab* s, KeepEmpty keep) {
  if (s->remote.load(std::memory_order_acquire) & kRemoteNotified) return false;  // pending list owns it
  SlabRunList& avail = h->avail[s->cls];
  if (s->list == kListAvail) {
    if (keep == KeepEmpty::kSome && !has_empty_runs(avail, s, kKeptEmptyRuns)) return false;
    if (keep == KeepEmpty::kLast && avail.head == s && s->next == nullptr) return false;
  }
  if (s->list == kListAvail) avail.remove(s);
  else if (s->list == kListFull) h->full[s->cls].remove(s);
  if constexpr (kPoisonFree || kDebug) {
    // Its next class carves it afresh: the last look at what its free blocks hold (secure:
    // the key and poison words; debug: the whole fill).
    const size_t size = class_to_size(s->cls);
    for (char* b = s->start; b < s->bump; b += size) {
      if constexpr (kDebug) tiny_debug_check_alloc(b, s->cls);
      else if (HAK_UNLIKELY(!free_words_intact(b, s->cls))) write_after_free(b, s->cls, "when its run, all free, went back to the pool");
    }
  }
  shared_pool_release(s);
  return true;
}

// After blocks came back to a run: full → avail, and empty runs go back (returns true then).
bool run_gained_blocks(ThreadHeap* h, Slab* s, KeepEmpty keep) {
  if (s->list == kListFull && !run_exhausted(s)) {
    h->full[s->cls].remove(s);
    h->avail[s->cls].push_front(s, kListAvail);
  }
  return s->used == 0 && run_became_empty(h, s, keep);
}

// Consumes the heap's pending list: every run on it gets its remote blocks back. Returns true
// if a run went back to the pool.
bool drain_pending(ThreadHeap* h, KeepEmpty keep) {
  bool released = false;
  Slab* s = h->pending.exchange(nullptr, std::memory_order_acquire);
  while (s != nullptr) {
    Slab* next = s->pending_next;  // read before the run can be pushed again
    uintptr_t v = s->remote.exchange(0, std::memory_order_acquire);
    splice_remote(s, v);
    released |= run_gained_blocks(h, s, keep);
    s = next;
  }
  return released;
}

// Gives class cls's empty runs back to the pool, but the first one if keep_one; looks at
// the first `most` runs of its avail list. Returns true if a run went back.
bool release_empty_runs(ThreadHeap* h, int cls, bool keep_one, int most) {
  bool released = false;
  for (Slab* s = h->avail[cls].head; s != nullptr && most-- > 0;) {
    Slab* next = s->next;
    if (s->used == 0) {
      if (keep_one) keep_one = false;
      else released |= run_became_empty(h, s, KeepEmpty::kNone);
    }
    s = next;
  }
  return released;
}

// Drains everything the heap has pending and releases every empty run.
bool heap_collect(ThreadHeap* h) {
  bool released = drain_pending(h, KeepEmpty::kNone);
  for (int c = 1; c <= kNumClasses; ++c) {
    for (SlabRunList* list : {&h->avail[c], &h->full[c]}) {
      for (Slab* s = list->head; s != nullptr;) {
        Slab* next = s->next;
        drain_remote_keep_flag(s);
        released |= run_gained_blocks(h, s, KeepEmpty::kNone);
        s = next;
      }
    }
  }
  return released;
}

// Takes up to `want` blocks from run s into the (empty) TLS list of its class. Fresh blocks
// (none returned to the run): with `reserve` (release), at least `reserve` bytes of them go to
// the class's t_bump instead, none to the list; otherwise at most kCarveBytes, linked.
uint32_t take_batch(Slab* s, TlsCache tc, uint32_t want, size_t reserve) {
  HAK_ASSERT(tc.head == nullptr && tc.count() == 0);
  size_t size = class_to_size(s->cls);
  uint32_t uncarved = uint32_t(uncarved_of(s));
  uint64_t* bits = run_out_bits(s);
  void* head = nullptr;
  uint32_t got = 0;
  if (s->nfree != 0) {
    // The lowest free blocks, in address order: the clear out-bits below bump, from the scan
    // word on (no clear bit lies below it). Only stores into the blocks (their TLS links).
    uint32_t take = s->nfree < want ? s->nfree : want;
    const uint32_t carved = s->capacity - uncarved;
    char* const start = s->start;
    void* tail = nullptr;
    uint32_t w = s->scan;
    for (;;) {
      // nfree says a clear bit is left; past the carved blocks the counters and the bitmap
      // disagree (metadata overwritten).
      if (HAK_UNLIKELY(size_t(w) * 64 >= carved))
        hak_fatal("corrupted slab run %p (class %d): %u free blocks counted, none in its bitmap",
                  static_cast<void*>(s), int(s->cls), s->nfree);
      uint32_t left = carved - w * 64;
      uint64_t word = out_word(bits, w);
      uint64_t avail = ~word & (left >= 64 ? ~uint64_t(0) : (uint64_t(1) << left) - 1);
      // The word's clear bits, lowest first, until the batch is complete: t keeps the ones
      // not taken.
      uint64_t t = avail;
      uint32_t room = take - got;
      char* const base = start + size_t(w) * 64 * size;
      while (t != 0) {
        void* b = base + size_t(__builtin_ctzll(t)) * size;
        t &= t - 1;
        // Every block back in its run went through free (or a carve) and holds the key and
        // the poison since: one that lost them was written while it was free.
        if constexpr (kPoisonFree) {
          if (HAK_UNLIKELY(!free_words_intact(b, s->cls))) write_after_free(b, s->cls, "when a refill took it back from its run");
        }
        if (tail != nullptr) link_store(tail, b);
        else head = b;
        tail = b;
        if (--room == 0) break;
      }
      out_word(bits, w) = word | (avail ^ t);
      got = take - room;
      if (t == 0) ++w;
      if (got == take) break;
    }
    link_store(tail, nullptr);
    s->nfree -= got;
    s->scan = w;
  }
  // Fresh memory only when the run has no returned blocks left: carving touches new pages.
  if (got == 0 && uncarved != 0) {
    char* const base = s->bump;
    const uint32_t first = uint32_t(size_t(base - run_data_start(s)) / size);
    if (kBumpCarve && reserve != 0) {
      // Release: the blocks are reserved, not linked (linking stored into a cold line per
      // block, and malloc's pop then loaded it: the batch bench's two hottest instructions).
      // tiny_alloc_miss_sized_raw and tiny_refill hand them out in address order.
      const uint32_t r = uint32_t(reserve / size) < 4 ? 4 : uint32_t(reserve / size);
      uint32_t n = want > r ? want : r;
      if (n > uncarved) n = uncarved;
      write_bits<true>(bits, first, first + n);
      s->bump = base + size_t(n) * size;
      s->used += n;
      t_bump[s->cls] = TlsBump{base, s->bump};
      return n;
    }
    uint32_t n = want < uncarved ? want : uncarved;
    // At most 4 KiB of fresh blocks at a time (at least 4 blocks): carving touches pages, and
    // blocks carved ahead of need are resident memory nobody uses (mimalloc extends a page's
    // free list the same way). docs/BENCHMARKS.md, "Size classes".
    uint32_t lim = uint32_t(kCarveBytes / size) < 4 ? 4 : uint32_t(kCarveBytes / size);
    if (n > lim) n = lim;
    // Link the new blocks so they pop in address order.
    for (uint32_t i = n; i-- > 0;) {
      void* b = base + size_t(i) * size;
      if constexpr (kDebug) tiny_debug_poison(b, s->cls);
      if constexpr (kPoisonFree) {
        key_set(b);
        poison_set(b, s->cls);
      }
      link_store(b, head);
      head = b;
    }
    write_bits<true>(bits, first, first + n);
    s->bump = base + size_t(n) * size;
    got = n;
  }
  s->used += got;
  tc.head = head;
  tc.set_count(got);
  if constexpr (kDebug) {
    if (!slab_is_valid(s)) hak_fatal("corrupted slab %p after refill", static_cast<void*>(s));
  }
  return got;
}

// The class's reserved fresh blocks go back to their run, uncarved again: a reservation is
// always its run's last carve (the class refills, and so carves, only once it is used up; no
// other thread carves the run). Owner only.
void bump_return(ThreadHeap* h, int cls) {
  TlsBump& bp = t_bump[cls];
  if (bp.cur == bp.end) return;
  Slab* s = slab_of_block(bp.cur);
  HAK_ASSERT(bp.end == s->bump);
  const uint32_t first = class_block_index(cls, size_t(bp.cur - s->start));
  const uint32_t n = uint32_t(size_t(bp.end - bp.cur) / class_to_size(cls));
  write_bits<false>(run_out_bits(s), first, first + n);
  s->used -= n;
  s->bump = bp.cur;
  bp = TlsBump{nullptr, nullptr};
  if (h != nullptr) run_gained_blocks(h, s, KeepEmpty::kLast);
}

// A run with blocks to hand out for class cls, or nullptr (out of memory).
Slab* find_run(ThreadHeap* h, int cls) {
  drain_pending(h, KeepEmpty::kSome);
  if (Slab* s = h->avail[cls].head) return s;
  Slab* s = shared_pool_acquire(cls, h);
  if (s != nullptr) h->avail[cls].push_front(s, kListAvail);
  return s;
}

// Pushes the chain first..last (one run's blocks) onto the run's remote queue. The first
// pusher to find the run un-notified puts it on the owner's pending list — before its blocks
// become visible, so the owner cannot see the run empty and release it meanwhile.
void remote_push(Slab* s, void* first, void* last) {
  uintptr_t old = s->remote.load(std::memory_order_relaxed);
  for (;;) {
    if (!(old & kRemoteNotified)) {
      if (!s->remote.compare_exchange_weak(old, old | kRemoteNotified, std::memory_order_acq_rel,
                                           std::memory_order_relaxed))
        continue;
      ThreadHeap* owner = s->owner;
      Slab* head = owner->pending.load(std::memory_order_relaxed);
      do {
        s->pending_next = head;
      } while (!owner->pending.compare_exchange_weak(head, s, std::memory_order_release, std::memory_order_relaxed));
      old |= kRemoteNotified;
    }
    link_store(last, reinterpret_cast<void*>(old & ~kRemoteNotified));
    if (s->remote.compare_exchange_weak(old, reinterpret_cast<uintptr_t>(first) | kRemoteNotified,
                                        std::memory_order_release, std::memory_order_relaxed))
      return;
  }
}

}  // namespace

void SlabRunList::push_front(Slab* s, uint8_t which) {
  s->prev = nullptr;
  s->next = head;
  if (head != nullptr) head->prev = s;
  head = s;
  s->list = which;
}

void SlabRunList::remove(Slab* s) {
  if (s->prev != nullptr) s->prev->next = s->next;
  else head = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  s->list = kListNone;
}

namespace {

void heap_park_locked(ThreadHeap* h) {
  h->live.store(false, std::memory_order_relaxed);
  h->next_cached = g_heaps_cached;
  g_heaps_cached = h;
  ++g_heaps_cached_count;
}

// Parks heap h for the next new thread (its thread has exited).
void heap_park(ThreadHeap* h) {
  pthread_mutex_lock(&g_heap_lock);
  --g_heaps_live;
  heap_park_locked(h);
  pthread_mutex_unlock(&g_heap_lock);
}

// The heap this thread wanted at its first refill was still its exiting thread's: once that
// thread has parked it, trade the heap taken meanwhile for it (that one is parked in turn,
// its runs and pending frees intact, for the next new thread). Gives up after
// kWantedHeapTries refills.
ThreadHeap* heap_take_wanted(ThreadHeap* h) {
  ThreadHeap* w = t_wanted_heap;
  if (w->live.load(std::memory_order_relaxed)) {
    if (--t_wanted_tries == 0) t_wanted_heap = nullptr;
    return h;
  }
  t_wanted_heap = nullptr;
  // The blocks reserved for this thread lie in h's runs, which the trade parks: back first.
  if constexpr (kBumpCarve) {
    for (int c = 1; c <= kNumClasses; ++c) bump_return(h, c);
  }
  pthread_mutex_lock(&g_heap_lock);
  if (!w->live.load(std::memory_order_relaxed)) {
    heap_unpark_locked(w);
    heap_park_locked(h);
    t_heap = h = w;
  }
  pthread_mutex_unlock(&g_heap_lock);
  return h;
}

// malloc on a thread whose exit hook already ran (another key's destructor, possibly in the
// last round glibc runs): take one block from a parked heap and park it again at once, so
// nothing stays cached in, or owned by, a thread that is about to vanish.
void* alloc_after_exit(int cls) {
  ThreadHeap* h = heap_get();
  if (h == nullptr) return nullptr;
  void* p = nullptr;
  for (;;) {
    Slab* s = h->avail[cls].head;
    if (s == nullptr && (s = find_run(h, cls)) == nullptr) break;
    if (run_exhausted(s)) drain_remote_keep_flag(s);
    if (!run_exhausted(s)) {
      void* one_head = nullptr;
      int32_t one_room = 0;
      uint32_t one_cap = 0;
      TlsCache one{one_head, one_room, one_cap};
      take_batch(s, one, 1, 0);
      p = one.head;
      if (p != nullptr) key_clear(p);
    }
    if (run_exhausted(s)) {
      h->avail[cls].remove(s);
      h->full[cls].push_front(s, kListFull);
    }
    if (p != nullptr) break;
  }
  t_heap = nullptr;
  heap_park(h);
  return p;
}

// A block from the TLS cache of one of the next four classes, or nullptr: only a class of the
// same tier at most max(32 bytes, 1/8) larger (so two classes up to 256 B, four from 512 B; one
// above 4 KiB, where classes are 1/8 apart), and only from a list holding more than a quarter
// of its cap. A list of a class the thread only allocates holds at most its last batch, a
// quarter of the cap (tiny_refill): taking from it would only make that class miss sooner, and
// the borrowing class miss again at its next malloc (a producer thread: xthread_p1 -25 % when
// any list could lend). The bounds: docs/BENCHMARKS.md, "Size classes" (two classes and 1/16
// held random_mixed's peak RSS 1-2 % above mimalloc's; these put it 1 % below, and carve less).
// free() files the block under its own class by the region map, as always. Not for aligned
// requests: they ask for a class by its size's alignment (tiny_refill's may_borrow).
void* borrow_neighbour(int cls) {
  size_t own = class_to_size(cls), limit = own + (own / 8 > 32 ? own / 8 : 32);
  for (int n = cls + 1; n <= cls + 4 && n <= kNumClasses && class_is_mid(n) == class_is_mid(cls); ++n) {
    if (class_to_size(n) > limit) break;
    if (t_cache[n].count() > t_cache[n].cap / 4) return tiny_cache_pop(t_cache[n], n);
  }
  return nullptr;
}

// Whether every block class cls's runs (this thread's) have out is on the thread's list or
// reserved for it: the class holds no live block. At most 8 runs holding blocks are looked at
// (more: in use), among the first 8 + kEmptyRunsLooked (empty ones kept hold nothing).
bool class_holds_nothing(ThreadHeap* h, int cls) {
  uint32_t out = 0;
  int runs = 0, looked = 0;
  for (SlabRunList* l : {&h->avail[cls], &h->full[cls]}) {
    for (Slab* r = l->head; r != nullptr; r = r->next) {
      if (++looked > 8 + kEmptyRunsLooked) return false;
      if (r->used == 0) continue;  // empty runs kept for the class hold nothing
      if (++runs > 8) return false;
      out += r->used;
    }
  }
  return out <= t_cache[cls].count() + tiny_reserved(cls);
}

// The classes whose spell has lasted kIdleRefills refills (tiny_idle.h) give back their list
// and reserved blocks — an idle spell's class only if it holds nothing else — and every empty
// run among the first kEmptyRunsLooked of its list.
void idle_classes_expire(ThreadHeap* h) {
  SpellKind kind;
  while (int c = t_spells.next_expired(&kind)) {
    if (kind == kSpellIdle && !class_holds_nothing(h, c)) continue;
    TlsCache ic = t_cache[c];
    if (ic.count() != 0) tiny_flush(c, ic.count());
    bump_return(h, c);
    // The flush released every run it emptied but the class's last one (run_gained_blocks);
    // runs that remote frees emptied were kept (KeepEmpty::kSome).
    release_empty_runs(h, c, false, kEmptyRunsLooked);
  }
}

}  // namespace

void* tiny_refill(int cls, bool may_borrow) {
  TlsCache tc = t_cache[cls];
  if (HAK_UNLIKELY(t_exited)) {
    void* p = alloc_after_exit(cls);
    if (p == nullptr) errno = ENOMEM;
    return p;
  }
  if constexpr (kBumpCarve) {
    if (void* p = tiny_bump_take(cls)) return p;
  }
  if (HAK_UNLIKELY(tc.cap == 0)) thread_setup();
  if (tc.head != nullptr) return tiny_cache_pop(tc, cls);  // set-up allocated and left blocks behind
  // The class borrowed at its previous miss and has freed nothing since (a free would have
  // left a block on the list this malloc found empty; a flush makes the state kSlowOverflow):
  // its runs hold what they held then, so the search below would end in the same borrow. It
  // borrows at once while a neighbour can lend (the batch bench: 47 000 of its 60 000 refills
  // were such borrows, ~180 instructions each; docs/BENCHMARKS.md, "Flush and refill").
  if (t_last_slow[cls] == kSlowBorrow && may_borrow) {
    if (void* p = borrow_neighbour(cls)) {
      decay_tick();
      return p;
    }
  }
  ThreadHeap* h = heap_get();
  if (h == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  if (HAK_UNLIKELY(t_wanted_heap != nullptr)) h = heap_take_wanted(h);
  t_refilled[cls >> 6] |= uint64_t(1) << (cls & 63);
  const bool streak = t_spells.refill(cls);  // the class's spell begins anew
  if (t_spells.pending()) idle_classes_expire(h);
  decay_tick();
  tc.set_cap(class_cache_cap(cls));  // back from a freer's cap (tiny_cache_overflow)
  // Batch: half the cap after an overflow (the thread frees this class too); a quarter when
  // it only allocates (a producer: the batch is what it holds unused), but at least 4 blocks
  // (classes above 2 KiB have caps of 8-15: a quarter made a refill per 2 blocks, batch of
  // 2-4 KiB blocks +10 % with 4); a sixteenth on its first refill (one malloc of a class must
  // not carve 64 KiB of fresh pages).
  uint8_t last = t_last_slow[cls];
  if (last == kSlowBorrow) last = kSlowRefill;
  uint32_t want = tc.cap / (last == kSlowOverflow ? 2 : last == kSlowRefill ? 4 : 16);
  if (last == kSlowRefill && want < 4) want = 4;
  if (want == 0) want = 1;
  t_last_slow[cls] = kSlowRefill;
  // thread_setup and decay_tick may have called malloc (pthread_setspecific, the decay
  // thread's start): a block of this class that call left on the list or reserved is taken
  // first; take_batch would otherwise overwrite the list or the reservation and lose them.
  if (tc.head != nullptr) return tiny_cache_pop(tc, cls);
  if constexpr (kBumpCarve) {
    if (void* p = tiny_bump_take(cls)) return p;
  }
  bool drained = false;
  for (;;) {
    Slab* s = h->avail[cls].head;
    if (s == nullptr && (s = find_run(h, cls)) == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    if (s->nfree == 0) drain_remote_keep_flag(s);
    // Blocks other threads gave back come before fresh memory: before the head run is carved,
    // the heap's pending runs come back (a relaxed load when there are none). Not at every
    // refill: a producer would then walk a short chain the consumer has just written each
    // time (xthread_p1 -24 % with the misuse checks; docs/BENCHMARKS.md, "Hardening"). Once per refill, so that
    // steady remote frees cannot keep it here.
    if (s->nfree == 0 && !drained && h->pending.load(std::memory_order_relaxed) != nullptr) {
      drained = true;
      drain_pending(h, KeepEmpty::kSome);
      continue;
    }
    if (s->nfree == 0) {
      // The head run would be carved: a run just behind it with returned blocks goes first.
      int looked = 0;
      for (Slab* t = s->next; t != nullptr && looked < 4; t = t->next, ++looked) {
        if (t->nfree != 0) {
          h->avail[cls].remove(t);
          h->avail[cls].push_front(t, kListAvail);
          s = t;
          break;
        }
      }
    }
    if (s->nfree == 0 && !run_exhausted(s)) {
      // Fresh memory would be carved: a block cached for one of the next four classes serves
      // the request instead (at most 32 bytes or 1/8 more), so a class at its high-water
      // mark does not grow while its neighbours hold spare blocks (random_mixed's peak RSS:
      // docs/BENCHMARKS.md, "Size classes").
      if (may_borrow) {
        if (void* p = borrow_neighbour(cls)) {
          t_last_slow[cls] = kSlowBorrow;
          return p;
        }
      }
    }
    uint32_t got = run_exhausted(s) ? 0 : take_batch(s, tc, want, kBumpCarve ? (streak ? kStreakCarveBytes : kCarveBytes) : 0);
    if (run_exhausted(s)) {
      h->avail[cls].remove(s);
      h->full[cls].push_front(s, kListFull);
    }
    if (got != 0) break;
  }
  if (kBumpCarve && tc.head == nullptr) return tiny_bump_take(cls);  // take_batch reserved them
  return tiny_cache_pop(tc, cls);
}

// tiny_flush's part for run s, this thread's: returns block b and the blocks after it on the
// list while they are s's, at most `limit` (≥ 1); each must be the start of one of the run's
// blocks and out of it (mark_returned). Leaves b at the first block not returned (nullptr at
// the list's end) and prev at the last one returned; returns how many. A list freed in the order it was allocated is
// mostly long stretches of one run's blocks: this loop is most of a flush, with the run's
// state in registers (one loop for every kind of block kept it on the stack: the batch bench's
// flushes ran 53 instructions per block, 34 with this one; docs/BENCHMARKS.md, "Flush and
// refill").
HAK_FAST_PATH uint32_t return_to_run(ThreadHeap* h, Slab* s, int cls, void*& b_io, void*& prev_io, uint32_t limit) {
  s->purged = 0;  // blocks come back: the next purge looks at the run again
  const char* const start = s->start;
  uintptr_t span = uintptr_t(s->end - start);
  if constexpr (kBumpCarve) {
    // Blocks reserved for the class (t_bump) have their out-bits set like handed-out ones: a
    // free of one would pass mark_returned, and the block would go out twice. A reservation
    // is its run's last carve, so every block from its first one on was never handed out: the
    // stretch ends there, and report_bad_block names such a block.
    const char* r = t_bump[cls].cur;
    if (r != t_bump[cls].end && uintptr_t(r - start) < span) span = uintptr_t(r - start);
  }
  const uint64_t recip = detail::kTables.recip[cls];
  const size_t size = class_to_size(cls);
  uint64_t* const bits = run_out_bits(s);
  uint32_t scan = s->scan, left = limit;
  void* b = b_io;
  void* prev = prev_io;
  // A link is followed only after the block it leads to passed the checks below: the end of
  // the list (nullptr) and a misaligned link leave the run's range or fail the block-start
  // test, so neither needs a test of its own here (tiny_flush's loop makes them for the block
  // that ends the stretch).
  for (;;) {
    const uintptr_t off = uintptr_t(static_cast<const char*>(b) - start);
    if (off >= span) {
      // The region map put the first block in this run, yet it is not among its blocks (the
      // run's tail): a link was overwritten. A later one belongs to another run, or ends the list.
      if (left == limit) report_bad_block(s, prev, b, cls);
      break;
    }
    const uint32_t idx = uint32_t((uint64_t(off) * recip) >> 40);
    if (HAK_UNLIKELY(size_t(idx) * size != off)) report_bad_block(s, prev, b, cls);
    mark_returned(s, bits, b, idx);
    if (idx >> 6 < scan) scan = idx >> 6;
    prev = b;
    b = link_load(b);
    if (--left == 0) break;
  }
  const uint32_t k = limit - left;
  s->nfree += k;
  s->scan = scan;
  HAK_ASSERT(s->used >= k);
  s->used -= k;
  if (s->list == kListFull || s->used == 0) run_gained_blocks(h, s, KeepEmpty::kLast);  // else nothing to move
  b_io = b;
  prev_io = prev;
  return k;
}

// A flush found the thread's list of class cls ending `missing` blocks before its count, at
// block `last` (nullptr: the list was empty): its link was overwritten. Most often by a
// second free of the block on another thread, whose own push rewrote the link; if that thread
// has passed the block back since, it waits in the run's remote queue, and draining the run
// reports the double free as such. Otherwise, a write after free.
[[noreturn]] void list_ended_early(ThreadHeap* h, void* last, int cls, uint32_t missing) {
  if (h != nullptr && last != nullptr) {
    Slab* s = slab_of_block(last);
    if (s->owner == h) drain_remote_keep_flag(s);
  }
  hak_fatal("corrupted free list (size class %d): the free block %p ends the list %u blocks early (its link was "
            "overwritten: freed twice, or written after free?)", cls, last, missing);
}

void tiny_flush(int cls, uint32_t n) {
  TlsCache tc = t_cache[cls];
  ThreadHeap* h = t_heap;
  void* b = tc.head;
  Slab* chain_slab = nullptr;
  void *chain_first = nullptr, *chain_last = nullptr;
  uint32_t i = 0, remote_blocks = 0;
  void* prev = nullptr;
  while (i < n && b != nullptr) {
    if (HAK_UNLIKELY(!link_plausible(b))) link_corrupted(prev, b, cls);
    // Every block here was pushed by free() after the region map vouched for its class; a
    // block of another class (or none) means a link was overwritten since.
    if (HAK_UNLIKELY(region_map_lookup(b) != cls)) link_corrupted(prev, b, cls);
    Slab* s = slab_of_block(b);
    if (h != nullptr && s->owner == h) {
      i += return_to_run(h, s, cls, b, prev, n - i);
      continue;
    }
    // Another thread's run: the owner checks the blocks when it drains them.
    void* next = link_load(b);
    ++remote_blocks;
    if (s == chain_slab) {
      link_store(chain_last, b);
      chain_last = b;
    } else {
      if (chain_slab != nullptr) remote_push(chain_slab, chain_first, chain_last);
      chain_slab = s;
      chain_first = chain_last = b;
    }
    prev = b;
    b = next;
    ++i;
  }
  if (chain_slab != nullptr) remote_push(chain_slab, chain_first, chain_last);
  if (remote_blocks != 0) stats_add_remote_frees(remote_blocks);
  // The list holds exactly count() blocks: one that goes on past them, or ends before, had a
  // link overwritten (a write after free). Left as it is, the next malloc would hand out
  // whatever the link now says.
  if (HAK_UNLIKELY((b != nullptr) == (i == tc.count()))) {
    if (b != nullptr) link_corrupted(prev, b, cls);
    list_ended_early(h, prev, cls, tc.count() - i);
  }
  tc.head = b;
  tc.room = tc.room + int32_t(i);
}

void tiny_cache_overflow_after(void* p) {
  const uint8_t id = region_map_lookup(p);
  if (is_class_id(id) && t_cache[id].room < 0) return tiny_cache_overflow(id);
  // p's entry changed since the push (only a misuse racing with its run's release can do
  // that): whichever list is over its cap.
  for (int c = 1; c <= kNumClasses; ++c)
    if (t_cache[c].room < 0) tiny_cache_overflow(c);
}

void tiny_cache_overflow(int cls) {
  TlsCache tc = t_cache[cls];
  if (tc.cap == 0) {
    // After this thread's exit hook ran (glibc frees its own thread data later), cache
    // nothing: a block left here would be lost with the thread.
    if (t_exited) {
      tiny_flush(cls, tc.count());
      return;
    }
    thread_setup();
  }
  if (tc.room < 0) {
    if (t_last_slow[cls] != kSlowRefill && t_last_slow[cls] != kSlowBorrow) {
      // No refill since the last overflow: the thread frees more of this class than it
      // allocates. Keeping half a cap of such blocks only pins them (and their runs' pages):
      // send them all back, and cache less until the thread refills the class again.
      t_spells.begin(cls, kSpellFreeing);
      tc.set_cap(freer_cap(cls));
      tiny_flush(cls, tc.count());
    } else {
      tiny_flush(cls, tc.count() - tc.cap / 2);
    }
    // Blocks went back to the class's runs: the next refill takes them before the fresh
    // blocks reserved ahead (bump_return), which would otherwise grow the class's pages.
    if constexpr (kBumpCarve) bump_return(t_heap, cls);
    t_last_slow[cls] = kSlowOverflow;
    decay_tick();
  }
}

void tiny_drop_reserved(int cls) { bump_return(t_heap, cls); }

void tiny_flush_current_thread() {
  for (int c = 1; c <= kNumClasses; ++c) {
    if (t_cache[c].count() != 0) tiny_flush(c, t_cache[c].count());
    bump_return(t_heap, c);
  }
}

namespace {

// The pages inside the free blocks of this heap's part-used runs of the large classes go back
// (run_purge.h), each run once until a block comes back to it (Slab::purged): every such class
// (malloc_trim), or (a decay pass) those not refilled since the previous pass. The class's
// next refill takes the purged blocks back as zero pages.
bool purge_runs(ThreadHeap* h, bool every) {
  if constexpr (!kRunPurge) return false;
  bool released = false;
  for (int c = kNumClasses; c >= 1 && class_to_size(c) >= kPurgeMinBlock; --c) {
    if (!every && ((t_refilled[c >> 6] >> (c & 63)) & 1)) continue;
    for (Slab* s = h->avail[c].head; s != nullptr; s = s->next) {
      if (s->used == 0 || s->purged) continue;
      released |= run_purge_free_pages(s) != 0;
      s->purged = 1;
    }
  }
  return released;
}

// Heaps of exited threads (g_heap_lock held, which makes the caller their owner meanwhile):
// their runs keep receiving remote frees that nobody drains, and their classes are idle
// (nobody refills them), so the pages inside their part-used runs' free blocks go back too.
bool collect_cached_heaps_locked() {
  bool released = false;
  for (ThreadHeap* h = g_heaps_cached; h != nullptr; h = h->next_cached) {
    released |= heap_collect(h);
    released |= purge_runs(h, true);
  }
  return released;
}

}  // namespace

bool tiny_trim_current_thread() {
  tiny_flush_current_thread();
  if (t_heap == nullptr) return false;
  bool released = heap_collect(t_heap);
  released |= purge_runs(t_heap, true);
  return released;
}

bool tiny_decay_thread() {
  bool released = span_cache_flush();  // the thread's stashed spans (span_cache.h)
  // A few hundred cached blocks can pin as many otherwise empty runs (blocks freed in an
  // order that spreads them over runs): once per period, this thread's caches go back.
  tiny_flush_current_thread();
  if (ThreadHeap* h = t_heap) {
    released |= drain_pending(h, KeepEmpty::kSome);
    // Empty runs go back, but one of a class refilled since the previous pass; their slots go
    // back to the pool, and their pages at the next pass.
    for (int c = 1; c <= kNumClasses; ++c)
      released |= release_empty_runs(h, c, (t_refilled[c >> 6] >> (c & 63)) & 1, INT32_MAX);
    // What part-used runs of the large classes idle since the previous pass hold free.
    released |= purge_runs(h, false);
  }
  for (uint64_t& w : t_refilled) w = 0;
  return released;
}

bool tiny_decay() {
  bool released = tiny_decay_thread();
  if (pthread_mutex_trylock(&g_heap_lock) == 0) {
    released |= collect_cached_heaps_locked();
    pthread_mutex_unlock(&g_heap_lock);
  }
  return released;
}

bool tiny_trim_cached_heaps() {
  pthread_mutex_lock(&g_heap_lock);
  const bool released = collect_cached_heaps_locked();
  pthread_mutex_unlock(&g_heap_lock);
  return released;
}

void tiny_thread_exit() {
  span_cache_thread_exit();
  tiny_flush_current_thread();
  for (int c = 1; c <= kNumClasses; ++c) t_cache[c].set_cap(0);  // later frees and mallocs (other keys' destructors) see t_exited
  t_key_set = false;
  t_exited = true;
  ThreadHeap* h = t_heap;
  if (h == nullptr) return;
  heap_collect(h);
  t_heap = nullptr;
  heap_park(h);
}

void tiny_ensure_exit_hook() {
  if (t_key_set || t_exited) return;
  t_key_set = true;  // first: pthread_setspecific may allocate (keys ≥ 32)
  pthread_setspecific(g_key, reinterpret_cast<void*>(1));
}

void tiny_init_thread_key() { pthread_key_create(&g_key, thread_key_destructor); }

void tiny_lock() { pthread_mutex_lock(&g_heap_lock); }
void tiny_unlock() { pthread_mutex_unlock(&g_heap_lock); }
void tiny_reinit_after_fork() { pthread_mutex_init(&g_heap_lock, nullptr); }

TinyStats tiny_stats() {
  pthread_mutex_lock(&g_heap_lock);
  TinyStats st{g_heaps_live, g_heaps_cached_count};
  pthread_mutex_unlock(&g_heap_lock);
  return st;
}

ThreadHeap* tiny_current_heap() { return t_heap; }
uint32_t tiny_drain_remote(Slab* s) { return drain_remote_keep_flag(s); }

bool tiny_heap_is_valid() {
  ThreadHeap* h = t_heap;
  // The TLS lists: as long as their counts, every entry a handed-out block of its class (and,
  // in a run of this thread, marked out in the run's bitmap).
  for (int c = 1; c <= kNumClasses; ++c) {
    const TlsCache& tc = t_cache[c];
    uint32_t n = 0;
    void* prev = nullptr;
    for (void* b = tc.head; b != nullptr; prev = b, b = link_load(b)) {
      if (++n > tc.count() || !link_plausible(b) || region_map_lookup(b) != c) {
        diag_print("invariant: TLS list of class %d: entry %u (%p, after %p) is not a block of the class, or the list is longer than its count %u",
                   c, n, b, prev, tc.count());
        return false;
      }
      Slab* s = slab_of_block(b);
      uint32_t i = run_block_index(s, b);
      if (i == UINT32_MAX || (h != nullptr && s->owner == h && !((out_word(run_out_bits(s), i >> 6) >> (i & 63)) & 1))) {
        diag_print("invariant: TLS list of class %d holds %p, not a handed-out block of its run", c, b);
        return false;
      }
    }
    if (n != tc.count()) {
      diag_print("invariant: TLS list of class %d has %u blocks, its count says %u", c, n, tc.count());
      return false;
    }
  }
  if (h == nullptr) return true;
  for (int c = 1; c <= kNumClasses; ++c) {
    for (SlabRunList* list : {&h->avail[c], &h->full[c]}) {
      for (Slab* s = list->head; s != nullptr; s = s->next) {
        if (s->owner != h || s->cls != c || !slab_is_valid(s)) return false;
      }
    }
  }
  return true;
}

}  // namespace hak
