// superslab.cpp — mapping SuperSlabs, claiming slots, initialising slab runs (superslab.h).
#include "superslab.h"

#include <string.h>

#include "diag.h"
#include "free_link.h"
#include "large.h"
#include "os.h"

namespace hak {
namespace {
std::atomic<SuperSlab*> g_all{nullptr};
}

namespace {

// The slots of a SuperSlab cut from freed Large memory that have a resident page (mincore).
uint32_t resident_slots(const void* mem) {
  const size_t page = os_page_size();
  const size_t pages = kSuperSlabSize / page;
  unsigned char vec[kSuperSlabSize / 4096];
  if (pages > sizeof vec || !os_residency(mem, kSuperSlabSize, vec)) return 0;
  uint32_t bits = 0;
  for (size_t i = 0; i < pages; ++i)
    if (vec[i] & 1) bits |= 1u << (i * page / kSlabSize);
  return bits;
}

}  // namespace

SuperSlab* superslab_list_head() { return g_all.load(std::memory_order_acquire); }

SuperSlab* superslab_create(uint32_t claimed) {
  // Freed Large memory first (resident: no page faults, no RSS beside the memory kept).
  void* mem = large_take_aligned(kSuperSlabSize, kSuperSlabSize);
  uint32_t resident = 0;
  if (mem != nullptr) {
    memset(mem, 0, kSuperSlabHeader);  // a new mapping reads as zero
    resident = resident_slots(mem);
  } else {
    mem = os_map_aligned(kSuperSlabSize, kSuperSlabSize);
  }
  if (mem == nullptr) return nullptr;
  auto* bits = static_cast<uint64_t*>(os_map(kBitsMappingBytes));
  if (bits == nullptr) {
    os_unmap(mem, kSuperSlabSize);
    return nullptr;
  }
  auto* ss = static_cast<SuperSlab*>(mem);  // header zeroed
  ss->magic = kSuperSlabMagic;
  ss->out_bits = bits;
  ss->state.store(kAllSlotsFree & ~uint64_t(claimed), std::memory_order_relaxed);
  // Resident slots count as released ones: claims take them first, the decommit pass drops
  // those no run took.
  ss->dirty_free.store(resident, std::memory_order_relaxed);
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) ss->slabs[i].run_head = uint8_t(i);
  if (!region_map_set(ss, kSuperSlabSize, kRegionFreeSlab)) {
    os_unmap(bits, kBitsMappingBytes);
    os_unmap(ss, kSuperSlabSize);
    return nullptr;
  }
  SuperSlab* head = g_all.load(std::memory_order_relaxed);
  do {
    ss->next_all = head;
  } while (!g_all.compare_exchange_weak(head, ss, std::memory_order_release, std::memory_order_relaxed));
  return ss;
}

void superslab_revive(SuperSlab* ss, uint32_t claimed) {
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) {
    Slab& s = ss->slabs[i];
    s.nfree = s.scan = 0;
    s.bump = s.end = nullptr;
    s.owner = nullptr;
    s.used = s.capacity = 0;
    s.cls = 0;
    s.run_len = 0;
    s.run_head = uint8_t(i);
    s.list = kListNone;
  }
  ss->dirty_free.store(0, std::memory_order_relaxed);
  ss->state.store(kAllSlotsFree & ~uint64_t(claimed), std::memory_order_release);
}

void superslab_decommit(SuperSlab* ss) {
  size_t page = os_page_size();
  size_t start = (kSuperSlabHeader + page - 1) & ~(page - 1);
  os_decommit(reinterpret_cast<char*>(ss) + start, kSuperSlabSize - start);
  os_decommit(ss->out_bits, kBitsMappingBytes);  // all clear: every run was empty
}

namespace {

// The first slot i of a run of k set bits of mask (slots i..i+k-1 within the SuperSlab), or -1.
int first_run_in(uint64_t mask, int k) {
  const uint64_t run = (k >= 32) ? kAllSlotsFree : ((1ull << k) - 1);
  for (uint64_t m = mask; m != 0;) {
    int i = __builtin_ctzll(m);
    if (i + k > kSlabsPerSuperSlab) break;
    if (((mask >> i) & run) == run) return i;
    m &= m - 1;
  }
  return -1;
}

}  // namespace

