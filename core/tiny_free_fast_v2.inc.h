// tiny_free_fast_v2.inc.h — host: hakmem.cpp. The free fast path of the Tiny/Mid tiers:
// push the block on this thread's list of its class, whatever thread's slab it came from.
//
//   tiny_free_fast(p, cls) → p 16-byte aligned, its key word not the free-block key?
//                                                 1 load, 2 predicted branches; else the cold
//                                                 tiny_free_suspect (invalid pointer, or a
//                                                 double free confirmed: abort at the call)
//                          → key word := key     1 store (free_link.h)
//                          → t_cache[cls] push   2 loads, 3 stores (secure/debug: the link
//                                                 is encoded, free_link.h)
//                          → --room < 0?         1 predicted branch (the list is over its cap)
//                            yes: tiny_cache_overflow (cold call: flush half the list to
//                                 the owning runs, local or remote; or set the thread up)
// No atomics, no lock, no call on the fast path. The class comes from the region map
// (hak_free_api.inc.h), so a block needs no header. The secure variant also checks that p is
// a block's start (an interior pointer is reported at the call) and the block's canary (an
// overflow past the bytes asked for: canary.h).
#ifndef HAK_IN_HAKMEM_CPP
#error "tiny_free_fast_v2.inc.h is part of hakmem.cpp"
#endif

HAK_FAST_PATH void tiny_free_fast(void* p, int cls) {
  if (HAK_UNLIKELY((reinterpret_cast<uintptr_t>(p) & 15) != 0 || key_held(p))) return tiny_free_suspect(p, cls);
  if constexpr (kSecure) {
    // A pointer inside a block, 16-byte aligned but not at the block's start, is rejected at
    // the call (block_start_in_run). Release finds it at the next flush of the thread's
    // cache, where the run is at hand anyway: the check's instructions on every free were not
    // worth it there (docs/BENCHMARKS.md, "Interior pointers at the call").
    if (HAK_UNLIKELY(!block_start_in_run(p, cls))) return tiny_free_suspect(p, cls);
    // Bytes written past what was asked for are reported here (canary.h).
    if constexpr (kCanary) {
      size_t n;
      if (HAK_UNLIKELY(!canary_intact(p, class_to_size(cls), &n))) tiny_canary_failed(p, cls, "free");
    }
  }
  tiny_cache_push(t_cache[cls], p, cls);
}
