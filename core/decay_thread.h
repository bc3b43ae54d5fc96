// decay_thread.h — the thread that returns memory while the program is idle.
//
// Holds: one background thread per process ("hakmem-decay"), started the first time the
// page heap or the arena keeps kDecayThreadStartBytes of freed memory for reuse, or as many
// bytes of SuperSlab slots freed in bulk wait for the next decay pass (never in a program
// that does neither: decay.cpp), and its
// state word. While woken it runs the worker every kDecayThreadTickNs; when the worker
// reports nothing left to wait for, it sleeps on a futex until the next wake, so an idle
// program without cached memory sees no wake-ups at all. Without it, decay would advance only
// when the program reaches a slow path (jemalloc's well-known limitation: USERS.md), and a
// program that frees a big buffer and then sleeps would keep it.
//
// HAKMEM_DECAY_THREAD=0 (docs/TUNING.md) never starts it, for programs that must stay
// single-threaded (unshare(CLONE_NEWUSER), some sandboxes); if the thread cannot be created
// the effect is the same. Either way decay_thread_available() is false, and the page heap
// then keeps only a small fixed amount (large.h), as it cannot count on the decay.
//
// May call: os (futex, thread start). The worker is set by the layer above (decay.cpp).
#ifndef HAKMEM_DECAY_THREAD_H
#define HAKMEM_DECAY_THREAD_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr uint64_t kDecayThreadTickNs = 250000000ull;  // 250 ms

// The worker: one decay step at `now`; returns true while memory remains that a later step
// may release (the thread keeps ticking), false to sleep until the next wake.
using DecayWorker = bool (*)(uint64_t now_ns);
void decay_thread_set_worker(DecayWorker fn, bool enabled);

// Starts the thread (the first time) or wakes it. Cheap when it is already ticking: one
// relaxed load. Must be called without any hakmem lock held and with the calling thread's
// own caches consistent: starting a thread allocates (pthread_create's malloc of the new
// thread's DTV runs on the caller, and may take a span from its stash: span_cache.cpp).
void decay_thread_wake();

// Memory kept for reuse from which the thread is started; a thread already started is woken
// for any amount. A program that keeps less than this stays single-threaded, so glibc keeps
// skipping the atomic instructions of its locks and stdio (and of the arena's lock) as it does
// in any single-threaded process: lua and perl ran 3-5 % slower once the thread existed. What
// such a program keeps goes back at its next slow paths, or stays while it is idle (less than
// this much per kind of memory: freed Large extents, arena pages, SuperSlab slots).
inline constexpr size_t kDecayThreadStartBytes = 32u << 20;
// decay_thread_wake(), but a first start only when `held_bytes` ≥ kDecayThreadStartBytes.
void decay_thread_wake_for(size_t held_bytes);

// False when the thread is disabled or could not be started.
bool decay_thread_available();

// Fork child: the thread did not come along; the next wake starts a new one.
void decay_thread_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_DECAY_THREAD_H
