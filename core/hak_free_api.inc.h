// hak_free_api.inc.h — host: hakmem.cpp. Where does free go?
//
//   free(p) → p >> 16 < map units?                1 compare with memory, 1 predicted branch
//                                                  (the flat map is there and covers p:
//                                                  region_map.h)
//           → entry = flat map[p >> 16]           id, run start: 2 loads from one line
//           → p's offset in its run a block's, one of a run of the id's class?
//             (region_run_offset, class_starts_block_in)   8 instructions (the id's constant
//                                                  and bound read from the map's front page
//                                                  off the base already loaded, 1 multiply,
//                                                  1 compare), 1 predicted branch
//               yes (a Tiny/Mid block's start) → tiny_free_fast(p, id)  [tiny_free_fast_v2.inc.h]
//               no → hak_free_slow(p): a class id there (an interior or unaligned pointer,
//                    one past a full run's blocks or into a SuperSlab's header) is reported
//                    at the call by tiny_free_suspect; any other id (its bound is 0: never a
//                    block) goes where its kind says
//     hak_free_slow(p) (cold; looks p up again, in either form of the map):
//       p == nullptr                          → nothing
//       kRegionSpan  (page-arena span, Large) → span header at p-16: magic checked
//                                               → span_cache_put (→ arena_free) / large_free
//       kRegionGuarded (a sampled block, guarded.h)  → guarded_free: checks, protects, decommits
//       kRegionSeed (a process's first small blocks, seed_heap.h) → seed_free: checked, listed
//       kRegionLargeFree (freed Large memory in the page heap) → fatal: invalid/double free
//       kRegionFreeSlab (inside a SuperSlab, no live run there) → fatal: invalid/double free
//       kRegionNone  (not hakmem's)           → glibc's __libc_free if glibc's heap holds
//                                               it, else fatal (stack, static, wild)
// Budget: 25 instructions from free's entry to ret on a Tiny hit (x86-64 release
// libhakmem.so, objdump), no stack frame; 4 predicted branches (map present and covering p,
// block start, free-block key, cap). The block-start test (interior and unaligned pointers at
// the call; it is also the class-range test) and the key (double free at the call: compared
// and stored as immediates, free_link.h) are 6 more than a free without them (19, the
// class-range test in their place). Taken off since (docs/BENCHMARKS.md, "Paying for the
// checks at the call"): the map's size compared straight from memory, the constants read off
// the map's base, the TLS lists' heads and counters in two arrays indexed by the class (no
// scaling), and no copy of the class kept for a cold call (each cold path finds it again).
// Earlier: one compare of p >> 16 with the map's size took 3 off the map lookup, the room
// counter (tiny_heap.h) 3 off the push. What the checks cost on the benchmark table and the
// real programs: docs/BENCHMARKS.md, "Double free at the call", "Interior pointers at the
// call, in release" and "Paying for the checks at the call". The secure variant adds the
// encoded link (free_link.h) and the canary (canary.h).
#ifndef HAK_IN_HAKMEM_CPP
#error "hak_free_api.inc.h is part of hakmem.cpp"
#endif

HAK_SLOW_PATH void hak_free_slow(void* p);
bool glibc_owns(const void* p);

