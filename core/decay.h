// decay.h — memory goes back to the OS without malloc_trim.
//
// decay_tick() is called from the allocator's slow paths (TLS refill and flush, span
// allocation and free). About once per kDecayPeriodNs, the thread that finds the period
// elapsed does the decay work: Large mappings cached for longer than their age limit are
// unmapped, its own TLS caches are flushed back to their runs, its own pending remote frees
// are drained, the empty runs its heap keeps go back (every one of a class it did not refill
// since its previous pass, all but one of the others; for such classes of 8 KiB blocks and up
// also the pages inside the free blocks of its part-used runs, run_purge.h; every other thread does the same for
// itself at its next slow-path clock check: tiny_decay_thread), the heaps of exited threads
// are collected (emptied runs go back to the pool), the pages of SuperSlab slots released
// since the previous pass are decommitted, and the page arena's resident free pages are cut
// to a quarter of their normal limit.
// Whole SuperSlabs and arena chunks are returned as they empty (shared_pool.h, page_arena.h).
//
// Decay advances with allocator activity that reaches a slow path; a process that only hits
// the TLS lists (or sleeps) keeps what it has until then or until malloc_trim(0).
#ifndef HAKMEM_DECAY_H
#define HAKMEM_DECAY_H

#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr uint64_t kDecayPeriodNs = 1000000000ull;  // 1 s

namespace detail {
extern HAK_TLS uint32_t t_decay_calls;
extern uint64_t g_check_every;  // debug variant: HAKMEM_CHECK
void decay_check_clock();
void debug_check_tick();
}  // namespace detail

// Cheap: reads the clock once every 16 slow-path calls of a thread. In the debug variant with
// HAKMEM_CHECK=N, every N-th call also runs the whole-heap checker (hak_heap_check) and aborts
// with what it found wrong: the slow paths are where the heap's state changes.
inline void decay_tick() {
  if constexpr (kDebug) {
    if (HAK_UNLIKELY(detail::g_check_every != 0)) detail::debug_check_tick();
  }
  if (HAK_UNLIKELY((++detail::t_decay_calls & 15) == 0)) detail::decay_check_clock();
}

// The whole-heap checker: the calling thread's TLS lists and runs, every SuperSlab, the page
// arena. Prints what is wrong and returns false. (Other threads' TLS lists and runs are
// theirs to check: their owners change them without locks.)
bool heap_check_all();

// Does one decay pass now. Returns true if anything was released.
bool decay_run(uint64_t now_ns);

// The idle-decay thread's worker (decay_thread.h): the Large rules every tick, and the pass
// over the shared structures (pool, arena) when a period is due, as a slow path would run it
// (the per-thread parts stay with their threads). True while the page heap or the page
// arena holds free memory, or SuperSlab slots were released since the last pass. A slow
// path that finds 4 MiB of slots released since the last pass wakes (or starts) the thread,
// so a program that frees a lot of small blocks and then goes idle gets the memory back.
bool decay_background(uint64_t now_ns);

}  // namespace hak

#endif  // HAKMEM_DECAY_H
