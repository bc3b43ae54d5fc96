// tiny_misuse.cpp — the checks that name a bad free of a Tiny/Mid block: a double free found
// on the thread's list or back in its run, an invalid pointer, a broken canary (tiny_heap.h
// declares them). They run on the cold side of free: the free-block key matched
// (tiny_suspect_check), the secure variant's canary failed, or the debug variant checks every free.
// Holds nothing. May call: tiny_heap.h (the thread's lists and heap, a run's remote queue),
// superslab.h, region_map.h, canary.h, diag.h, valgrind_support.h. Also the debug variant's
// poisoning of free blocks and its check at reuse.
#include <string.h>

#include "canary.h"
#include "diag.h"
#include "free_link.h"
#include "region_map.h"
#include "tiny_heap.h"
#include "valgrind_support.h"

namespace hak {

namespace {

// Whether p is among the first `limit` blocks of this thread's list of class cls. Each link is
// checked before it is followed: a list an overflow or a write after free broke ends the look
// (the flush reports it) instead of sending it to a wild address.
bool tls_list_holds(int cls, const void* p, uint32_t limit) {
  uint32_t looked = 0;
  for (void* b = t_cache[cls].head; b != nullptr && looked < limit; ++looked) {
    if (b == p) return true;
    void* next = link_load(b);
    if (next != nullptr && (!link_plausible(next) || region_map_lookup(next) != cls)) return false;
    b = next;
  }
  return false;
}

}  // namespace

void tiny_debug_check_free(void* p, int cls) {
  Slab* s = slab_of_block(p);
  size_t size = class_to_size(cls);
  if (s->cls != cls)
    hak_fatal("free(%p): invalid pointer (slab metadata says class %u, the region map class %d)", p,
              unsigned(s->cls), cls);
  const char* start = slab_data_start(superslab_of_slab(s), slab_index_in_superslab(s));
  const char* c = static_cast<const char*>(p);
  if (c < start)
    hak_fatal("free(%p): invalid pointer (before the first block of a run of size class %d: hakmem's SuperSlab header)", p, cls);
  if (c >= s->end) hak_fatal("free(%p): invalid pointer (past the last block of a run of size class %d)", p, cls);
  if (size_t(c - start) % size != 0)
    hak_fatal("free(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start)", p, size,
              cls);
  if (c >= s->bump)
    hak_fatal("free(%p): invalid pointer (never handed out: beyond the carved part of its slab)", p);
  // The most recent frees of this class on this thread (a bounded look: every free pays it).
  if (tls_list_holds(cls, p, 32)) hak_fatal("free(%p): double free (block of size class %d, %zu bytes)", p, cls, size);
  // Bytes written past what was asked for (canary.h), before the poison covers them. A block
  // holding the free-block key was freed before: the key's check (tiny_free_fast) reports it.
  if (canary_on() && !key_held(p)) {
    size_t n;
    if (!canary_intact(p, size, &n)) tiny_canary_failed(p, cls, "free");
  }
  tiny_debug_poison(p, cls);
}

// A block found free (on this thread's list of its class, or back in its run) when op met it:
// free and realloc would free it a second time; malloc_usable_size (secure, debug) only asks
// its size, and is told as the seed heap tells it (seed_usable): a freed block.
[[noreturn]] static void freed_block_met(void* p, int cls, size_t size, const char* op) {
  if (strcmp(op, "malloc_usable_size") == 0)
    hak_fatal("%s(%p): invalid pointer (a freed block of size class %d, %zu bytes)", op, p, cls, size);
  hak_fatal("%s(%p): double free (block of size class %d, %zu bytes)", op, p, cls, size);
}

void tiny_suspect_check(void* p, int cls, const char* op) {
  const size_t size = class_to_size(cls);
  if ((reinterpret_cast<uintptr_t>(p) & 15) != 0)
    hak_fatal("%s(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start: not 16-byte aligned)",
              op, p, size, cls);
  // p holds the free-block key. On this thread's list of its class?
  if (tls_list_holds(cls, p, t_cache[cls].count())) freed_block_met(p, cls, size, op);
  // Back in its run: carved, and its out-bit clear. The run may be another thread's: its bit is
  // read, never written (a relaxed load; the owner may be flipping other bits of the word).
  Slab* s = slab_of_block(p);
  if (s->cls != cls) return;
  uint32_t i = run_block_index(s, p);
  if (i == UINT32_MAX && static_cast<const char*>(p) < run_data_start(s))
    hak_fatal("%s(%p): invalid pointer (before the first block of a run of size class %d: hakmem's SuperSlab header)", op, p, cls);
  if (i == UINT32_MAX && static_cast<const char*>(p) >= s->end)
    hak_fatal("%s(%p): invalid pointer (past the last block of a run of size class %d)", op, p, cls);
  if (i == UINT32_MAX)
    hak_fatal("%s(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start)", op, p, size, cls);
  if (static_cast<const char*>(p) >= s->bump) return;
  uint64_t w = __atomic_load_n(&out_word(run_out_bits(s), i >> 6), __ATOMIC_RELAXED);
  if (!((w >> (i & 63)) & 1)) freed_block_met(p, cls, size, op);
  // Out of its run, on no list of this thread. Freed first by another thread that has passed
  // it back (its exit, its flush): then it waits in the run's remote queue, and if this thread
  // owns the run it takes the queue in now and looks again.
  ThreadHeap* const h = tiny_current_heap();
  if (h != nullptr && s->owner == h && tiny_drain_remote(s) != 0) {
    w = out_word(run_out_bits(s), i >> 6);
    if (!((w >> (i & 63)) & 1)) freed_block_met(p, cls, size, op);
  }
  // Otherwise another thread's cache, a run another thread owns (the flush and the drain
  // check it there), or a program that stored the key's value itself.
}

void tiny_canary_failed(void* p, int cls, const char* op) {
  const size_t size = class_to_size(cls);
  if (tls_list_holds(cls, p, t_cache[cls].count())) freed_block_met(p, cls, size, op);
  Slab* s = slab_of_block(p);
  if (s->cls == cls) {
    uint32_t i = run_block_index(s, p);
    if (i != UINT32_MAX) {
      if (static_cast<const char*>(p) >= s->bump)
        hak_fatal("%s(%p): invalid pointer (never handed out: beyond the carved part of its slab)", op, p);
      uint64_t w = __atomic_load_n(&out_word(run_out_bits(s), i >> 6), __ATOMIC_RELAXED);
      if (!((w >> (i & 63)) & 1)) freed_block_met(p, cls, size, op);
    }
  }
  canary_report(p, size, op);
}

void tiny_free_suspect(void* p, int cls) {
  tiny_suspect_check(p, cls, "free");
  tiny_cache_push(t_cache[cls], p, cls);
}

// The debug variant's poison of free blocks (tiny_heap.h).
// Not under valgrind: there the block is NOACCESS to memcheck, which reports the write itself.
void tiny_debug_poison(void* p, int cls) {
  if constexpr (kValgrind) {
    if (vg_running()) return;
  }
  size_t size = class_to_size(cls);
  memset(static_cast<char*>(p) + 2 * sizeof(void*), kFreePoison, size - 2 * sizeof(void*));
}

void tiny_debug_check_alloc(void* p, int cls) {
  if constexpr (kValgrind) {
    if (vg_running()) return;
  }
  size_t size = class_to_size(cls);
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 2 * sizeof(void*); i < size; ++i) {
    if (c[i] != kFreePoison)
      hak_fatal("use after free: %zu-byte block %p (size class %d) was written after it was freed (byte %zu is %x, not %x)",
                size, p, cls, i, unsigned(c[i]), unsigned(kFreePoison));
  }
}

}  // namespace hak
