// page_heap.cpp — free extents of Large memory (see page_heap.h).
#include "page_heap.h"

#include "diag.h"
#include "region_map.h"
#include "valgrind_support.h"

namespace hak {
namespace {

constexpr uint64_t kExtentMagic = 0x686b46726565457aull;  // "hkFreeEz"
constexpr uint64_t kFooterMagic = 0x686b456e64457874ull;  // "hkEndExt"

struct ExtentFooter {  // the last 16 bytes of a free extent
  uint64_t magic;
  FreeExtent* head;
};

char* as_bytes(void* p) { return static_cast<char*>(p); }

ExtentFooter* footer_of(void* base, size_t bytes) {
  return reinterpret_cast<ExtentFooter*>(as_bytes(base) + bytes - sizeof(ExtentFooter));
}

}  // namespace

// Exact bins up to 32 units (2 MiB), then 8 per doubling: bin sizes differ by at most 1/8.
uint32_t PageHeap::bin_of(size_t bytes) {
  size_t u = bytes >> kRegionShift;
  if (u <= 32) return uint32_t(u - 1);
  unsigned lg = 63u - unsigned(__builtin_clzll(u));
  uint32_t b = 32 + (lg - 5) * 8 + uint32_t((u >> (lg - 3)) & 7);
  return b < kPageHeapBins ? b : kPageHeapBins - 1;
}

uint32_t PageHeap::first_nonempty_bin(uint32_t b) const {
  while (b < kPageHeapBins) {
    uint64_t bits = nonempty_[b >> 6] & (~uint64_t(0) << (b & 63));
    if (bits != 0) return (b & ~uint32_t(63)) + uint32_t(__builtin_ctzll(bits));
    b = (b | 63) + 1;
  }
  return kPageHeapBins;
}

FreeExtent* PageHeap::write_node(void* base, size_t bytes, uint64_t freed_at) {
  auto* e = static_cast<FreeExtent*>(base);
  ExtentFooter* f = footer_of(base, bytes);
  if constexpr (kValgrind) {
    vg_undefined(e, sizeof *e);
    vg_undefined(f, sizeof *f);
  }
  *e = FreeExtent{kExtentMagic, bytes, freed_at, nullptr, nullptr, nullptr, nullptr, 0};
  *f = ExtentFooter{kFooterMagic, e};
  return e;
}

void PageHeap::bin_link(FreeExtent* e) {
  uint32_t b = bin_of(e->bytes);
  e->bin = b;
  e->bin_prev = nullptr;
  e->bin_next = bins_[b];
  if (bins_[b] != nullptr) bins_[b]->bin_prev = e;
  bins_[b] = e;
  nonempty_[b >> 6] |= uint64_t(1) << (b & 63);
}

void PageHeap::bin_unlink(FreeExtent* e) {
  uint32_t b = e->bin;
  if (e->bin_prev != nullptr) e->bin_prev->bin_next = e->bin_next;
  else bins_[b] = e->bin_next;
  if (e->bin_next != nullptr) e->bin_next->bin_prev = e->bin_prev;
  if (bins_[b] == nullptr) nonempty_[b >> 6] &= ~(uint64_t(1) << (b & 63));
}

void PageHeap::link(FreeExtent* e) {
  bin_link(e);
  e->age_next = nullptr;
  e->age_prev = age_tail_;
  if (age_tail_ != nullptr) age_tail_->age_next = e;
  else age_head_ = e;
  age_tail_ = e;
  free_bytes_ += e->bytes;
  ++extents_;
}

void PageHeap::unlink(FreeExtent* e) {
  bin_unlink(e);
  if (e->age_prev != nullptr) e->age_prev->age_next = e->age_next;
  else age_head_ = e->age_next;
  if (e->age_next != nullptr) e->age_next->age_prev = e->age_prev;
  else age_tail_ = e->age_prev;
  free_bytes_ -= e->bytes;
  --extents_;
}

FreeExtent* PageHeap::extent_at(void* base) const {
  if (region_map_lookup(base) != kRegionLargeFree) return nullptr;
  auto* e = static_cast<FreeExtent*>(base);
  if (e->magic != kExtentMagic) hak_fatal("page heap: free extent at %p has a bad header (heap corrupted)", base);
  return e;
}

FreeExtent* PageHeap::extent_ending_at(void* end) const {
  if (region_map_lookup(as_bytes(end) - 1) != kRegionLargeFree) return nullptr;
  auto* f = reinterpret_cast<ExtentFooter*>(as_bytes(end) - sizeof(ExtentFooter));
  FreeExtent* e = f->head;
  if (f->magic != kFooterMagic || e->magic != kExtentMagic || as_bytes(e) + e->bytes != as_bytes(end))
    hak_fatal("page heap: free extent ending at %p has a bad footer (heap corrupted)", end);
  return e;
}

void PageHeap::insert(void* base, size_t bytes, uint64_t now) {
  FreeExtent* left = extent_ending_at(base);
  FreeExtent* right = extent_at(as_bytes(base) + bytes);
  region_map_set(base, bytes, kRegionLargeFree);
  void* start = base;
  size_t total = bytes;
  if (left != nullptr) {
    unlink(left);
    start = left;
    total += left->bytes;
  }
  if (right != nullptr) {
    unlink(right);
    total += right->bytes;
    right->magic = 0;  // now the inside of the merged extent
  }
  link(write_node(start, total, now));
}

void* PageHeap::take(size_t bytes) {
  uint32_t b = bin_of(bytes);
  FreeExtent* best = nullptr;
  auto better = [&](FreeExtent* e) {
    return best == nullptr || e->bytes < best->bytes || (e->bytes == best->bytes && e < best);
  };
  for (FreeExtent* e = bins_[b]; e != nullptr; e = e->bin_next)
    if (e->bytes >= bytes && better(e)) best = e;
  // Every extent of a higher bin holds the request: the best of the first non-empty one.
  if (best == nullptr) {
    uint32_t nb = first_nonempty_bin(b + 1);
    if (nb < kPageHeapBins)
      for (FreeExtent* e = bins_[nb]; e != nullptr; e = e->bin_next)
        if (better(e)) best = e;
  }
  if (best == nullptr) return nullptr;
  bool ok = take_at(best, bytes);
  HAK_ASSERT(ok);
  (void)ok;
  return best;
}

bool PageHeap::take_at(void* addr, size_t bytes) {
  FreeExtent* e = extent_at(addr);
  if (e == nullptr || e->bytes < bytes) return false;
  FreeExtent* older = e->age_prev;
  size_t rest = e->bytes - bytes;
  uint64_t freed_at = e->freed_at;
  unlink(e);
  region_map_set(addr, bytes, kRegionSpan);
  if (rest != 0) {
    // The rest keeps its place in the age order.
    FreeExtent* r = write_node(as_bytes(addr) + bytes, rest, freed_at);
    link(r);
    age_move_after(r, older);
  }
  return true;
}

void PageHeap::age_move_after(FreeExtent* e, FreeExtent* older) {
  if (e->age_prev == older) return;
  // e is at the newest end: unhook it there, hook it in after `older` (nullptr: first).
  age_tail_ = e->age_prev;
  age_tail_->age_next = nullptr;
  e->age_prev = older;
  e->age_next = older != nullptr ? older->age_next : age_head_;
  if (older != nullptr) older->age_next = e;
  else age_head_ = e;
  e->age_next->age_prev = e;
}

void* PageHeap::take_aligned(size_t bytes, size_t align) {
  auto start_in = [&](const FreeExtent* e) {
    uintptr_t lo = reinterpret_cast<uintptr_t>(e);
    return (lo + align - 1) & ~(uintptr_t(align) - 1);
  };
  auto fits = [&](const FreeExtent* e) { return start_in(e) + bytes <= reinterpret_cast<uintptr_t>(e) + e->bytes; };
  FreeExtent* best = nullptr;
  for (uint32_t b = first_nonempty_bin(bin_of(bytes)); b < kPageHeapBins && best == nullptr;
       b = first_nonempty_bin(b + 1)) {
    for (FreeExtent* e = bins_[b]; e != nullptr; e = e->bin_next)
      if (fits(e) && (best == nullptr || e->bytes < best->bytes || (e->bytes == best->bytes && e < best))) best = e;
  }
  if (best == nullptr) return nullptr;
  void* start = reinterpret_cast<void*>(start_in(best));
  size_t front = size_t(as_bytes(start) - as_bytes(best));
  if (front != 0) {
    // best keeps [best, start); [start, end) becomes an extent of its own, of the same age.
    size_t back = best->bytes - front;
    bin_unlink(best);
    best->bytes = front;
    bin_link(best);
    ExtentFooter* f = footer_of(best, front);
    if constexpr (kValgrind) vg_undefined(f, sizeof *f);
    *f = ExtentFooter{kFooterMagic, best};
    free_bytes_ -= back;  // link() counts it again, as an extent of its own
    FreeExtent* r = write_node(start, back, best->freed_at);
    link(r);
    age_move_after(r, best);
  }
  bool ok = take_at(start, bytes);
  HAK_ASSERT(ok);
  (void)ok;
  return start;
}

ExtentRange PageHeap::cut_top(FreeExtent* e, size_t bytes) {
  if (bytes >= e->bytes) bytes = e->bytes;
  size_t cut = (bytes + kRegionUnit - 1) & ~(kRegionUnit - 1);
  if (cut >= e->bytes) {
    unlink(e);
    region_map_set(e, e->bytes, kRegionNone);
    return {e, e->bytes};
  }
  size_t keep = e->bytes - cut;
  void* top = as_bytes(e) + keep;
  region_map_set(top, cut, kRegionNone);
  // Re-bin at the new size, keeping the age position.
  bin_unlink(e);
  e->bytes = keep;
  bin_link(e);
  ExtentFooter* f = footer_of(e, keep);
  if constexpr (kValgrind) vg_undefined(f, sizeof *f);
  *f = ExtentFooter{kFooterMagic, e};
  free_bytes_ -= cut;
  return {top, cut};
}

bool PageHeap::is_valid() const {
  size_t n = 0, bytes = 0;
  for (int b = 0; b < kPageHeapBins; ++b) {
    bool bit = (nonempty_[b >> 6] >> (b & 63)) & 1;
    if (bit != (bins_[b] != nullptr)) {
      diag_print("invariant: page heap bin %d's bitmap bit disagrees with its list", b);
      return false;
    }
    for (FreeExtent* e = bins_[b]; e != nullptr; e = e->bin_next) {
      char* lo = as_bytes(e);
      char* hi = lo + e->bytes;
      const ExtentFooter* f = footer_of(e, e->bytes);
      if (e->magic != kExtentMagic || e->bin != uint32_t(b) || bin_of(e->bytes) != uint32_t(b) ||
          e->bytes == 0 || e->bytes % kRegionUnit != 0 || f->magic != kFooterMagic || f->head != e) {
        diag_print("invariant: page heap extent %p (%zu bytes) has a bad node, footer or bin", lo, e->bytes);
        return false;
      }
      for (char* u = lo; u < hi; u += kRegionUnit) {
        if (region_map_lookup(u) != kRegionLargeFree) {
          diag_print("invariant: page heap extent %p: unit %p is not marked free in the region map", lo, u);
          return false;
        }
      }
      if (region_map_lookup(lo - 1) == kRegionLargeFree || region_map_lookup(hi) == kRegionLargeFree) {
        diag_print("invariant: page heap extent %p has a free neighbour it was not merged with", lo);
        return false;
      }
      ++n;
      bytes += e->bytes;
    }
  }
  size_t aged = 0;
  for (FreeExtent* e = age_head_; e != nullptr; e = e->age_next) {
    if (e->age_next != nullptr && (e->age_next->age_prev != e || e->age_next->freed_at < e->freed_at)) {
      diag_print("invariant: page heap age list out of order at %p", static_cast<void*>(e));
      return false;
    }
    ++aged;
  }
  if (n != extents_ || aged != extents_ || bytes != free_bytes_) {
    diag_print("invariant: page heap totals (%zu extents, %zu bytes) disagree with its lists (%zu, %zu, %zu aged)",
               extents_, free_bytes_, n, bytes, aged);
    return false;
  }
  return true;
}

}  // namespace hak
