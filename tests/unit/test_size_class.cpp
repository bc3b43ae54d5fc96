// test_size_class.cpp — size classes (size_class.h): the request → class table, class sizes,
// alignment of the power-of-two classes, run lengths and TLS caps.
#include <criterion/criterion.h>

#include "region_map.h"
#include "size_class.h"
#include "superslab.h"

using namespace hak;

Test(size_class, boundaries_map_to_the_documented_classes) {
  struct { size_t n; int id; size_t size; } cases[] = {
      {0, 1, 16},         {1, 1, 16},         {8, 1, 16},         {9, 1, 16},
      {16, 1, 16},        {17, 2, 32},        {128, 8, 128},      {129, 9, 144},
      {520, 33, 528},     {1023, 64, 1024},   {1024, 64, 1024},   {1025, 65, 1056},
      {1057, 66, 1088},   {2048, 96, 2048},   {2049, 97, 2112},   {4095, 128, 4096},
      {4096, 128, 4096},  {4097, 129, 4224},  {4368, 131, 4480},  {5120, 136, 5120},
      {5121, 137, 5632},  {8193, 143, 9216},  {32767, 158, 32768},
      {kMidMax, kNumClasses, kMidMax},
  };
  for (auto& c : cases) {
    cr_assert_eq(size_to_class(c.n), c.id, "size_to_class(%zu) = %d, want %d", c.n, size_to_class(c.n), c.id);
    cr_assert_eq(class_to_size(c.id), c.size, "class_to_size(%d) = %zu, want %zu", c.id, class_to_size(c.id), c.size);
  }
  cr_assert_eq(class_to_size(0), 0u, "id 0 is not a class");
}

Test(size_class, every_request_gets_the_smallest_class_that_fits) {
  int prev = 1;
  for (size_t n = 0; n <= kMidMax; ++n) {
    int c = size_to_class(n);
    cr_assert(c >= 1 && c <= kNumClasses, "size_to_class(%zu) = %d out of range", n, c);
    cr_assert_geq(class_to_size(c), n, "class %d (%zu B) too small for %zu", c, class_to_size(c), n);
    cr_assert(c == 1 || class_to_size(c - 1) < n, "size %zu: class %d is not the smallest fitting one", n, c);
    cr_assert_geq(c, prev, "size_to_class is not monotonic at %zu", n);
    cr_assert_eq(class_is_mid(c), n > kTinyMax, "class_is_mid(%d) wrong for %zu", c, n);
    // Rounding wastes at most 15 bytes from 1 B up to 1 KiB, at most 1/32 of the request up to 4 KiB
    // and at most 1/8 above.
    size_t waste = class_to_size(c) - n;
    if (n == 0) cr_assert_eq(class_to_size(c), 16u, "malloc(0) takes the smallest class");
    else if (n <= kTinyMax) cr_assert_leq(waste, 15u, "size %zu -> %zu B wastes more than 15 bytes", n, class_to_size(c));
    else if (n <= 4096) cr_assert_leq(waste * 32, n, "size %zu -> %zu B wastes more than 1/32", n, class_to_size(c));
    else cr_assert_leq(waste * 8, n, "size %zu -> %zu B wastes more than 1/8", n, class_to_size(c));
    prev = c;
  }
}

Test(size_class, sizes_increase_and_keep_16_byte_alignment) {
  // No 8-byte class: every block has room for its link and the free-block key (free_link.h).
  cr_assert_eq(class_to_size(1), 16u);
  for (int c = 2; c <= kNumClasses; ++c) {
    cr_assert_gt(class_to_size(c), class_to_size(c - 1), "class sizes must increase (%d)", c);
    cr_assert_eq(class_to_size(c) % 16, 0u, "class %d (%zu B) is not a multiple of 16", c, class_to_size(c));
  }
  cr_assert_eq(class_to_size(kFirstMidClass - 1), kTinyMax, "last Tiny class is kTinyMax");
  cr_assert(class_is_mid(kFirstMidClass) && !class_is_mid(kFirstMidClass - 1));
  cr_assert_eq(class_to_size(kNumClasses), kMidMax);
}

Test(size_class, power_of_two_sizes_up_to_4k_are_classes) {
  // The aligned-allocation path relies on a class whose size is a multiple of the alignment.
  for (size_t a = 16; a <= 4096; a *= 2) {
    int c = size_to_class(a);
    cr_assert_eq(class_to_size(c), a, "power of two %zu is not a class size (got %zu)", a, class_to_size(c));
  }
}

