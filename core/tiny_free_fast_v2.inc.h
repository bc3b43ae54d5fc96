// tiny_free_fast_v2.inc.h — host: hakmem.cpp. The free fast path of the Tiny/Mid tiers:
// push the block on this thread's list of its class, whatever thread's slab it came from.
//
//   tiny_free_fast(p, cls) → secure/debug: p == list head? (double free in a row: cold report)
//                          → t_cache[cls] push   2 loads, 3 stores (secure/debug: the link
//                                                 is encoded, free_link.h)
//                          → count > cap?        1 predicted branch
//                            yes: tiny_cache_overflow (cold call: flush half the list to
//                                 the owning runs, local or remote; or set the thread up)
// No atomics, no lock, no call on the fast path. The class comes from the region map
// (hak_free_api.inc.h), so a block needs no header.
#ifndef HAK_IN_HAKMEM_CPP
#error "tiny_free_fast_v2.inc.h is part of hakmem.cpp"
#endif

HAK_FAST_PATH void tiny_free_fast(void* p, int cls) {
  TlsCache& tc = t_cache[cls];
  void* head = tc.head;
  if constexpr (kHardenLinks) {
    if (HAK_UNLIKELY(p == head)) tiny_double_free(p, cls);  // freed twice in a row
  }
  link_store(p, head);
  tc.head = p;
  if (HAK_UNLIKELY(++tc.count > tc.cap)) tiny_cache_overflow(cls);
}
