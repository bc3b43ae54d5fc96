// test_superslab.cpp — SuperSlab carving (superslab.h): creation, slot claims of k contiguous
// slots, slab-run geometry (slot 0 after the 4 KiB header, other slots, multi-slab Mid runs),
// slab_of_block, unassignment, retirement/revival, and the validity checkers.
//
// Every test works on a SuperSlab it maps itself with superslab_create(); the shared pool does
// not know it, so the allocator running in the same process never hands its slots out.
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <string.h>
#include <sys/mman.h>

#include "free_link.h"
#include "large.h"
#include "os.h"
#include "superslab.h"

using namespace hak;

namespace {

ThreadHeap* const kFakeOwner = reinterpret_cast<ThreadHeap*>(uintptr_t(0x1000));

SuperSlab* fresh() {
  SuperSlab* ss = superslab_create();
  cr_assert_not_null(ss, "superslab_create failed");
  return ss;
}

uint64_t free_mask(SuperSlab* ss) { return ss->state.load() & kAllSlotsFree; }

// First Mid class whose run needs `k` slabs.
int class_with_run(int k) {
  for (int c = 1; c <= kNumClasses; ++c)
    if (class_run_slabs(c) == k) return c;
  cr_assert_fail("no class with runs of %d slabs", k);
  return 0;
}

// Carves one block the way the refill does it (bump), counting it as used.
void set_out(Slab* s, void* b, bool out) {
  uint32_t i = run_block_index(s, b);
  cr_assert_neq(i, UINT32_MAX);
  uint64_t m = uint64_t(1) << (i & 63);
  if (out) out_word(run_out_bits(s), i >> 6) |= m;
  else out_word(run_out_bits(s), i >> 6) &= ~m;
}

// Hands out the next uncarved block (as a refill does: counted used, marked out).
void* carve(Slab* s) {
  void* b = s->bump;
  s->bump += class_to_size(s->cls);
  s->used++;
  set_out(s, b, true);
  return b;
}

}  // namespace

Test(superslab, create_maps_an_aligned_registered_superslab) {
  SuperSlab* ss = fresh();
  cr_assert_eq(reinterpret_cast<uintptr_t>(ss) % kSuperSlabSize, 0u, "not 2 MiB-aligned");
  cr_assert_eq(ss->magic, kSuperSlabMagic);
  cr_assert_eq(ss->state.load(), kAllSlotsFree, "all 32 slots free, not retired");
  cr_assert_eq(superslab_list_head(), ss, "newest SuperSlab heads the list");
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) {
    cr_assert_eq(ss->slabs[i].run_head, i);
    cr_assert_eq(ss->slabs[i].cls, 0);
    char* unit = reinterpret_cast<char*>(ss) + size_t(i) * kSlabSize;
    cr_assert_eq(region_map_lookup(unit), kRegionFreeSlab, "slot %d not marked free in the region map", i);
    cr_assert_eq(region_map_lookup(unit + kSlabSize - 1), kRegionFreeSlab);
  }
  cr_assert_eq(superslab_of(reinterpret_cast<char*>(ss) + kSuperSlabSize - 1), ss);
  cr_assert_eq(slab_index_of(reinterpret_cast<char*>(ss) + 5 * kSlabSize + 100), 5);
  cr_assert(superslab_is_valid(ss));
  SuperSlab* ss2 = fresh();
  cr_assert_neq(ss2, ss);
  cr_assert_eq(superslab_list_head(), ss2);
  cr_assert_eq(ss2->next_all, ss, "every SuperSlab stays on the list, newest first");
}

Test(superslab, header_fits_before_slot_0_data) {
  SuperSlab* ss = fresh();
  cr_assert_leq(sizeof(SuperSlab), kSuperSlabHeader);
  cr_assert_eq(slab_data_start(ss, 0), reinterpret_cast<char*>(ss) + kSuperSlabHeader);
  for (int i = 1; i < kSlabsPerSuperSlab; ++i)
    cr_assert_eq(slab_data_start(ss, i), reinterpret_cast<char*>(ss) + size_t(i) * kSlabSize);
}

