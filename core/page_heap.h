// page_heap.h — the free extents of Large memory: how they are split, coalesced and found.
// Mechanism only; what to keep and what to return (the bound, the decay) is large.cpp's policy.
//
// Holds: every free extent of Large memory that is still mapped and resident, each a run of
// 64 KiB units (kRegionUnit) that no block uses. Its bookkeeping lives in the extent itself
// (a FreeExtent node in its first bytes, a footer in its last 16), so the heap needs no memory
// of its own and no table that can fill up; the region map marks its units kRegionLargeFree,
// which is how a freed range finds its free neighbours in O(1) (the unit before it and the
// unit after it) and how free() tells a pointer into freed Large memory from a live block.
//
// Finding: best fit, address-ordered — the smallest extent that holds the request, the
// lowest address among equals, and the block is cut from its low end (jemalloc's and
// tcmalloc's page heaps choose the same way: it keeps big extents whole and packs reuse
// towards low addresses). Extents sit in size bins (exact below 2 MiB, then 8 bins per
// doubling), with a bitmap of the bins that are not empty, so a search scans one bin and
// jumps to the next non-empty one.
// Age: every extent also sits on a list in the order it was last freed into (a merge counts as
// a free), oldest first, for the policy's decay and its bound.
//
// May call: region_map (marking), valgrind_support (the node writes, debug variant). No
// syscall, no lock: the caller serialises every call (large.cpp's lock).
#ifndef HAKMEM_PAGE_HEAP_H
#define HAKMEM_PAGE_HEAP_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

inline constexpr int kPageHeapBins = 256;

struct FreeExtent {
  uint64_t magic;
  size_t bytes;
  uint64_t freed_at;  // ns, the last time memory was freed into this extent
  FreeExtent* bin_prev;
  FreeExtent* bin_next;
  FreeExtent* age_prev;  // towards older
  FreeExtent* age_next;  // towards newer
  uint32_t bin;
};

// A range cut out of the heap (its region map entries are already kRegionNone).
struct ExtentRange {
  void* base;
  size_t bytes;
};

class PageHeap {
 public:
  // Adds [base, base + bytes) (64 KiB-aligned, a multiple of 64 KiB, mapped, not in the heap,
  // registered as kRegionSpan), freed at `now`, merged with the free extents on either side.
  void insert(void* base, size_t bytes, uint64_t now);

  // Takes `bytes` (a multiple of 64 KiB) from the best-fitting extent, splitting it: the
  // range's region map entries become kRegionSpan. nullptr if no extent holds it.
  void* take(size_t bytes);

  // Takes `bytes` (a multiple of 64 KiB) starting at a multiple of `align` (a power of two,
  // at least 64 KiB) from the smallest extent that holds such a range (the first non-empty
  // bin that has one), the parts before and after it staying free. nullptr if none does.
  void* take_aligned(size_t bytes, size_t align);

  // Takes [addr, addr + bytes) if a free extent starts at addr and holds at least `bytes`
  // (growing a block in place into the free memory after it). addr is the end of a live span
  // or the start of an extent (never the inside of one). False otherwise.
  bool take_at(void* addr, size_t bytes);

  // The free extent ending at `end` / starting at `base` (a live span's or a taken range's
  // neighbours), or nullptr.
  FreeExtent* extent_ending_at(void* end) const;
  FreeExtent* extent_at(void* base) const;

  // The least recently freed extent, nullptr when the heap is empty.
  FreeExtent* oldest() const { return age_head_; }

  // Removes the top `bytes` of extent e (all of it if bytes ≥ e->bytes; else rounded up to
  // 64 KiB), marks them kRegionNone and returns them: the caller unmaps them.
  ExtentRange cut_top(FreeExtent* e, size_t bytes);

  size_t free_bytes() const { return free_bytes_; }
  size_t extents() const { return extents_; }

  // Debug checker: every extent's node, footer, bin and region map entries agree, the
  // bitmap matches the bins, and the totals add up. Prints what is wrong.
  bool is_valid() const;

 private:
  static uint32_t bin_of(size_t bytes);
  uint32_t first_nonempty_bin(uint32_t b) const;  // the first non-empty bin ≥ b, or kPageHeapBins
  void bin_link(FreeExtent* e);    // into the bin of its size
  void bin_unlink(FreeExtent* e);  // out of its bin
  void link(FreeExtent* e);        // into its bin and at the newest end of the age list
  void unlink(FreeExtent* e);      // out of both
  void age_move_after(FreeExtent* e, FreeExtent* older);  // e, just linked, to just after older
  FreeExtent* write_node(void* base, size_t bytes, uint64_t freed_at);

  FreeExtent* bins_[kPageHeapBins] = {};
  uint64_t nonempty_[kPageHeapBins / 64] = {};
  FreeExtent* age_head_ = nullptr;  // oldest
  FreeExtent* age_tail_ = nullptr;  // newest
  size_t free_bytes_ = 0, extents_ = 0;
};

}  // namespace hak

#endif  // HAKMEM_PAGE_HEAP_H
