// tiny_heap.h — per-thread state of the Tiny and Mid tiers: TLS free lists and thread heaps.
//
// TLS free lists (t_cache[class id]): malloc pops, free pushes; no atomics, no locks, no
// calls on a hit. A list may hold blocks of any thread's slabs (a block freed here is reused
// here). Misses take a block reserved for the class (t_bump, release), else go to
// tiny_refill; overflows go to tiny_flush:
//
//   tiny_refill(cls)  ── heap avail list: take a batch of the head run's free blocks (the
//                        lowest clear bits of its out-bitmap), else its remote queue, else
//                        the heap's pending remote frees, else a run just behind it with
//                        free blocks; before carving fresh blocks (release: reserved, ≥ 4
//                        KiB, 16 KiB in a streak of the class's refills; else listed, ≤ 4
//                        KiB), a block cached for one of the next four
//                        classes (≤ 32 B or 1/8 larger) if may_borrow (not for aligned
//                        requests)
//                     ── heap full list: drain runs' remote queues
//                     ── shared_pool_acquire (staged; shared_pool.h)
// Batch and cap follow how the thread uses the class (tiny_heap.cpp): a thread that only frees
// it (a consumer) flushes everything and caches less; one that only allocates takes smaller
// batches. A class that went idle (tiny_idle.h: no refill of it in kIdleRefills of the
// thread's refills, after a freeing spell or with no live block) gives back what it still
// caches and reserves, and the runs that leaves empty; an overflow gives back what the class
// reserved (its returned blocks come first at the next refill). A run emptied by the thread's
// own frees goes back to the pool unless it is the class's last; up to kKeptEmptyRuns emptied
// by remote frees stay for the thread's next refills (tiny_heap.cpp, KeepEmpty), until the
// class goes idle, or a decay pass (which keeps one of a class refilled since the previous
// pass), the thread's own malloc_trim or its exit.
//   tiny_flush(cls,n) ── block of a run this thread owns: clear its out-bit (back in the run)
//                     ── another thread's run: push the chain on the run's remote queue (CAS)
//
// A ThreadHeap owns runs (lists per class). When its thread exits, the TLS lists are
// flushed, emptied runs go back to the pool, and the heap with its part-used runs is kept
// for the next new thread (remote frees to those runs keep arriving in their queues). A new
// thread that has freed blocks before its first refill gets the parked heap that owns them
// (at once, or when that heap's thread has finished exiting): heap_get in tiny_heap.cpp.
#ifndef HAKMEM_TINY_HEAP_H
#define HAKMEM_TINY_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "free_link.h"
#include "hakmem_build_flags.h"
#include "size_class.h"
#include "superslab.h"
#include "tiny_idle.h"