Test(superslab, claim_takes_the_first_fit_of_k_contiguous_slots) {
  SuperSlab* ss = fresh();
  cr_assert_eq(superslab_claim(ss, 1), 0);
  cr_assert_eq(superslab_claim(ss, 3), 1);
  cr_assert_eq(superslab_claim(ss, 4), 4);
  cr_assert_eq(free_mask(ss), kAllSlotsFree & ~0xFFull, "slots 0..7 claimed");
  uint64_t st = superslab_unclaim(ss, 1, 3);
  cr_assert_eq(st & kAllSlotsFree, kAllSlotsFree & ~0xF1ull, "unclaim returns the new state");
  cr_assert_eq(free_mask(ss), kAllSlotsFree & ~0xF1ull);
  cr_assert_eq(superslab_claim(ss, 4), 8, "a 3-slot hole does not fit 4");
  cr_assert_eq(superslab_claim(ss, 2), 1, "first fit goes into the hole");
  cr_assert_eq(superslab_claim(ss, 1), 3);
  cr_assert_eq(superslab_claim(ss, 2), 12);
}

Test(superslab, claim_takes_resident_slots_first) {
  // Slots given back since the last decommit pass (dirty_free, as the pool's release marks
  // them) are resident: a claim takes a run of them before lower never-used or decommitted ones.
  SuperSlab* ss = fresh();
  cr_assert_eq(superslab_claim(ss, 4), 0);
  cr_assert_eq(superslab_claim(ss, 4), 4);
  superslab_unclaim(ss, 0, 4);              // decommitted (no dirty_free bit)
  ss->dirty_free.fetch_or(0xF0u);           // slots 4..7 released, resident
  superslab_unclaim(ss, 4, 4);
  cr_assert_eq(superslab_claim(ss, 2), 4, "a resident pair before the lower clean slots");
  cr_assert_eq(superslab_claim(ss, 3), 0, "no three resident slots left: first fit");
  cr_assert_eq(superslab_claim(ss, 1), 6);
  cr_assert_eq(superslab_claim(ss, 1), 7);
  cr_assert_eq(superslab_claim(ss, 1), 3, "then first fit again");
}

Test(superslab, claim_fails_without_k_contiguous_free_slots) {
  SuperSlab* ss = fresh();
  cr_assert_eq(superslab_claim(ss, kSlabsPerSuperSlab), 0, "a whole SuperSlab in one claim");
  cr_assert_eq(free_mask(ss), 0u);
  cr_assert_eq(superslab_claim(ss, 1), -1, "no slot left");
  // Free every other slot: plenty of slots, but no two contiguous ones.
  for (int i = 0; i < kSlabsPerSuperSlab; i += 2) superslab_unclaim(ss, i, 1);
  cr_assert_eq(superslab_claim(ss, 2), -1, "16 free slots but none adjacent");
  cr_assert_eq(superslab_claim(ss, 1), 0);
  // Slots 30 and 31: a run may end at the last slot, but not run past it.
  superslab_unclaim(ss, 31, 1);
  cr_assert_eq(superslab_claim(ss, 3), -1, "only 30..31 are contiguous");
  cr_assert_eq(superslab_claim(ss, 2), 30);
  cr_assert_eq(free_mask(ss) >> 30, 0u);
}

Test(superslab, a_retired_superslab_refuses_claims) {
  SuperSlab* ss = fresh();
  uint64_t expect = kAllSlotsFree;
  cr_assert(ss->state.compare_exchange_strong(expect, kRetiredBit));
  cr_assert_eq(superslab_claim(ss, 1), -1, "claims on a retired SuperSlab must fail");
  superslab_revive(ss);
  cr_assert_eq(ss->state.load(), kAllSlotsFree);
  cr_assert_eq(superslab_claim(ss, 1), 0);
}

