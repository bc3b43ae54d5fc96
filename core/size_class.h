// size_class.h — the size classes of the Tiny (≤ 1 KiB) and Mid (≤ 32 KiB) tiers.
//
// Class ids run from 1 to kNumClasses; the id doubles as the block's region-map value, so
// free() learns a block's class from one byte (region_map.h). Id 0 means "not a class".
//
//   ids 1..64      16..1024 B    step 16                   — Tiny tier
//   ids 65..96     1056..2048 B  step 32                   — Mid tier
//   ids 97..128    2112..4096 B  step 64
//   ids 129..136   4224..5120 B  step 128
//   ids 137..158   5632..32 KiB  8 classes per power of two
//
// Every class size is a multiple of 16, so every block is 16-byte aligned (free rejects any
// other pointer at the call) and has room for two words when it is free: the list link and
// the free-block key (free_link.h) that catches a double free at the call. A class whose size
// is a power of two ≤ 4 KiB gives blocks aligned to their size (slabs start on 4 KiB
// boundaries), which the aligned-allocation path uses. There is no 8-byte class: its blocks had
// no room for the key (requests of 0-8 bytes take 16, half of glibc's 32-byte minimum chunk).
// Why this many classes: a request is rounded up to its class, and that rounding is most of an
// allocator's memory overhead on live objects. Up to 1 KiB the step is 16 bytes, the alignment
// itself, so no request wastes more than 15 bytes (glibc's 8-byte header plus 16-byte rounding
// wastes 8-23); up to 4 KiB the waste stays under 3.2 % (1057 → 1088), above it under 12.5 %.
// Just above 4 KiB the step is 128 bytes up to 5 KiB: a 4 KiB page with a header of its own is
// a common request (sqlite's page cache entry is 4368 bytes: 4480 wastes 2.6 % of it, 0.8 MiB
// over the 7 200 entries of the real-program table's script; the 4608 of 8 classes per power
// of two wasted 5.5 %, 1.7 MiB).
// The cost is more partly used runs per thread, paid in untouched address space rather than
// resident memory, since runs are carved as they are used (docs/BENCHMARKS.md, "Size classes").
#ifndef HAKMEM_SIZE_CLASS_H
#define HAKMEM_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr int kNumClasses = 158;
// Whether a region-map id (or any byte) names a size class: 1..kNumClasses (0 is no one's, the
// special kinds are above). One compare: id - 1 wraps for 0.
HAK_FAST_PATH constexpr bool is_class_id(unsigned id) { return id - 1u < unsigned(kNumClasses); }
inline constexpr int kFirstMidClass = 65;
inline constexpr size_t kTinyMax = 1024;   // largest Tiny request
inline constexpr size_t kMidMax = 32768;   // largest block of a size class
// Bytes every Tiny/Mid request gives up to the size record of the secure and debug variants
// (canary.h; 0 in release): a request of n bytes takes the class of n + kCanaryTail.
inline constexpr size_t kCanaryTail = (kSecure || kDebug) ? 4 : 0;
// The largest request served by a size class.
inline constexpr size_t kSmallMax = kMidMax - kCanaryTail;
inline constexpr size_t kSlabSize = 64 * 1024;
// Blocks per run whose out-bitmap fits the SuperSlab header's spare words (superslab.h), and
// whose bitmap stays within the first page of the bitmap mapping: run_slabs_of keeps a class's
// runs on the same side of each limit.
inline constexpr uint64_t kHeaderBitsBlocks = 192;
inline constexpr uint64_t kBitsPageBlocks = 1024;

