// new_kind.cpp — the operator that made a block (see new_kind.h).
#include "new_kind.h"

#include "diag.h"
#include "free_link.h"
#include "guarded.h"
#include "region_map.h"
#include "span.h"

namespace hak {

std::atomic<bool> g_new_array_used{false};

namespace {

// The flag's word and bit for live block p of region id (a class), or nullptr (not checkable).
uint64_t* array_flag_word(void* p, uint8_t id, uint64_t* bit) {
  if (unsigned(id) - 1u >= unsigned(kNumClasses)) return nullptr;
  Slab* s = slab_of_block(p);
  uint32_t i = run_block_index(s, p);
  if (i == UINT32_MAX || key_held_live(p)) return nullptr;
  *bit = uint64_t(1) << (i & 63);
  return run_array_word(s, i >> 6);
}

}  // namespace

void new_kind_set(void* p, bool array) {
  if (p == nullptr) return;
  if (array) g_new_array_used.store(true, std::memory_order_relaxed);
  uint8_t id = region_map_lookup(p);
  if (id == kRegionSpan) {
    span_header_of(p)->array = array ? 1 : 0;
  } else if (id == kRegionGuarded) {
    guarded_set_array(p, array);
  } else {
    uint64_t bit;
    if (uint64_t* w = array_flag_word(p, id, &bit)) {
      if (array) __atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
      else if (__atomic_load_n(w, __ATOMIC_RELAXED) & bit) __atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
    }
  }
}

void new_kind_check(void* p, bool array) {
  if (p == nullptr) return;
  bool flagged;
  uint8_t id = region_map_lookup(p);
  uint64_t bit = 0;
  uint64_t* w = nullptr;
  if (id == kRegionSpan) {
    SpanHeader* h = span_header_of(p);
    if (!span_is_live(h)) return;
    flagged = h->array != 0;
    if (flagged && array) h->array = 0;
  } else if (id == kRegionGuarded) {
    flagged = guarded_is_array(p);
    if (flagged && array) guarded_set_array(p, false);
  } else if ((w = array_flag_word(p, id, &bit)) != nullptr) {
    flagged = (__atomic_load_n(w, __ATOMIC_RELAXED) & bit) != 0;
    if (flagged && array) __atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
  } else {
    return;
  }
  if (flagged && !array)
    hak_fatal("operator delete(%p): the block was allocated by operator new[] (release it with delete[])", p);
  if (!flagged && array)
    hak_fatal("operator delete[](%p): the block was not allocated by operator new[] (by new or malloc: release it "
              "with delete or free)", p);
}

}  // namespace hak
