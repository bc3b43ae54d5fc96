// decay.cpp — the periodic memory return (see decay.h).
#include "decay.h"

#include <atomic>

#include "large.h"
#include "os.h"
#include "page_arena.h"
#include "shared_pool.h"
#include "tiny_heap.h"

namespace hak {
namespace detail {

HAK_TLS uint32_t t_decay_calls;
std::atomic<uint64_t> g_next_decay_ns{0};

void decay_check_clock() {
  uint64_t now = os_now_ns();
  uint64_t next = g_next_decay_ns.load(std::memory_order_relaxed);
  if (now < next) return;
  // One thread per period does the work.
  if (!g_next_decay_ns.compare_exchange_strong(next, now + kDecayPeriodNs, std::memory_order_relaxed)) return;
  if (next == 0) return;  // first call: just start the clock
  decay_run(now);
}

}  // namespace detail

bool decay_run(uint64_t now_ns) {
  bool released = large_decay(now_ns);
  released |= tiny_decay();
  released |= shared_pool_decommit_free_slots();
  released |= arena_decay();
  return released;
}

}  // namespace hak
