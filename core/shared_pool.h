// shared_pool.h — where slab runs come from and go back to, shared by all threads.
//
// Staged acquire of a run for class c, cheapest stage first:
//   1. pop a SuperSlab with free slots        (lock-free partial stack) and claim slots (CAS);
//      a few are tried here, and up to kPartialTriesMax before stage 3 maps memory
//   2. claim never-used slots in the current SuperSlab (CAS)
//   3. revive a retired SuperSlab or map a new one (the only stage with a lock or a syscall)
// Release is the mirror image: an emptied run's slots go back to the SuperSlab (CAS) and the
// SuperSlab onto the partial stack, where any class can claim them, resident pages first
// (superslab_claim). No empty runs are kept per class here: a run kept for a class that does
// not come back soon holds pages another class would take while they are in cache (the batch
// bench: 16.6 → 10.4 MiB peak RSS, 40 % fewer simulated cache misses without the per-class
// stacks; docs/BENCHMARKS.md, "Fresh blocks reserved, not linked"). The thread heaps keep
// the few a class is sure to take again (tiny_heap.cpp, KeepEmpty).
// A SuperSlab whose slots are all free stays as it is (stage 1 finds it) until the next decay
// pass, which retires it: its data pages are decommitted (MADV_DONTNEED) and it waits for
// stage 3. Headers stay mapped, so lock-free readers never fault.
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

// Releases everything releasable: every SuperSlab with all slots free
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

// SuperSlabs of the partial stack that stage 1 looks at, and that are looked at before
// stage 3 maps memory.
inline constexpr int kPartialTries = 4, kPartialTriesMax = 64;

struct SharedPoolStats {
  uint64_t superslabs_mapped;   // ever mapped (address space held)
  uint64_t superslabs_retired;  // decommitted, waiting for reuse
  uint64_t runs_assigned;       // runs assigned to a class
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