int superslab_claim(SuperSlab* ss, int k) {
  uint64_t run = (k >= 32) ? kAllSlotsFree : ((1ull << k) - 1);
  uint64_t st = ss->state.load(std::memory_order_acquire);
  for (;;) {
    if (st & kRetiredBit) return -1;
    uint64_t mask = st & kAllSlotsFree;
    // Slots released since the last decommit pass first (their pages are resident): a run
    // carved on never-used or decommitted slots while resident ones sit free grows the
    // resident set for nothing (docs/BENCHMARKS.md, "Arena: dirty pages first"). The bits of
    // dirty_free that are also free in st are exactly those slots (dirty_free is cleared
    // only by the decommit pass; a slot claimed since is not free).
    int found = first_run_in(mask & ss->dirty_free.load(std::memory_order_relaxed), k);
    if (found < 0) found = first_run_in(mask, k);
    if (found < 0) return -1;
    uint64_t want = st & ~(run << found);
    if (ss->state.compare_exchange_weak(st, want, std::memory_order_acq_rel, std::memory_order_acquire))
      return found;
  }
}

uint64_t superslab_unclaim(SuperSlab* ss, int idx, int k) {
  uint64_t run = ((k >= 32) ? kAllSlotsFree : ((1ull << k) - 1)) << idx;
  return ss->state.fetch_or(run, std::memory_order_acq_rel) | run;
}

uint32_t superslab_claim_bits(SuperSlab* ss, uint32_t mask) {
  uint64_t st = ss->state.load(std::memory_order_acquire);
  for (;;) {
    if (st & kRetiredBit) return 0;
    uint32_t take = uint32_t(st) & mask;
    if (take == 0) return 0;
    if (ss->state.compare_exchange_weak(st, st & ~uint64_t(take), std::memory_order_acq_rel, std::memory_order_acquire))
      return take;
  }
}

uint64_t superslab_unclaim_bits(SuperSlab* ss, uint32_t bits) {
  return ss->state.fetch_or(bits, std::memory_order_acq_rel) | bits;
}

void superslab_decommit_slots(SuperSlab* ss, uint32_t bits) {
  size_t page = os_page_size();
  char* base = reinterpret_cast<char*>(ss);
  while (bits != 0) {
    int first = __builtin_ctz(bits);
    int last = first;
    while (last + 1 < kSlabsPerSuperSlab && ((bits >> (last + 1)) & 1)) ++last;
    uintptr_t lo = uintptr_t(slab_data_start(ss, first));
    uintptr_t hi = uintptr_t(base + size_t(last + 1) * kSlabSize);
    lo = (lo + page - 1) & ~(uintptr_t(page) - 1);
    if (lo < hi) os_decommit(reinterpret_cast<void*>(lo), size_t(hi - lo));
    uint32_t run = (last - first + 1 == 32) ? 0xFFFFFFFFu : (((1u << (last - first + 1)) - 1) << first);
    bits &= ~run;
  }
}

Slab* slab_run_init(SuperSlab* ss, int idx, int cls, ThreadHeap* owner) {
  int k = class_run_slabs(cls);
  Slab* s = &ss->slabs[idx];
  for (int i = 0; i < k; ++i) {
    ss->slabs[idx + i].run_head = uint8_t(idx);
    ss->slabs[idx + i].cls = uint8_t(cls);
  }
  s->run_len = uint8_t(k);
  char* start = slab_data_start(ss, idx);
  s->start = start;
  // Every slab of the run knows where the run starts: free checks that a pointer starts a
  // block with one slab lookup when the region map is in its two-level form (the flat form
  // holds the run's start itself: region_map_set_run).
  for (int i = 1; i < k; ++i) ss->slabs[idx + i].start = start;
  s->out_bits = run_bits_home(ss, idx, cls);
  char* limit = reinterpret_cast<char*>(ss) + size_t(idx + k) * kSlabSize;
  size_t size = class_to_size(cls);
  s->capacity = uint32_t(size_t(limit - start) / size);
  s->end = start + size_t(s->capacity) * size;
  run_seal_tail(s);
  if constexpr (kArrayBits) {
    // A block the slot's previous run handed out through new[] and the program released with
    // free (undefined, unchecked there) may have left its bit: the new run starts clear.
    for (uint32_t w = 0; w < run_bits_words(s); ++w) __atomic_store_n(run_array_word(s, w), 0, __ATOMIC_RELAXED);
  }
  slab_run_reset(s, owner);
  region_map_set_run(reinterpret_cast<char*>(ss) + size_t(idx) * kSlabSize, size_t(k) * kSlabSize, uint8_t(cls), start);
  return s;
}

void run_seal_tail(Slab* s) {
  if (slab_index_in_superslab(s) != 0) return;
  const char* limit = reinterpret_cast<char*>(superslab_of_slab(s)) + size_t(s->run_len) * kSlabSize;
  const size_t size = class_to_size(s->cls);
  if (s->end < limit && s->capacity < size_t(s->run_len) * kSlabSize / size) key_set(s->end);
}

