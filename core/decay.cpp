// decay.cpp — the periodic memory return (see decay.h).
#include "decay.h"

#include <atomic>

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

void decay_check_clock() {
  uint64_t now = os_now_ns();
  uint64_t next = g_next_decay_ns.load(std::memory_order_relaxed);
  // One thread per period does the work (the first call only starts the clock). Its own part
  // is in the pass, so it does not do it again below.
  if (now >= next &&
      g_next_decay_ns.compare_exchange_strong(next, now + kDecayPeriodNs, std::memory_order_relaxed) &&
      next != 0) {
    t_passes_seen = g_decay_passes.fetch_add(1, std::memory_order_relaxed) + 1;
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
  uint64_t next = detail::g_next_decay_ns.load(std::memory_order_relaxed);
  if (next != 0 && now_ns >= next &&
      detail::g_next_decay_ns.compare_exchange_strong(next, now_ns + kDecayPeriodNs, std::memory_order_relaxed)) {
    detail::g_decay_passes.fetch_add(1, std::memory_order_relaxed);
    shared_pool_decay();
    shared_pool_decommit_free_slots();
    arena_decay();
  }
  return large_holds_free() || arena_dirty_bytes() != 0;
}

bool decay_run(uint64_t now_ns) {
  bool released = large_decay(now_ns);
  released |= tiny_decay();
  released |= shared_pool_decay();
  released |= shared_pool_decommit_free_slots();
  released |= arena_decay();
  return released;
}

}  // namespace hak
