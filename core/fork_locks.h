// fork_locks.h — the locks fork() holds, together on one page of their own.
//
// hakmem.cpp's atfork handlers take every lock that guards shared state before fork() and
// release it (parent) or re-initialise it (child) after: each lock is written just after the
// fork, in the parent and in the child, and every page so written costs each of them a
// copy-on-write fault. Spread over four pages of the library's data, the locks cost every
// fork 8 faults; on one page, 2 (docs/BENCHMARKS.md, "The locks fork takes, on one page").
// A process that never had a second thread (a shell, make) takes none (hakmem.cpp,
// fork_prepare). Each lock has a cache line of its own: they are taken independently between
// forks.
//
// Holds the locks; each module names its own member (a reference, folded by the compiler).
// Calls nothing.
#ifndef HAKMEM_FORK_LOCKS_H
#define HAKMEM_FORK_LOCKS_H

#include <pthread.h>

#include <atomic>

namespace hak {

struct alignas(4096) ForkLocks {
  alignas(64) pthread_mutex_t heaps = PTHREAD_MUTEX_INITIALIZER;    // tiny_heap.cpp: thread heaps
  alignas(64) pthread_mutex_t pool = PTHREAD_MUTEX_INITIALIZER;     // shared_pool.cpp: stage 3
  alignas(64) pthread_mutex_t arena = PTHREAD_MUTEX_INITIALIZER;    // page_arena.cpp
  alignas(64) pthread_mutex_t large = PTHREAD_MUTEX_INITIALIZER;    // large.cpp
  alignas(64) pthread_mutex_t guarded = PTHREAD_MUTEX_INITIALIZER;  // guarded.cpp
  alignas(64) std::atomic<int> prof{0};                              // prof.cpp's lock word
  alignas(64) pthread_mutex_t seed = PTHREAD_MUTEX_INITIALIZER;     // seed_heap.cpp
};
static_assert(sizeof(ForkLocks) == 4096, "the fork locks fill exactly one page");

extern constinit ForkLocks g_fork_locks;  // fork_locks.cpp

// Touches the locks' page with a write (hakmem's initialisation): pthread_mutex_lock reads a
// lock before it writes it, so the process's first lock would otherwise fault twice (the
// zero page mapped by the read, then the write); most processes take one early (their first
// SuperSlab, span or Large block).
inline void fork_locks_prefault() { g_fork_locks.prof.fetch_add(0, std::memory_order_relaxed); }

}  // namespace hak

#endif  // HAKMEM_FORK_LOCKS_H
