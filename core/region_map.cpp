// region_map.cpp — the region map's two forms (see region_map.h).
#include "region_map.h"

#include <atomic>

#include "os.h"

namespace hak {
namespace detail {
FlatMap g_region = {nullptr, 0};
}  // namespace detail

namespace {

constexpr size_t kEntries = size_t(1) << (kAddressBits - kRegionShift);  // 2^31
constexpr unsigned kLeafBits = 16;                                        // 64 KiB leaves
constexpr size_t kLeafEntries = size_t(1) << kLeafBits;
constexpr size_t kTopEntries = kEntries >> kLeafBits;                     // 2^15

// The two arrays below are big and touched in one place each (g_top not at all in the flat
// form): in .lbss, after every small global of the library, so that the few pages of those a
// process touches are contiguous (2 faults fewer per process; docs/BENCHMARKS.md, "Short
// processes").
#define HAK_BIG_BSS __attribute__((section(".lbss.hakmem")))

// Two-level form: null leaves read as "not ours".
HAK_BIG_BSS std::atomic<uint8_t*> g_top[kTopEntries];

// Flat form: the reservation is read-only; each 4 KiB page of it becomes writable the first
// time an entry in it is set (bit set here afterwards). A page covers 128 MiB of heap, so a
// process touches few of them (and splits the reservation's mapping only that often).
constexpr size_t kMapPage = 4096;
HAK_BIG_BSS std::atomic<uint64_t> g_writable[kEntries * kFlatStride / kMapPage / 64];

// first, count: entries (units), kFlatStride bytes each.
bool flat_make_writable(uintptr_t first, uintptr_t count) {
  const uintptr_t lo = first * kFlatStride, hi = (first + count) * kFlatStride - 1;
  for (uintptr_t page = lo / kMapPage; page <= hi / kMapPage; ++page) {
    std::atomic<uint64_t>& word = g_writable[page / 64];
    uint64_t bit = uint64_t(1) << (page % 64);
    // Read with a write (an add of 0, one `lock xadd`): the word's page is zero in a new
    // process, and a plain read would map the zero page only for the fetch_or below to fault
    // again.
    if (word.fetch_add(0, std::memory_order_acquire) & bit) continue;
    if (!os_make_writable(detail::g_region.base + page * kMapPage, kMapPage)) return false;
    word.fetch_or(bit, std::memory_order_release);
  }
  return true;
}
bool g_force_two_level = false;
bool g_ready = false;

uint8_t* leaf_for(uintptr_t index, bool create) {
  size_t top = index >> kLeafBits;
  uint8_t* leaf = g_top[top].load(std::memory_order_acquire);
  if (leaf != nullptr || !create) return leaf;
  uint8_t* fresh = static_cast<uint8_t*>(os_map(kLeafEntries));
  if (fresh == nullptr) return nullptr;
  if (!g_top[top].compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel)) {
    os_unmap(fresh, kLeafEntries);  // another thread installed it first
    return leaf;
  }
  return fresh;
}

}  // namespace

namespace detail {
uint8_t region_map_lookup_2level(uintptr_t a) {
  uintptr_t index = a >> kRegionShift;
  uint8_t* leaf = g_top[index >> kLeafBits].load(std::memory_order_acquire);
  return leaf ? leaf[index & (kLeafEntries - 1)] : kRegionNone;
}
}  // namespace detail

bool region_map_init(const void* front, size_t front_bytes) {
  if (g_ready) return true;
  if (!g_force_two_level && front_bytes <= kRegionFrontBytes) {
    // The front page first: written, then read-only like the rest of the reservation.
    auto* r = static_cast<uint8_t*>(os_reserve(kRegionFrontBytes + kEntries * kFlatStride));
    if (r != nullptr && os_make_writable(r, kRegionFrontBytes)) {
      __builtin_memcpy(r, front, front_bytes);
      os_make_readonly(r, kRegionFrontBytes);  // a refusal leaves it writable: harmless
      detail::g_region.base = r + kRegionFrontBytes;
      // After the base: free reads `units` first (hak_free_api.inc.h).
      __atomic_store_n(&detail::g_region.units, kEntries, __ATOMIC_RELEASE);
    } else if (r != nullptr) {
      os_unreserve(r, kRegionFrontBytes + kEntries * kFlatStride);  // the two-level form then
    }
  }
  g_ready = true;  // the two-level form needs no set-up
  return true;
}

bool region_map_is_flat() { return detail::g_region.base != nullptr; }
void region_map_force_two_level() { g_force_two_level = true; }

namespace {
// Marks the units [start, start + bytes) as `id`; in the flat form also their run start k
// (region_map.h) unless k is 0 (not a run: the byte keeps what it had, which nothing reads).
bool set_units(const void* start, size_t bytes, uint8_t id, uint8_t k) {
  uintptr_t first = reinterpret_cast<uintptr_t>(start) >> kRegionShift;
  uintptr_t count = bytes >> kRegionShift;
  if (uint8_t* flat = detail::g_region.base) {
    if (count == 0) return true;
    if (!flat_make_writable(first, count)) return false;
    for (uintptr_t i = 0; i < count; ++i) {
      // k before the id: a free that sees the id (after the block was handed out, which
      // happens after this) sees the start.
      if (k != 0) __atomic_store_n(&flat[(first + i) * kFlatStride + 1], k, __ATOMIC_RELAXED);
      __atomic_store_n(&flat[(first + i) * kFlatStride], id, __ATOMIC_RELEASE);
    }
    return true;
  }
  for (uintptr_t i = 0; i < count; ++i) {
    uint8_t* leaf = leaf_for(first + i, id != kRegionNone);
    if (leaf == nullptr) {
      if (id == kRegionNone) continue;
      return false;
    }
    __atomic_store_n(&leaf[(first + i) & (kLeafEntries - 1)], id, __ATOMIC_RELEASE);
  }
  return true;
}
}  // namespace

bool region_map_set(const void* start, size_t bytes, uint8_t id) { return set_units(start, bytes, id, 0); }

bool region_map_set_run(const void* start, size_t bytes, uint8_t cls, const void* run_start) {
  // region_map.h: (p + k × 4 KiB) mod 2^19 is p's offset in the run; k is in [1, 128].
  const uint8_t k = uint8_t((kRunWindow - (reinterpret_cast<uintptr_t>(run_start) & (kRunWindow - 1))) >> 12);
  return set_units(start, bytes, cls, k);
}

}  // namespace hak
