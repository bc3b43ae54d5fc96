// guarded.h — guarded sampled allocations (GWP-ASan style): one allocation in N (N =
// HAKMEM_GUARD, 0 = off; docs/TUNING.md) of at most kGuardSpanMax bytes is served from a
// pool of its own where every block sits between inaccessible pages, so that an overflow, an
// underflow or a use after free of that block faults at the access instead of corrupting
// the heap, and is reported with the block's size and its allocation and free stacks.
//
//   pool (kRegionGuarded in the region map; PROT_NONE but for live blocks' pages)
//   ┌───────┬─────────────── slot 0 ──────────────┬───────┬──── slot 1 ────┬───────┬ ...
//   │ guard │ pages of the block │ (PROT_NONE)    │ guard │                │ guard │
//   └───────┴────────────────────┴────────────────┴───────┴────────────────┴───────┴ ...
//
// A live block's pages are readable and writable; every other page of the pool is not. The
// block is flush with the end of its pages (an overflow faults at the first byte past them,
// up to the 15 bytes that keep it 16-byte aligned) or with their start (an underflow faults
// at once), in turn; the spare bytes of its pages hold a pattern checked when it is freed,
// which catches the small overflows and underflows that stayed inside its pages. A freed
// slot is made inaccessible (a small slot's pages stay resident for its next block, a span
// slot's go back to the system) and reused last
// (FIFO), so a use after free faults. The SIGSEGV handler reports a fault inside the pool with one message that
// never allocates (kind, address, offset from the block, size, the stacks) and aborts; any
// other fault goes to the handler the program had installed, or to the default action.
// A double free, a free of an interior pointer, and realloc/malloc_usable_size of either are
// reported at the call. Memory: kGuardSlots slots of at most kGuardMaxSize bytes resident at
// once (256 KiB), and kGuardSpanSlots span slots (kGuardMaxSize < n ≤ kGuardSpanMax: Mid
// blocks above 16 KiB and spans),
// resident only while their block is live (their pages go back at free), metadata of a few
// KiB; when every slot of the size is in use, allocations are served as usual. Under valgrind
// the pool is off (memcheck tracks the heap itself).
//
// Sampling: a per-thread countdown drawn uniformly from [1, 2N - 1] (mean N); a new thread
// draws before it counts. Release and debug builds pay nothing on the malloc fast path when it
// is off: when on, the allocation path's size-class tables (size_class.h, g_alloc_tables)
// send every request of a size class (at most kSmallMax bytes) to class 0, whose thread cache is always
// empty, so each such malloc takes the miss path, where the countdown is kept (about 65
// instructions more per malloc). The secure variant, where it is on by default, counts on
// the fast path instead (kGuardInline: a decrement and a branch; docs/BENCHMARKS.md). Spans
// (requests above kSmallMax) count on their own path, in every variant.
//
// May call: os, region_map, stack_trace, diag, fork_locks (its lock). Called by hakmem.cpp.
#ifndef HAKMEM_GUARDED_H
#define HAKMEM_GUARDED_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr size_t kGuardMaxSize = 16 * 1024;   // largest request a small slot takes
inline constexpr int kGuardSlots = 16;                // small blocks guarded at once
inline constexpr size_t kGuardSpanMax = 256 * 1024;   // largest request that may be guarded
inline constexpr int kGuardSpanSlots = 4;             // spans guarded at once
inline constexpr int kGuardFrames = 24;              // stack frames kept per event

// Sets up the pool and the SIGSEGV handler for a rate of one in `rate` allocations. Returns
// false (guarding stays off) if the pool cannot be mapped. Called once, at initialisation.
bool guarded_init(uint64_t rate);
uint64_t guarded_rate();  // 0 when off

// Sampling counts down on malloc's fast path (secure variant) rather than through the class
// tables' class 0 (release, debug).
inline constexpr bool kGuardInline = kSecure;

// Allocations of this thread left before the next sample; below 0: guarded_countdown_expired.
extern HAK_TLS int64_t t_guard_left;

// The countdown ran out: redraws it, and says whether this allocation is to be guarded (not
// on a thread's first draw, nor while sampling is off, when the countdown is set out of reach).
bool guarded_countdown_expired();

// The countdown: true if this allocation is to be guarded.
HAK_FAST_PATH bool guarded_should_sample() {
  if (HAK_LIKELY(--t_guard_left >= 0)) return false;
  return guarded_countdown_expired();
}

// A guarded block of n bytes (≤ kGuardSpanMax) aligned to `align` (a power of two ≤ 4096),
// or nullptr when every slot of its size is in use.
void* guarded_alloc(size_t n, size_t align);

// p is in the pool (region map kRegionGuarded). Each reports a freed or interior pointer
// with hak_fatal, naming `op`.
void guarded_free(void* p);
size_t guarded_usable(const void* p, const char* op);  // the size asked for

// Whether live guarded block p was allocated by operator new[] (secure and debug variants).
bool guarded_is_array(const void* p);
void guarded_set_array(const void* p, bool array);

struct GuardedStats {
  uint64_t allocs;  // blocks guarded so far
  uint64_t live;    // guarded blocks not freed
  uint64_t full;    // samples served as usual because every slot was in use
};
GuardedStats guarded_stats();

void guarded_lock();
void guarded_unlock();
void guarded_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_GUARDED_H
