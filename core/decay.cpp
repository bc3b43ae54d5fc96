// decay.cpp — the periodic memory return (see decay.h).
#include "decay.h"

#include <atomic>

#include "decay_thread.h"
#include "diag.h"
#include "large.h"
#include "os.h"
#include "page_arena.h"
#include "shared_pool.h"
#include "tiny_heap.h"

namespace hak {
namespace detail {

HAK_TLS uint32_t t_decay_calls;
std::atomic<uint64_t> g_next_decay_ns{0};
uint64_t g_check_every = 0;
HAK_TLS uint64_t t_check_calls;
HAK_TLS bool t_checking;

void debug_check_tick() {
  if (t_checking || ++t_check_calls % g_check_every != 0) return;
  t_checking = true;  // the checkers may print, and printing may not allocate, but be safe
  if (!heap_check_all()) hak_fatal("heap check failed (HAKMEM_CHECK=%lu, after %lu slow-path calls of this thread)",
                                   (unsigned long)g_check_every, (unsigned long)t_check_calls);
  t_checking = false;
}

// Passes run so far; a thread that has not seen the latest runs its own part of it.
std::atomic<uint64_t> g_decay_passes{0};
HAK_TLS uint64_t t_passes_seen;

// One caller per period claims the pass: returns its number, or 0. The first slow-path call
// only starts the clock (start_clock); the idle-decay thread never starts it.
uint64_t claim_pass(uint64_t now, bool start_clock) {
  uint64_t next = g_next_decay_ns.load(std::memory_order_relaxed);
  if (now < next || (next == 0 && !start_clock)) return 0;
  if (!g_next_decay_ns.compare_exchange_strong(next, now + kDecayPeriodNs, std::memory_order_relaxed) || next == 0)
    return 0;
  return g_decay_passes.fetch_add(1, std::memory_order_relaxed) + 1;
}

void decay_check_clock() {
  // Slots released in bulk stay resident until a pass decommits them: the idle-decay thread
  // must run that pass if the program goes idle now (a slow path holds no hakmem lock here).
  uint64_t released = shared_pool_released_slots();
  if (released >= kPoolWakeSlots) decay_thread_wake_for(size_t(released) * kSlabSize);
  uint64_t now = os_now_ns();
  // The thread that runs the pass does its own part in it, not again below.
  if (uint64_t pass = claim_pass(now, true)) {
    t_passes_seen = pass;
    decay_run(now);
    return;
  }
  // Another thread ran a pass since this one last looked: this thread's caches and heap are
  // its own to decay (owner-only state), so it does that part now.
  uint64_t passes = g_decay_passes.load(std::memory_order_relaxed);
  if (passes != t_passes_seen) {
    t_passes_seen = passes;
    tiny_decay_thread();
  }
}

}  // namespace detail

bool heap_check_all() {
  bool ok = tiny_heap_is_valid();
  // Other threads claim and release SuperSlab slots meanwhile: look at this thread's runs only.
  ok = shared_pool_is_valid(tiny_current_heap()) && ok;
  ok = arena_is_valid() && ok;
  return ok;
}

bool decay_background(uint64_t now_ns) {
  large_decay(now_ns);
  if (detail::claim_pass(now_ns, false) != 0) {
    shared_pool_decommit_free_slots();
    arena_decay();
  }
  return large_holds_free() || arena_dirty_bytes() != 0 || shared_pool_released_slots() != 0;
}

bool decay_run(uint64_t now_ns) {
  bool released = large_decay(now_ns);
  released |= tiny_decay();
  released |= shared_pool_decommit_free_slots();
  released |= arena_decay();
  return released;
}

}  // namespace hak
