// size_class.h — the size classes of the Tiny (≤ 1 KiB) and Mid (≤ 32 KiB) tiers.
//
// Class ids run from 1 to kNumClasses; the id doubles as the block's region-map value, so
// free() learns a block's class from one byte (region_map.h). Id 0 means "not a class".
//
//   id  1        8 B          (requests ≤ 8 B: 8-byte aligned, as DESIGN.md allows)
//   ids 2..9     16..128 B    step 16
//   ids 10..21   160..1024 B  4 classes per power of two       — Tiny tier
//   ids 22..41   1280..32 KiB 4 classes per power of two       — Mid tier
//
// Every class size except 8 is a multiple of 16, so every block is 16-byte aligned; a class
// whose size is a power of two ≤ 4 KiB gives blocks aligned to their size (slabs start on
// 4 KiB boundaries), which the aligned-allocation path uses.
// Worst-case internal fragmentation is 25% (e.g. 1025 → 1280), 20% on average.
#ifndef HAKMEM_SIZE_CLASS_H
#define HAKMEM_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr int kNumClasses = 41;
inline constexpr int kFirstMidClass = 22;
inline constexpr size_t kTinyMax = 1024;   // largest Tiny request
inline constexpr size_t kMidMax = 32768;   // largest request served by a size class
inline constexpr size_t kSlabSize = 64 * 1024;

namespace detail {

constexpr uint32_t class_size_of(int id) {
  if (id <= 0) return 0;
  if (id == 1) return 8;
  if (id <= 9) return uint32_t(16 * (id - 1));  // 16..128
  // From 128 on: 4 classes per power of two.
  int k = id - 10;               // 0 → 160
  int octave = k / 4;            // 128 << octave is the previous power of two
  int step = k % 4 + 1;          // 1..4
  uint32_t base = 128u << octave;
  return base + uint32_t(step) * (base / 4);
}

struct Tables {
  uint32_t size[kNumClasses + 1];
  uint8_t run_slabs[kNumClasses + 1];   // 64 KiB slabs per slab run (Mid classes use several)
  uint16_t cache_cap[kNumClasses + 1];  // TLS free-list cap (blocks)
  uint64_t recip[kNumClasses + 1];      // ceil(2^40 / size): offset → block index (below)
  uint8_t small[kTinyMax / 8 + 1];      // (n + 7) >> 3 → class, n ≤ 1024
  uint8_t mid[kMidMax / 128 + 1];       // (n + 127) >> 7 → class, 1024 < n ≤ 32768
};

constexpr Tables make_tables() {
  Tables t{};
  for (int id = 0; id <= kNumClasses; ++id) {
    uint32_t s = class_size_of(id);
    t.size[id] = s;
    if (id == 0) continue;
    // About 8 blocks per run at least: a run is ceil(8 × size / 64 KiB) slabs, at least one
    // (a run starting at slot 0 loses the 4 KiB SuperSlab header: 7 blocks of 8 or 32 KiB).
    uint32_t runs = (8 * s + uint32_t(kSlabSize) - 1) / uint32_t(kSlabSize);
    t.run_slabs[id] = uint8_t(runs < 1 ? 1 : runs);
    // Cache up to ~128 KiB of a class per thread, between 8 and 256 blocks.
    uint32_t cap = 131072 / s;
    t.cache_cap[id] = uint16_t(cap < 8 ? 8 : cap > 256 ? 256 : cap);
    t.recip[id] = ((uint64_t(1) << 40) + s - 1) / s;
  }
  int id = 1;
  for (size_t i = 0; i <= kTinyMax / 8; ++i) {
    size_t n = i * 8;
    while (class_size_of(id) < n) ++id;
    t.small[i] = uint8_t(id);
  }
  id = 1;
  for (size_t i = 0; i <= kMidMax / 128; ++i) {
    size_t n = i * 128;
    while (class_size_of(id) < n) ++id;
    t.mid[i] = uint8_t(id);
  }
  return t;
}

inline constexpr Tables kTables = make_tables();
static_assert(class_size_of(21) == 1024 && class_size_of(41) == 32768, "class layout");

}  // namespace detail

// Class of a request of n bytes; n must be ≤ kMidMax.
HAK_FAST_PATH int size_to_class(size_t n) {
  if (HAK_LIKELY(n <= kTinyMax)) return detail::kTables.small[(n + 7) >> 3];
  return detail::kTables.mid[(n + 127) >> 7];
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

}  // namespace hak

#endif  // HAKMEM_SIZE_CLASS_H