Test(superslab, run_in_slot_0_starts_after_the_header) {
  SuperSlab* ss = fresh();
  int cls = size_to_class(48);
  cr_assert_eq(superslab_claim(ss, 1), 0);
  Slab* s = slab_run_init(ss, 0, cls, kFakeOwner);
  size_t size = class_to_size(cls);
  char* start = reinterpret_cast<char*>(ss) + kSuperSlabHeader;
  cr_assert_eq(s, &ss->slabs[0]);
  cr_assert_eq(s->cls, cls);
  cr_assert_eq(s->run_len, 1);
  cr_assert_eq(s->owner, kFakeOwner);
  cr_assert_eq(s->bump, start, "slot 0's blocks start after the 4 KiB header");
  cr_assert_eq(s->capacity, (kSlabSize - kSuperSlabHeader) / size);
  cr_assert_eq(s->end, start + size_t(s->capacity) * size);
  cr_assert_leq(s->end, reinterpret_cast<char*>(ss) + kSlabSize);
  cr_assert_eq(s->nfree, 0u);
  cr_assert_eq(s->scan, 0u);
  cr_assert_eq(s->used, 0u);
  cr_assert_eq(s->list, kListNone);
  cr_assert_eq(s->remote.load(), 0u);
  cr_assert_eq(region_map_lookup(start), cls, "region map names the class");
  cr_assert_eq(region_map_lookup(reinterpret_cast<char*>(ss) + kSlabSize), kRegionFreeSlab, "slot 1 untouched");
  cr_assert(slab_is_valid(s));
  cr_assert(superslab_is_valid(ss));
}

Test(superslab, run_in_another_slot_uses_the_whole_slab) {
  SuperSlab* ss = fresh();
  cr_assert_eq(superslab_claim(ss, 8), 0);
  for (size_t n : {size_t(8), size_t(16), size_t(100), size_t(1000), size_t(3000), size_t(8192)}) {
    int cls = size_to_class(n);
    if (class_run_slabs(cls) != 1) continue;
    int idx = 1 + int(n % 7);
    Slab* s = slab_run_init(ss, idx, cls, kFakeOwner);
    size_t size = class_to_size(cls);
    char* start = reinterpret_cast<char*>(ss) + size_t(idx) * kSlabSize;
    cr_assert_eq(s->bump, start, "class %d slot %d", cls, idx);
    cr_assert_eq(s->capacity, kSlabSize / size, "class %d: capacity %u", cls, s->capacity);
    cr_assert_eq(s->end, start + size_t(s->capacity) * size);
    cr_assert_eq(region_map_lookup(start + kSlabSize - 1), cls);
    cr_assert(slab_is_valid(s));
    slab_run_unassign(s);
  }
}

// Runs of at most kHeaderBitsWords × 64 blocks keep their out-bitmap in the header page, the
// others in the bitmap mapping; a SuperSlab holding only the former never touches the mapping.
Test(superslab, small_run_bitmaps_live_in_the_header_page) {
  for (int cls = 1; cls <= kNumClasses; ++cls) {
    SuperSlab* ss = fresh();  // (like every test's, never reused)
    const char* hdr = reinterpret_cast<const char*>(ss);
    int k = class_run_slabs(cls);
    cr_assert_eq(superslab_claim(ss, 2 * k), 0);
    Slab* a = slab_run_init(ss, 0, cls, kFakeOwner);
    Slab* b = slab_run_init(ss, k, cls, kFakeOwner);
    bool header = a->capacity <= b->capacity && b->capacity <= kHeaderBitsWords * 64;
    cr_assert_eq(run_bits_in_header(cls), header, "class %d: %u blocks per run", cls, b->capacity);
    for (Slab* s : {a, b}) {
      const char* bits = reinterpret_cast<const char*>(run_out_bits(s));
      if (header)
        cr_assert(bits >= hdr + offsetof(SuperSlab, head_bits) && bits < hdr + kSuperSlabHeader, "class %d", cls);
      else
        cr_assert(bits >= reinterpret_cast<const char*>(ss->out_bits) &&
                  bits < reinterpret_cast<const char*>(ss->out_bits) + kOutBitsBytes, "class %d", cls);
    }
    // Every block of both neighbouring runs out: each bitmap counts exactly its own blocks.
    while (a->bump < a->end) carve(a);
    while (b->bump < b->end) carve(b);
    cr_assert(slab_is_valid(a), "class %d", cls);
    cr_assert(slab_is_valid(b), "class %d", cls);
    if (header) {
      unsigned char vec[kOutBitsBytes / 4096];
      cr_assert_eq(mincore(ss->out_bits, kOutBitsBytes, vec), 0);
      for (unsigned char v : vec) cr_assert_eq(v & 1, 0, "class %d touched the bitmap mapping", cls);
    }
  }
  cr_assert(run_bits_in_header(size_to_class(1000)) && run_bits_in_header(size_to_class(4096)));
  cr_assert(!run_bits_in_header(size_to_class(64)));
}