namespace detail {

constexpr uint32_t class_size_of(int id) {
  if (id <= 0) return 0;
  if (id <= 64) return uint32_t(16 * id);                 // 16..1024
  if (id <= 96) return uint32_t(1024 + 32 * (id - 64));   // 1056..2048
  if (id <= 128) return uint32_t(2048 + 64 * (id - 96));   // 2112..4096
  if (id <= 136) return uint32_t(4096 + 128 * (id - 128)); // 4224..5120
  // From 5 KiB on: 8 classes per power of two (5632 is the third step of the 4 KiB octave).
  int k = id - 135;              // 2 → 5632
  int octave = k / 8;            // 4096 << octave is the previous power of two
  int step = k % 8 + 1;          // 1..8
  uint32_t base = 4096u << octave;
  return base + uint32_t(step) * (base / 8);
}

// Slabs per run, 1 to 4: the fewest that hold 8 blocks and leave a tail after the last block
// of at most 1/400 of the run; when no length does, the one whose tail is the smallest
// fraction. Lengths are limited to those whose out-bitmap stays where the shortest run's is
// (superslab.h): at most 192 blocks if the shortest run has no more (its bitmap is then in
// the SuperSlab's header page), else at most 1024 (the first page of the bitmap mapping).
// The tail is resident memory that holds nothing (but the free-block key, in a run at a
// SuperSlab's first slab: run_seal_tail), on every run of the class: one slab of 912-byte
// blocks leaves 1.2 %, four leave 0.15 % (docs/BENCHMARKS.md, "Run lengths").
constexpr uint32_t run_slabs_of(uint32_t s) {
  uint32_t kmin = (8 * s + uint32_t(kSlabSize) - 1) / uint32_t(kSlabSize);
  if (kmin < 1) kmin = 1;
  uint64_t max_blocks = uint64_t(kmin) * kSlabSize / s <= kHeaderBitsBlocks ? kHeaderBitsBlocks : kBitsPageBlocks;
  uint32_t best = kmin;
  uint64_t best_bytes = uint64_t(kmin) * kSlabSize, best_waste = best_bytes % s;
  for (uint32_t k = kmin; k <= 4; ++k) {
    uint64_t bytes = uint64_t(k) * kSlabSize, waste = bytes % s;
    if (k > kmin && bytes / s > max_blocks) break;
    if (waste * 400 <= bytes) return k;
    if (waste * best_bytes < best_waste * bytes) best = k, best_bytes = bytes, best_waste = waste;
  }
  return best;
}

struct Tables {
  uint32_t size[kNumClasses + 1];
  uint8_t run_slabs[kNumClasses + 1];   // 64 KiB slabs per slab run (run_slabs_of)
  uint16_t cache_cap[kNumClasses + 1];  // TLS free-list cap (blocks)
  uint64_t recip[kNumClasses + 1];      // ceil(2^40 / size): offset → block index (below)
  // Free's test that an offset starts a block (class_starts_block): off × mul < lim, with
  // mul = ⌊2^64 / size⌋ + 1 and lim = (blocks in a run) × (size × mul mod 2^64); both 0 for
  // every region-map id that is not a class. Two arrays, not pairs: free indexes each with
  // the id scaled by 8 in the instruction that uses it (a 16-byte pair took two more to scale).
  uint64_t start_mul[256];  // then start_lim, contiguous: kStartTablesBytes, copied as one
  uint64_t start_lim[256];
  // (n + 15) >> 4 → class, n ≤ 32768: one table for Tiny and Mid (every class size is a multiple
  // of 16), so that malloc finds a class with no branch between the two (2 KiB; the Tiny sizes
  // are its first 65 bytes).
  uint8_t cls16[kMidMax / 16 + 1];
};

constexpr Tables make_tables() {
  Tables t{};
  for (int id = 0; id <= kNumClasses; ++id) {
    uint32_t s = class_size_of(id);
    t.size[id] = s;
    if (id == 0) continue;  // start_lim[0] stays 0: class_starts_block(0, off) is false
    // About 8 blocks per run at least (a run starting at slot 0 loses the 4 KiB SuperSlab
    // header: 7 blocks of 32 KiB); see run_slabs_of.
    t.run_slabs[id] = uint8_t(run_slabs_of(s));
    // Cache up to ~32 KiB of a class per thread, between 8 and 256 blocks.
    uint32_t cap = 32768 / s;
    t.cache_cap[id] = uint16_t(cap < 8 ? 8 : cap > 256 ? 256 : cap);
    t.recip[id] = ((uint64_t(1) << 40) + s - 1) / s;
    const bool pow2 = (s & (s - 1)) == 0;
    const uint64_t mul = UINT64_MAX / s + (pow2 ? 2 : 1);  // ⌊2^64 / s⌋ + 1
    t.start_mul[id] = mul;
    t.start_lim[id] = (uint64_t(t.run_slabs[id]) * kSlabSize / s) * (uint64_t(s) * mul);
  }
  int id = 1;
  for (size_t i = 0; i <= kMidMax / 16; ++i) {
    size_t n = i * 16;
    while (class_size_of(id) < n) ++id;
    t.cls16[i] = uint8_t(id);
  }
  return t;
}

inline constexpr Tables kTables = make_tables();
static_assert(class_size_of(kFirstMidClass - 1) == 1024 && class_size_of(kNumClasses) == 32768 &&
                  class_size_of(96) == 2048 && class_size_of(128) == 4096,
              "class layout");
static_assert(kNumClasses < 0xFA, "class ids must stay below the region map's special values (kRegionSeed is the lowest)");

// The allocation path's copy of the size → class tables (malloc, calloc, operator new), in
// writable memory: while guarded sampling is on (guarded.h), every request it may guard maps
// to class 0, whose thread cache is always empty, so that those requests reach the miss path
// where the sampling countdown is kept. Same tables otherwise; other users (free's checks,
// realloc, aligned allocation) use the constant ones.
// direct_max: the largest request malloc's fast path serves straight from a class cache —
// kMidMax (secure: less the canary's room, canary.h), and 0 while the heap profiler counts
// bytes (sampler.h), which sends every request to the slow side where the count is kept. The
// profiler off thus costs nothing: the compare with it is the one malloc makes anyway between
// a class and a span (a byte flag beside it cost two instructions and 3.5-4 % of a hot
// malloc/free loop; docs/BENCHMARKS.md); the slow paths read the same switch. Written only by
// prof_init and prof_set, with plain stores like the tables: a thread that reads it just
// after a switch counts, or skips, an allocation or two.
struct AllocTables {
  uint8_t cls16[kMidMax / 16 + 1];
  size_t direct_max;
};
constexpr AllocTables make_alloc_tables() {
  AllocTables a{};
  for (size_t i = 0; i <= kMidMax / 16; ++i) a.cls16[i] = kTables.cls16[i];
  a.direct_max = kSmallMax;
  return a;
}
inline constinit AllocTables g_alloc_tables = make_alloc_tables();

}  // namespace detail