// Every call here is a tail call, so the fast path needs no stack frame.
HAK_FAST_PATH void hak_free_impl(void* p) {
  if constexpr (kValgrind) {
    // Debug variant under valgrind: memcheck learns of the free before hakmem writes into the
    // block (valgrind_support.h); a pointer that is not hakmem's stays glibc's business.
    if (p != nullptr && vg_running() && region_map_lookup(p) != kRegionNone) vg_freelike(p);
  }
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t unit = a >> kRegionShift;
  // `units` first: a thread that sees the map's size sees its base (region_map_init stores the
  // base first, then the size with release). x86 keeps two loads in order, so the acquire
  // needs only the compiler's order: a plain load of the size, which the compare can take as
  // its operand (an atomic load cannot fold: one instruction more), then a compiler fence.
#if defined(__x86_64__)
  const uintptr_t units = detail::g_region.units;
#else
  const uintptr_t units = __atomic_load_n(&detail::g_region.units, __ATOMIC_ACQUIRE);
#endif
  if (HAK_LIKELY(unit < units)) {
    std::atomic_signal_fence(std::memory_order_acquire);
    const uint8_t* base = detail::g_region.base;
    const uint8_t* e = base + unit * kFlatStride;  // the unit's entry: id, run start
    const unsigned id = e[0];
    // A Tiny/Mid block must start a block of its run: an interior or unaligned pointer, one
    // past a full-length run's last block or into the SuperSlab header before a run at its
    // first slab is reported at the call (class_starts_block; the one pointer into the tail of
    // a run at a SuperSlab's first slab, 4 KiB shorter, passes and meets the free-block key
    // that run_seal_tail stored there). An id that is not a class
    // (0: not hakmem's — nullptr, glibc's, the stack; a span, the guarded pool...) fails the
    // same test (its bound is 0) and goes on to the slow path below.
    const uint32_t off = region_run_offset(e, a);
    if (HAK_LIKELY(class_starts_block_in(region_map_front(base), id, off))) {
      if constexpr (kDebug) tiny_debug_check_free(p, id);
      tiny_free_fast(p, id);
      return;
    }
    // Not a block's start: the slow path looks p up again (a class: the same test from the
    // run's slab, then tiny_free_suspect reports it), so the hit keeps no copy of the id.
  }
  hak_free_slow(p);
}

void span_free(void* p) {
  SpanHeader* h = span_header_of(p);
  char* start = static_cast<char*>(p) - h->offset;
  if (HAK_UNLIKELY(h->magic != kSpanMagicLive)) {
    if (h->magic == kSpanMagicFreed) hak_fatal("free(%p): double free of a span block", p);
    if (h->magic != kSpanMagicSampled) hak_fatal("free(%p): invalid pointer (no span header: not the start of a hakmem block)", p);
    prof_record_free(start);  // a block the heap profiler sampled
  }
  size_t bytes = size_t(h->span_bytes);
  h->magic = kSpanMagicFreed;
  if (bytes <= kArenaMaxSpan) {
    tiny_ensure_exit_hook();  // the stash goes back at thread exit
    span_cache_put(start, bytes);  // the arena's lock only when it overflows
  } else {
    large_free(start, bytes);
  }
  decay_tick();
}

// The block held the free-block key. Its entry is read again: still a class (as it is unless
// the run was released meanwhile, which a misuse racing with that release can see), the
// suspect check; anything else, where its kind says (the slow path reports a block in no live
// run).
void tiny_free_suspect_lookup(void* p) {
  const uint8_t id = region_map_lookup(p);
  if (is_class_id(id)) return tiny_free_suspect(p, id);
  hak_free_slow(p);
}

void hak_free_slow(void* p) {
  if (p == nullptr) return;
  uint8_t id = region_map_lookup(p);
  // A class: the two-level form of the map, or the flat form's pointer that failed the fast
  // path's block-start test (the same test from the run's slab: block_start_in_run).
  if (is_class_id(id)) {
    if constexpr (kDebug) tiny_debug_check_free(p, id);
    if ((reinterpret_cast<uintptr_t>(p) & 15) != 0 || !block_start_in_run(p, id)) return tiny_free_suspect(p, id);
    tiny_free_fast(p, id);
    return;
  }
  if (id == kRegionSpan) {
    span_free(p);
  } else if (id == kRegionGuarded) {
    guarded_free(p);
  } else if (id == kRegionSeed) {
    seed_free(p);
  } else if (id == kRegionLargeFree) {
    hak_fatal("free(%p): invalid pointer (in freed Large memory: double free?)", p);
  } else if (id == kRegionFreeSlab) {
    hak_fatal("free(%p): invalid pointer (inside a hakmem SuperSlab but in no live slab; double free?)", p);
  } else {
    if (!glibc_owns(p)) hak_fatal("free(%p): invalid pointer (not from malloc: in neither hakmem's nor glibc's heap)", p);
    __libc_free(p);  // glibc's block (allocated before interposition, or by __libc_malloc)
  }
}
