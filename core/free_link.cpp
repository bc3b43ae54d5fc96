// free_link.cpp — the reports of free_link.h: a free block written while it was free, a list
// whose link leads off, and the link key's set-up.
// Holds: g_link_key. May call: diag.h (hak_fatal), os.h (the random source), size_class.h.
#include "free_link.h"

#include "diag.h"
#include "os.h"
#include "size_class.h"

namespace hak {

alignas(64) uintptr_t g_link_key;  // read-mostly: its line holds nothing that is written

void link_key_init() {
  if (g_link_key != 0) return;
  uint64_t k = os_random_u64();
  // The secure and debug variants' canary is the key's low four bytes (canary.h): none is
  // zero, so a string's terminator written one past its block (the commonest overflow) never
  // leaves the canary intact.
  for (int i = 0; i < 4; ++i)
    if (((k >> (8 * i)) & 0xFF) == 0) k |= uint64_t(0x5A) << (8 * i);
  g_link_key = uintptr_t(k);
}

void write_after_free(const void* b, int cls, const char* where) {
  const auto* w = static_cast<const uintptr_t*>(b);
  unsigned at = w[1] != kFreeKey ? 8 : w[2] != kFreeWordPoison ? 16 : 24;
  hak_fatal("write after free: the free block %p (size class %d, %zu bytes) was written at +%u while it was free (found %s)",
            b, cls, class_to_size(cls), at, where);
}

void link_corrupted(const void* b, const void* next, int cls) {
  if (b == nullptr)
    hak_fatal("corrupted free list (size class %d): its first block %p is not a free block of that class", cls, next);
  hak_fatal("corrupted free list (size class %d): the free block %p links to %p, not a free block of that class (written after free, or overflowed into?)",
            cls, b, next);
}

}  // namespace hak
