// span_cache.h — a thread's stash of freed page-arena spans, taken back by its next span
// allocations of about the same size without the arena's lock.
//
// Holds: per thread, up to kSpanCacheEntries freed arena spans (start, bytes), at most
// kSpanCacheBytes in all; nothing shared, nothing allocated. free() of an arena span puts it
// here after writing the header's DEAD mark (a double free is still caught at the call);
// span_alloc takes the most recently freed span whose size is the request's up to a quarter
// more (the block gets the whole span: free gives all of it back). What does not fit the
// bounds goes to the arena at once; a miss leaves the stash alone. The stash goes back to
// the arena, several spans under one lock, at the thread's own decay part (decay.h), at
// malloc_trim and at thread exit; after the exit hook nothing is stashed.
//
// Why: the arena's lock is an atomic read-modify-write, which first waits for every store the
// thread has pending — the program's own writes to the block it just allocated, cache misses
// for blocks of 32 KiB and up. mid_large_mix spent 27 % of its samples on that instruction.
//
// May call: page_arena.
#ifndef HAKMEM_SPAN_CACHE_H
#define HAKMEM_SPAN_CACHE_H

#include <stddef.h>

namespace hak {

inline constexpr int kSpanCacheEntries = 8;
inline constexpr size_t kSpanCacheBytes = 1024 * 1024;

// A stashed span of `bytes` to `bytes` + a quarter (the span's real size in *got), or nullptr.
void* span_cache_take(size_t bytes, size_t* got);
// Stashes the freed arena span [start, start + bytes), or gives it to the arena.
void span_cache_put(void* start, size_t bytes);
// Gives every stashed span of this thread back to the arena. True if there was any.
bool span_cache_flush();
// The thread's exit hook ran: flush, and stash nothing from now on.
void span_cache_thread_exit();
// Bytes this thread has stashed (tests, stats).
size_t span_cache_bytes();

}  // namespace hak

#endif  // HAKMEM_SPAN_CACHE_H
