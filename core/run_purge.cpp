// run_purge.cpp — the pages inside a run's free blocks go back (see run_purge.h).
#include "run_purge.h"

#include "os.h"
#include "size_class.h"

namespace hak {

size_t run_purge_free_pages(Slab* s) {
  if constexpr (!kRunPurge) return 0;
  const size_t size = class_to_size(s->cls);
  if (size < kPurgeMinBlock || s->nfree == 0) return 0;
  const uintptr_t page = os_page_size();
  const char* const start = s->start;
  const uint32_t carved = uint32_t(size_t(s->bump - start) / size);
  const uint64_t* bits = run_out_bits(s);
  size_t given = 0;
  for (uint32_t w = 0; w * 64 < carved; ++w) {
    uint64_t free_bits = ~out_word(bits, w);
    if (carved - w * 64 < 64) free_bits &= (uint64_t(1) << (carved - w * 64)) - 1;
    while (free_bits != 0) {
      const uint32_t i = w * 64 + uint32_t(__builtin_ctzll(free_bits));
      free_bits &= free_bits - 1;
      const uintptr_t b = reinterpret_cast<uintptr_t>(start) + size_t(i) * size;
      const uintptr_t lo = (b + kPurgeKeep + page - 1) & ~(page - 1);
      const uintptr_t hi = (b + size) & ~(page - 1);
      if (lo < hi) {
        os_decommit(reinterpret_cast<void*>(lo), size_t(hi - lo));
        given += size_t(hi - lo);
      }
    }
  }
  return given;
}

}  // namespace hak