// Class of a request of n bytes; n must be ≤ kMidMax.
HAK_FAST_PATH int size_to_class(size_t n) { return detail::kTables.cls16[(n + 15) >> 4]; }

// As size_to_class, from the allocation path's tables: 0 while the request may be sampled.
HAK_FAST_PATH int size_to_class_alloc(size_t n) { return detail::g_alloc_tables.cls16[(n + 15) >> 4]; }

// Whether the heap profiler counts allocated bytes (sampler.h), and its switch.
HAK_FAST_PATH bool alloc_prof_on() { return detail::g_alloc_tables.direct_max == 0; }
inline void alloc_prof_set(bool on) { detail::g_alloc_tables.direct_max = on ? 0 : kSmallMax; }
// The largest request malloc serves straight from a class cache (0 while profiling).
HAK_FAST_PATH size_t alloc_direct_max() { return detail::g_alloc_tables.direct_max; }

// Sends every request of at most `max` bytes to class 0 (guarded sampling on): every entry
// that holds such a size (a few bigger requests of the last one go there too, and on to their
// class: tiny_alloc_miss_sized).
inline void alloc_tables_sample_upto(size_t max) {
  for (size_t i = 0; i <= kMidMax / 16; ++i)
    if (i * 16 < max + 16) detail::g_alloc_tables.cls16[i] = 0;  // entry i: sizes 16i - 15 .. 16i
}

HAK_FAST_PATH size_t class_to_size(int id) { return detail::kTables.size[id]; }
inline int class_run_slabs(int id) { return detail::kTables.run_slabs[id]; }
inline uint32_t class_cache_cap(int id) { return detail::kTables.cache_cap[id]; }
inline bool class_is_mid(int id) { return id >= kFirstMidClass; }

// off / class_to_size(id) without a division, exact for every offset inside a run (off <
// 2^22; the error of the reciprocal is below 2^-18, less than 1/size for every class:
// tests/unit/test_size_class.cpp checks every offset of every class).
// (RunIndex in superslab.h inlines the same computation.)
HAK_FAST_PATH uint32_t class_block_index(int id, size_t off) {
  return uint32_t((uint64_t(off) * detail::kTables.recip[id]) >> 40);
}

// Whether off, a pointer's offset in a run of class id (region_run_offset), is the start of
// one of the blocks of a run of the class's length: a multiple of the size, below
// run_slabs × 64 KiB. One multiply and one compare, for any 32-bit off. With mul = ⌊2^64/d⌋ + 1
// (d the size) and e = d × mul mod 2^64 in [1, d]: for off = q·d + r, off × mul mod 2^64 is
// q·e when r = 0 (below 2^43), else r × mul + q·e without wrapping, at least mul ≥ 2^49; so it
// is below lim = Q·e exactly when r = 0 and q < Q, the run's block count (Lemire, Kaser and
// Kurz, "Faster remainder by direct computation", 2019, test divisibility this way with
// ⌈2^64/d⌉ and lim = that constant; the bound on q comes from making e non-zero for powers of
// two). Free's check that a pointer starts a block (hak_free_api.inc.h): an interior or
// unaligned pointer, one into the tail of a full-length run past its last block, and one into
// the SuperSlab header before a run at its first slab (offsets from 2^19 − 4 KiB:
// region_map.h) all fail it; tests/unit/test_size_class.cpp checks every offset below 2^19 of
// every class. Q is the block count of a run at any slab but the first: a run at a SuperSlab's
// first slab is 4 KiB shorter, and the one block-aligned pointer into its tail past its blocks
// passes for 125 of the 158 classes (112 bytes: offset 61 376, block 548 of 585); the run's
// set-up stores the free-block key there (run_seal_tail, superslab.h), so free's key check
// catches it on the cold side.
// Any region-map id may be passed: one that is not a class (0, the special kinds above
// kNumClasses) has lim 0 and never passes, so free needs no range test.
HAK_FAST_PATH bool class_starts_block(unsigned id, uint32_t off) {
  return uint64_t(off) * detail::kTables.start_mul[id] < detail::kTables.start_lim[id];
}
// The same with t, a copy of start_mul followed by start_lim (the region map's front page,
// region_map.h: free's form).
inline constexpr size_t kStartTablesBytes = 2 * 256 * sizeof(uint64_t);
HAK_FAST_PATH bool class_starts_block_in(const uint64_t* t, size_t id, uint32_t off) {
  return uint64_t(off) * t[id] < t[256 + id];  // size_t: both indexes one displacement apart
}

}  // namespace hak

#endif  // HAKMEM_SIZE_CLASS_H
