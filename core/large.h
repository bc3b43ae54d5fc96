// large.h — the Large tier: spans bigger than the page arena's (> 1 MiB), 64 KiB-aligned (so
// the region map never shares a unit with a foreign mapping), and the policy that decides
// which freed Large memory stays resident for reuse and which goes back to the OS.
//
// Freed Large memory goes into the page heap (page_heap.h: split, coalesced, best fit), where
// the next Large request of any size finds it resident: no mmap, no page faults. It stays
// there while the program is likely to reuse it, and goes back (munmap) by two rules:
//   - time: an extent nobody took or freed into for kLargeDecayNs (1 s) is returned, by the
//     next Large operation, a decay pass or the idle-decay thread (decay_thread.h), so this
//     also happens in a program that has gone idle;
//   - a bound tied to the program's recent peak: the heap keeps at most what the program had
//     live at its recent peak (the higher of this and the previous 1 s window) minus what it
//     has live now, plus kLargeRetainSlack. A program back at its peak keeps nothing extra; one
//     that freed everything keeps its peak's worth for at most a second.
// Without the idle-decay thread (disabled or refused), the heap keeps at most
// kLargeRetainSlack: nothing else would return the memory of a program that stops.
// Realloc of a Large block grows it in place into a free extent after it, else moves its pages
// (mremap, no copy) into a free extent or a new mapping; shrinking returns the tail.
// malloc_trim returns every free extent. The page arena's new chunks and new SuperSlabs come
// from the free extents first (large_take_aligned): a program that frees a big buffer and
// then makes many smaller blocks reuses the buffer's resident pages instead of faulting in
// new ones beside it; the ends of the extent around such a range, if shorter than the range,
// go back to the OS at once (they would stay resident, waiting for a Large request they
// rarely fit, until the decay).
//
// May call: page_heap, region_map, os, decay_thread, valgrind_support, fork_locks (its lock). One lock serialises it
// all.
#ifndef HAKMEM_LARGE_H
#define HAKMEM_LARGE_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr size_t kLargeAlign = 64 * 1024;
inline constexpr uint64_t kLargeDecayNs = 1000000000ull;  // 1 s
inline constexpr uint64_t kLargePeakWindowNs = 1000000000ull;
inline constexpr size_t kLargeRetainSlack = 8 * 1024 * 1024;

// A mapping of `bytes` (multiple of kLargeAlign). *fresh is set when its pages read as zero
// (straight from the OS). nullptr when out of memory.
void* large_alloc(size_t bytes, bool* fresh);
// `bytes` of freed Large memory, resident, aligned to `align` (a power of two ≥ 64 KiB), for
// the page arena's next chunk or a new SuperSlab: it leaves the heap (region map kRegionSpan)
// and is no longer Large memory (not counted live; its new owner unmaps or keeps it as it
// would its own mapping). nullptr if no free extent holds such a range.
void* large_take_aligned(size_t bytes, size_t align);
// Returns a span made by large_alloc (the same byte count, or as resized below).
void large_free(void* base, size_t bytes);

// Grows the span [base, base + old_bytes) to new_bytes (multiples of kLargeAlign) without
// moving it: from the free extent after it, or address space the kernel has free there.
bool large_grow_in_place(void* base, size_t old_bytes, size_t new_bytes);
// Moves the span to a new place of new_bytes, its first old_bytes carried over without a
// copy (mremap); the old span is gone. nullptr when that cannot be done (the caller copies).
void* large_move(void* base, size_t old_bytes, size_t new_bytes);
// Shrinks the span to new_bytes; the tail goes to the page heap.
void large_shrink(void* base, size_t old_bytes, size_t new_bytes);

// Returns every free extent to the OS. True if any.
bool large_trim();
// Returns what the rules above say is due at now_ns. True if anything went back.
bool large_decay(uint64_t now_ns);
// True while the page heap holds memory (the idle-decay thread keeps ticking).
bool large_holds_free();

struct LargeStats {
  uint64_t live, live_bytes, cached, cached_bytes, recent_peak_bytes;
};
LargeStats large_stats();

// Debug checker: the page heap's structure and the counters.
bool large_is_valid();

void large_lock();
void large_unlock();
void large_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_LARGE_H
