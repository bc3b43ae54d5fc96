// shared_pool.h — where slab runs come from and go back to, shared by all threads.
//
// Staged acquire of a run for class c, cheapest stage first:
//   1. reuse an empty run of class c          (per-class lock-free stack; nothing to re-map)
//   2. pop a SuperSlab with free slots        (lock-free partial stack) and claim slots (CAS);
//      a few are tried here, and up to kPartialTriesMax before stage 4 maps memory
//   3. claim never-used slots in the current SuperSlab (CAS)
//   4. revive a retired SuperSlab or map a new one (the only stage with a lock or a syscall)
// Release is the mirror image: an emptied run goes to its class's stack (up to a small cap
// per class and in all), otherwise its slots go back to the SuperSlab (CAS) and the
// SuperSlab onto the partial stack, where any class can claim them.
// A SuperSlab whose slots are all free stays as it is (stage 2 finds it) until the next decay
// pass, which retires it: its data pages are decommitted (MADV_DONTNEED) and it waits for
// stage 4. Headers stay mapped, so lock-free readers never fault.
#ifndef HAKMEM_SHARED_POOL_H
#define HAKMEM_SHARED_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "superslab.h"

namespace hak {

// A run of class `cls`, empty, owned by `owner` (metadata reset, region map set), or nullptr
// when the OS refuses memory.
Slab* shared_pool_acquire(int cls, ThreadHeap* owner);

// Takes back an empty run (used == 0, on no heap list).
void shared_pool_release(Slab* s);

// Releases everything releasable: the cached empty runs, every SuperSlab with all slots free
// (retired), and the pages of free slots in live SuperSlabs (decommitted). Returns true if
// anything was released.
bool shared_pool_trim();

// Decommits the pages of slots released since the last call, and retires the SuperSlabs
// whose slots are all free (decay; see hak_decay_tick).
bool shared_pool_decommit_free_slots();
// Slots released since the last decommit pass (their pages are resident and unused until a
// run claims them): the idle-decay thread must run the next pass even if the program goes
// idle (decay.cpp wakes it).
uint64_t shared_pool_released_slots();
// Released slots from which a parked idle-decay thread is woken: 4 MiB (it is started from
// kDecayThreadStartBytes: decay_thread.h).
inline constexpr uint64_t kPoolWakeSlots = 64;

// Decay pass: releases the empty runs cached for a class whose stage-1 stack was neither
// pushed nor popped since the previous pass (a run waits there 1–2 decay periods before its
// slots go back; shared_pool_decommit_free_slots then drops their pages). Returns true if a run
// was released.
bool shared_pool_decay();

// Runs kept in stage 1: per class, and in all (so that a program using many classes in turn
// does not keep a run of each: their slots serve any class once given back).
inline constexpr int kEmptyRunsPerClass = 2;
inline constexpr int kEmptyRunsTotal = 8;
// SuperSlabs of the partial stack that stage 2 looks at, and that are looked at before
// stage 4 maps memory.
inline constexpr int kPartialTries = 4, kPartialTriesMax = 64;

struct SharedPoolStats {
  uint64_t superslabs_mapped;   // ever mapped (address space held)
  uint64_t superslabs_retired;  // decommitted, waiting for reuse
  uint64_t runs_assigned;       // runs assigned to a class (in use or cached empty)
  uint64_t empty_runs_cached;   // runs in the stage-1 stacks
};
SharedPoolStats shared_pool_stats();

// Fork handling: take/release the pool lock around fork().
void shared_pool_lock();
void shared_pool_unlock();
void shared_pool_reinit_after_fork();

// Debug checker over every SuperSlab header (slot masks vs. assigned runs).
bool shared_pool_is_valid(const ThreadHeap* owner = nullptr);

}  // namespace hak

#endif  // HAKMEM_SHARED_POOL_H
