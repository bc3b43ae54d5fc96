// canary.h — the canary after each Tiny/Mid block of the secure and debug variants (canary_on:
// not under valgrind): an overflow past the bytes the program asked for is reported when the
// block is freed, resized or measured.
//
// A request of n bytes takes the class of n + kCanaryTail (size_class.h), so a block of size
// bs ≥ n + 4 has room after the program's bytes:
//
//   [0, n)                      the program's bytes
//   [n, min(n + 4, bs - 4))     canary bytes: the low bytes of the process's random link key
//                               (free_link.h), the first at n
//   [bs - 4, bs)                the size record: bs - n in both halves of a 32-bit word, xored
//                               with 32 bits of the key
//
// free (canary_intact) checks that the record's halves agree, decodes n, and compares the canary
// bytes: one byte written past n is found there (unless it wrote the key's byte there: one
// chance in 256 for a program that cannot read the key), or, for a block without canary bytes (n = bs - 4), in the record, one of
// whose halves then disagrees with the other. malloc_usable_size reports n, so a program that
// fills its block up to what malloc_usable_size says stays clear of the canary; realloc checks
// the old block first. Arming is two stores, checking two loads and compares, no branch
// that depends on the size. Only Tiny/Mid blocks: spans end
// at page boundaries (guarded sampling covers spans of up to 256 KiB: guarded.h). The cost: docs/BENCHMARKS.md, "Canaries in
// the secure variant".
//
// May call: free_link.h (the key), diag.h (the report).
#ifndef HAKMEM_CANARY_H
#define HAKMEM_CANARY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "diag.h"
#include "free_link.h"
#include "hakmem_build_flags.h"
#include "size_class.h"

namespace hak {

inline constexpr bool kCanary = kSecure || kDebug;
static_assert(kCanaryTail == (kCanary ? 4u : 0u), "size_class.h's room for the size record");
// Most canary bytes after the program's bytes (an overflow runs from the first of them on).
inline constexpr size_t kCanaryBytes = 4;

// Whether blocks get canaries in this process: always in the secure variant; in the debug
// variant unless it runs under valgrind, whose memcheck keeps the bytes past a block
// NOACCESS and reports an overflow at the write itself (valgrind_support.h).
HAK_FAST_PATH bool canary_on() {
  if constexpr (!kCanary) return false;
  if constexpr (kValgrind) return !vg_running();
  return true;
}

// The canary bytes, 4 of them, and the record's key.
HAK_FAST_PATH uint64_t canary_word() { return g_link_key; }
HAK_FAST_PATH uint32_t canary_record_key(uint64_t w) { return uint32_t(w >> 32) ^ 0x5A5A5A5Au; }

// Block b of bs bytes now holds n bytes for the program: canary bytes and size record after them
// (nothing while !canary_on()). Two stores and no branch on the size: the canary's 4 bytes
// (n + 4 ≤ bs always), then the record, which overwrites what of them ran into it. (A branch
// on the room between the two, mispredicted for random sizes, cost Larson a third of its
// speed.)
HAK_FAST_PATH void canary_arm(void* b, size_t bs, size_t n) {
  if (!canary_on()) return;
  unsigned char* c = static_cast<unsigned char*>(b);
  const uint64_t v = canary_word();
  const uint32_t v4 = uint32_t(v);
  memcpy(c + n, &v4, 4);
  const uint32_t gap = uint32_t(bs - n);
  const uint32_t rec = (gap | gap << 16) ^ canary_record_key(v);
  memcpy(c + bs - 4, &rec, 4);
}

// The gap between the program's bytes and the end of block b (bs bytes) that its size record
// holds, or 0 when the record is not intact (its halves disagree, or it is not in 4..bs).
HAK_FAST_PATH size_t canary_gap(const void* b, size_t bs) {
  uint32_t rec;
  memcpy(&rec, static_cast<const unsigned char*>(b) + bs - 4, 4);
  rec ^= canary_record_key(canary_word());
  const size_t gap = rec & 0xFFFF;
  return (rec >> 16) == gap && gap - 4 <= bs - 4 ? gap : 0;  // unsigned: 4 ≤ gap ≤ bs
}

// Whether block b of bs bytes has its size record and canary bytes intact; *n = the bytes the
// program asked for. No report: the caller decides what the block is (tiny_canary_failed).
HAK_FAST_PATH bool canary_intact(const void* b, size_t bs, size_t* n) {
  const unsigned char* c = static_cast<const unsigned char*>(b);
  const uint64_t v = canary_word();
  const size_t gap = canary_gap(b, bs);
  if (HAK_UNLIKELY(gap == 0)) return false;
  *n = bs - gap;
  uint32_t got;
  memcpy(&got, c + *n, 4);
  // The canary's bytes: the 4 after n, or the gap - 4 before the record (a minimum and a shift:
  // no branch on the size).
  const size_t k = gap - 4 < 4 ? gap - 4 : 4;
  return ((got ^ uint32_t(v)) & ((uint64_t(1) << (8 * k)) - 1)) == 0;
}

// Reports what is wrong with the canary or the record of block b (bs bytes; op names the call
// that found it) and aborts.
[[noreturn]] HAK_SLOW_PATH void canary_report(const void* b, size_t bs, const char* op);

}  // namespace hak

#endif  // HAKMEM_CANARY_H
