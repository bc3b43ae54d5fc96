// tiny_alloc_fast.inc.h — host: hakmem.cpp. The malloc fast path of the Tiny/Mid tiers.
//
//   malloc(n) → n ≤ alloc_direct_max()         1 compare with memory (32 KiB, or 0 while the
//                                                 heap profiler counts: the counted path)
//             → size_to_class(n)               1 table load (+1 compare for Mid)
//                      → t_cache[cls].head pop   TLS base is %fs: 2 loads, 3 stores (one
//                                                 clears the free-block key)
//                        hit: return             1 predicted branch; no atomics, no lock,
//                                                 no call
//                        miss: tiny_alloc_miss   cold call: a block reserved for the class
//                                                 (release, tiny_heap.h), else init check,
//                                                 tiny_refill
// Budget: 21 instructions from malloc's entry to ret on a Tiny hit (x86-64 release
// libhakmem.so, objdump; 2 of them read the TLS offset from the GOT),
// no stack frame. The secure variant: 30 (decoding and checking the link, free_link.h).
// scripts/callgrind.sh counts a whole malloc+free pair (docs/BENCHMARKS.md).
#ifndef HAK_IN_HAKMEM_CPP
#error "tiny_alloc_fast.inc.h is part of hakmem.cpp"
#endif

HAK_SLOW_PATH void* tiny_alloc_miss(int cls, bool may_borrow);

// may_borrow: a miss may hand out a block of a slightly larger class (tiny_refill); false
// when the caller chose cls for its alignment.
HAK_FAST_PATH void* tiny_alloc_fast(int cls, bool may_borrow = true) {
  TlsCache& tc = t_cache[unsigned(cls)];  // unsigned: a class id needs no sign extension
  if (HAK_LIKELY(tc.head != nullptr)) {
    void* p = tiny_cache_pop(tc, cls);  // follows the link safely (free_link.h)
    if constexpr (kDebug) tiny_debug_check_alloc(p, cls);
    return p;
  }
  return tiny_alloc_miss(cls, may_borrow);
}

// Both return a block for n bytes (secure: armed for n, canary.h) or a span or guarded block.
HAK_SLOW_PATH void* tiny_alloc_miss_sized(size_t n, int cls);
HAK_SLOW_PATH void* tiny_alloc_prof(size_t n, int cls);

HAK_FAST_PATH void* tiny_alloc_sized(size_t n) {
  if constexpr (kGuardInline) {
    if (HAK_UNLIKELY(--t_guard_left < 0)) return tiny_alloc_miss_sized(n, 0);
  }
  int cls = size_to_class_alloc(n + kCanaryTail);  // secure: room for the canary (canary.h)
  TlsCache& tc = t_cache[unsigned(cls)];
  if (HAK_LIKELY(tc.head != nullptr)) {
    void* p = tiny_cache_pop(tc, cls);
    if constexpr (kDebug) tiny_debug_check_alloc(p, cls);
    if constexpr (kCanary) canary_arm(p, class_to_size(cls), n);  // a block of cls: no lookup
    return p;
  }
  return tiny_alloc_miss_sized(n, cls);  // n first: it stays in the register it came in
}

// tiny_alloc_sized while the heap profiler counts (alloc_direct_max() is 0: every small
// request reaches this, alloc_block and calloc): the class's byte count first (sampler.h).
HAK_FAST_PATH void* tiny_alloc_counted(size_t n) {
  int cls = size_to_class_alloc(n + kCanaryTail);
  if ((t_prof_class_left[cls] -= int32_t(n)) < 0) return tiny_alloc_prof(n, cls);
  return tiny_alloc_sized(n);
}
