// new_kind.h — which C++ operator made a live block, so that `delete` of a block operator
// new[] made, and `delete[]` of one it did not (new, malloc), are reported at the call.
// Secure and debug variants only (kArrayBits); release compiles every function here to
// nothing.
//
// Holds: one flag per live block: a bit per block in the second bitmap beside each
// SuperSlab's out-bitmaps (run_array_word, superslab.h; cleared when a slot gets a new run),
// the `array` bit of a span header (span.h), a guarded slot's flag (guarded.h). operator new[]
// sets it, delete[] clears it, and operator new clears it once the program has called new[]
// at all (a block freed by free() after new[] made it, undefined and unchecked, may have left
// it set). Before a program's first new[] neither new nor delete looks at it. Blocks freed
// already and pointers that are not a block's start are left to free's own checks.
//
// May call: region_map, superslab, span, free_link, guarded, diag. Called by hakmem.cpp.
#ifndef HAKMEM_NEW_KIND_H
#define HAKMEM_NEW_KIND_H

#include <atomic>

#include "hakmem_build_flags.h"
#include "superslab.h"

namespace hak {

// Set by the first operator new[].
extern std::atomic<bool> g_new_array_used;

// Records that operator new (array = false) or new[] (true) returned p (nullptr: nothing).
void new_kind_set(void* p, bool array);
// delete (array = false) or delete[] (true) of p: a flag that does not match is fatal;
// delete[] clears it.
void new_kind_check(void* p, bool array);

HAK_FAST_PATH void* new_kind(void* p, bool array) {
  if constexpr (kArrayBits) {
    if (array || g_new_array_used.load(std::memory_order_relaxed)) new_kind_set(p, array);
  }
  return p;
}

HAK_FAST_PATH void new_kind_check_delete(void* p, bool array) {
  if constexpr (kArrayBits) {
    if (array || g_new_array_used.load(std::memory_order_relaxed)) new_kind_check(p, array);
  }
}

}  // namespace hak

#endif  // HAKMEM_NEW_KIND_H