namespace hak {

// A thread's list of free blocks of one class, as a handle on its two parts in t_cache: the
// head, and the room left and cap. Handed around by value (three references).
struct TlsCache {
  void*& head;     // LIFO of free blocks, linked through their first word
  // Pushes left before the list exceeds its cap: cap - blocks on the list. free decrements it
  // and overflows when it goes negative (one instruction and a branch: a count compared with
  // the cap took four). 32 bits: 16-bit adds and subtracts from memory (when the entry made
  // room for the heap profiler's count) cost a malloc/free loop 7-10 % (docs/BENCHMARKS.md).
  int32_t& room;
  uint32_t& cap;   // most blocks the list keeps (≤ 256); 0 until the thread is set up
  // Blocks on the list.
  uint32_t count() const { return uint32_t(int32_t(cap) - room); }
  void set_count(uint32_t n) const { room = int32_t(cap) - int32_t(n); }
  // A new cap keeps the blocks on the list.
  void set_cap(uint32_t c) const {
    room = room + int32_t(c) - int32_t(cap);
    cap = c;
  }
};

// Every class's list of this thread: the heads side by side, then the counters. Eight bytes per
// class in each array, so that malloc and free index both with the class id scaled by 8 in the
// instruction that uses it, from the one address of the thread's block (16-byte entries took a
// shift more on each).
struct TlsCaches {
  struct Counters {
    int32_t room;
    uint32_t cap;
  };
  void* heads[kNumClasses + 1];
  Counters counters[kNumClasses + 1];
  HAK_FAST_PATH TlsCache operator[](size_t cls) { return {heads[cls], counters[cls].room, counters[cls].cap}; }
};

// Release: fresh blocks of a class reserved from one of the thread's runs (its never-carved
// part: their out-bits are set, `used` counts them), handed out in address order at a miss of
// the class's list, never linked: linking stored into a cold line per block, and the pop then
// loaded it (docs/BENCHMARKS.md, "Fresh blocks reserved, not linked"). Not in the secure and
// debug variants: their free blocks carry the key and poison words, which a block that was
// never on a list does not have.
struct TlsBump {
  char* cur;  // next block to hand out
  char* end;  // end of the reservation (cur == end: none left)
};
inline constexpr bool kBumpCarve = !kPoisonFree && !kDebug;
extern HAK_TLS TlsBump t_bump[kNumClasses + 1];

// The next block reserved for class cls, or nullptr when none is left.
HAK_FAST_PATH void* tiny_bump_take(int cls) {
  TlsBump& bp = t_bump[cls];
  char* p = bp.cur;
  if (p == bp.end) return nullptr;
  bp.cur = p + class_to_size(cls);
  key_clear(p);  // the slot's earlier blocks may have left a free-block key where this one starts
  return p;
}

// Empty runs a class keeps when remote frees empty them (tiny_heap.cpp, KeepEmpty): the
// thread allocates what others free and will carve again at once. The bound is what a
// thread that drained a burst and then went idle holds until its next decay pass (on
// pipeline, 8 held peak RSS 4 MiB below 4, and 1 or 2 no lower than none: docs/BENCHMARKS.md,
// "Runs emptied by remote frees stay").
inline constexpr int kKeptEmptyRuns = 4;

// Indexed by class id (entry 0 unused). Zero-initialised: an untouched thread misses in
// malloc (head == nullptr) and overflows in free (cap == 0), which sets it up.
extern HAK_TLS TlsCaches t_cache;

struct SlabRunList {
  Slab* head;
  void push_front(Slab* s, uint8_t which);
  void remove(Slab* s);
};

struct ThreadHeap {
  SlabRunList avail[kNumClasses + 1];  // runs with free or uncarved blocks
  SlabRunList full[kNumClasses + 1];   // runs with none (maybe remote frees pending)
  // Runs whose remote queue went from "not notified" to "notified": pushed by other threads,
  // taken whole by the owner (no ABA: the consumer never pops single nodes).
  std::atomic<Slab*> pending;
  ThreadHeap* next_all;                // every heap (never unlinked)
  ThreadHeap* next_cached;             // cache of exited threads' heaps
  std::atomic<bool> live;              // a thread is using it (written under the heap lock)
};

// Pops the first block of a non-empty TLS list, checking the link it follows, and clears its
// free-block key: the block is the program's now.
HAK_FAST_PATH void* tiny_cache_pop(TlsCache tc, int cls) {
  void* p = tc.head;
  void* next = link_load(p);
  if constexpr (kHardenLinks) {
    if (HAK_UNLIKELY(!link_plausible(next))) link_corrupted(p, next, cls);
  }
  if constexpr (kPoisonFree) {
    if (HAK_UNLIKELY(!free_words_intact(p, cls))) write_after_free(p, cls, "when malloc was about to hand it out again");
  }
  tc.head = next;
  ++tc.room;
  key_clear(p);
  return p;
}

// Called when a push made t_cache[cls] exceed its cap (or the thread is not set up yet).
void tiny_cache_overflow(int cls);
// The same, called by the push of block p: the class is p's in the region map (every block
// pushed is on its own class's list), so the hit keeps no copy of it for the call.
HAK_SLOW_PATH void tiny_cache_overflow_after(void* p);

// Pushes a freed block on its TLS list: its free-block key set, linked in front; a list over
// its cap overflows (a cold call).
HAK_FAST_PATH void tiny_cache_push(TlsCache tc, void* p, int cls) {
  key_set(p);
  if constexpr (kPoisonFree) poison_set(p, cls);
  link_store(p, tc.head);
  tc.head = p;
  if (HAK_UNLIKELY(--tc.room < 0)) tiny_cache_overflow_after(p);
}

// free(p), realloc(p) or malloc_usable_size(p) (op names which; the last in the secure and
// debug variants) of a Tiny/Mid block of class cls that is not a block's start (interior,
// unaligned), or that holds the free-block key: reports an invalid pointer, or a freed block
// (a double free for free and realloc) when p is on this thread's list of its class or back in
// its run (aborts). Returns when the key cannot be confirmed (free_link.h): the caller goes on
// as if nothing was found.
HAK_SLOW_PATH void tiny_suspect_check(void* p, int cls, const char* op);
// free's cold branch for such a block: tiny_suspect_check, then the free itself (a tail call
// from the fast path, which so needs no stack frame).
HAK_SLOW_PATH void tiny_free_suspect(void* p, int cls);

// Secure variant: the canary or size record of block p (class cls) is not intact at `op`
// (canary.h). A block that is not the program's — never handed out, back in its run, on this
// thread's list — is reported as that invalid or double free; otherwise the overflow. Aborts.
[[noreturn]] HAK_SLOW_PATH void tiny_canary_failed(void* p, int cls, const char* op);

// Refills t_cache[cls] and returns one block, or nullptr (errno ENOMEM) when out of memory.
// With may_borrow the block may instead be one cached for a slightly larger class (it then
// has that class's size and alignment; t_cache[cls] stays empty).
void* tiny_refill(int cls, bool may_borrow);

// Moves the first n blocks of t_cache[cls] back to their runs.
void tiny_flush(int cls, uint32_t n);
// Gives the blocks reserved for class cls on this thread (t_bump) back to their run.
void tiny_drop_reserved(int cls);
// Blocks reserved for class cls on this thread, not handed out yet.
inline uint32_t tiny_reserved(int cls) {
  return uint32_t(size_t(t_bump[cls].end - t_bump[cls].cur) / class_to_size(cls));
}

// Moves every block of this thread's TLS lists back to its run (each one checked there).
void tiny_flush_current_thread();
// Flushes this thread's TLS lists, drains its runs' remote queues, releases its empty runs and
// gives back the pages inside the free blocks of its part-used runs of 8 KiB blocks and up
// (run_purge.h) (malloc_trim). Returns true if anything was released.
bool tiny_trim_current_thread();
// Drains and releases what the heaps of exited threads hold, and gives back the pages inside
// the free blocks of their part-used runs of 8 KiB blocks and up (run_purge.h). Returns true if
// anything was released.
bool tiny_trim_cached_heaps();

// The calling thread's part of a decay pass (decay.h): flushes its TLS lists, drains its
// pending remote frees, and releases the empty runs its heap kept: every one of a class it did
// not refill since its previous pass, all but one of the others; for those classes of 8 KiB
// blocks and up, the pages inside the free blocks of its part-used runs go back
// (run_purge.h). Every thread runs it within 16 slow-path calls after each pass (decay_tick).
// Returns true if anything was released.
bool tiny_decay_thread();
// Decay pass of the thread that runs it: tiny_decay_thread, then the heaps of exited threads
// are collected and their part-used runs purged (if their lock is free). Returns true if
// anything was released.
bool tiny_decay();

// Thread exit (pthread key destructor): flush everything, hand the heap back.
void tiny_thread_exit();
// Registers the exit hook for a thread that keeps something of its own before its first
// refill (a span stashed by span_cache.h): without it tiny_thread_exit would not run.
void tiny_ensure_exit_hook();

// Sets up the pthread key used for thread exit. Called once by hak_init.
void tiny_init_thread_key();

// Fork handling (the heap list lock).
void tiny_lock();
void tiny_unlock();
void tiny_reinit_after_fork();

struct TinyStats {
  uint64_t heaps_live, heaps_cached;
};
TinyStats tiny_stats();

// Debug checker: the calling thread's TLS lists and every run of its heap reconcile.
bool tiny_heap_is_valid();
// The calling thread's heap (nullptr before its first refill).
ThreadHeap* tiny_current_heap();
// Takes run s's remote queue into the run (its owner only); returns how many blocks came back.
uint32_t tiny_drain_remote(Slab* s);

// Debug variant, on every free of a Tiny/Mid block: aborts with an exact message if p is not
// the start of a handed-out block of class cls, or is among the 32 blocks of its class this
// thread freed last (a double free caught while the block is still in the TLS cache).
// Then fills the block past its two words (link and free-block key) with kFreePoison.
void tiny_debug_check_free(void* p, int cls);

// Debug variant: freed and freshly carved blocks are filled with kFreePoison past their first
// two words (link, free-block key); malloc checks the fill when it hands the block out and reports a use-after-free write
// (the block's address, size class and the first changed byte). Neither under valgrind, where
// memcheck reports the write itself (valgrind_support.h).
inline constexpr unsigned char kFreePoison = 0xDF;
void tiny_debug_poison(void* p, int cls);
void tiny_debug_check_alloc(void* p, int cls);

}  // namespace hak

#endif  // HAKMEM_TINY_HEAP_H