Test(superslab, multi_slab_mid_run_and_slab_of_block) {
  SuperSlab* ss = fresh();
  int cls = class_with_run(4);
  size_t size = class_to_size(cls);
  int idx = superslab_claim(ss, 1);  // slot 0 taken: the run starts at slot 1
  cr_assert_eq(idx, 0);
  idx = superslab_claim(ss, 4);
  cr_assert_eq(idx, 1);
  Slab* s = slab_run_init(ss, idx, cls, kFakeOwner);
  cr_assert_eq(s->run_len, 4);
  cr_assert_eq(s->capacity, 4 * kSlabSize / size);
  cr_assert_geq(s->capacity, 8u, "a Mid run holds at least 8 blocks");
  for (int i = idx; i < idx + 4; ++i) {
    cr_assert_eq(ss->slabs[i].run_head, idx, "slab %d points back to the head", i);
    cr_assert_eq(ss->slabs[i].cls, cls);
    cr_assert_eq(region_map_lookup(reinterpret_cast<char*>(ss) + size_t(i) * kSlabSize), cls);
  }
  cr_assert_eq(region_map_lookup(reinterpret_cast<char*>(ss) + 5 * kSlabSize), kRegionFreeSlab);
  // Every block of the run — including those in the run's 2nd..4th slabs and those that
  // straddle a slab boundary — maps back to the head.
  for (uint32_t i = 0; i < s->capacity; ++i) {
    char* b = static_cast<char*>(carve(s));
    cr_assert_eq(slab_of_block(b), s, "block %u", i);
    cr_assert_eq(slab_of_block(b + size - 1), s, "last byte of block %u", i);
  }
  cr_assert_eq(s->bump, s->end);
  cr_assert(slab_is_valid(s));
  cr_assert(superslab_is_valid(ss));

  // Unassigning restores the slots' own identity; the slots stay claimed.
  slab_run_unassign(s);
  for (int i = idx; i < idx + 4; ++i) {
    cr_assert_eq(ss->slabs[i].run_head, i);
    cr_assert_eq(ss->slabs[i].cls, 0);
    cr_assert_eq(region_map_lookup(reinterpret_cast<char*>(ss) + size_t(i) * kSlabSize), kRegionFreeSlab);
  }
  cr_assert_eq(free_mask(ss) & 0x1Full, 0u, "unassign does not free the slots");
  uint64_t st = superslab_unclaim(ss, idx, 4);
  cr_assert_eq(st & 0x1Eull, 0x1Eull);
}

Test(superslab, run_in_slot_0_of_a_multi_slab_class) {
  SuperSlab* ss = fresh();
  int cls = class_with_run(2);
  size_t size = class_to_size(cls);
  cr_assert_eq(superslab_claim(ss, 2), 0);
  Slab* s = slab_run_init(ss, 0, cls, kFakeOwner);
  cr_assert_eq(s->bump, reinterpret_cast<char*>(ss) + kSuperSlabHeader);
  cr_assert_eq(s->capacity, (2 * kSlabSize - kSuperSlabHeader) / size);
  cr_assert_leq(s->end, reinterpret_cast<char*>(ss) + 2 * kSlabSize);
  cr_assert_eq(region_map_lookup(reinterpret_cast<char*>(ss) + kSlabSize), cls);
  cr_assert_eq(slab_of_block(reinterpret_cast<char*>(ss) + kSlabSize + 10), s);
}

Test(superslab, reset_rearms_an_empty_run) {
  SuperSlab* ss = fresh();
  int cls = size_to_class(64);
  cr_assert_eq(superslab_claim(ss, 1), 0);
  Slab* s = slab_run_init(ss, 3, cls, kFakeOwner);
  void* a = carve(s);
  carve(s);
  // Return a: back in the run (its out-bit clear, counted free).
  s->nfree++;
  s->used--;
  set_out(s, a, false);
  cr_assert(slab_is_valid(s));
  ThreadHeap* other = reinterpret_cast<ThreadHeap*>(uintptr_t(0x2000));
  s->used = 0;  // pretend the other block came back too (test of reset only)
  for (uint32_t w = 0; w < run_bits_words(s); ++w) out_word(run_out_bits(s), w) = 0;
  slab_run_reset(s, other);
  cr_assert_eq(s->owner, other);
  cr_assert_eq(s->nfree, 0u);
  cr_assert_eq(s->bump, slab_data_start(ss, 3));
  cr_assert_eq(s->used, 0u);
  cr_assert_eq(s->capacity, kSlabSize / class_to_size(cls), "reset keeps the geometry");
  cr_assert(slab_is_valid(s));
}

