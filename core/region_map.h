// region_map.h — which kind of hakmem memory is any address? One byte per 64 KiB.
//
// free(p) classifies p with one load: region_map_lookup(p) →
//   0                    not hakmem's (foreign: glibc's, stack, static, wild) — never faults
//   1 .. kNumClasses     a slab of that size class (Tiny/Mid): the block has no header
//   kRegionFreeSlab      inside a SuperSlab but in no slab currently assigned to a class
//   kRegionSpan          a page-arena span or Large mapping: a 16-byte header precedes the block
//   kRegionLargeFree     freed Large memory kept for reuse (a free extent of page_heap.h)
//   kRegionGuarded       the guarded pool (guarded.h): sampled blocks between inaccessible pages
//
// Primary form: a flat array of 2^31 bytes covering the 47-bit user address space, reserved
// read-only with MAP_NORESERVE — untouched pages read as zero and cost nothing, not even
// commit charge; each 4 KiB page of the map covers 256 MiB of heap and is made writable the
// first time hakmem registers memory there. Where the reservation is refused (vm.overcommit_memory=2,
// RLIMIT_AS), a two-level map (2^15 leaves of 64 KiB, mapped on first use) takes its place
// behind the same interface.
//
// Every range hakmem registers is 64 KiB-aligned and a multiple of 64 KiB, so no 64 KiB unit
// is shared between hakmem and another mapping.
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
inline constexpr uint8_t kRegionGuarded = 0xFB;
inline constexpr uint8_t kRegionLargeFree = 0xFC;
inline constexpr uint8_t kRegionFreeSlab = 0xFD;
inline constexpr uint8_t kRegionSpan = 0xFE;

namespace detail {
extern uint8_t* g_region_flat;  // nullptr until init, or when the two-level form is in use
uint8_t region_map_lookup_2level(uintptr_t a);
}  // namespace detail

// Reserves the map. Returns false only if neither form could be set up (then hakmem cannot
// run and hak_init reports it). Idempotent; not thread-safe (hak_init serialises it).
bool region_map_init();

// True when the flat 2 GiB reservation is in use (false: two-level fallback).
bool region_map_is_flat();

// Forces the two-level form (tests only; call before region_map_init).
void region_map_force_two_level();

// Marks [start, start + bytes) as `id`. start and bytes are multiples of kRegionUnit.
// Returns false if the two-level form could not map a leaf (out of memory).
bool region_map_set(const void* start, size_t bytes, uint8_t id);

// The id of the 64 KiB unit holding p. One load in the flat form; never faults.
HAK_FAST_PATH uint8_t region_map_lookup(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (HAK_UNLIKELY(a >> kAddressBits)) return kRegionNone;
  uint8_t* flat = detail::g_region_flat;
  if (HAK_LIKELY(flat != nullptr)) return flat[a >> kRegionShift];
  return detail::region_map_lookup_2level(a);
}

}  // namespace hak

#endif  // HAKMEM_REGION_MAP_H
