// tiny_alloc_fast.inc.h — host: hakmem.cpp. The malloc fast path of the Tiny/Mid tiers.
//
//   malloc(n) → n ≤ alloc_direct_max()         1 compare with memory (32 KiB, or 0 while the
//                                                 heap profiler counts: the counted path)
//             → size_to_class(n)               1 table load, (n + 15) >> 4: Tiny and Mid in
//                                                 one table, no branch between them
//                      → t_cache heads[cls] pop  the thread's block is %fs-relative, its
//                                                 offset from the GOT: 2 loads, 3 stores (one
//                                                 clears the free-block key), the class id
//                                                 the index of both arrays (tiny_heap.h)
//                        hit: return             1 predicted branch; no atomics, no lock,
//                                                 no call
//                        miss: tiny_alloc_miss_n  cold call with n alone (the class found
//                                                 again there): a block reserved for the
//                                                 class (release, tiny_heap.h), else init
//                                                 check, tiny_refill
// Budget: 15 instructions from malloc's entry to ret on a Tiny hit (x86-64 release
// libhakmem.so, objdump; 1 of them reads the TLS offset from the GOT), no stack frame (21
// before the one table, the two arrays and the miss path's own class lookup: docs/BENCHMARKS.md,
// "Paying for the checks at the call"). The secure variant adds the link's decoding and check
// and the poison's (free_link.h). scripts/callgrind.sh counts a whole malloc+free pair
// (docs/BENCHMARKS.md).
#ifndef HAK_IN_HAKMEM_CPP
#error "tiny_alloc_fast.inc.h is part of hakmem.cpp"
#endif

HAK_SLOW_PATH void* tiny_alloc_miss(int cls, bool may_borrow);

// may_borrow: a miss may hand out a block of a slightly larger class (tiny_refill); false
// when the caller chose cls for its alignment.
HAK_FAST_PATH void* tiny_alloc_fast(int cls, bool may_borrow = true) {
  TlsCache tc = t_cache[unsigned(cls)];  // unsigned: a class id needs no sign extension
  if (HAK_LIKELY(tc.head != nullptr)) {
    void* p = tiny_cache_pop(tc, cls);  // follows the link safely (free_link.h)
    if constexpr (kDebug) tiny_debug_check_alloc(p, cls);
    return p;
  }
  return tiny_alloc_miss(cls, may_borrow);
}

// Both return a block for n bytes (secure: armed for n, canary.h) or a span or guarded block.
HAK_SLOW_PATH void* tiny_alloc_miss_sized(size_t n, int cls);
HAK_SLOW_PATH void* tiny_alloc_miss_n(size_t n);
HAK_SLOW_PATH void* tiny_alloc_prof(size_t n, int cls);

HAK_FAST_PATH void* tiny_alloc_sized(size_t n) {
  if constexpr (kGuardInline) {
    if (HAK_UNLIKELY(--t_guard_left < 0)) return tiny_alloc_miss_sized(n, 0);
  }
  int cls = size_to_class_alloc(n + kCanaryTail);  // secure: room for the canary (canary.h)
  TlsCache tc = t_cache[unsigned(cls)];
  if (HAK_LIKELY(tc.head != nullptr)) {
    void* p = tiny_cache_pop(tc, cls);
    if constexpr (kDebug) tiny_debug_check_alloc(p, cls);
    if constexpr (kCanary) canary_arm(p, class_to_size(cls), n);  // a block of cls: no lookup
    return p;
  }
  // The miss finds the class again from n (in the register it came in), so that the hit keeps
  // no copy of it for the call.
  return tiny_alloc_miss_n(n);
}

// tiny_alloc_sized while the heap profiler counts (alloc_direct_max() is 0: every small
// request reaches this, alloc_block and calloc): the class's byte count first (sampler.h).
HAK_FAST_PATH void* tiny_alloc_counted(size_t n) {
  int cls = size_to_class_alloc(n + kCanaryTail);
  if ((t_prof_class_left[cls] -= int32_t(n)) < 0) return tiny_alloc_prof(n, cls);
  return tiny_alloc_sized(n);
}
