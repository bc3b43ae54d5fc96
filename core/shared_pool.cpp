// shared_pool.cpp — the staged acquire and release of slab runs (see shared_pool.h).
#include "shared_pool.h"

#include <pthread.h>

#include "diag.h"
#include "fork_locks.h"
#include "os.h"

namespace hak {

#define HAK_IN_SHARED_POOL_CPP 1
#include "shared_pool.inc.h"

namespace {

TaggedStack<SuperSlab, &SuperSlab::next_partial> g_partial;         // stage 1
std::atomic<SuperSlab*> g_current{nullptr};                         // stage 2
pthread_mutex_t& g_lock = g_fork_locks.pool;                        // stage 3, retired list
SuperSlab* g_retired = nullptr;
std::atomic<uint64_t> g_mapped{0}, g_retired_count{0}, g_runs{0};
// Slots given back since the last decommit pass (resident, unused until a run claims them).
std::atomic<uint64_t> g_released_slots{0};

void partial_push(SuperSlab* ss) {
  if (!ss->in_partial.exchange(true, std::memory_order_acq_rel)) g_partial.push(ss);
}

// Claims k slots of ss and builds the run; nullptr if ss has no room.
Slab* claim_in(SuperSlab* ss, int cls, ThreadHeap* owner) {
  int idx = superslab_claim(ss, class_run_slabs(cls));
  if (idx < 0) return nullptr;
  g_runs.fetch_add(1, std::memory_order_relaxed);
  return slab_run_init(ss, idx, cls, owner);
}

// Stage 1: a SuperSlab from the partial stack, trying up to `tries` of them. Every one that
// still has free slots goes back on the stack, the one that served last (on top). A
// SuperSlab whose free slots are too few or too scattered for this class's run stays listed
// for classes with shorter runs; looking at one only would map a new SuperSlab while older
// ones hold enough free slots (batch: 92 SuperSlabs, 190 MiB resident, for 6.4 MB live).
Slab* acquire_partial(int cls, ThreadHeap* owner, int tries) {
  SuperSlab* tried[kPartialTriesMax];
  int n = 0;
  Slab* s = nullptr;
  while (n < tries) {
    SuperSlab* ss = g_partial.pop();
    if (ss == nullptr) break;
    // An RMW, not a store: the state load below must not pass it (a releaser that still saw
    // in_partial == true relies on us to see its freed slots and push ss again).
    ss->in_partial.exchange(false, std::memory_order_seq_cst);
    s = claim_in(ss, cls, owner);
    uint64_t st = ss->state.load(std::memory_order_acquire);
    if (!(st & kRetiredBit) && (st & kAllSlotsFree) != 0 && ss != g_current.load(std::memory_order_relaxed))
      tried[n++] = ss;
    if (s != nullptr) break;
  }
  while (n > 0) partial_push(tried[--n]);
  return s;
}

// Stage 3: a SuperSlab from the retired list or the OS; becomes the current one. It is
// published with the caller's run already claimed (slots 0..k-1), so a concurrent trim or
// hot-empty retire cannot take it away between publication and claim.
Slab* acquire_new(int cls, ThreadHeap* owner) {
  int k = class_run_slabs(cls);
  uint32_t first_run = k >= 32 ? 0xFFFFFFFFu : ((1u << k) - 1);
  pthread_mutex_lock(&g_lock);
  SuperSlab* ss = g_retired;
  if (ss != nullptr) g_retired = ss->next_retired;
  pthread_mutex_unlock(&g_lock);
  if (ss != nullptr) {
    g_retired_count.fetch_sub(1, std::memory_order_relaxed);
    superslab_revive(ss, first_run);
  } else {
    ss = superslab_create(first_run);  // syscall outside the lock
    if (ss == nullptr) return nullptr;
    g_mapped.fetch_add(1, std::memory_order_relaxed);
  }
  g_runs.fetch_add(1, std::memory_order_relaxed);
  Slab* s = slab_run_init(ss, 0, cls, owner);
  SuperSlab* old = g_current.exchange(ss, std::memory_order_acq_rel);
  if (old != nullptr) {
    uint64_t st = old->state.load(std::memory_order_acquire);
    if (!(st & kRetiredBit) && (st & kAllSlotsFree) != 0) partial_push(old);
  }
  return s;
}

// Retires ss if all its slots are still free: decommit, then park it for stage 3.
bool try_retire(SuperSlab* ss) {
  uint64_t expect = kAllSlotsFree;
  if (!ss->state.compare_exchange_strong(expect, kRetiredBit, std::memory_order_acq_rel)) return false;
  SuperSlab* cur = ss;
  g_current.compare_exchange_strong(cur, nullptr, std::memory_order_acq_rel);
  superslab_decommit(ss);
  pthread_mutex_lock(&g_lock);
  ss->next_retired = g_retired;
  g_retired = ss;
  pthread_mutex_unlock(&g_lock);
  g_retired_count.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// Slots went back to ss: it stays findable for stage 1, all free or not. An
// all-free SuperSlab keeps its pages until the next decay pass retires it
// (shared_pool_decommit_free_slots): retiring one as soon as a second one emptied (the
// hysteresis this replaced) decommitted 2 MiB that a program freeing and allocating in
// batches faulted in again at once (the batch bench: 8 300 faults against 3 650;
// docs/BENCHMARKS.md, "Empty SuperSlabs wait for the decay pass").
void slots_returned(SuperSlab* ss) {
  if (ss != g_current.load(std::memory_order_seq_cst)) partial_push(ss);
}

}  // namespace

Slab* shared_pool_acquire(int cls, ThreadHeap* owner) {
  // Stage 1: a SuperSlab with free slots.
  if (Slab* s = acquire_partial(cls, owner, kPartialTries)) return s;
  // Stage 2: the current SuperSlab.
  if (SuperSlab* cur = g_current.load(std::memory_order_acquire)) {
    if (Slab* s = claim_in(cur, cls, owner)) return s;
  }
  // Before mapping: a longer look down the partial stack.
  if (Slab* s = acquire_partial(cls, owner, kPartialTriesMax)) return s;
  // Stage 3: a retired or new SuperSlab.
  return acquire_new(cls, owner);
}

// The run's slots go back to its SuperSlab.
void shared_pool_release(Slab* s) {
  HAK_ASSERT(s->used == 0 && s->list == kListNone);
  SuperSlab* ss = superslab_of_slab(s);
  int idx = slab_index_in_superslab(s), k = s->run_len;
  slab_run_unassign(s);
  g_runs.fetch_sub(1, std::memory_order_relaxed);
  uint32_t bits = (k >= 32 ? 0xFFFFFFFFu : ((1u << k) - 1)) << idx;
  ss->dirty_free.fetch_or(bits, std::memory_order_relaxed);
  g_released_slots.fetch_add(uint64_t(k), std::memory_order_relaxed);
  superslab_unclaim(ss, idx, k);
  slots_returned(ss);
}

uint64_t shared_pool_released_slots() { return g_released_slots.load(std::memory_order_relaxed); }

bool shared_pool_decommit_free_slots() {
  bool released = false;
  g_released_slots.store(0, std::memory_order_relaxed);  // what is released from now on is the next pass's
  for (SuperSlab* ss = superslab_list_head(); ss != nullptr; ss = ss->next_all) {
    if (ss->dirty_free.load(std::memory_order_relaxed) == 0) continue;
    // All its slots free: retired whole (its bitmaps' pages too), not slot by slot. (Its
    // dirty bits stay until superslab_revive clears them; claims of a retired one fail.)
    if (ss->state.load(std::memory_order_relaxed) == kAllSlotsFree && try_retire(ss)) {
      released = true;
      continue;
    }
    uint32_t dirty = ss->dirty_free.exchange(0, std::memory_order_acq_rel);
    // Claim them first, so no thread carves a slot while its pages are being dropped.
    uint32_t mine = superslab_claim_bits(ss, dirty);
    if (mine == 0) continue;
    superslab_decommit_slots(ss, mine);
    superslab_unclaim_bits(ss, mine);
    slots_returned(ss);
    released = true;
  }
  return released;
}

bool shared_pool_trim() {
  bool released = false;
  released |= shared_pool_decommit_free_slots();
  for (SuperSlab* ss = superslab_list_head(); ss != nullptr; ss = ss->next_all) {
    if (try_retire(ss)) released = true;
  }
  return released;
}

SharedPoolStats shared_pool_stats() {
  SharedPoolStats st{};
  st.superslabs_mapped = g_mapped.load(std::memory_order_relaxed);
  st.superslabs_retired = g_retired_count.load(std::memory_order_relaxed);
  st.runs_assigned = g_runs.load(std::memory_order_relaxed);
  return st;
}

void shared_pool_lock() { pthread_mutex_lock(&g_lock); }
void shared_pool_unlock() { pthread_mutex_unlock(&g_lock); }
void shared_pool_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

bool shared_pool_is_valid(const ThreadHeap* owner) {
  for (SuperSlab* ss = superslab_list_head(); ss != nullptr; ss = ss->next_all) {
    if (!superslab_is_valid(ss, owner)) return false;
  }
  return true;
}

}  // namespace hak
