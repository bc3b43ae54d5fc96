// api_test_util.h — small helpers shared by the Criterion API tests in tests/api/.
//
// The tests link libhakmem.a with --whole-archive, so malloc/free/new/delete in the test
// binary are hakmem's. The same sources also build against plain glibc (no libhakmem.a):
//   g++ -std=c++20 -O2 -pthread -Icore tests/api/test_X.cpp -lcriterion
// which checks the tests themselves; expectations that only hakmem promises (where glibc
// behaves differently) are guarded by linked_with_hakmem().
#ifndef HAKMEM_API_TEST_UTIL_H
#define HAKMEM_API_TEST_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem.h"

// Weak, so that a build against plain glibc links and reports "not hakmem".
#pragma weak hak_malloc
#pragma weak hak_stats_get
#pragma weak hak_trim

static inline bool linked_with_hakmem() { return &hak_malloc != nullptr; }

// Optimisation barriers: the compiler may neither delete a malloc/free pair whose pointer
// goes through escape(), nor fold a size that goes through opaque() (which also keeps GCC's
// -Walloc-size-larger-than quiet for the deliberately absurd sizes).
static inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }
static inline size_t opaque(size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}

// Deterministic generator (splitmix64).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n ? (size_t)(next() % n) : 0; }
  size_t range(size_t lo, size_t hi) { return lo + below(hi - lo + 1); }  // inclusive
};

// Byte pattern that depends on the position and on a per-block seed.
static inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  return (uint8_t)((seed * 0x9Du) ^ (i * 131u) ^ (i >> 8) ^ 0x5Au);
}
static inline void fill_pattern(void* p, size_t n, uint64_t seed) {
  uint8_t* b = (uint8_t*)p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}
// Returns the index of the first byte that differs, or SIZE_MAX if all n bytes match.
static inline size_t check_pattern(const void* p, size_t n, uint64_t seed) {
  const uint8_t* b = (const uint8_t*)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}
// Cheaper variant for big blocks: the first and last `edge` bytes and one byte per 4 KiB.
static inline void fill_sparse(void* p, size_t n, uint64_t seed, size_t edge = 64) {
  uint8_t* b = (uint8_t*)p;
  if (n <= 2 * edge) { fill_pattern(p, n, seed); return; }
  for (size_t i = 0; i < edge; i++) b[i] = pattern_byte(seed, i);
  for (size_t i = n - edge; i < n; i++) b[i] = pattern_byte(seed, i);
  for (size_t i = edge; i < n - edge; i += 4096) b[i] = pattern_byte(seed, i);
}
static inline size_t check_sparse(const void* p, size_t n, uint64_t seed, size_t edge = 64) {
  const uint8_t* b = (const uint8_t*)p;
  if (n <= 2 * edge) return check_pattern(p, n, seed);
  for (size_t i = 0; i < edge; i++) if (b[i] != pattern_byte(seed, i)) return i;
  for (size_t i = n - edge; i < n; i++) if (b[i] != pattern_byte(seed, i)) return i;
  for (size_t i = edge; i < n - edge; i += 4096) if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}

static inline bool all_zero(const void* p, size_t n) {
  const uint8_t* b = (const uint8_t*)p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

// The alignment the C ABI requires of malloc(n) on x86-64.
static inline size_t required_alignment(size_t n) { return n >= 16 ? 16 : 8; }

// Resident set of this process, in bytes (from /proc/self/statm).
static inline size_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif  // HAKMEM_API_TEST_UTIL_H