void slab_run_reset(Slab* s, ThreadHeap* owner) {
  s->nfree = s->scan = 0;
  s->bump = s->start;
  s->next = s->prev = nullptr;
  s->owner = owner;
  s->remote.store(0, std::memory_order_relaxed);
  s->pending_next = nullptr;
  s->used = 0;
  s->list = kListNone;
  s->purged = 0;
}

void slab_run_unassign(Slab* s) {
  SuperSlab* ss = superslab_of_slab(s);
  int idx = slab_index_in_superslab(s), k = s->run_len;
  region_map_set(reinterpret_cast<char*>(ss) + size_t(idx) * kSlabSize, size_t(k) * kSlabSize, kRegionFreeSlab);
  for (int i = 0; i < k; ++i) {
    Slab& t = ss->slabs[idx + i];
    t.cls = 0;
    t.run_head = uint8_t(idx + i);
  }
  s->owner = nullptr;
  s->nfree = s->scan = 0;
  s->bump = s->end = nullptr;
  s->used = s->capacity = 0;
  s->run_len = 0;
  s->list = kListNone;
}

bool slab_is_valid(const Slab* s) {
  if (s->cls == 0 || s->cls > kNumClasses) {
    diag_print("invariant: slab %p has no class", static_cast<const void*>(s));
    return false;
  }
  size_t size = class_to_size(s->cls);
  SuperSlab* ss = superslab_of_slab(s);
  const char* start = slab_data_start(ss, slab_index_in_superslab(s));
  if (s->start != start || s->out_bits != run_bits_home(ss, slab_index_in_superslab(s), s->cls)) {
    diag_print("invariant: slab %p start or out-bitmap pointer is stale", static_cast<const void*>(s));
    return false;
  }
  if (s->bump < start || s->bump > s->end || size_t(s->bump - start) % size != 0) {
    diag_print("invariant: slab %p bump %p outside [%p, %p]", static_cast<const void*>(s),
               static_cast<const void*>(s->bump), static_cast<const void*>(start),
               static_cast<const void*>(s->end));
    return false;
  }
  uint32_t uncarved = uint32_t(size_t(s->end - s->bump) / size);
  const uint64_t* bits = run_out_bits(s);
  if (s->used + s->nfree + uncarved != s->capacity) {
    diag_print("invariant: slab %p counters: used %u + free %u + uncarved %u != capacity %u",
               static_cast<const void*>(s), s->used, s->nfree, uncarved, s->capacity);
    return false;
  }
  // No clear bit below the refill's scan word (below bump).
  uint32_t carved = s->capacity - uncarved;
  for (uint32_t w = 0; w < s->scan && size_t(w) * 64 < carved; ++w) {
    uint64_t valid = carved - size_t(w) * 64 >= 64 ? ~uint64_t(0) : (uint64_t(1) << (carved - w * 64)) - 1;
    if (~out_word(bits, w) & valid) {
      diag_print("invariant: slab %p (class %u) has a free block below its scan word %u",
                 static_cast<const void*>(s), unsigned(s->cls), s->scan);
      return false;
    }
  }
  // The out-bitmap counts exactly the blocks out of the run, and no bit past the carved part.
  uint32_t out = 0;
  for (size_t w = 0; w < run_bits_words(s); ++w) {
    uint64_t word = out_word(bits, uint32_t(w));
    if (word == 0) continue;
    out += uint32_t(__builtin_popcountll(word));
    if (w * 64 + 64 - size_t(__builtin_clzll(word)) > carved) {
      diag_print("invariant: slab %p (class %u) marks an uncarved block out", static_cast<const void*>(s),
                 unsigned(s->cls));
      return false;
    }
  }
  if (out != s->used) {
    diag_print("invariant: slab %p (class %u) out-bitmap has %u blocks out, used says %u",
               static_cast<const void*>(s), unsigned(s->cls), out, s->used);
    return false;
  }
  return true;
}

bool superslab_is_valid(const SuperSlab* ss, const ThreadHeap* owner) {
  if (ss->magic != kSuperSlabMagic) {
    diag_print("invariant: SuperSlab %p bad magic", static_cast<const void*>(ss));
    return false;
  }
  uint64_t st = ss->state.load(std::memory_order_acquire);
  for (int i = 0; i < kSlabsPerSuperSlab;) {
    const Slab& s = ss->slabs[i];
    bool slot_free = (st >> i) & 1;
    if (s.cls != 0 && s.run_head == i) {
      if (slot_free && (owner == nullptr || s.owner == owner)) {
        diag_print("invariant: SuperSlab %p slot %d is assigned but marked free", static_cast<const void*>(ss), i);
        return false;
      }
      i += s.run_len ? s.run_len : 1;
      continue;
    }
    ++i;
  }
  return true;
}

}  // namespace hak