Test(superslab, slab_checker_catches_bad_counters_and_bitmaps, .init = cr_redirect_stderr) {
  SuperSlab* ss = fresh();
  int cls = size_to_class(32);
  Slab* s = slab_run_init(ss, 2, cls, kFakeOwner);
  for (int i = 0; i < 70; ++i) carve(s);  // two bitmap words
  cr_assert(slab_is_valid(s));
  s->used++;
  cr_assert_not(slab_is_valid(s), "used + free + uncarved != capacity must be caught");
  s->used--;
  char* old_bump = s->bump;
  s->bump += 3;  // not on a block boundary
  cr_assert_not(slab_is_valid(s), "a misaligned bump must be caught");
  s->bump = old_bump;
  // A block counted free that the out-bitmap still counts as handed out.
  void* first = slab_data_start(ss, 2);
  s->nfree++;
  s->used--;
  cr_assert_not(slab_is_valid(s), "a free block marked out must be caught");
  set_out(s, first, false);
  cr_assert(slab_is_valid(s));
  // A free block below the word a refill starts looking from: it would never be found.
  s->scan = 1;
  cr_assert_not(slab_is_valid(s), "a free block below the scan word must be caught");
  s->scan = 0;
  cr_assert(slab_is_valid(s));
  set_out(s, s->bump, true);
  cr_assert_not(slab_is_valid(s), "an uncarved block marked out must be caught");
  set_out(s, s->bump, false);
  Slab* unassigned = &ss->slabs[9];
  cr_assert_not(slab_is_valid(unassigned), "an unassigned slab is not a valid run");
}

Test(superslab, superslab_checker_catches_a_run_on_a_free_slot, .init = cr_redirect_stderr) {
  SuperSlab* ss = fresh();
  int cls = size_to_class(32);
  cr_assert_eq(superslab_claim(ss, 1), 0);
  slab_run_init(ss, 0, cls, kFakeOwner);
  cr_assert(superslab_is_valid(ss));
  slab_run_init(ss, 5, cls, kFakeOwner);  // slot 5 never claimed
  cr_assert_not(superslab_is_valid(ss), "an assigned run on a slot marked free must be caught");
  ss->magic = 0;
  cr_assert_not(superslab_is_valid(ss), "a bad magic must be caught");
  ss->magic = kSuperSlabMagic;
}

Test(superslab, decommit_zeroes_data_but_keeps_the_header) {
  SuperSlab* ss = fresh();
  int cls = size_to_class(256);
  cr_assert_eq(superslab_claim(ss, 2), 0);
  Slab* s0 = slab_run_init(ss, 0, cls, kFakeOwner);
  Slab* s1 = slab_run_init(ss, 1, cls, kFakeOwner);
  char* a = static_cast<char*>(carve(s0));
  char* b = static_cast<char*>(carve(s1));
  memset(a, 0xAB, class_to_size(cls));
  memset(b, 0xCD, class_to_size(cls));
  s0->used = s1->used = 0;
  slab_run_unassign(s0);
  slab_run_unassign(s1);
  superslab_unclaim(ss, 0, 2);
  uint64_t expect = kAllSlotsFree;
  cr_assert(ss->state.compare_exchange_strong(expect, kRetiredBit));
  superslab_decommit(ss);
  cr_assert_eq(ss->magic, kSuperSlabMagic, "the header page stays");
  cr_assert_eq(ss->state.load(), kRetiredBit);
  cr_assert_eq(a[0], 0, "slot 0 data decommitted");
  cr_assert_eq(a[class_to_size(cls) - 1], 0);
  cr_assert_eq(b[0], 0, "slot 1 data decommitted");
  superslab_revive(ss);
  cr_assert_eq(ss->state.load(), kAllSlotsFree);
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) {
    cr_assert_eq(ss->slabs[i].cls, 0);
    cr_assert_eq(ss->slabs[i].run_head, i);
    cr_assert_null(ss->slabs[i].owner);
  }
  cr_assert(superslab_is_valid(ss));
}