Test(size_class, runs_hold_enough_blocks_and_caps_are_bounded) {
  for (int c = 1; c <= kNumClasses; ++c) {
    size_t size = class_to_size(c);
    int k = class_run_slabs(c);
    cr_assert(k >= 1 && k <= 4, "class %d: run of %d slabs (1..4 allowed)", c, k);
    // A run that does not start in slot 0 holds at least 8 blocks. It is longer than that
    // needs only to cut the tail after its last block to 1/400 of the run or less, and only
    // while its out-bitmap stays where the shortest run's is (192 blocks: the SuperSlab's
    // header page; 1024: the first page of the bitmap mapping).
    size_t bytes = size_t(k) * kSlabSize;
    cr_assert_geq(bytes / size, 8u, "class %d: fewer than 8 blocks per run", c);
    size_t kmin = (8 * size + kSlabSize - 1) / kSlabSize;
    size_t limit = kmin * kSlabSize / size <= 192 ? 192 : 1024;
    cr_assert(size_t(k) == kmin || bytes / size <= limit, "class %d: %zu blocks per run move its bitmap", c, bytes / size);
    if (size_t(k) > kmin)
      cr_assert_gt((bytes - kSlabSize) % size * 400, bytes - kSlabSize,
                   "class %d: run of %d slabs although %d would leave a tail under 1/400", c, k, k - 1);
    if (bytes % size * 400 > bytes)  // no allowed length does better
      for (size_t j = kmin; j <= 4; ++j)
        if (j == kmin || j * kSlabSize / size <= limit)
          cr_assert_geq((j * kSlabSize % size) * bytes, (bytes % size) * (j * kSlabSize),
                        "class %d: %zu slabs would waste less than %d", c, j, k);
    if (size <= 4096) cr_assert_lt(bytes % size * 80, bytes, "class %d: the tail is 1.25 %% of the run or more", c);
    uint32_t cap = class_cache_cap(c);
    cr_assert(cap >= 8 && cap <= 256, "class %d: cache cap %u out of [8, 256]", c, cap);
    if (cap > 8 && cap < 256) cr_assert_leq(size_t(cap) * size, 131072u, "class %d caches more than 128 KiB", c);
  }
}

Test(size_class, block_index_is_exact_at_every_offset_of_every_run) {
  // class_block_index replaces off / size by a multiply with a 40-bit reciprocal.
  for (int c = 1; c <= kNumClasses; ++c) {
    size_t size = class_to_size(c), bytes = size_t(class_run_slabs(c)) * kSlabSize;
    for (size_t off = 0; off < bytes; ++off)
      if (class_block_index(c, off) != off / size)
        cr_assert(false, "class %d (%zu B): offset %zu gives block %u, not %zu", c, size, off, class_block_index(c, off), off / size);
  }
}

Test(size_class, block_start_test_is_exact_at_every_offset_of_a_run_window_and_beyond) {
  // class_starts_block: one multiply and a compare instead of off % size == 0 && off / size <
  // blocks per run (free's check that a pointer starts a block). Every offset below 2^19 (the
  // run window, region_map.h: a run's own offsets, then the SuperSlab header's before a run at
  // the first slab), then offsets up to 2^32 in a stride that is no multiple of any class
  // size, and the multiples of each size near 2^32 (and one past them).
  for (int c = 1; c <= kNumClasses; ++c) {
    const uint32_t size = uint32_t(class_to_size(c));
    const uint32_t blocks = uint32_t(class_run_slabs(c) * kSlabSize / size);
    uint32_t passed = 0;
    for (uint32_t off = 0; off < uint32_t(kRunWindow); ++off) {
      const bool want = off % size == 0 && off / size < blocks;
      passed += want;
      if (class_starts_block(c, off) != want)
        cr_assert(false, "class %d (%u B): offset %u says %d", c, size, off, int(class_starts_block(c, off)));
    }
    cr_assert_eq(passed, blocks, "class %d: every block of a run passes", c);
    // The header before a run at a SuperSlab's first slab: never a block.
    for (uint32_t off = uint32_t(kRunWindow - kSuperSlabHeader); off < uint32_t(kRunWindow); off += 16)
      cr_assert(!class_starts_block(c, off), "class %d: header offset %u", c, off);
    for (uint64_t off = 1; off < (uint64_t(1) << 32); off += 999983)
      cr_assert_eq(class_starts_block(c, uint32_t(off)), off % size == 0 && off / size < blocks, "class %d, offset %llu", c, (unsigned long long)off);
    uint32_t top = uint32_t((UINT32_MAX / size) * size);
    cr_assert(!class_starts_block(c, top) && !class_starts_block(c, top + 1) && !class_starts_block(c, top - 1), "class %d near 2^32", c);
    cr_assert(class_starts_block(c, (blocks - 1) * size) && !class_starts_block(c, blocks * size), "class %d: the last block and past it", c);
  }
  // Ids that are not classes (0, the region map's "not hakmem's", and every id above the
  // classes: spans, the guarded pool, free slabs...): nothing passes, so free sends them on.
  for (unsigned id = 0; id < 256; id = id == 0 ? unsigned(kNumClasses) + 1 : id + 1)
    for (uint32_t off : {0u, 16u, 4096u, 65536u}) cr_assert(!class_starts_block(id, off), "id %u, offset %u", id, off);
}
