// region_map.h — which kind of hakmem memory is any address? One byte per 64 KiB (and, in
// the flat form, where a slab run starts: a second byte).
//
// free(p) classifies p with one load: region_map_lookup(p) →
//   0                    not hakmem's (foreign: glibc's, stack, static, wild) — never faults
//   1 .. kNumClasses     a slab of that size class (Tiny/Mid): the block has no header
//   kRegionFreeSlab      inside a SuperSlab but in no slab currently assigned to a class
//   kRegionSpan          a page-arena span or Large mapping: a 16-byte header precedes the block
//   kRegionLargeFree     freed Large memory kept for reuse (a free extent of page_heap.h)
//   kRegionGuarded       the guarded pool (guarded.h): sampled blocks between inaccessible pages
//   kRegionSeed          the seed heap (seed_heap.h): a process's first small blocks, packed
//
// Primary form: a flat array of 2^31 two-byte entries covering the 47-bit user address space,
// reserved read-only with MAP_NORESERVE — untouched pages read as zero and cost nothing, not
// even commit charge; each 4 KiB page of the map covers 128 MiB of heap and is made writable
// the first time hakmem registers memory there. Where the reservation is refused (vm.overcommit_memory=2,
// RLIMIT_AS), a two-level map (2^15 leaves of 64 KiB, mapped on first use) takes its place
// behind the same interface.
//
// Every range hakmem registers is 64 KiB-aligned and a multiple of 64 KiB, so no 64 KiB unit
// is shared between hakmem and another mapping.
//
// The flat form keeps two bytes per unit: the id, and, for a unit of a slab run, where the run
// starts: k = (2^19 − run start mod 2^19) / 4 KiB, in [1, 128]. A run is at most 4 slabs
// (256 KiB = 2^18) and starts at a 4 KiB boundary (a run at a SuperSlab's first slab starts
// 4 KiB into it, after the header), so p's offset in its run is (p + k × 4 KiB) mod 2^19, from
// the cache line free read the id from, without touching the SuperSlab; whether p starts a
// block of such a run is then one multiply and one compare (region_run_offset;
// class_starts_block in size_class.h). The window is twice the longest run so that the
// header before a run at a SuperSlab's first slab reads as offsets [2^19 − 4 KiB, 2^19), past
// every run's blocks: with a 2^18 window those offsets were the last 4 KiB of a 4-slab run,
// multiples of some class sizes.
#ifndef HAKMEM_REGION_MAP_H
#define HAKMEM_REGION_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr unsigned kRegionShift = 16;                 // 64 KiB per entry
inline constexpr size_t kRegionUnit = size_t(1) << kRegionShift;
inline constexpr unsigned kAddressBits = 47;                  // x86-64 user space
inline constexpr uint8_t kRegionNone = 0;
inline constexpr uint8_t kRegionSeed = 0xFA;
inline constexpr uint8_t kRegionGuarded = 0xFB;
inline constexpr uint8_t kRegionLargeFree = 0xFC;
inline constexpr uint8_t kRegionFreeSlab = 0xFD;
inline constexpr uint8_t kRegionSpan = 0xFE;

namespace detail {
// The flat form: its base (nullptr until init, or when the two-level form is in use) and the
// number of units it covers (2^31 once set up, else 0), side by side: free compares a >> 16
// with `units` and so learns in one branch that the map is there and covers a. Hidden: free
// loads them straight, not through the GOT.
struct FlatMap {
  uint8_t* base;
  uintptr_t units;
};
extern FlatMap g_region __attribute__((visibility("hidden")));
uint8_t region_map_lookup_2level(uintptr_t a);
}  // namespace detail

// The flat form's front page: the 4 KiB just before the map's base, read-only, holding what
// region_map_init was given (free's divisibility constants, size_class.h's start_mul and
// start_lim), so that free reaches them from the base it has loaded anyway, with no address of
// their own to form (one instruction fewer on every free).
inline constexpr size_t kRegionFrontBytes = 4096;
HAK_FAST_PATH const uint64_t* region_map_front(const uint8_t* base) {
  return reinterpret_cast<const uint64_t*>(base - kRegionFrontBytes);
}

// Reserves the map, with front_bytes (at most kRegionFrontBytes) of front copied into its front
// page. Returns false only if neither form could be set up (then hakmem cannot run and hak_init
// reports it). Idempotent; not thread-safe (hak_init serialises it).
bool region_map_init(const void* front, size_t front_bytes);

// True when the flat reservation (4 GiB and the front page) is in use (false: two-level
// fallback).
bool region_map_is_flat();

// Forces the two-level form (tests only; call before region_map_init).
void region_map_force_two_level();

// Marks [start, start + bytes) as `id`. start and bytes are multiples of kRegionUnit.
// Returns false if the two-level form could not map a leaf (out of memory).
bool region_map_set(const void* start, size_t bytes, uint8_t id);

// Marks the units of a slab run, [start, start + bytes), as class `cls`, and (flat form) where
// the run starts: run_start is start, or start + 4 KiB for a run at a SuperSlab's first slab.
bool region_map_set_run(const void* start, size_t bytes, uint8_t cls, const void* run_start);

// Bytes per unit in the flat form: the id, then the run start (region_map_set_run).
inline constexpr unsigned kFlatStride = 2;

// The offset of a from the start of its slab run, given e, a's entry in the flat map (its id a
// class). An address before the run's first block (a SuperSlab's header, for a run at the
// SuperSlab's first slab) gives an offset in [2^19 − 4 KiB, 2^19): past the blocks of any run
// (class_starts_block rejects it).
inline constexpr uintptr_t kRunWindow = uintptr_t(1) << 19;
HAK_FAST_PATH uint32_t region_run_offset(const uint8_t* e, uintptr_t a) {
  return uint32_t((a + (uintptr_t(__atomic_load_n(&e[1], __ATOMIC_RELAXED)) << 12)) & (kRunWindow - 1));
}

// The id of the 64 KiB unit holding p. One load in the flat form; never faults.
HAK_FAST_PATH uint8_t region_map_lookup(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (HAK_UNLIKELY(a >> kAddressBits)) return kRegionNone;
  uint8_t* flat = detail::g_region.base;
  if (HAK_LIKELY(flat != nullptr)) return flat[(a >> kRegionShift) * kFlatStride];
  return detail::region_map_lookup_2level(a);
}

}  // namespace hak

#endif  // HAKMEM_REGION_MAP_H
