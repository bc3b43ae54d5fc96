// tiny_free_fast_v2.inc.h — host: hakmem.cpp. The free fast path of the Tiny/Mid tiers:
// push the block on this thread's list of its class, whatever thread's slab it came from.
//
//   (the caller, hak_free_api.inc.h: p starts a block of its run — its offset in the run, from
//    the region map, a multiple of the class size: 8 instructions, 3 loads — else the cold
//    slow path reports an interior or unaligned pointer at the call)
//   tiny_free_fast(p, cls) → p's key word not the free-block key?
//                                                 1 load, 1 predicted branch; else the cold
//                                                 tiny_free_suspect_lookup (a double free
//                                                 confirmed: abort at the call)
//                          → key word := key     1 store (free_link.h)
//                          → t_cache push        2 loads, 3 stores (secure/debug: the link
//                                                 is encoded, free_link.h)
//                          → --room < 0?         1 predicted branch (the list is over its cap)
//                            yes: tiny_cache_overflow_after (cold call: flush half the list
//                                 to the owning runs, local or remote; or set the thread up)
// Neither cold call is given the class (each finds it again from p in the region map), so the
// hit keeps no copy of it.
// No atomics, no lock, no call on the fast path. The class comes from the region map
// (hak_free_api.inc.h), so a block needs no header. The secure variant also checks the block's
// canary (an overflow past the bytes asked for: canary.h).
#ifndef HAK_IN_HAKMEM_CPP
#error "tiny_free_fast_v2.inc.h is part of hakmem.cpp"
#endif

// tiny_free_suspect with p's class from the region map (hak_free_api.inc.h): free's fast path
// keeps no copy of the class for its cold call.
HAK_SLOW_PATH void tiny_free_suspect_lookup(void* p);

HAK_FAST_PATH void tiny_free_fast(void* p, int cls) {
  if (HAK_UNLIKELY(key_held(p))) return tiny_free_suspect_lookup(p);
  if constexpr (kSecure && kCanary) {
    // Bytes written past what was asked for are reported here (canary.h); the debug variant's
    // check of every free (tiny_debug_check_free) has done it before it poisoned the block.
    size_t n;
    if (HAK_UNLIKELY(!canary_intact(p, class_to_size(cls), &n))) tiny_canary_failed(p, cls, "free");
  }
  tiny_cache_push(t_cache[unsigned(cls)], p, cls);
}