// A new SuperSlab is cut from freed Large memory when the page heap holds an aligned 2 MiB of
// it: inside the freed range, its header reads as zero as a new mapping's would (whatever
// the buffer held), no page of it faults again, and it works like any other.
Test(superslab, slots_large_memory_left_resident_are_claimed_first) {
  // A SuperSlab cut from freed Large memory: the slots with resident pages count as released
  // (dirty_free), so claims take them before the slots the Large block never wrote.
  large_trim();
  const size_t big = 6 * 1024 * 1024;
  bool fresh_pages = false;
  char* l = static_cast<char*>(large_alloc(big, &fresh_pages));
  cr_assert_not_null(l);
  // Write slots 8..15 of every 2 MiB-aligned piece only.
  for (size_t off = 0; off < big; off += 4096) {
    size_t in = (uintptr_t(l) + off) & (kSuperSlabSize - 1);
    if (in >= 8 * kSlabSize && in < 16 * kSlabSize) l[off] = 1;
  }
  large_free(l, big);
  SuperSlab* ss = fresh();
  char* c = reinterpret_cast<char*>(ss);
  cr_assert(c >= l && c + kSuperSlabSize <= l + big, "SuperSlab %p is not inside the freed Large memory %p", c, l);
  // Slot 0 holds the header, written by the creation itself.
  cr_assert_eq(ss->dirty_free.load(), 0xFF01u, "resident slots: %#x", unsigned(ss->dirty_free.load()));
  cr_assert_eq(superslab_claim(ss, 4), 8, "four resident slots before the unwritten ones");
  cr_assert_eq(superslab_claim(ss, 4), 12);
  cr_assert_eq(superslab_claim(ss, 1), 0);
  cr_assert_eq(superslab_claim(ss, 1), 1, "no resident slot left: first fit");
  large_trim();
}

Test(superslab, create_takes_freed_large_memory_first) {
  large_trim();
  const size_t big = 6 * 1024 * 1024;
  bool fresh_pages = false;
  char* l = static_cast<char*>(large_alloc(big, &fresh_pages));
  cr_assert_not_null(l);
  memset(l, 0xA5, big);  // resident, and not zero
  large_free(l, big);
  SuperSlab* ss = fresh();
  char* c = reinterpret_cast<char*>(ss);
  cr_assert(c >= l && c + kSuperSlabSize <= l + big, "SuperSlab %p is not inside the freed Large memory %p", c, l);
  cr_assert_eq(large_stats().cached_bytes, big - kSuperSlabSize, "its 2 MiB left the page heap");
  cr_assert_eq(ss->magic, kSuperSlabMagic);
  cr_assert_eq(ss->state.load(), kAllSlotsFree);
  const unsigned char* h = reinterpret_cast<const unsigned char*>(ss->head_bits);
  for (size_t i = 0; i < sizeof ss->head_bits; ++i) cr_assert_eq(h[i], 0, "header bitmaps not cleared at byte %zu", i);
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) {
    cr_assert_eq(ss->slabs[i].used, 0u);
    cr_assert_eq(ss->slabs[i].nfree, 0u);
    cr_assert_eq(region_map_lookup(c + size_t(i) * kSlabSize), kRegionFreeSlab);
  }
  uint64_t faults0 = os_minor_faults();
  memset(c + kSlabSize, 1, kSuperSlabSize - kSlabSize);
  cr_assert_lt(os_minor_faults() - faults0, 8u, "the SuperSlab's pages were resident");
  int cls = class_with_run(1);
  int idx = superslab_claim(ss, 1);
  cr_assert_eq(idx, 0);
  Slab* s = slab_run_init(ss, idx, cls, kFakeOwner);
  void* b = carve(s);
  cr_assert_eq(slab_of_block(b), s);
  cr_assert(slab_is_valid(s));
  cr_assert(superslab_is_valid(ss));
  large_trim();
}
